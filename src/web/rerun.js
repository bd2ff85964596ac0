// One read at a time, never a stale one: a call while the read runs asks for one more run
// after it (however many calls came), so what changed meanwhile is read too.

/** Wraps `read` (async); the wrapper answers when the run that covers this call ends. */
export function oneAtATime(read) {
  let running = null;
  let again = null;
  const run = () => {
    running = Promise.resolve()
      .then(read)
      .finally(() => (running = null));
    return running;
  };
  return () => {
    if (!running) return run();
    again ??= running.then(() => {
      again = null;
      return run();
    });
    return again;
  };
}
