// Job list: filters (queue, state, kind, tag), search by id, paging by cursor, bulk retry and
// delete, and pause/resume of the filtered queue. Also the "Scheduled" page (state fixed).

import { api, apiAll, ApiError, query, subscribe } from './api.js';
import {
  confirmDialog, errorText, fill, fmtNumber, h, shortId, stateBadge, STATES, throttle, tickTimes,
  timeAgo, toast,
} from './ui.js';

const PAGE_SIZES = [25, 50, 100, 200];
const DEFAULT_LIMIT = 50;
const RETRYABLE = new Set(['dead', 'cancelled', 'completed']);

// Cursors of the pages before the current one, so "Newer" can go back; reset by new filters.
let pages = { key: '', cursors: [] };

export function mount(container, params, { scheduled = false } = {}) {
  const filters = {
    queue: params.get('queue') ?? '',
    state: params.get('state') ?? '',
    kind: params.get('kind') ?? '',
    tag: params.get('tag') ?? '',
    limit: Number(params.get('limit')) || DEFAULT_LIMIT,
  };
  const cursor = params.get('cursor') ?? '';
  const base = scheduled ? '#/scheduled' : '#/jobs';
  const filterKey = JSON.stringify(filters);
  if (pages.key !== filterKey) pages = { key: filterKey, cursors: [] };

  const go = (next, nextCursor = '') => {
    const { queue, state, kind, tag, limit } = { ...filters, ...next };
    location.hash = base + query({
      queue, state: scheduled ? '' : state, kind, tag,
      limit: limit === DEFAULT_LIMIT ? '' : limit, cursor: nextCursor,
    });
  };

  // ----- head: title and search by id -----
  const searchInput = h('input', {
    type: 'search', name: 'id', placeholder: 'Find a job by id', 'aria-label': 'Job id', autocomplete: 'off',
  });
  const searchError = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const search = h('form', {
    class: 'search',
    onsubmit: async (event) => {
      event.preventDefault();
      const id = searchInput.value.trim();
      if (!id) return;
      try {
        await api(`/v1/jobs/${encodeURIComponent(id)}`);
        location.hash = `#/jobs/${encodeURIComponent(id)}`;
      } catch (error) {
        searchError.hidden = false;
        searchError.textContent = error instanceof ApiError && (error.status === 404 || error.status === 400)
          ? `No job with id ${id}.` : errorText(error);
      }
    },
  }, searchInput, h('button', { class: 'button', type: 'submit' }, 'Find'));

  // ----- filters -----
  const queueSelect = h('select', { id: 'f-queue', name: 'queue', onchange: () => go({ queue: queueSelect.value }) },
    h('option', { value: '' }, 'All queues'));
  const stateSelect = h('select', { id: 'f-state', name: 'state', onchange: () => go({ state: stateSelect.value }) },
    h('option', { value: '' }, 'All states'),
    STATES.map((state) => h('option', { value: state, selected: state === filters.state }, state)));
  const kindInput = h('input', { id: 'f-kind', name: 'kind', value: filters.kind, placeholder: 'any', autocomplete: 'off' });
  const tagInput = h('input', { id: 'f-tag', name: 'tag', value: filters.tag, placeholder: 'any', autocomplete: 'off' });
  const filterForm = h('form', {
    class: 'filters',
    onsubmit: (event) => {
      event.preventDefault();
      go({ kind: kindInput.value.trim(), tag: tagInput.value.trim() });
    },
  },
  h('div', { class: 'field' }, h('label', { for: 'f-queue' }, 'Queue'), queueSelect),
  scheduled ? null : h('div', { class: 'field' }, h('label', { for: 'f-state' }, 'State'), stateSelect),
  h('div', { class: 'field' }, h('label', { for: 'f-kind' }, 'Kind'), kindInput),
  h('div', { class: 'field' }, h('label', { for: 'f-tag' }, 'Tag'), tagInput),
  h('div', { class: 'actions filter-actions' },
    h('button', { class: 'button primary', type: 'submit' }, 'Apply'),
    h('a', { class: 'button', href: base }, 'Clear')));

  const queueBar = h('div', { hidden: true });
  const bulkbar = h('div', { class: 'bulkbar', hidden: true });
  const tableBox = h('div', {}, h('p', { class: 'empty' }, 'Loading…'));
  const pager = h('div', { class: 'pager' });

  fill(
    container,
    h('div', { class: 'page-head' },
      h('div', {},
        h('h1', {}, scheduled ? 'Scheduled jobs' : 'Jobs'),
        h('p', { class: 'subtitle' }, scheduled
          ? 'Jobs waiting for their run time (delayed, or retrying after a backoff).'
          : 'Newest first. Filters combine.')),
      h('div', {}, search, searchError)),
    h('div', { class: 'card' }, filterForm),
    queueBar,
    h('section', { class: 'card flush' }, bulkbar, tableBox, pager),
  );

  // ----- state -----
  let jobs = [];
  let nextCursor = null;
  const selected = new Set();

  const byId = (id) => jobs.find((job) => job.id === id);

  const renderBulkbar = () => {
    const chosen = [...selected].map(byId).filter(Boolean);
    bulkbar.hidden = chosen.length === 0;
    const retryable = chosen.filter((job) => RETRYABLE.has(job.state));
    const deletable = chosen.filter((job) => job.state !== 'running');
    fill(bulkbar,
      h('strong', {}, `${chosen.length} selected`),
      h('button', {
        class: 'button small', type: 'button', 'data-bulk': 'retry', disabled: retryable.length === 0,
        onclick: () => bulk('retry', retryable),
      }, `Retry ${retryable.length}`),
      h('button', {
        class: 'button small danger', type: 'button', 'data-bulk': 'delete', disabled: deletable.length === 0,
        onclick: () => bulk('delete', deletable),
      }, `Delete ${deletable.length}`),
      h('button', { class: 'link-button', type: 'button', onclick: () => { selected.clear(); render(); } }, 'Clear selection'));
  };

  const bulk = async (action, targets) => {
    if (action === 'delete') {
      const ok = await confirmDialog(`Delete ${targets.length} job${targets.length === 1 ? '' : 's'}? This cannot be undone.`, 'Delete');
      if (!ok) return;
    }
    const results = await mapLimit(targets, 4, (job) => (action === 'retry'
      ? api(`/v1/jobs/${job.id}/retry`, { method: 'POST' })
      : api(`/v1/jobs/${job.id}`, { method: 'DELETE' })));
    const failed = results.filter((r) => r.error);
    const done = results.length - failed.length;
    const verb = action === 'retry' ? 'Retried' : 'Deleted';
    if (failed.length) {
      toast(`${verb} ${done}; ${failed.length} failed: ${errorText(failed[0].error)}`, 'error');
    } else {
      toast(`${verb} ${done} job${done === 1 ? '' : 's'}`);
    }
    for (const r of results) if (!r.error) selected.delete(r.item.id);
    await load();
  };

  const render = () => {
    renderBulkbar();
    if (jobs.length === 0) {
      fill(tableBox, h('p', { class: 'empty' }, cursor ? 'No more jobs.' : 'No jobs match these filters.'));
    } else {
      const selectable = jobs.filter((job) => job.state !== 'running');
      const allBox = h('input', {
        type: 'checkbox', 'aria-label': 'Select all on this page',
        checked: selectable.length > 0 && selectable.every((job) => selected.has(job.id)),
        onchange: () => {
          for (const job of selectable) allBox.checked ? selected.add(job.id) : selected.delete(job.id);
          render();
        },
      });
      fill(tableBox, h('div', { class: 'table-wrap' }, h('table', { class: 'stackable jobs' },
        h('thead', {}, h('tr', {},
          h('th', { class: 'check' }, allBox), h('th', {}, 'Job'), h('th', {}, 'Queue'), h('th', {}, 'State'),
          h('th', { class: 'num' }, 'Attempt'), h('th', {}, 'Tags'), h('th', {}, scheduled ? 'Runs' : 'When'))),
        h('tbody', {}, jobs.map((job) => jobRow(job, selected, render))))));
    }
    fill(pager,
      h('span', { class: 'muted' }, jobs.length ? `${fmtNumber(jobs.length)} on this page` : ''),
      h('div', { class: 'actions' },
        h('button', {
          class: 'button small', type: 'button', disabled: !cursor,
          onclick: () => go({}, pages.cursors.pop() ?? ''),
        }, '← Newer'),
        h('button', {
          class: 'button small', type: 'button', disabled: !nextCursor,
          onclick: () => { pages.cursors.push(cursor); go({}, nextCursor); },
        }, 'Older →'),
        h('select', {
          'aria-label': 'Page size',
          onchange: (event) => go({ limit: Number(event.target.value) }),
        }, PAGE_SIZES.map((n) => h('option', { value: n, selected: n === filters.limit }, `${n} / page`)))));
  };

  const load = async () => {
    try {
      const page = await api('/v1/jobs' + query({ ...filters, cursor }));
      jobs = page.jobs;
      nextCursor = page.next_cursor;
      for (const id of [...selected]) if (!byId(id)) selected.delete(id);
      render();
    } catch (error) {
      fill(tableBox, h('p', { class: 'empty' }, `Could not load jobs: ${errorText(error)}`));
    }
  };
  const reload = throttle(load, 1000);

  const loadQueues = async () => {
    try {
      const queues = await apiAll('/v1/queues', 'queues');
      const names = queues.map((q) => q.name);
      if (filters.queue && !names.includes(filters.queue)) names.push(filters.queue);
      fill(queueSelect, h('option', { value: '' }, 'All queues'),
        names.map((name) => h('option', { value: name, selected: name === filters.queue }, name)));
      const queue = queues.find((q) => q.name === filters.queue);
      if (queue) renderQueueBar(queueBar, queue, loadQueues);
    } catch {
      // The list itself reports errors.
    }
  };

  const reloadQueues = throttle(loadQueues, 1000);

  // Rows on screen change state in place; the first page also reloads to show new jobs.
  const stream = subscribe({ queue: filters.queue, kind: filters.kind }, {
    onOpen: load,
    onEvent: (event) => {
      if (event.type !== 'state') return;
      const job = byId(event.id);
      if (job) {
        job.state = event.state;
        job.attempt = event.attempt;
        const row = tableBox.querySelector(`tr[data-id="${event.id}"]`);
        if (row) {
          fill(row.querySelector('[data-label="State"]'), stateBadge(event.state));
          row.classList.remove('flash');
          void row.offsetWidth; // restart the animation
          row.classList.add('flash');
        }
        renderBulkbar();
      }
      if (!cursor || job) reload();
      if (filters.queue) reloadQueues();
    },
  });
  const tick = setInterval(() => tickTimes(tableBox), 1000);
  load();
  loadQueues();

  return {
    unmount() {
      stream.close();
      reload.cancel();
      reloadQueues.cancel();
      clearInterval(tick);
    },
  };
}

