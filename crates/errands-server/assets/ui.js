// Small DOM and formatting helpers shared by the views. Everything is built with DOM calls, so
// job data (kinds, args, errors) is always text, never markup.

/** Creates an element: h('a', {href: '#/', class: 'x', onclick: fn}, 'text', child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const STATES = ['scheduled', 'queued', 'running', 'completed', 'dead', 'cancelled'];

export function stateBadge(state) {
  return h('span', { class: `badge tone-${state}`, dataset: { state } }, state);
}

/** "4s", "3m 10s", "2h 5m", "3d 4h". */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '—';
  const s = Math.max(0, seconds);
  if (s < 1) return `${Math.round(s * 1000)}ms`;
  if (s < 60) return `${Math.floor(s)}s`;
  const m = Math.floor(s / 60);
  const units = (big, bigUnit, small, smallUnit) => (small ? `${big}${bigUnit} ${small}${smallUnit}` : `${big}${bigUnit}`);
  if (m < 60) return units(m, 'm', Math.floor(s % 60), 's');
  const hours = Math.floor(m / 60);
  if (hours < 24) return units(hours, 'h', m % 60, 'm');
  return units(Math.floor(hours / 24), 'd', hours % 24, 'h');
}

/** "12s ago", "in 3m 2s". */
export function fmtRelative(iso, now = Date.now()) {
  if (!iso) return '—';
  const delta = (Date.parse(iso) - now) / 1000;
  if (Math.abs(delta) < 1) return 'just now';
  return delta > 0 ? `in ${fmtDuration(delta)}` : `${fmtDuration(-delta)} ago`;
}

/** Local date and time, to the second. */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  if (today) return time;
  return `${d.toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' })} ${time}`;
}

/** A <time> showing relative time, absolute in its tooltip; refreshed by tickTimes(). */
export function timeAgo(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: fmtTime(iso), 'data-relative': '' }, fmtRelative(iso));
}

/** Refreshes every relative time under root. */
export function tickTimes(root) {
  const now = Date.now();
  for (const el of root.querySelectorAll('time[data-relative]')) {
    el.textContent = fmtRelative(el.getAttribute('datetime'), now);
  }
}

export function shortId(id) {
  return id ? `…${id.slice(-8)}` : '';
}

export function fmtNumber(n) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString();
}

/** Pretty-printed JSON with token colours. */
export function jsonView(value) {
  const pre = h('pre', { class: 'json' });
  if (value === undefined) {
    pre.append(h('span', { class: 'z' }, 'null'));
    return pre;
  }
  const text = JSON.stringify(value, null, 2);
  // Strings (maybe keys), numbers, booleans and null; everything else is punctuation.
  const token = /("(?:\\.|[^"\\])*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|\b(true|false)\b|\b(null)\b/g;
  let last = 0;
  for (const match of text.matchAll(token)) {
    if (match.index > last) pre.append(text.slice(last, match.index));
    const [all, string, colon, number, bool, nil] = match;
    if (string !== undefined) {
      pre.append(h('span', { class: colon ? 'k' : 's' }, string));
      if (colon) pre.append(colon);
    } else if (number !== undefined) {
      pre.append(h('span', { class: 'n' }, number));
    } else if (bool !== undefined) {
      pre.append(h('span', { class: 'b' }, bool));
    } else if (nil !== undefined) {
      pre.append(h('span', { class: 'z' }, nil));
    }
    last = match.index + all.length;
  }
  pre.append(text.slice(last));
  return pre;
}

/** A bar chart of per-minute counts, oldest first. */
export function sparkline(values) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  const n = Math.max(values.length, 1);
  const width = 96;
  const height = 24;
  const gap = 1;
  const barWidth = (width - gap * (n - 1)) / n;
  const max = Math.max(1, ...values);
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `completed per minute: ${values.join(', ')}`);
  values.forEach((value, i) => {
    const rect = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
    const barHeight = value > 0 ? Math.max(2, (value / max) * height) : 1;
    rect.setAttribute('x', (i * (barWidth + gap)).toFixed(2));
    rect.setAttribute('y', (height - barHeight).toFixed(2));
    rect.setAttribute('width', barWidth.toFixed(2));
    rect.setAttribute('height', barHeight.toFixed(2));
    if (value === 0) rect.setAttribute('class', 'empty');
    svg.append(rect);
  });
  return svg;
}

/** A short message (text or an element) in the corner. */
export function toast(message, kind = 'info') {
  const el = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  document.getElementById('toasts').append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 7000 : 3500);
}

/** Asks before something destructive; resolves true when confirmed. */
export function confirmDialog(message, okLabel = 'OK') {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-message').textContent = message;
  document.getElementById('confirm-ok').textContent = okLabel;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

/** The message of an error thrown by api(). */
export function errorText(error) {
  return error?.message || String(error);
}

/**
 * Runs fn at most once per `interval` ms, trailing: calls that arrive while waiting are merged
 * into one call at the end, so a burst of events costs one reload.
 */
export function throttle(fn, interval) {
  let timer = null;
  let last = 0;
  const wrapped = () => {
    if (timer) return;
    const wait = Math.max(0, last + interval - Date.now());
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn();
    }, wait);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}
