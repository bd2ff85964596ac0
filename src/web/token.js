// The API token (API_TOKEN), when the service needs one: typed into the page, kept in this
// tab only (sessionStorage), sent by every request and by the live connection.

const STORAGE_KEY = 'punctual-token';
const listeners = [];
let input = null;

/** Binds the token field; a new value is saved and announced when the field changes. */
export function bindTokenInput(element) {
  input = element;
  input.value = sessionStorage.getItem(STORAGE_KEY) || '';
  input.addEventListener('change', () => {
    sessionStorage.setItem(STORAGE_KEY, input.value);
    for (const listener of listeners) listener();
  });
  // Enter in the field sends its form: the value is already taken, nothing is to be sent.
  if (input.form) input.form.addEventListener('submit', (event) => event.preventDefault());
}

/** The Authorization header value, or undefined without a token. */
export const authorization = () => (input?.value ? `Bearer ${input.value}` : undefined);

/** Calls `listener` whenever the token changes. */
export const onTokenChange = (listener) => listeners.push(listener);
