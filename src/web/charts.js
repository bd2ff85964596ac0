// Two live charts drawn with uPlot (served from its npm package, global `uPlot`): tasks fired
// per second, and their lateness (p50, p99, max), over the last minutes of the service's
// clock. Each has a line of text saying the same for readers who cannot see the canvas.
import { count, duration } from './format.js';

const HEIGHT = 180;
const COLORS = { fired: '#2f6fdf', p50: '#1a7f37', p99: '#c77700', max: '#c62828' };

const shownMs = (_chart, value) => (value === null || value === undefined ? '—' : duration(value));

const options = (element, ink, series, yValues) => ({
  width: Math.max(element.clientWidth, 200),
  height: HEIGHT,
  scales: { x: { time: true } },
  axes: [
    { stroke: ink, grid: { stroke: '#8883' }, ticks: { stroke: '#8883' } },
    { stroke: ink, grid: { stroke: '#8883' }, ticks: { stroke: '#8883' }, size: 64, values: yValues },
  ],
  series: [{}, ...series],
});

/**
 * Draws `columns(now, seconds)` of a series (see series.js) once a second into the two
 * elements; `now()` is the service's clock. The charts span the time since the page opened,
 * from one minute up to `windowMinutes`: what the page has seen, not a long empty line.
 */
export function startCharts({ firedElement, latenessElement, columns, now, windowMinutes }) {
  const openedAt = Date.now();
  const span = () => Math.min(windowMinutes * 60, Math.max(60, Math.ceil((Date.now() - openedAt) / 1000)));
  const ink = getComputedStyle(document.body).color;
  const fired = new uPlot(
    options(firedElement.querySelector('.plot'), ink, [{ label: 'fired/s', stroke: COLORS.fired, fill: `${COLORS.fired}22`, width: 1.5, value: (_c, v) => (v === null ? '—' : count(v)) }], (_c, ticks) => ticks.map(count)),
    [[], []],
    firedElement.querySelector('.plot'),
  );
  const late = (label) => ({ label, stroke: COLORS[label], width: 1.5, value: shownMs, spanGaps: false });
  const lateness = new uPlot(
    options(latenessElement.querySelector('.plot'), ink, [late('p50'), late('p99'), late('max')], (_c, ticks) => ticks.map((ms) => duration(ms))),
    [[], [], [], []],
    latenessElement.querySelector('.plot'),
  );

  const summaries = { fired: firedElement.querySelector('.summary'), lateness: latenessElement.querySelector('.summary') };
  const draw = () => {
    const seconds = span();
    const [xs, perSecond, p50, p99, max] = columns(now(), seconds);
    fired.setData([xs, perSecond]);
    lateness.setData([xs, p50, p99, max]);
    const total = perSecond.reduce((sum, n) => sum + n, 0);
    const peak = Math.max(0, ...perSecond);
    firedElement.dataset.total = String(total);
    const last = `${Math.floor(seconds / 60)} min${seconds % 60 === 0 ? '' : ` ${seconds % 60} s`}`;
    summaries.fired.textContent = `${count(total)} fired in the last ${last}; at most ${count(peak)} in one second.`;
    const worst = (values) => Math.max(...values.filter((v) => v !== null));
    const points = p50.filter((v) => v !== null).length;
    latenessElement.dataset.points = String(points);
    summaries.lateness.textContent = points === 0 ? `Nothing fired in the last ${last}.` : `Worst second of the last ${last}: p50 ${duration(worst(p50))}, p99 ${duration(worst(p99))}, max ${duration(worst(max))}.`;
  };

  // Charts follow their box: full width on a phone, half on a wide screen.
  new ResizeObserver(() => {
    for (const [chart, element] of [
      [fired, firedElement],
      [lateness, latenessElement],
    ])
      chart.setSize({ width: Math.max(element.querySelector('.plot').clientWidth, 200), height: HEIGHT });
  }).observe(firedElement.parentElement);

  draw();
  setInterval(draw, 1000);
}
