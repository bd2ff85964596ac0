// Fired tasks per second of `firedAt` over a sliding window: how many, and their lateness
// (p50, p99, max). Counts and maxima are exact; percentiles come from a uniform sample of at
// most SAMPLE latenesses per second (reservoir sampling), so memory stays bounded at any rate.

const SAMPLE = 1000;

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];

/** Keeps the last `windowSeconds` seconds. */
export function createSeries(windowSeconds) {
  /** Second → { count, max, sample, sorted (the sample sorted, null until needed) }. */
  const buckets = new Map();

  const add = (firedAtMs, lateByMs) => {
    const second = Math.floor(firedAtMs / 1000);
    if (!buckets.has(second)) buckets.set(second, { count: 0, max: 0, sample: [], sorted: null });
    const bucket = buckets.get(second);
    bucket.count += 1;
    bucket.max = Math.max(bucket.max, lateByMs);
    if (bucket.sample.length < SAMPLE) bucket.sample.push(lateByMs);
    else {
      const slot = Math.floor(Math.random() * bucket.count);
      if (slot < SAMPLE) bucket.sample[slot] = lateByMs;
    }
    bucket.sorted = null;
  };

  /** uPlot's columns for the `seconds` (at most the window) ending at `nowMs`: seconds, fired, p50, p99, max. */
  const columns = (nowMs, seconds = windowSeconds) => {
    const last = Math.floor(nowMs / 1000);
    const first = last - Math.min(seconds, windowSeconds) + 1;
    for (const second of buckets.keys()) if (second <= last - windowSeconds) buckets.delete(second);
    const xs = [];
    const fired = [];
    const p50 = [];
    const p99 = [];
    const max = [];
    for (let second = first; second <= last; second++) {
      const bucket = buckets.get(second);
      xs.push(second);
      fired.push(bucket ? bucket.count : 0);
      if (bucket) bucket.sorted ??= [...bucket.sample].sort((a, b) => a - b);
      p50.push(bucket ? percentile(bucket.sorted, 0.5) : null);
      p99.push(bucket ? percentile(bucket.sorted, 0.99) : null);
      max.push(bucket ? bucket.max : null);
    }
    return [xs, fired, p50, p99, max];
  };

  return { add, columns };
}
