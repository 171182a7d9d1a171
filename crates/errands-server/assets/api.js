// Talking to the server: JSON calls with the bearer token, and the live event stream.

const TOKEN_KEY = 'errands.token';

/** The token given at sign-in, kept in localStorage so the page asks only once. */
export function getToken() {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  localStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  localStorage.removeItem(TOKEN_KEY);
}

/** Thrown when the server wants a (different) token; the app then shows the sign-in form. */
export class Unauthorized extends Error {
  constructor() {
    super('a token is required');
    this.name = 'Unauthorized';
  }
}

/** A 4xx/5xx answer; `code` and `message` come from the server's JSON error body. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = body?.error?.code;
  }
}

let unauthorizedHandler = () => {};

/** Called whenever any request answers 401. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/** One JSON request. Resolves to the parsed body (null for 204). */
export async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    unauthorizedHandler();
    throw new Unauthorized();
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/**
 * Every entry of a paged listing (`/v1/queues`, `/v1/cron`, `/v1/workers`): the server sends
 * at most a page at a time, so this follows `next_cursor` to the last page. Resolves to the
 * entries of `field` (`queues`, `schedules`, `workers`).
 */
export async function apiAll(path, field) {
  const entries = [];
  let after = null;
  for (;;) {
    const page = await api(`${path}${query({ after })}`);
    entries.push(...(page[field] ?? []));
    // A cursor that does not move would loop forever: stop instead.
    if (!page.next_cursor || page.next_cursor === after) return entries;
    after = page.next_cursor;
  }
}

/** Builds a query string from the set values of `params`. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

let statusListener = () => {};

/** Told 'connecting', 'live' or 'reconnecting' as the current stream changes. */
export function onStreamStatus(listener) {
  statusListener = listener;
}

/**
 * Subscribes to `/v1/events` over a WebSocket, with the given filters (`ids`, `queue`, `kind`).
 *
 * Browsers cannot put an Authorization header on a WebSocket, so the token goes in the `token`
 * query parameter, which the server accepts on this route only. The socket reconnects with
 * backoff; `onOpen` runs on every (re)connection, so the caller re-reads state after the
 * subscription is in place and misses nothing in between.
 */
export function subscribe(filters, { onEvent, onOpen }) {
  let socket = null;
  let closed = false;
  let retryDelay = 500;
  let timer = null;

  const connect = () => {
    const params = { ...filters, token: getToken() };
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    statusListener(socket ? 'reconnecting' : 'connecting');
    socket = new WebSocket(`${scheme}//${location.host}/v1/events${query(params)}`);
    socket.addEventListener('open', () => {
      retryDelay = 500;
      statusListener('live');
      onOpen?.();
    });
    socket.addEventListener('message', (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      onEvent(event);
    });
    socket.addEventListener('close', () => {
      if (closed) return;
      statusListener('reconnecting');
      timer = setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10_000);
    });
  };

  connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      socket?.close();
    },
  };
}
