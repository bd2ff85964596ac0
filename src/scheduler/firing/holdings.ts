/**
 * The entries this worker process has in hand: claimed, printing or committing. Every path
 * that acquires entries (the blocking read, a grab, a take, the sweep) holds them here and
 * works only on what it got; nothing else marks or unmarks an entry. An entry has one holder
 * at a time, so two steps of one worker never print the same entry, whatever order their
 * answers arrive in (a blocking read's answer can come after the sweep found the same
 * entries pending). Entry ids are per stream, so an entry is named with its partition.
 */
export interface Lease {
  /** Whether this lease holds the partition's entry. */
  has(partition: number, entry: string): boolean;
  /** Gives the entries up (idempotent); another step may then hold them. */
  release(): void;
}

export interface Holdings {
  /** Holds, at once (no await in between), the entries no other lease holds, and returns them as a lease. */
  hold(entries: Iterable<readonly [partition: number, entry: string]>): Lease;
  readonly size: number;
}

const nameOf = (partition: number, entry: string) => `${partition}/${entry}`;

export function createHoldings(): Holdings {
  const held = new Set<string>();
  return {
    hold(entries) {
      const mine = new Set<string>();
      for (const [partition, entry] of entries) {
        const name = nameOf(partition, entry);
        if (held.has(name)) continue;
        held.add(name);
        mine.add(name);
      }
      let released = false;
      return {
        has: (partition, entry) => mine.has(nameOf(partition, entry)),
        release() {
          if (released) return;
          released = true;
          for (const name of mine) held.delete(name);
        },
      };
    },
    get size() {
      return held.size;
    },
  };
}
