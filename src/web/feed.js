// The live feed of fired tasks: the taskFired subscription, resumed after a reconnect from
// the cursor of the last event shown (no gap, no repeat), drawn as a table, newest first,
// and handed to whoever counts or charts fired tasks.
import { fromGraphQLError } from './api.js';
import { duration, timeOfDay } from './format.js';
import { clearError, reportError } from './notice.js';
import { detailsButton } from './details.js';

const MAX_ROWS = 200;
const RETRY_MS = 5000;
const PART = 'Live feed';
const FEED = `subscription Feed($after: String) {
  taskFired(after: $after) { cursor task { id message time status firedAt lateByMs } }
}`;

const cell = (name, content) => {
  const td = document.createElement('td');
  td.className = name;
  td.append(content); // text nodes and buttons, never HTML: messages are user input
  return td;
};

/** Subscribes on `live`, fills `body` (a <tbody>), calls `onFired(task)` once per fired task. */
export function startFeed({ live, body, onFired }) {
  const shown = new Set();
  let lastCursor = null;

  const addRow = (task) => {
    shown.add(task.id);
    const row = document.createElement('tr');
    row.dataset.taskId = task.id;
    const late = cell('late', task.lateByMs === null ? '' : duration(task.lateByMs));
    if (task.lateByMs !== null && task.lateByMs >= 1000) late.classList.add('slow');
    row.append(cell('message', detailsButton(task.id, task.message)), cell('due wide-only', timeOfDay(task.time)), cell('fired', task.firedAt ? timeOfDay(task.firedAt) : ''), late);
    body.prepend(row);
    while (body.rows.length > MAX_ROWS) {
      shown.delete(body.lastElementChild.dataset.taskId);
      body.lastElementChild.remove();
    }
  };

  const begin = () =>
    live.subscribe(() => ({ query: FEED, variables: { after: lastCursor } }), {
      next: (payload) => {
        if (payload.errors && payload.errors.length > 0) return reportError(PART, fromGraphQLError(payload.errors[0]));
        clearError(PART);
        const { cursor, task } = payload.data.taskFired;
        lastCursor = cursor;
        if (shown.has(task.id)) return;
        addRow(task);
        onFired(task);
      },
      error: ([first]) => {
        const error = fromGraphQLError(first);
        // An expired or malformed cursor cannot resume: continue live from now, and say so.
        if (error.code === 'BAD_USER_INPUT' && lastCursor) {
          lastCursor = null;
          reportError(`${PART} (gap)`, { code: 'RESUME_EXPIRED', message: 'Some fired tasks were missed while disconnected; the feed continues from now.' });
          return begin();
        }
        reportError(PART, error);
        setTimeout(begin, RETRY_MS);
      },
    });

  begin();
}
