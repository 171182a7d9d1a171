// Overview: every queue with counts by state, throughput, oldest ready job and paused state,
// and the connected workers. Counts reload when the event stream reports a state change.

import { api, apiAll, subscribe } from './api.js';
import {
  errorText, fill, fmtDuration, fmtNumber, h, sparkline, STATES, throttle, tickTimes, timeAgo, toast,
} from './ui.js';

/** How often to reload without events: throughput buckets roll over, workers come and go. */
const POLL_MS = 5000;

export function mount(container, _params) {
  const stats = h('div', { class: 'stats' });
  const queuesBody = h('div');
  const workersBody = h('div');
  fill(
    container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Overview'),
        h('p', { class: 'subtitle' }, 'Queues and workers, updated live.'))),
    stats,
    h('section', { class: 'card flush', 'aria-labelledby': 'queues-title' },
      h('h2', { id: 'queues-title' }, 'Queues'), queuesBody),
    h('section', { class: 'card flush', 'aria-labelledby': 'workers-title' },
      h('h2', { id: 'workers-title' }, 'Workers'), workersBody),
  );

  let queues = [];
  let fetchedAt = 0; // when `queues` was read, for ageing oldest_ready_age between reads
  let loaded = false;

  const load = async () => {
    try {
      const [queueList, workers] = await Promise.all([
        apiAll('/v1/queues', 'queues'), apiAll('/v1/workers', 'workers')]);
      queues = queueList;
      fetchedAt = Date.now();
      loaded = true;
      renderStats(stats, queues, workers);
      renderQueues(queuesBody, queues, onToggle);
      renderWorkers(workersBody, workers);
    } catch (error) {
      if (!loaded) fill(queuesBody, h('p', { class: 'empty' }, `Could not load queues: ${errorText(error)}`));
    }
  };
  const reload = throttle(load, 400);

  const onToggle = async (queue, button) => {
    button.disabled = true;
    const action = queue.paused ? 'resume' : 'pause';
    try {
      await api(`/v1/queues/${encodeURIComponent(queue.name)}/${action}`, { method: 'POST' });
      toast(`Queue ${queue.name} ${queue.paused ? 'resumed' : 'paused'}`);
      await load();
    } catch (error) {
      toast(`Could not ${action} ${queue.name}: ${errorText(error)}`, 'error');
      button.disabled = false;
    }
  };

  // Oldest-ready ages and "last seen" times move every second without a reload.
  const tick = setInterval(() => {
    const elapsed = (Date.now() - fetchedAt) / 1000;
    for (const cell of queuesBody.querySelectorAll('[data-age]')) {
      cell.textContent = fmtDuration(Number(cell.dataset.age) + elapsed);
    }
    tickTimes(workersBody);
  }, 1000);
  const poll = setInterval(reload, POLL_MS);

  const stream = subscribe({}, {
    onOpen: load,
    onEvent: (event) => {
      if (event.type === 'state') reload();
    },
  });
  load();

  return {
    unmount() {
      stream.close();
      reload.cancel();
      clearInterval(tick);
      clearInterval(poll);
    },
  };
}

function renderStats(el, queues, workers) {
  const total = (state) => queues.reduce((sum, q) => sum + (q.counts[state] ?? 0), 0);
  const recent = queues.reduce((sum, q) => sum + (q.throughput ?? []).reduce((a, b) => a + b, 0), 0);
  const tile = (label, value, tone, href) => {
    const el = h(href ? 'a' : 'div', { class: 'stat', href, dataset: { stat: label.toLowerCase() } },
      h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, fmtNumber(value)));
    if (tone) el.style.setProperty('--tone', `var(--${tone})`);
    return el;
  };
  const tiles = [
    tile('Queued', total('queued'), 'queued', '#/jobs?state=queued'),
    tile('Running', total('running'), 'running', '#/jobs?state=running'),
    tile('Scheduled', total('scheduled'), 'scheduled', '#/scheduled'),
    tile('Dead', total('dead'), 'dead', '#/jobs?state=dead'),
    tile('Done, 15 min', recent, 'completed', '#/jobs?state=completed'),
    tile('Workers', workers.length, null, null),
  ];
  fill(el, tiles);
}

