// The schedule form: delayedTask for a message some seconds from now, then a watch on that
// one task (taskFired with ids, delivered even if it fired before the watch began), so the
// line below the form says when it fired.
import { request, fromGraphQLError } from './api.js';
import { duration, timeOfDay } from './format.js';

const SCHEDULE = `mutation Schedule($message: String!, $time: DateTime!) {
  delayedTask(message: $message, time: $time) { id time status }
}`;
const WATCH = `subscription Watch($ids: [ID!]) { taskFired(ids: $ids) { task { id firedAt lateByMs } } }`;

/** `scheduled(task)` hears each task this form scheduled. */
export function bindScheduleForm(form, result, { live, scheduled }) {
  let stopWatching = () => {};

  const say = (text, isError) => {
    result.textContent = text;
    result.classList.toggle('error', isError);
  };

  const watch = (id) => {
    stopWatching();
    stopWatching = live.subscribe(() => ({ query: WATCH, variables: { ids: [id] } }), {
      next: (payload) => {
        stopWatching();
        if (payload.errors && payload.errors.length > 0) return say(`Could not watch task ${id}: ${payload.errors[0].message}`, true);
        const { task } = payload.data.taskFired;
        say(`Task ${task.id} fired at ${timeOfDay(task.firedAt)}, ${duration(task.lateByMs)} late.`, false);
      },
      error: ([first]) => {
        const error = fromGraphQLError(first);
        say(`Could not watch task ${id}: ${error.code}: ${error.message}`, true);
      },
    });
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const message = form.elements.message.value;
    const delaySeconds = Math.max(Number(form.elements.delay.value), 0);
    const time = new Date(Date.now() + delaySeconds * 1000).toISOString();
    form.querySelector('[type=submit]').disabled = true;
    try {
      const { delayedTask } = await request(SCHEDULE, { message, time });
      say(`Scheduled task ${delayedTask.id} for ${timeOfDay(delayedTask.time)}.`, false);
      watch(delayedTask.id);
      scheduled(delayedTask);
    } catch (error) {
      say(`Could not schedule: ${error.code}: ${error.message}`, true);
    } finally {
      form.querySelector('[type=submit]').disabled = false;
    }
  });
}