function jobRow(job, selected, render) {
  const link = `#/jobs/${encodeURIComponent(job.id)}`;
  const box = h('input', {
    type: 'checkbox',
    'aria-label': `Select job ${job.id}`,
    checked: selected.has(job.id),
    disabled: job.state === 'running',
    onchange: () => {
      box.checked ? selected.add(job.id) : selected.delete(job.id);
      render();
    },
  });
  return h('tr', { class: selected.has(job.id) ? 'selected' : '', dataset: { id: job.id, state: job.state } },
    h('td', { class: 'check' }, box),
    h('td', { class: 'wide first', 'data-label': 'Job' },
      h('a', { href: link }, h('strong', {}, job.kind)),
      h('div', { class: 'muted mono', title: job.id }, shortId(job.id))),
    h('td', { 'data-label': 'Queue' }, job.queue),
    h('td', { 'data-label': 'State' }, stateBadge(job.state)),
    h('td', { class: 'num', 'data-label': 'Attempt' }, `${job.attempt} / ${job.max_attempts}`),
    h('td', { 'data-label': 'Tags' }, job.tags.length ? job.tags.map((tag) => h('span', { class: 'tag' }, tag)) : h('span', { class: 'muted' }, '—')),
    h('td', { class: 'nowrap span-2', 'data-label': 'When' }, when(job)),
  );
}