function renderQueues(el, queues, onToggle) {
  if (queues.length === 0) {
    fill(el, h('p', { class: 'empty' }, 'No queues yet: they appear with their first job.'));
    return;
  }
  const jobsLink = (queue, state) => `#/jobs?queue=${encodeURIComponent(queue)}&state=${state}`;
  const rows = queues.map((queue) => {
    const throughput = queue.throughput ?? [];
    const lastMinute = throughput.length ? throughput[throughput.length - 1] : null;
    const toggle = h('button', {
      type: 'button',
      class: 'button small',
      onclick: () => onToggle(queue, toggle),
    }, queue.paused ? 'Resume' : 'Pause');
    return h('tr', { dataset: { queue: queue.name } },
      h('td', { class: 'wide first', 'data-label': 'Queue' },
        h('a', { href: `#/jobs?queue=${encodeURIComponent(queue.name)}` }, h('strong', {}, queue.name))),
      h('td', { 'data-label': 'Status' }, queue.paused
        ? h('span', { class: 'badge tone-paused', dataset: { paused: 'true' } }, 'paused')
        : h('span', { class: 'badge tone-active', dataset: { paused: 'false' } }, 'active')),
      STATES.map((state) => {
        const n = queue.counts[state] ?? 0;
        return h('td', { class: 'num', 'data-label': state, dataset: { count: state } },
          h('a', { class: n ? 'count' : 'count zero', href: jobsLink(queue.name, state) }, fmtNumber(n)));
      }),
      h('td', { class: 'span-2', 'data-label': 'Throughput' },
        throughput.length
          ? h('div', { class: 'spark' }, sparkline(throughput),
            h('span', { class: 'spark-label', title: 'completed in the last minute' }, `${lastMinute}/min`))
          : h('span', { class: 'muted' }, '—')),
      h('td', { class: 'nowrap', 'data-label': 'Oldest ready' },
        queue.oldest_ready_age === null || queue.oldest_ready_age === undefined
          ? h('span', { class: 'muted' }, '—')
          : h('span', { dataset: { age: queue.oldest_ready_age } }, fmtDuration(queue.oldest_ready_age))),
      h('td', { class: 'num wide' }, toggle),
    );
  });
  fill(el, h('div', { class: 'table-wrap' }, h('table', { class: 'stackable queues' },
    h('thead', {}, h('tr', {},
      h('th', {}, 'Queue'), h('th', {}, 'Status'),
      STATES.map((state) => h('th', { class: 'num' }, state)),
      h('th', { title: 'completed per minute, last 15 minutes' }, 'Throughput'), h('th', {}, 'Oldest ready'), h('th', {}, h('span', { class: 'muted' }, '')))),
    h('tbody', {}, rows))));
}

function renderWorkers(el, workers) {
  if (workers.length === 0) {
    fill(el, h('p', { class: 'empty' }, 'No workers connected.'));
    return;
  }
  const rows = workers.map((worker) => h('tr', { dataset: { worker: worker.id } },
    h('td', { class: 'wide first', 'data-label': 'Worker' },
      h('strong', {}, worker.name ?? 'unnamed'),
      h('div', { class: 'muted mono', title: worker.id }, worker.id.slice(-12))),
    h('td', { 'data-label': 'Host' }, worker.host ?? '—', worker.pid ? h('span', { class: 'muted' }, ` · pid ${worker.pid}`) : ''),
    h('td', { 'data-label': 'SDK' }, worker.sdk ? `${worker.sdk} ${worker.version ?? ''}` : '—'),
    h('td', { 'data-label': 'Queues' }, worker.queues.map((q) => h('span', { class: 'tag' }, q))),
    h('td', { class: 'num', 'data-label': 'Running' }, `${worker.running} / ${worker.capacity}`),
    h('td', { 'data-label': 'Connected' }, timeAgo(worker.connected_at)),
    h('td', { 'data-label': 'Last seen' }, timeAgo(worker.last_seen)),
  ));
  fill(el, h('div', { class: 'table-wrap' }, h('table', { class: 'stackable workers' },
    h('thead', {}, h('tr', {},
      h('th', {}, 'Worker'), h('th', {}, 'Host'), h('th', {}, 'SDK'), h('th', {}, 'Queues'),
      h('th', { class: 'num' }, 'Running'), h('th', {}, 'Connected'), h('th', {}, 'Last seen'))),
    h('tbody', {}, rows))));
}
