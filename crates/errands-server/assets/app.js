// The dashboard's entry point: sign-in, the hash router and the shell around the views.
//
// Routes: #/ (overview), #/jobs?queue=&state=&kind=&tag= (job list), #/jobs/ID (one job),
// #/scheduled (scheduled jobs), #/cron (cron schedules).

import { api, clearToken, getToken, onStreamStatus, onUnauthorized, setToken, Unauthorized } from './api.js';
import * as cron from './cron.js';
import * as job from './job.js';
import * as jobs from './jobs.js';
import * as overview from './overview.js';
import { errorText, fill, h } from './ui.js';

const $ = (id) => document.getElementById(id);

let current = null; // the mounted view: { unmount() }
let signedIn = false;

function parseRoute() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, search = ''] = hash.split('?');
  const params = new URLSearchParams(search);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { nav: 'overview', view: overview, params };
  if (parts[0] === 'jobs' && parts.length === 2) return { nav: 'jobs', view: job, params: { id: parts[1] } };
  if (parts[0] === 'jobs') return { nav: 'jobs', view: jobs, params };
  if (parts[0] === 'scheduled') {
    params.set('state', 'scheduled');
    return { nav: 'scheduled', view: jobs, params, scheduled: true };
  }
  if (parts[0] === 'cron') return { nav: 'cron', view: cron, params };
  return { nav: null, view: null, params };
}

function route() {
  if (!signedIn) return;
  current?.unmount();
  current = null;
  const container = $('view');
  fill(container);
  window.scrollTo(0, 0);
  const { nav, view, params, scheduled } = parseRoute();
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (!view) {
    fill(container, h('div', { class: 'card empty' }, 'No such page. ', h('a', { href: '#/' }, 'Go to the overview')));
    return;
  }
  current = view.mount(container, params, { scheduled });
}

function showApp() {
  signedIn = true;
  $('loading').hidden = true;
  $('login').hidden = true;
  $('view').hidden = false;
  $('nav').hidden = false;
  $('live').hidden = false;
  $('sign-out').hidden = !getToken();
  route();
}

function showLogin(message) {
  signedIn = false;
  current?.unmount();
  current = null;
  fill($('view'));
  $('loading').hidden = true;
  $('view').hidden = true;
  $('nav').hidden = true;
  $('live').hidden = true;
  $('sign-out').hidden = true;
  $('login').hidden = false;
  const error = $('login-error');
  error.textContent = message ?? '';
  error.hidden = !message;
  $('token').focus();
}

onUnauthorized(() => {
  const hadToken = Boolean(getToken());
  clearToken();
  showLogin(hadToken ? 'That token was refused.' : undefined);
});

onStreamStatus((status) => {
  const live = $('live');
  live.dataset.status = status;
  live.querySelector('.live-text').textContent = status;
});

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const token = $('token').value.trim();
  if (!token) return;
  setToken(token);
  try {
    await api('/v1/queues?limit=1');
    $('token').value = '';
    showApp();
  } catch (error) {
    if (!(error instanceof Unauthorized)) showLogin(`Cannot reach the server: ${errorText(error)}`);
  }
});

$('sign-out').addEventListener('click', () => {
  clearToken();
  showLogin();
});

window.addEventListener('hashchange', route);

// A first call tells whether a token is needed: without one, only the sign-in form shows.
try {
  await api('/v1/queues?limit=1');
  showApp();
} catch (error) {
  if (!(error instanceof Unauthorized)) {
    $('loading').textContent = `Cannot reach the server: ${errorText(error)}`;
  }
}
