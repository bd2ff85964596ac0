/**
 * The entries this worker process has in hand: claimed, printing or committing. Every path
 * that acquires entries (the blocking read, a grab, a take, the sweep) holds them here and
 * works only on what it got; nothing else marks or unmarks an entry. An entry has one holder
 * at a time, so two steps of one worker never print the same entry, whatever order their
 * answers arrive in (a blocking read's answer can come after the sweep found the same
 * entries pending). Entry ids are per stream, so entries are held per partition.
 */
export interface Lease {
  /** Whether this lease holds the partition's entry. */
  has(partition: number, entry: string): boolean;
  /** Whether it holds every entry it was asked for (the usual case: nobody else had any). */
  readonly whole: boolean;
  /** Gives the entries up (idempotent); another step may then hold them. */
  release(): void;
}

export interface Holdings {
  /** Holds, at once (no await in between), the entries no other lease holds, and returns them as a lease. */
  hold(entries: Iterable<readonly [partition: number, entry: string]>): Lease;
  readonly size: number;
}

export function createHoldings(): Holdings {
  const held = new Map<number, Set<string>>();
  const heldIn = (partition: number) => {
    let entries = held.get(partition);
    if (!entries) {
      entries = new Set();
      held.set(partition, entries);
    }
    return entries;
  };
  return {
    hold(entries) {
      const mine = new Map<number, Set<string>>();
      let whole = true;
      for (const [partition, entry] of entries) {
        // An entry named again (an entry of several tasks) is already this lease's.
        if (mine.get(partition)?.has(entry)) continue;
        const all = heldIn(partition);
        if (all.has(entry)) {
          whole = false;
          continue;
        }
        all.add(entry);
        let own = mine.get(partition);
        if (!own) {
          own = new Set();
          mine.set(partition, own);
        }
        own.add(entry);
      }
      let released = false;
      return {
        has: (partition, entry) => mine.get(partition)?.has(entry) ?? false,
        whole,
        release() {
          if (released) return;
          released = true;
          for (const [partition, own] of mine) {
            const all = held.get(partition)!;
            for (const entry of own) all.delete(entry);
          }
        },
      };
    },
    get size() {
      let size = 0;
      for (const entries of held.values()) size += entries.size;
      return size;
    },
  };
}
