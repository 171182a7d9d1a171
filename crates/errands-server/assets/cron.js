// Cron schedules: expression, the job each fire enqueues, next and last fire times, and
// pause / resume / trigger now.

import { api, apiAll, ApiError } from './api.js';
import { errorText, fill, fmtTime, h, shortId, tickTimes, timeAgo, toast } from './ui.js';

const POLL_MS = 5000;

export function mount(container) {
  const body = h('div', {}, h('p', { class: 'empty' }, 'Loading…'));
  fill(container,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Cron schedules'),
        h('p', { class: 'subtitle' }, 'Recurring jobs. Each fire time is enqueued once, even across restarts.'))),
    h('section', { class: 'card flush' }, body));

  const load = async () => {
    try {
      render(body, await apiAll('/v1/cron', 'schedules'), act);
    } catch (error) {
      const missing = error instanceof ApiError && error.status === 404;
      fill(body, h('p', { class: 'empty' }, missing
        ? 'This server has no cron support.'
        : `Could not load schedules: ${errorText(error)}`));
    }
  };

  const act = async (schedule, action, button) => {
    button.disabled = true;
    try {
      const answer = await api(`/v1/cron/${encodeURIComponent(schedule.name)}/${action}`, { method: 'POST' });
      if (action === 'trigger') {
        toast(h('span', {}, `Triggered ${schedule.name}: `,
          h('a', { href: `#/jobs/${encodeURIComponent(answer.id)}` }, `job ${shortId(answer.id)}`)));
      } else {
        toast(`Schedule ${schedule.name} ${action === 'pause' ? 'paused' : 'resumed'}`);
      }
    } catch (error) {
      toast(`Could not ${action} ${schedule.name}: ${errorText(error)}`, 'error');
    }
    await load();
  };

  const poll = setInterval(load, POLL_MS);
  const tick = setInterval(() => tickTimes(body), 1000);
  load();
  return {
    unmount() {
      clearInterval(poll);
      clearInterval(tick);
    },
  };
}

function render(el, schedules, act) {
  if (schedules.length === 0) {
    fill(el, h('p', { class: 'empty' }, 'No cron schedules. Create one with PUT /v1/cron/{name} or `errands cron`.'));
    return;
  }
  const rows = schedules.map((schedule) => {
    const button = (action, label, extra = '') => {
      const el = h('button', {
        class: `button small ${extra}`, type: 'button', 'data-action': action,
        onclick: () => act(schedule, action, el),
      }, label);
      return el;
    };
    const fireTime = (iso) => (iso
      ? [h('div', {}, timeAgo(iso)), h('div', { class: 'muted' }, fmtTime(iso))]
      : h('span', { class: 'muted' }, '—'));
    const [next, ...later] = schedule.next_fire_times ?? [];
    const job = schedule.job ?? {};
    return h('tr', { dataset: { cron: schedule.name } },
      h('td', { class: 'wide first', 'data-label': 'Name' }, h('strong', {}, schedule.name)),
      h('td', { 'data-label': 'Schedule' }, h('code', { class: 'mono' }, schedule.schedule),
        h('div', { class: 'muted' }, [schedule.tz && schedule.tz !== 'UTC' ? schedule.tz : 'UTC',
          schedule.catch_up === 'run_once' ? 'catch up once' : null].filter(Boolean).join(' · '))),
      h('td', { 'data-label': 'Job' },
        h('a', { href: `#/jobs?tag=${encodeURIComponent(`cron:${schedule.name}`)}`, title: 'jobs this schedule enqueued' }, job.kind),
        h('div', { class: 'muted' }, `queue ${job.queue ?? 'default'}`)),
      h('td', { 'data-label': 'Status' }, schedule.paused
        ? h('span', { class: 'badge tone-paused', dataset: { paused: 'true' } }, 'paused')
        : h('span', { class: 'badge tone-active', dataset: { paused: 'false' } }, 'active')),
      h('td', { 'data-label': 'Next fire', dataset: { next: next ?? '' } },
        schedule.paused ? h('span', { class: 'muted' }, 'paused') : fireTime(next),
        later.length ? h('div', { class: 'muted', title: later.map(fmtTime).join('\n') }, `then ${fmtTime(later[0])}${later.length > 1 ? ', …' : ''}`) : null),
      h('td', { 'data-label': 'Last fire' }, fireTime(schedule.last_fire)),
      h('td', { class: 'wide' }, h('div', { class: 'actions' },
        schedule.paused ? button('resume', 'Resume') : button('pause', 'Pause'),
        button('trigger', 'Trigger now', 'primary'))),
    );
  });
  fill(el, h('div', { class: 'table-wrap' }, h('table', { class: 'stackable cron' },
    h('thead', {}, h('tr', {},
      h('th', {}, 'Name'), h('th', {}, 'Schedule'), h('th', {}, 'Job'), h('th', {}, 'Status'),
      h('th', {}, 'Next fire'), h('th', {}, 'Last fire'), h('th', {}, ''))),
    h('tbody', {}, rows))));
}
