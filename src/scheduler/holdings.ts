/**
 * The entries this worker process has in hand: read, claimed, printing or committing. Every
 * path that acquires entries (the blocking read, a grab, a take, the sweeps for leftovers)
 * holds them here first and works only on what it got; nothing else marks or unmarks an
 * entry. An entry has one holder at a time, so two steps of one worker never claim and print
 * the same entry, whatever order their answers arrive in (a blocking read's answer can come
 * after the sweep for idle entries has found the same entries pending).
 */
export interface Lease {
  /** The entries this lease holds: those asked for that no other lease held. */
  readonly entries: ReadonlySet<string>;
  /** Gives the entries up (idempotent); another step may then hold them. */
  release(): void;
}

export interface Holdings {
  /** Holds the entries no other lease holds, at once (no await in between), and returns them as a lease. */
  hold(entries: Iterable<string>): Lease;
  has(entry: string): boolean;
  readonly size: number;
}

export function createHoldings(): Holdings {
  const held = new Set<string>();
  return {
    hold(entries) {
      const mine = new Set<string>();
      for (const entry of entries) {
        if (held.has(entry) || mine.has(entry)) continue;
        held.add(entry);
        mine.add(entry);
      }
      let released = false;
      return {
        entries: mine,
        release() {
          if (released) return;
          released = true;
          for (const entry of mine) held.delete(entry);
        },
      };
    },
    has: (entry) => held.has(entry),
    get size() {
      return held.size;
    },
  };
}
