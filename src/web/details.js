// A task's details: every field of Task, read with the task(id) query, in a dialog. Any
// button made by detailsButton opens it, wherever it is on the page.
import { request } from './api.js';
import { dateTime, duration } from './format.js';
import { showModal } from './modal.js';

const TASK = `query Task($id: ID!) {
  task(id: $id) { id status message time createdAt firedAt lateByMs attempts firedBy endedAt idempotencyKey }
}`;

/** Field, label, and how to show a value that is not null. */
const FIELDS = [
  ['id', 'Id', String],
  ['status', 'Status', String],
  ['message', 'Message', String],
  ['time', 'Due', (iso) => `${dateTime(iso)} (${iso})`],
  ['createdAt', 'Created', (iso) => `${dateTime(iso)} (${iso})`],
  ['firedAt', 'Fired', (iso) => `${dateTime(iso)} (${iso})`],
  ['lateByMs', 'Late by', (ms) => `${duration(ms)} (${ms} ms)`],
  ['attempts', 'Attempts', String],
  ['firedBy', 'Fired by', String],
  ['endedAt', 'Ended', (iso) => `${dateTime(iso)} (${iso})`],
  ['idempotencyKey', 'Idempotency key', String],
];

/** A button showing `label` that opens the details of task `id`. */
export function detailsButton(id, label) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'link';
  button.dataset.details = id;
  button.textContent = label;
  button.title = `Details of task ${id}`;
  return button;
}

const pair = (label, value) => {
  const dt = document.createElement('dt');
  dt.textContent = label;
  const dd = document.createElement('dd');
  dd.textContent = value;
  return [dt, dd];
};

/** Wires the dialog: its title, its list of fields, and the buttons that open it. */
export function bindDetails(dialog) {
  const title = dialog.querySelector('h2');
  const list = dialog.querySelector('dl');
  let showing = null;

  const show = async (id, opener) => {
    showing = id;
    title.textContent = `Task ${id}`;
    delete list.dataset.status;
    list.replaceChildren(...pair('Status', 'loading…'));
    showModal(dialog, opener);
    try {
      const { task } = await request(TASK, { id });
      if (showing !== id) return; // another task was opened meanwhile
      if (!task) list.replaceChildren(...pair('Status', 'No such task (or it finished longer ago than the retention period).'));
      else list.replaceChildren(...FIELDS.flatMap(([field, label, shown]) => pair(label, task[field] === null ? '—' : shown(task[field]))));
      list.dataset.status = task ? task.status : 'NONE';
    } catch (error) {
      list.replaceChildren(...pair('Error', `${error.code}: ${error.message}`));
    }
  };

  document.addEventListener('click', (event) => {
    const button = event.target.closest('[data-details]');
    if (!button) return;
    show(button.dataset.details, button);
  });
}
