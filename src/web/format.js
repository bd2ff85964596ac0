// How the dashboard writes times, durations and counts.

const pad = (n, width = 2) => String(n).padStart(width, '0');

/** 14:03:07.250, local time. */
export const timeOfDay = (iso) => {
  const date = new Date(iso);
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
};

/** 2026-11-07 14:03:07, local time: what a datetime-local input holds, with a space. */
export const dateTime = (iso) => localInputValue(new Date(iso)).replace('T', ' ');

/** The value of a datetime-local input (step 1 s) for a Date, in local time. */
export const localInputValue = (date) =>
  `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;

/** 850 ms, 2.35 s, 4.2 min, 3.1 h, 2.0 d. */
export const duration = (ms) => {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  if (ms < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
};

/** 1,234,567 in the reader's locale. */
export const count = (n) => Number(n).toLocaleString();
