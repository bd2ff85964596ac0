// The live page: schedules a task with the delayedTask mutation (fetch POST /graphql) and
// lists fired tasks from the taskFired subscription over graphql-ws, a protocol small
// enough to speak here directly (graphql-transport-ws: connection_init/ack, subscribe,
// next/error/complete, ping/pong), so the page loads nothing but this file.
'use strict';

(() => {
  const MAX_ROWS = 200;
  const SUBSCRIPTION = `subscription Live($after: String) {
    taskFired(after: $after) { cursor task { id message time status firedAt lateByMs } }
  }`;
  // The task just scheduled, watched on its own: its line below the form says when it fired.
  const WATCH = `subscription Watch($ids: [ID!]) { taskFired(ids: $ids) { task { id firedAt lateByMs } } }`;
  const SCHEDULE = `mutation Schedule($message: String!, $time: DateTime!) {
    delayedTask(message: $message, time: $time) { id time status }
  }`;

  const $ = (id) => document.getElementById(id);
  const form = $('schedule');
  const result = $('result');
  const connection = $('connection');
  const firedBody = $('fired');
  const tokenInput = $('token');

  tokenInput.value = sessionStorage.getItem('punctual-token') || '';
  const authorization = () => (tokenInput.value ? `Bearer ${tokenInput.value}` : undefined);

  const timeOfDay = (iso) => {
    const date = new Date(iso);
    const pad = (n, width = 2) => String(n).padStart(width, '0');
    return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
  };
  const duration = (ms) => (ms < 1000 ? `${ms} ms` : ms < 60_000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 60_000).toFixed(1)} min`);

  const showResult = (text, isError) => {
    result.textContent = text;
    result.className = isError ? 'error' : '';
  };

  // ---- scheduling ---------------------------------------------------------------------
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const message = $('message').value;
    const delaySeconds = Number($('delay').value);
    const time = new Date(Date.now() + Math.max(delaySeconds, 0) * 1000).toISOString();
    const headers = { 'content-type': 'application/json', accept: 'application/json' };
    if (authorization()) headers.authorization = authorization();
    $('submit').disabled = true;
    try {
      const response = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify({ query: SCHEDULE, variables: { message, time } }) });
      const body = await response.json();
      if (body.errors && body.errors.length > 0) throw new Error(body.errors.map((error) => error.message).join('; '));
      const task = body.data.delayedTask;
      showResult(`Scheduled task ${task.id} for ${timeOfDay(task.time)}.`, false);
      watch(task.id);
    } catch (error) {
      showResult(`Could not schedule: ${error.message}`, true);
    } finally {
      $('submit').disabled = false;
    }
  });

  // ---- the live list ------------------------------------------------------------------
  const shown = new Set();
  const addRow = ({ task }) => {
    if (shown.has(task.id)) return;
    shown.add(task.id);
    const row = document.createElement('tr');
    row.dataset.taskId = task.id;
    const cells = [
      ['message', task.message],
      ['due', timeOfDay(task.time)],
      ['fired', task.firedAt ? timeOfDay(task.firedAt) : ''],
      ['late', task.lateByMs === null ? '' : duration(task.lateByMs)],
    ];
    for (const [name, text] of cells) {
      const cell = document.createElement('td');
      cell.className = name;
      cell.textContent = text; // never innerHTML: messages are user input
      row.append(cell);
    }
    if (task.lateByMs !== null && task.lateByMs >= 1000) row.lastChild.classList.add('slow');
    firedBody.prepend(row);
    while (firedBody.rows.length > MAX_ROWS) {
      shown.delete(firedBody.lastElementChild.dataset.taskId);
      firedBody.lastElementChild.remove();
    }
  };

  const setConnection = (state, text) => {
    connection.dataset.state = state;
    connection.textContent = text;
  };

  /** The cursor of the last event shown: a reconnect resumes after it, with no gap and no repeat. */
  let lastCursor = null;
  let socket = null;
  let retryMs = 500;
  let subscriptionId = 0;

  const send = (message) => socket && socket.readyState === WebSocket.OPEN && socket.send(JSON.stringify(message));

  /** Watches one task (taskFired with ids): delivered even if it fired before the watch began. */
  let watchId = 0;
  const watch = (taskId) => {
    watchId += 1;
    send({ id: `watch-${watchId}`, type: 'subscribe', payload: { query: WATCH, variables: { ids: [taskId] } } });
  };
  const watched = (message) => {
    send({ id: message.id, type: 'complete' });
    if (message.id !== `watch-${watchId}` || !message.payload.data) return;
    const { task } = message.payload.data.taskFired;
    showResult(`Task ${task.id} fired at ${timeOfDay(task.firedAt)}, ${duration(task.lateByMs)} late.`, false);
  };

  const subscribe = () => {
    subscriptionId += 1;
    send({ id: String(subscriptionId), type: 'subscribe', payload: { query: SUBSCRIPTION, variables: { after: lastCursor } } });
  };

  const connect = () => {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`;
    setConnection('connecting', lastCursor ? 'reconnecting…' : 'connecting…');
    const ws = new WebSocket(url, 'graphql-transport-ws');
    socket = ws;
    ws.addEventListener('open', () => {
      const payload = authorization() ? { Authorization: authorization() } : {};
      ws.send(JSON.stringify({ type: 'connection_init', payload }));
    });
    ws.addEventListener('message', (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      switch (message.type) {
        case 'connection_ack':
          retryMs = 500;
          setConnection('live', 'live');
          subscribe();
          break;
        case 'ping':
          ws.send(JSON.stringify({ type: 'pong' }));
          break;
        case 'next':
          if (message.id.startsWith('watch-')) {
            watched(message);
            break;
          }
          if (message.id !== String(subscriptionId)) break;
          if (message.payload.errors && message.payload.errors.length > 0) {
            setConnection('down', `error: ${message.payload.errors[0].message}`);
            break;
          }
          lastCursor = message.payload.data.taskFired.cursor;
          addRow(message.payload.data.taskFired);
          break;
        case 'error': {
          const [first] = message.payload || [];
          // An expired or malformed cursor cannot resume: continue live from now.
          if (first && first.extensions && first.extensions.code === 'BAD_USER_INPUT' && lastCursor) {
            lastCursor = null;
            showResult('Some fired tasks were missed while disconnected (the resume point expired).', true);
            subscribe();
          } else setConnection('down', `error: ${first ? first.message : 'unknown'}`);
          break;
        }
        case 'complete':
          // The server ended the subscription (a slow reader, or shutting down): resume.
          if (message.id === String(subscriptionId)) subscribe();
          break;
      }
    });
    ws.addEventListener('close', (event) => {
      if (socket !== ws) return;
      socket = null;
      const reason = event.code === 4403 ? 'forbidden: set the API token below' : `disconnected (${event.code})`;
      setConnection(event.code === 4403 ? 'down' : 'connecting', `${reason}; retrying…`);
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    });
  };

  tokenInput.addEventListener('change', () => {
    sessionStorage.setItem('punctual-token', tokenInput.value);
    if (socket) socket.close(1000, 'token changed'); // its close handler reconnects with the new token
  });

  connect();
})();
