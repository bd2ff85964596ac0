// The reschedule dialog: a new due time for a task that has not started firing, typed in
// local time to the second, or picked with Now / in 1 min / in 1 h (rescheduleTask).
import { request } from './api.js';
import { dateTime, localInputValue } from './format.js';
import { showModal } from './modal.js';

const RESCHEDULE = `mutation Reschedule($id: ID!, $time: DateTime!) { rescheduleTask(id: $id, time: $time) { id time status } }`;

/** Wires the dialog; `done(task)` hears each task rescheduled. Returns `open(task, opener)`. */
export function bindReschedule(dialog, done) {
  const form = dialog.querySelector('form');
  const input = form.elements.time;
  const about = dialog.querySelector('[data-task]');
  const problem = dialog.querySelector('[data-problem]');
  let task = null;

  form.addEventListener('click', (event) => {
    const offset = event.target.dataset.offsetMs;
    if (offset !== undefined) input.value = localInputValue(new Date(Date.now() + Number(offset)));
    if (event.target.dataset.close !== undefined) dialog.close();
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const time = new Date(input.value); // a datetime-local value is local time
    if (Number.isNaN(time.getTime())) {
      problem.textContent = 'Enter a date and time.';
      return;
    }
    form.querySelector('[type=submit]').disabled = true;
    try {
      const { rescheduleTask } = await request(RESCHEDULE, { id: task.id, time: time.toISOString() });
      dialog.close();
      done(rescheduleTask);
    } catch (error) {
      problem.textContent = `${error.code}: ${error.message}`;
    } finally {
      form.querySelector('[type=submit]').disabled = false;
    }
  });

  return (nextTask, opener) => {
    task = nextTask;
    about.textContent = `Task ${task.id}, due ${dateTime(task.time)}: ${task.message}`;
    problem.textContent = '';
    input.value = localInputValue(new Date(task.time));
    showModal(dialog, opener);
    input.focus();
  };
}
