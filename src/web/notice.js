// The error banner: what is failing right now, one line per part of the page, in words and
// with the API's code. A part that works again clears its line.

const HINTS = {
  UNAUTHENTICATED: 'This service needs an API token: enter it under "API token".',
  UNAVAILABLE: 'The service cannot reach Redis right now; the page keeps retrying.',
  NETWORK: 'The page keeps retrying.',
};

const problems = new Map();
let banner = null;
let tokenPanel = null;

/** `element` shows the problems; `panel` (a <details>) opens when a token is missing or wrong. */
export function bindNotice(element, panel) {
  banner = element;
  tokenPanel = panel;
}

const render = () => {
  banner.replaceChildren(
    ...[...problems].map(([part, error]) => {
      const line = document.createElement('p');
      line.dataset.part = part;
      line.dataset.code = error.code;
      const hint = HINTS[error.code] ? ` ${HINTS[error.code]}` : '';
      line.textContent = `${part}: ${error.code}: ${error.message}${hint}`;
      return line;
    }),
  );
  banner.hidden = problems.size === 0;
};

/** Shows that `part` failed with `error` (an ApiError or anything with code and message). */
export function reportError(part, error) {
  problems.set(part, { code: error.code || 'ERROR', message: error.message });
  if (error.code === 'UNAUTHENTICATED' && tokenPanel && !tokenPanel.open) tokenPanel.open = true;
  render();
}

/** `part` works again. */
export function clearError(part) {
  if (problems.delete(part)) render();
}
