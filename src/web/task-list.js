// Tasks of one status, a page at a time in the API's order (by due time; CANCELLED and DEAD by
// when they ended), with Details on each and, for tasks not yet firing, Reschedule and Cancel.
// Cancel is final, so it asks once more on the same button before it acts.
import { request } from './api.js';
import { dateTime } from './format.js';
import { clearError, reportError } from './notice.js';
import { detailsButton } from './details.js';
import { oneAtATime } from './rerun.js';

const PAGE_SIZE = 20;
const CONFIRM_MS = 5000;
const PART = 'Tasks';
const LIST = `query List($status: TaskStatus!, $first: Int!, $after: String) {
  tasks(status: $status, first: $first, after: $after) {
    nodes { id message time status attempts endedAt }
    pageInfo { hasNextPage endCursor }
  }
}`;
const CANCEL = `mutation Cancel($id: ID!) { cancelTask(id: $id) { id status } }`;
/** Statuses whose tasks can still be cancelled or rescheduled. */
const CHANGEABLE = new Set(['SCHEDULED', 'DUE']);

const button = (label, action) => {
  const element = document.createElement('button');
  element.type = 'button';
  element.textContent = label;
  element.dataset.action = action;
  return element;
};

const td = (className, ...content) => {
  const cell = document.createElement('td');
  cell.className = className;
  cell.append(...content);
  return cell;
};

const emptyRow = (text) => {
  const tr = document.createElement('tr');
  tr.append(Object.assign(td('empty', text), { colSpan: 5 }));
  return tr;
};

/**
 * `root` holds the status buttons ([data-status]), a <tbody>, the pager ([data-page]) and a
 * line for the outcome of actions ([data-outcome]). `reschedule(task)` opens the reschedule
 * dialog; `changed()` hears that this list changed a task.
 */
export function createTaskList(root, { reschedule, changed }) {
  const body = root.querySelector('tbody');
  const outcome = root.querySelector('[data-outcome]');
  const pageLabel = root.querySelector('[data-page="label"]');
  const previous = root.querySelector('[data-page="previous"]');
  const next = root.querySelector('[data-page="next"]');
  let status = 'SCHEDULED';
  /** `after` of each page seen so far: [null, cursor of page 1, ...]. */
  let pages = [null];
  let page = 0;
  let endCursor = null;

  const say = (text, isError) => {
    outcome.textContent = text;
    outcome.classList.toggle('error', Boolean(isError));
  };

  const row = (task) => {
    const tr = document.createElement('tr');
    tr.dataset.taskId = task.id;
    tr.dataset.status = task.status;
    const actions = [];
    if (CHANGEABLE.has(task.status)) actions.push(button('Reschedule', 'reschedule'), button('Cancel', 'cancel'));
    tr.append(
      td('due', dateTime(task.time)),
      td('message', detailsButton(task.id, task.message)),
      td('attempts wide-only', String(task.attempts)),
      td('ended wide-only', task.endedAt ? dateTime(task.endedAt) : ''),
      td('actions', Object.assign(document.createElement('div'), { className: 'row-actions' })),
    );
    tr.querySelector('.row-actions').append(...actions);
    tr.task = task;
    return tr;
  };

  const load = async () => {
    const shown = { status, page };
    const current = () => shown.status === status && shown.page === page;
    try {
      const { tasks } = await request(LIST, { status, first: PAGE_SIZE, after: pages[page] });
      if (!current()) return; // another status or page was asked for meanwhile: the rerun reads it
      clearError(PART);
      body.replaceChildren(...(tasks.nodes.length > 0 ? tasks.nodes.map(row) : [emptyRow(page === 0 ? 'None.' : 'No more.')]));
      endCursor = tasks.pageInfo.hasNextPage ? tasks.pageInfo.endCursor : null;
    } catch (error) {
      reportError(PART, error);
    }
    previous.disabled = page === 0;
    next.disabled = endCursor === null;
    pageLabel.textContent = `page ${page + 1}`;
  };

  /** Reads the current page again. */
  const refresh = oneAtATime(load);

  const show = (nextStatus, nextPage) => {
    status = nextStatus;
    page = nextPage;
    if (page === 0) pages = [null];
    // Until the new page is read, the old page's cursor leads nowhere.
    endCursor = null;
    next.disabled = true;
    for (const tab of root.querySelectorAll('[data-status]')) tab.setAttribute('aria-pressed', String(tab.dataset.status === status));
    say('', false);
    return refresh();
  };

  const cancel = async (target, task) => {
    if (target.dataset.confirm !== 'yes') {
      target.dataset.confirm = 'yes';
      target.textContent = 'Confirm cancel';
      setTimeout(() => {
        delete target.dataset.confirm;
        target.textContent = 'Cancel';
      }, CONFIRM_MS);
      return;
    }
    target.disabled = true;
    try {
      await request(CANCEL, { id: task.id });
      say(`Cancelled task ${task.id}.`, false);
      changed();
    } catch (error) {
      say(`Could not cancel task ${task.id}: ${error.code}: ${error.message}`, true);
      target.disabled = false;
    }
  };

  root.addEventListener('click', (event) => {
    const target = event.target.closest('button');
    if (!target) return;
    if (target.dataset.status) show(target.dataset.status, 0);
    else if (target === previous && page > 0) show(status, page - 1);
    else if (target === next && endCursor !== null) {
      pages[page + 1] = endCursor;
      show(status, page + 1);
    } else if (target.dataset.action === 'cancel') cancel(target, target.closest('tr').task);
    else if (target.dataset.action === 'reschedule') reschedule(target.closest('tr').task, target);
  });

  show(status, 0);
  return { refresh, say };
}
