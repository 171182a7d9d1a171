// One job: args and result, every failed attempt with its traceback, a live progress bar, a
// timeline of state changes, and cancel / retry / delete.

import { api, ApiError, subscribe } from './api.js';
import {
  confirmDialog, errorText, fill, fmtDuration, fmtTime, h, jsonView, stateBadge, tickTimes, timeAgo, toast,
} from './ui.js';

const CANCELLABLE = new Set(['scheduled', 'queued', 'running']);
const RETRYABLE = new Set(['dead', 'cancelled', 'completed']);

export function mount(container, { id }) {
  const head = h('div', { class: 'page-head' });
  const progressCard = h('section', { class: 'card progress-card', 'aria-label': 'Progress' });
  const body = h('div');
  fill(container, head, progressCard, body);
  fill(body, h('p', { class: 'loading' }, 'Loading…'));

  let job = null;
  // State changes seen on the stream while this page is open: the job object keeps only its
  // latest times, so these fill in steps like "queued again" between attempts.
  const seen = [];

  const load = async () => {
    try {
      job = await api(`/v1/jobs/${encodeURIComponent(id)}`);
      render();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404 && job) {
        renderDeleted();
      } else if (error instanceof ApiError && (error.status === 404 || error.status === 400)) {
        fill(head, h('h1', {}, 'Job not found'));
        progressCard.hidden = true;
        fill(body, h('div', { class: 'card empty' }, `No job with id ${id}. `, h('a', { href: '#/jobs' }, 'Back to jobs')));
      } else {
        toast(`Could not load the job: ${errorText(error)}`, 'error');
      }
    }
  };

  const act = async (action) => {
    const labels = { cancel: 'Cancelled', retry: 'Retried', delete: 'Deleted' };
    if (action === 'delete' && !(await confirmDialog('Delete this job? This cannot be undone.', 'Delete'))) return;
    try {
      if (action === 'delete') {
        await api(`/v1/jobs/${job.id}`, { method: 'DELETE' });
        toast('Job deleted');
        location.hash = `#/jobs?queue=${encodeURIComponent(job.queue)}`;
        return;
      }
      job = await api(`/v1/jobs/${job.id}/${action}`, { method: 'POST' });
      toast(`${labels[action]} job`);
      render();
    } catch (error) {
      toast(`Could not ${action}: ${errorText(error)}`, 'error');
    }
  };

  const render = () => {
    renderHead(head, job, act);
    renderProgress(progressCard, job);
    renderBody(body, job, seen);
  };

  const renderDeleted = () => {
    fill(head, h('div', {}, h('h1', {}, job.kind), h('p', { class: 'subtitle' }, 'This job was deleted.')));
    progressCard.hidden = true;
    fill(body);
  };

  const stream = subscribe({ ids: id }, {
    onOpen: load,
    onEvent: (event) => {
      if (!job || event.id !== job.id) return;
      if (event.type === 'progress') {
        job.progress = event.progress;
        renderProgress(progressCard, job);
      } else if (event.type === 'state') {
        seen.push({ state: event.state, attempt: event.attempt, at: event.at });
        job.state = event.state;
        renderHead(head, job, act);
        renderProgress(progressCard, job);
        load(); // times, errors and the result come with the full job
      }
    },
  });
  const tick = setInterval(() => tickTimes(container), 1000);

  return {
    unmount() {
      stream.close();
      clearInterval(tick);
    },
  };
}

function renderHead(el, job, act) {
  const button = (action, label, enabled, extra = '') => h('button', {
    class: `button ${extra}`, type: 'button', 'data-action': action, disabled: !enabled,
    onclick: () => act(action),
  }, label);
  fill(el,
    h('div', {},
      h('div', { class: 'crumbs' },
        h('a', { href: '#/jobs' }, 'Jobs'), ' / ',
        h('a', { href: `#/jobs?queue=${encodeURIComponent(job.queue)}` }, job.queue)),
      h('div', { class: 'job-title' }, h('h1', {}, job.kind), stateBadge(job.state)),
      h('div', { class: 'job-id mono' },
        h('span', { id: 'job-id' }, job.id),
        h('button', {
          class: 'button small', type: 'button', title: 'Copy the id',
          onclick: () => navigator.clipboard?.writeText(job.id).then(() => toast('Id copied')),
        }, 'Copy'))),
    h('div', { class: 'actions' },
      button('cancel', 'Cancel', CANCELLABLE.has(job.state)),
      button('retry', 'Retry', RETRYABLE.has(job.state), 'primary'),
      button('delete', 'Delete', job.state !== 'running', 'danger')));
}

function renderProgress(el, job) {
  const progress = job.progress;
  // Only jobs that run or ran have progress worth a bar.
  el.hidden = !progress && job.state !== 'running';
  if (el.hidden) return;
  const percent = progress?.percent;
  const shown = percent === null || percent === undefined ? null : Math.max(0, Math.min(100, percent));
  el.dataset.state = job.state;
  let bar = el.querySelector('.progress-bar');
  if (!bar) {
    // Built once, so the width animates between reports.
    bar = h('div', { class: 'progress-bar' });
    fill(el,
      h('div', { class: 'progress-head' },
        h('h2', {}, 'Progress'), h('span', { class: 'progress-percent', id: 'progress-percent' })),
      h('div', { class: 'progress-track', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, id: 'progress' }, bar),
      h('div', { class: 'progress-message', id: 'progress-message' }));
  }
  const track = el.querySelector('.progress-track');
  bar.style.width = `${shown ?? 0}%`;
  if (shown === null) track.removeAttribute('aria-valuenow');
  else track.setAttribute('aria-valuenow', String(shown));
  el.querySelector('.progress-percent').textContent = shown === null ? '—' : `${Math.round(shown)}%`;
  el.querySelector('.progress-message').textContent = progress?.message ?? '';
}

