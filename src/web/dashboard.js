// The dashboard: wires the parts of the page together. Every part speaks only GraphQL, on
// this origin, with the API token when one is set.
import { bindTokenInput, onTokenChange } from './token.js';
import { bindNotice, clearError, reportError } from './notice.js';
import { createLive } from './live.js';
import { createStats } from './stats.js';
import { createSeries } from './series.js';
import { startCharts } from './charts.js';
import { startFeed } from './feed.js';
import { bindDetails } from './details.js';
import { bindReschedule } from './reschedule.js';
import { createTaskList } from './task-list.js';
import { bindScheduleForm } from './schedule-form.js';
import { dateTime } from './format.js';

/** How often the counts are read again; the fired count moves with the feed in between. */
const STATS_EVERY_MS = 5000;
/** How often the task list is read again, unless the reader is busy in it. */
const LIST_EVERY_MS = 5000;
const CHART_MINUTES = 5;

const $ = (id) => document.getElementById(id);

bindTokenInput($('token'));
bindNotice($('alert'), $('token-panel'));

const connection = $('connection');
const live = createLive((state, text) => {
  connection.dataset.state = state;
  connection.textContent = text;
  if (state === 'down') reportError('Live connection', { code: 'UNAUTHENTICATED', message: 'The live connection was refused.' });
  else if (state === 'live') clearError('Live connection');
});

const stats = createStats($('stats'));
const series = createSeries(CHART_MINUTES * 60);
startCharts({ firedElement: $('chart-fired'), latenessElement: $('chart-lateness'), columns: series.columns, now: stats.serviceNow, windowMinutes: CHART_MINUTES });

startFeed({
  live,
  body: $('fired'),
  onFired: (task) => {
    stats.countFired();
    if (task.firedAt && task.lateByMs !== null) series.add(Date.parse(task.firedAt), task.lateByMs);
  },
});

bindDetails($('details-dialog'));

/** After this page changed something, the counts and the list say so at once. */
const changedHere = () => {
  stats.refresh();
  list.refresh();
};
const openReschedule = bindReschedule($('reschedule-dialog'), (task) => {
  list.say(`Rescheduled task ${task.id} to ${dateTime(task.time)}.`, false);
  changedHere();
});
const list = createTaskList($('tasks'), { reschedule: openReschedule, changed: changedHere });
bindScheduleForm($('schedule'), $('result'), { live, scheduled: changedHere });

onTokenChange(() => {
  live.reconnect();
  changedHere();
});

stats.refresh();
setInterval(() => !document.hidden && stats.refresh(), STATS_EVERY_MS);
// A list that moved under the reader's hand would make them click the wrong row.
const rows = $('tasks').querySelector('tbody');
const busy = () => document.querySelector('dialog[open]') || rows.matches(':hover') || rows.contains(document.activeElement);
setInterval(() => !document.hidden && !busy() && list.refresh(), LIST_EVERY_MS);
