// The counts of the `stats` query, kept current without a request per event: the snapshot is
// read every few seconds (and after this page changes something), and between two snapshots
// the fired count moves with the live feed. The snapshot's Redis time also tells the page
// how far its clock is from the service's, so the charts line up with `firedAt`.
import { request } from './api.js';
import { count, duration, timeOfDay } from './format.js';
import { clearError, reportError } from './notice.js';
import { oneAtATime } from './rerun.js';

const STATS = `query Stats {
  stats { scheduled due firing fired cancelled dead backlog oldestOverdueMs workers now }
}`;
const PART = 'Counts';

/** Each count's element id is `stat-<field>`. */
const SHOWN = {
  scheduled: count,
  due: count,
  firing: count,
  fired: count,
  cancelled: count,
  dead: count,
  backlog: count,
  oldestOverdueMs: (ms) => (ms === null ? '—' : duration(ms)),
  workers: count,
};

/** `root` holds the counts and an element `[data-updated]` saying when they were read. */
export function createStats(root) {
  const updated = root.querySelector('[data-updated]');
  let snapshot = null;
  /** Tasks the live feed reported since the snapshot arrived. */
  let firedSince = 0;
  let clockOffsetMs = 0;
  let readAt = null;
  let frame = null;

  const render = () => {
    for (const [field, shown] of Object.entries(SHOWN)) {
      const value = field === 'fired' ? snapshot.fired + firedSince : snapshot[field];
      root.querySelector(`#stat-${field}`).textContent = shown(value);
    }
    root.querySelector('#stat-oldestOverdueMs').closest('.stat').classList.toggle('warn', snapshot.oldestOverdueMs !== null && snapshot.oldestOverdueMs >= 1000);
    root.querySelector('#stat-workers').closest('.stat').classList.toggle('bad', snapshot.workers === 0);
  };

  const read = async () => {
    const sentAt = Date.now();
    try {
      const { stats } = await request(STATS);
      const receivedAt = Date.now();
      clockOffsetMs = Date.parse(stats.now) - (sentAt + receivedAt) / 2;
      snapshot = stats;
      firedSince = 0;
      readAt = new Date(receivedAt);
      render();
      updated.textContent = `updated ${timeOfDay(readAt)}`;
      updated.classList.remove('stale');
      clearError(PART);
    } catch (error) {
      updated.textContent = readAt ? `not updated since ${timeOfDay(readAt)}` : 'not read yet';
      updated.classList.add('stale');
      reportError(PART, error);
    }
  };

  return {
    /** Reads a new snapshot. */
    refresh: oneAtATime(read),
    /** One more task fired, by the live feed. */
    countFired() {
      firedSince += 1;
      // At most one redraw per frame, however fast tasks fire.
      if (frame !== null) return;
      frame = requestAnimationFrame(() => {
        frame = null;
        if (snapshot) render();
      });
    },
    /** The service's clock (Redis time), as estimated from the last snapshot. */
    serviceNow: () => Date.now() + clockOffsetMs,
  };
}