function renderBody(el, job, seen) {
  const detail = (label, value) => h('div', {}, h('dt', {}, label), h('dd', {}, value ?? h('span', { class: 'muted' }, '—')));
  const seconds = (s) => (s === null || s === undefined ? null : fmtDuration(s));
  const at = (iso) => (iso ? [fmtTime(iso), h('span', { class: 'muted' }, ' · '), timeAgo(iso)] : null);
  const backoff = job.backoff?.type === 'exponential'
    ? `exponential, ${job.backoff.base}s to ${fmtDuration(job.backoff.cap)}${job.backoff.jitter ? ', jitter' : ''}`
    : job.backoff?.type === 'fixed' ? `fixed, ${job.backoff.delay}s` : job.backoff?.type;

  fill(el,
    h('section', { class: 'card', 'aria-label': 'Details' }, h('dl', { class: 'details' },
      detail('Queue', h('a', { href: `#/jobs?queue=${encodeURIComponent(job.queue)}` }, job.queue)),
      detail('Attempt', `${job.attempt} of ${job.max_attempts}`),
      detail('Priority', String(job.priority)),
      detail('Created', at(job.created_at)),
      detail(job.state === 'scheduled' ? 'Runs at' : 'Run at', at(job.run_at)),
      detail('Started', at(job.started_at)),
      detail('Finished', at(job.finished_at)),
      detail('Timeout', seconds(job.timeout)),
      detail('Deadline', at(job.deadline)),
      detail('Backoff', backoff),
      detail('Worker', job.worker_id ? h('span', { class: 'mono' }, job.worker_id) : null),
      detail('Tags', job.tags.length ? job.tags.map((tag) => h('a', { class: 'tag', href: `#/jobs?tag=${encodeURIComponent(tag)}` }, tag)) : null),
      detail('Unique key', job.unique_key ? h('span', { class: 'mono' }, job.unique_key) : null),
      detail('Keep for', seconds(job.retention)),
    )),
    h('div', { class: 'grid-2' },
      h('section', { class: 'card', 'aria-labelledby': 'args-title' }, h('h2', { id: 'args-title' }, 'Arguments'), jsonView(job.args)),
      h('section', { class: 'card', 'aria-labelledby': 'result-title' }, h('h2', { id: 'result-title' }, 'Result'),
        job.state === 'completed' ? jsonView(job.result) : h('p', { class: 'muted' }, resultNote(job.state)))),
    h('div', { class: 'grid-2' },
      h('section', { class: 'card', 'aria-labelledby': 'attempts-title' },
        h('h2', { id: 'attempts-title' }, `Failed attempts (${job.errors.length})`),
        job.errors.length === 0
          ? h('p', { class: 'muted' }, 'No attempt has failed.')
          : [...job.errors].reverse().map((error) => h('article', { class: 'attempt', dataset: { attempt: error.attempt } },
            h('div', { class: 'attempt-head' },
              h('strong', {}, `Attempt ${error.attempt}`),
              h('span', { class: 'attempt-type' }, error.type),
              h('span', { class: 'muted' }, fmtTime(error.at))),
            h('div', {}, error.message),
            error.traceback ? h('details', { open: true }, h('summary', {}, 'Traceback'), h('pre', {}, error.traceback)) : null))),
      h('section', { class: 'card', 'aria-labelledby': 'timeline-title' },
        h('h2', { id: 'timeline-title' }, 'Timeline'),
        h('ol', { class: 'timeline' }, timeline(job, seen).map((entry) => {
          const li = h('li', { dataset: { state: entry.state } },
            h('span', {}, entry.label),
            h('span', { class: 'when' }, fmtTime(entry.at), ' · ', timeAgo(entry.at)));
          li.style.setProperty('--tone', `var(--${entry.tone ?? entry.state})`);
          return li;
        })))),
  );
}

function resultNote(state) {
  if (state === 'dead') return 'No result: the job failed for good.';
  if (state === 'cancelled') return 'No result: the job was cancelled.';
  return 'No result yet.';
}

/**
 * State changes in time order, from the job's own times (created, each failed attempt, the last
 * start and finish) and the changes this page saw live; a live change within two seconds of
 * one already known is the same change.
 */
export function timeline(job, seen) {
  const entries = [];
  const scheduledLater = Date.parse(job.run_at) - Date.parse(job.created_at) > 1000;
  entries.push({
    state: scheduledLater ? 'scheduled' : 'queued',
    label: scheduledLater ? `Created, scheduled for ${fmtTime(job.run_at)}` : 'Created and queued',
    at: job.created_at,
  });
  for (const error of job.errors) {
    entries.push({ state: 'failed', tone: 'dead', label: `Attempt ${error.attempt} failed: ${error.type}`, at: error.at });
  }
  if (job.started_at) entries.push({ state: 'running', label: `Attempt ${job.attempt} started`, at: job.started_at });
  if (job.finished_at) {
    const words = { completed: 'Completed', dead: 'Dead: no attempts left', cancelled: 'Cancelled' };
    entries.push({ state: job.state, label: words[job.state] ?? job.state, at: job.finished_at });
  }
  const near = (a, b) => Math.abs(Date.parse(a) - Date.parse(b)) < 2000;
  for (const change of seen) {
    const known = entries.some((entry) => entry.state === change.state && near(entry.at, change.at));
    if (!known) {
      const label = change.state === 'running' ? `Attempt ${change.attempt} started` : `${capitalise(change.state)} (attempt ${change.attempt})`;
      entries.push({ state: change.state, label, at: change.at });
    }
  }
  return entries.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
}

function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