/** The time that matters for the job's state. */
function when(job) {
  switch (job.state) {
    case 'scheduled': return [h('span', { class: 'muted' }, 'runs '), timeAgo(job.run_at)];
    case 'queued': return [h('span', { class: 'muted' }, 'ready '), timeAgo(job.run_at)];
    case 'running': {
      const percent = job.progress?.percent;
      return [h('span', { class: 'muted' }, 'started '), timeAgo(job.started_at),
        percent === null || percent === undefined ? '' : h('span', { class: 'muted' }, ` · ${Math.round(percent)}%`)];
    }
    default: return [h('span', { class: 'muted' }, `${job.state} `), timeAgo(job.finished_at)];
  }
}

function renderQueueBar(el, queue, refresh) {
  const button = h('button', {
    class: 'button small', type: 'button',
    onclick: async () => {
      button.disabled = true;
      const action = queue.paused ? 'resume' : 'pause';
      try {
        await api(`/v1/queues/${encodeURIComponent(queue.name)}/${action}`, { method: 'POST' });
        toast(`Queue ${queue.name} ${queue.paused ? 'resumed' : 'paused'}`);
      } catch (error) {
        toast(`Could not ${action} ${queue.name}: ${errorText(error)}`, 'error');
      }
      await refresh();
    },
  }, queue.paused ? 'Resume queue' : 'Pause queue');
  el.hidden = false;
  el.className = 'card queue-bar';
  fill(el,
    h('div', { class: 'queue-bar-info' },
      h('strong', {}, queue.name), ' ',
      queue.paused ? h('span', { class: 'badge tone-paused' }, 'paused') : h('span', { class: 'badge tone-active' }, 'active'),
      h('span', { class: 'muted' },
        ` ${fmtNumber(queue.counts.queued)} queued · ${fmtNumber(queue.counts.running)} running · ${fmtNumber(queue.counts.dead)} dead`)),
    button);
}

/** Runs fn over items, at most `limit` at once; resolves to [{item, value | error}]. */
async function mapLimit(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      try {
        results[index] = { item: items[index], value: await fn(items[index]) };
      } catch (error) {
        results[index] = { item: items[index], error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
