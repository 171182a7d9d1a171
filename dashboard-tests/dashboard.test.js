// The dashboard in a real browser against a real server: live overview, live progress, retry
// and delete of dead jobs, pausing a queue, and a phone-width layout.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  client, jobInState, launch, openPage, PHONE, server, TestWorker, textOf, unique, until,
} from './helpers.js';

let srv;
let api;
let browser;

before(async () => {
  srv = await server();
  api = client(srv.url);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

const count = (page, queue, state) => textOf(page, `tr[data-queue="${queue}"] [data-count="${state}"]`);

describe('overview', () => {
  test('shows every queue with counts that update live', async () => {
    const queue = unique('live');
    await api('/v1/jobs', { method: 'POST', body: { kind: 'email.send', queue } });
    await api('/v1/jobs', { method: 'POST', body: { kind: 'email.send', queue } });

    const page = await openPage(browser, `${srv.url}/`);
    await page.locator(`tr[data-queue="${queue}"]`).waitFor();
    assert.equal(await count(page, queue, 'queued'), '2');
    assert.equal(await textOf(page, `tr[data-queue="${queue}"] [data-paused]`), 'active');
    await until(async () => (await textOf(page, '#live .live-text')) === 'live', { message: 'the stream to be live' });
    // A marker on window survives only if the page is not reloaded.
    await page.evaluate(() => { window.notReloaded = true; });

    // A new job shows up without reloading the page.
    await api('/v1/jobs', { method: 'POST', body: { kind: 'email.send', queue } });
    await until(async () => (await count(page, queue, 'queued')) === '3', { message: 'queued to become 3' });

    // A worker connects, runs one: counts move, the worker is listed.
    const worker = await TestWorker.connect(srv.url, { queues: [queue], name: 'overview-worker' });
    try {
      const job = await worker.nextJob();
      await until(async () => (await count(page, queue, 'running')) === '1', { message: 'running to become 1' });
      await until(async () => (await count(page, queue, 'queued')) === '2', { message: 'queued to become 2' });
      // Completing it frees the worker's slot, so the next job is pushed at once.
      worker.complete(job.id, { ok: true });
      await until(async () => (await count(page, queue, 'completed')) === '1', { message: 'completed to become 1' });
      await until(async () => (await count(page, queue, 'queued')) === '1', { message: 'queued to become 1' });
      await until(() => page.locator(`tr[data-worker="${worker.id}"]`).count(), { message: 'the worker to be listed' });
      assert.match(await textOf(page, `tr[data-worker="${worker.id}"]`), /overview-worker/);
      assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was reloaded');
    } finally {
      await worker.close();
    }
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test('pauses and resumes a queue', async () => {
    const queue = unique('pausable');
    await api('/v1/jobs', { method: 'POST', body: { kind: 'report.build', queue } });
    const page = await openPage(browser, `${srv.url}/`);
    const row = page.locator(`tr[data-queue="${queue}"]`);
    await row.waitFor();

    await row.getByRole('button', { name: 'Pause' }).click();
    await row.locator('[data-paused="true"]').waitFor();
    const paused = (await api('/v1/queues')).queues.find((q) => q.name === queue);
    assert.equal(paused.paused, true, 'the API says the queue is paused');

    // A paused queue dispatches nothing: a worker on it gets no job.
    const worker = await TestWorker.connect(srv.url, { queues: [queue] });
    try {
      await assert.rejects(worker.nextJob(300));
      await row.getByRole('button', { name: 'Resume' }).click();
      await row.locator('[data-paused="false"]').waitFor();
      const resumed = (await api('/v1/queues')).queues.find((q) => q.name === queue);
      assert.equal(resumed.paused, false, 'the API says the queue is active');
      const job = await worker.nextJob();
      worker.complete(job.id);
    } finally {
      await worker.close();
    }
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});

describe('job page', () => {
  test('the progress bar moves live to 100% and the job completes', async () => {
    const queue = unique('progress');
    const worker = await TestWorker.connect(srv.url, { queues: [queue] });
    const page = await openPage(browser, `${srv.url}/`);
    try {
      const { id } = await api('/v1/jobs', {
        method: 'POST', body: { kind: 'video.transcode', queue, args: { video: 'intro.mov', formats: ['webm', 'mp4'] } },
      });
      const job = await worker.nextJob();
      assert.equal(job.id, id);
      await page.goto(`${srv.url}/#/jobs/${id}`);
      await page.locator('.job-title [data-state="running"]').waitFor();
      await until(async () => (await textOf(page, '#live .live-text')) === 'live', { message: 'the stream to be live' });

      // Each report is made only once the page shows the previous one.
      for (const [percent, message] of [[10, 'probing'], [50, 'encoding webm'], [100, 'encoding mp4']]) {
        worker.progress(id, percent, message);
        await until(
          async () => (await page.locator('#progress').getAttribute('aria-valuenow')) === String(percent),
          { message: `the bar at ${percent}%` },
        );
        assert.equal(await textOf(page, '#progress-percent'), `${percent}%`);
        assert.equal(await textOf(page, '#progress-message'), message);
        const width = await page.locator('.progress-bar').evaluate((bar) => bar.style.width);
        assert.equal(width, `${percent}%`);
      }

      worker.complete(id, { webm: 'intro.webm', mp4: 'intro.mp4' });
      await page.locator('.job-title [data-state="completed"]').waitFor();
      await until(async () => (await textOf(page, '[aria-labelledby="result-title"] pre'))?.includes('intro.webm'),
        { message: 'the result' });
      assert.match(await textOf(page, '.timeline'), /Completed/);
      assert.deepEqual(page.problems, []);
    } finally {
      await worker.close();
      await page.context().close();
    }
  });

  test('retries a dead job from its page and from the list; deletes one from the list', async () => {
    const queue = unique('retry');
    const worker = await TestWorker.connect(srv.url, { queues: [queue], capacity: 3 });
    const page = await openPage(browser, `${srv.url}/`);
    try {
      const ids = [];
      for (const n of [1, 2, 3]) {
        const { id } = await api('/v1/jobs', {
          method: 'POST', body: { kind: 'invoice.render', queue, args: { invoice: n }, max_attempts: 1 },
        });
        ids.push(id);
      }
      for (const _ of ids) {
        const job = await worker.nextJob();
        worker.fail(job.id, { type: 'RenderError', message: 'template missing', traceback: 'Traceback:\n  render()\nRenderError' });
      }
      for (const id of ids) await jobInState(api, id, 'dead');
      const [first, second, third] = ids;

      // From the job page: the error is shown, Retry brings it back, the worker completes it.
      await page.goto(`${srv.url}/#/jobs/${first}`);
      await page.locator('.job-title [data-state="dead"]').waitFor();
      assert.match(await textOf(page, '.attempt'), /RenderError[\s\S]*template missing[\s\S]*render\(\)/);
      await page.locator('button[data-action="retry"]').click();
      const again = await worker.nextJob();
      assert.equal(again.id, first);
      worker.complete(first, 'ok');
      await page.locator('.job-title [data-state="completed"]').waitFor();
      await jobInState(api, first, 'completed');

      // From the dead-job list: select one, bulk retry; it leaves the list and completes.
      await page.goto(`${srv.url}/#/jobs?queue=${queue}&state=dead`);
      await page.locator(`tr[data-id="${second}"]`).waitFor();
      assert.equal(await page.locator('tbody tr').count(), 2);
      await page.locator(`tr[data-id="${second}"] input[type="checkbox"]`).check();
      await page.locator('button[data-bulk="retry"]').click();
      const retried = await worker.nextJob();
      assert.equal(retried.id, second);
      worker.complete(second, 'ok');
      await jobInState(api, second, 'completed');
      await until(async () => (await page.locator(`tr[data-id="${second}"]`).count()) === 0,
        { message: 'the retried job to leave the dead list' });

      // Bulk delete asks first.
      await page.locator(`tr[data-id="${third}"] input[type="checkbox"]`).check();
      await page.locator('button[data-bulk="delete"]').click();
      await page.locator('dialog#confirm').getByRole('button', { name: 'Delete' }).click();
      await until(async () => (await page.locator(`tr[data-id="${third}"]`).count()) === 0,
        { message: 'the deleted job to leave the list' });
      await assert.rejects(api(`/v1/jobs/${third}`), (error) => error.status === 404);
      assert.deepEqual(page.problems, []);
    } finally {
      await worker.close();
      await page.context().close();
    }
  });
});

describe('job list', () => {
  test('filters by state, kind and tag, pages, and finds a job by id', async () => {
    const queue = unique('list');
    const ids = [];
    for (let n = 0; n < 5; n += 1) {
      const { id } = await api('/v1/jobs', {
        method: 'POST', body: { kind: n % 2 ? 'odd' : 'even', queue, tags: n === 4 ? ['vip'] : [], delay: n === 3 ? 3600 : 0 },
      });
      ids.push(id);
    }
    const page = await openPage(browser, `${srv.url}/#/jobs?queue=${queue}&limit=25`);
    await until(async () => (await page.locator('tbody tr').count()) === 5, { message: 'five rows' });

    await page.locator('#f-kind').fill('odd');
    await page.getByRole('button', { name: 'Apply' }).click();
    await until(async () => (await page.locator('tbody tr').count()) === 2, { message: 'two odd jobs' });

    await page.goto(`${srv.url}/#/jobs?queue=${queue}&tag=vip`);
    await until(async () => (await page.locator('tbody tr').count()) === 1, { message: 'one vip job' });
    assert.equal(await page.locator('tbody tr').getAttribute('data-id'), ids[4]);

    await page.goto(`${srv.url}/#/jobs?queue=${queue}`);
    await page.locator('#f-state').selectOption('scheduled');
    await until(async () => (await page.locator('tbody tr').count()) === 1, { message: 'one scheduled job' });
    assert.match(page.url(), /state=scheduled/);

    // The Scheduled page lists it with its run time.
    await page.goto(`${srv.url}/#/scheduled?queue=${queue}`);
    await page.locator(`tr[data-id="${ids[3]}"]`).waitFor();
    assert.match(await textOf(page, `tr[data-id="${ids[3]}"]`), /runs in/);

    await page.goto(`${srv.url}/#/jobs`);
    await page.locator('input[name="id"]').fill(ids[2]);
    await page.getByRole('button', { name: 'Find' }).click();
    await page.waitForURL(`**/#/jobs/${ids[2]}`);
    await page.locator('#job-id').waitFor();
    assert.equal(await textOf(page, '#job-id'), ids[2]);

    await page.goto(`${srv.url}/#/jobs`);
    await page.locator('input[name="id"]').fill('0193a5b2-7c1e-7d4a-9f1e-2b7d8c9e0a11');
    await page.getByRole('button', { name: 'Find' }).click();
    await until(async () => /No job with id/.test(await textOf(page, '.search + .form-error') ?? ''), { message: 'not found' });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test('pages with Older and Newer', async () => {
    const queue = unique('paged');
    await api('/v1/jobs/batch', {
      method: 'POST', body: { jobs: Array.from({ length: 30 }, (_, n) => ({ kind: 'page', queue, args: n })) },
    });
    const page = await openPage(browser, `${srv.url}/#/jobs?queue=${queue}&limit=25`);
    await until(async () => (await page.locator('tbody tr').count()) === 25, { message: 'a full first page' });
    const firstRow = await page.locator('tbody tr').first().getAttribute('data-id');
    await page.getByRole('button', { name: 'Older →' }).click();
    await until(async () => (await page.locator('tbody tr').count()) === 5, { message: 'five on the second page' });
    assert.equal(await page.getByRole('button', { name: 'Older →' }).isDisabled(), true);
    await page.getByRole('button', { name: '← Newer' }).click();
    await until(async () => (await page.locator('tbody tr').count()) === 25, { message: 'back on the first page' });
    assert.equal(await page.locator('tbody tr').first().getAttribute('data-id'), firstRow);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});

describe('phone width', () => {
  test('overview, job list and job page fit 390px without sideways scrolling', async () => {
    const queue = unique('phone');
    const { id } = await api('/v1/jobs', {
      method: 'POST', body: { kind: 'push.notify', queue, args: { user: 42, text: 'A fairly long message body to wrap' }, tags: ['mobile'] },
    });
    const page = await openPage(browser, `${srv.url}/`, { viewport: PHONE });
    const fits = () => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

    await page.locator(`tr[data-queue="${queue}"]`).waitFor();
    assert.equal(await fits(), true, 'overview fits');
    assert.equal(await page.locator('table.queues thead').isVisible(), false, 'rows are stacked as cards');
    await page.screenshot({ path: `${process.env.SCREENSHOT_DIR ?? '/tmp'}/dashboard-phone-overview.png`, fullPage: true });

    await page.goto(`${srv.url}/#/jobs?queue=${queue}`);
    await page.locator(`tr[data-id="${id}"]`).waitFor();
    assert.equal(await fits(), true, 'job list fits');

    await page.goto(`${srv.url}/#/jobs/${id}`);
    await page.locator('#job-id').waitFor();
    assert.equal(await fits(), true, 'job page fits');
    await page.screenshot({ path: `${process.env.SCREENSHOT_DIR ?? '/tmp'}/dashboard-phone-job.png`, fullPage: true });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});
