// Screenshots for the README (docs/dashboard-overview.png, docs/dashboard-job.png), taken on a
// fresh server filled with a small, realistic workload. A test run writes them to
// SCREENSHOT_DIR (run.sh makes a temporary one), so it leaves the checkout as it was;
// ERRANDS_REFRESH_DOCS_IMAGES=1 writes them over the README's images in docs/.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { client, jobInState, launch, openPage, server, TestWorker, textOf, until } from './helpers.js';

const OUT = process.env.ERRANDS_REFRESH_DOCS_IMAGES === '1'
  ? new URL('../docs/', import.meta.url).pathname
  : (process.env.SCREENSHOT_DIR ?? mkdtempSync(join(tmpdir(), 'errands-screenshots-')));
let srv;
let api;
let browser;
const workers = [];

before(async () => {
  srv = await server({ own: true });
  api = client(srv.url);
  browser = await launch();
  mkdirSync(OUT, { recursive: true });
});

after(async () => {
  for (const worker of workers) await worker.close();
  await browser?.close();
  await srv?.stop();
});

const enqueue = (body) => api('/v1/jobs', { method: 'POST', body });

test('overview and job page screenshots', async () => {
  // webhooks: paused, with a backlog.
  for (const n of [1, 2, 3, 4]) {
    await enqueue({ kind: 'webhook.deliver', queue: 'webhooks', args: { endpoint: `https://hooks.example.com/${n}` } });
  }
  await api('/v1/queues/webhooks/pause', { method: 'POST' });
  // reports: two scheduled for later.
  await enqueue({ kind: 'report.build', queue: 'reports', args: { report: 'weekly' }, delay: 3600 });
  await enqueue({ kind: 'report.build', queue: 'reports', args: { report: 'monthly' }, delay: 7200 });
  // emails and images: work for the workers.
  for (let n = 0; n < 16; n += 1) {
    await enqueue({ kind: 'email.send', queue: 'emails', args: { to: `user${n}@example.com`, template: 'welcome' }, tags: ['signup'] });
  }
  for (let n = 0; n < 9; n += 1) {
    await enqueue({ kind: 'image.thumbnail', queue: 'images', args: { image: `photo-${n}.jpg`, width: 320 } });
  }

  const web = await TestWorker.connect(srv.url, { queues: ['emails'], capacity: 2, name: 'web-1' });
  workers.push(web);
  for (let n = 0; n < 12; n += 1) {
    const job = await web.nextJob();
    if (n === 5) {
      web.fail(job.id, { type: 'SMTPError', message: '550 mailbox unavailable' }, { retry: false });
    } else {
      web.complete(job.id, { message_id: `msg-${n}` });
    }
  }
  const batch = await TestWorker.connect(srv.url, { queues: ['images', 'reports'], capacity: 2, name: 'batch-1' });
  workers.push(batch);
  // Eight of the nine images complete; the ninth stays running, so the report below gets the
  // worker's other slot.
  for (let n = 0; n < 8; n += 1) {
    const job = await batch.nextJob();
    batch.complete(job.id, { thumbnail: `${job.args.image}.320.webp` });
  }
  const held = await batch.nextJob();
  batch.progress(held.id, 60, 'resizing');

  // The job for the job page: its first attempt fails, the second reports progress and completes.
  const { id } = await enqueue({
    kind: 'report.build', queue: 'reports', tags: ['finance', 'monthly'],
    args: { report: 'revenue', month: '2026-10', format: 'pdf', include: ['summary', 'by-region'] },
  });
  let job = await batch.nextJob();
  assert.equal(job.id, id);
  batch.progress(id, 40, 'querying ledger');
  batch.fail(id, {
    type: 'DatabaseTimeout',
    message: 'ledger query exceeded 30 s',
    traceback: [
      'Traceback (most recent call last):',
      '  File "reports/build.py", line 88, in build',
      '    rows = await ledger.query(month)',
      '  File "reports/ledger.py", line 41, in query',
      '    raise DatabaseTimeout(f"ledger query exceeded {limit} s")',
      'DatabaseTimeout: ledger query exceeded 30 s',
    ].join('\n'),
  }, { retry_after: 0 });
  job = await batch.nextJob();
  assert.equal(job.id, id);

  const page = await openPage(browser, `${srv.url}/#/jobs/${id}`);
  await page.locator('.job-title [data-state="running"]').waitFor();
  await until(async () => (await textOf(page, '#live .live-text')) === 'live', { message: 'the stream to be live' });
  for (const [percent, message] of [[20, 'querying ledger'], [75, 'rendering pages'], [100, 'uploaded revenue-2026-10.pdf']]) {
    batch.progress(id, percent, message);
    await until(async () => (await page.locator('#progress').getAttribute('aria-valuenow')) === String(percent),
      { message: `the bar at ${percent}%` });
  }
  batch.complete(id, { pages: 14, url: 'https://files.example.com/reports/revenue-2026-10.pdf', bytes: 482113 });
  await jobInState(api, id, 'completed');
  await page.locator('.job-title [data-state="completed"]').waitFor();
  await page.locator('.attempt').waitFor();
  await page.waitForTimeout(500); // let the progress bar's transition end
  await page.screenshot({ path: `${OUT}/dashboard-job.png`, fullPage: true });

  await page.goto(`${srv.url}/#/`);
  await page.locator('tr[data-queue="webhooks"] [data-paused="true"]').waitFor();
  await until(async () => (await page.locator('table.workers tbody tr').count()) === 2, { message: 'two workers' });
  await page.screenshot({ path: `${OUT}/dashboard-overview.png`, fullPage: true });
  assert.deepEqual(page.problems, []);
  for (const name of ['dashboard-job.png', 'dashboard-overview.png']) {
    assert.ok(statSync(`${OUT}/${name}`).size > 10_000, `${name} is a real picture`);
  }
  await page.context().close();
});
