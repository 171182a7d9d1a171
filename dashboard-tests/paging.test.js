// Queues, workers and cron schedules come from the server a page at a time: the dashboard
// follows the cursors, so it still shows every one. A server with a one-byte page budget puts
// one entry in each page.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { client, launch, openPage, server, TestWorker, until } from './helpers.js';

let srv;
let api;
let browser;

before(async () => {
  srv = await server({ args: ['--max-list-bytes', '1'] });
  api = client(srv.url);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

/** The values of `attribute` on the elements `selector` finds, once there are `count`. */
async function attributes(page, selector, attribute, count) {
  await until(async () => (await page.locator(selector).count()) === count, {
    message: `${count} of ${selector}`,
  });
  return page.locator(selector).evaluateAll(
    (elements, name) => elements.map((element) => element.getAttribute(name)), attribute);
}

test('shows every queue, worker and schedule across pages', async () => {
  const queues = ['paged-a', 'paged-b', 'paged-c'];
  for (const queue of queues) {
    await api('/v1/jobs', { method: 'POST', body: { kind: 'k', queue } });
    await api(`/v1/cron/${queue}`, { method: 'PUT', body: { schedule: 'every 1h', job: { kind: 'k' } } });
  }
  const first = await api('/v1/queues');
  assert.equal(first.queues.length, 1);
  assert.equal(first.next_cursor, 'paged-a');
  const workers = [];
  for (const name of ['w1', 'w2']) {
    workers.push(await TestWorker.connect(srv.url, { queues: ['idle'], name }));
  }

  const page = await openPage(browser, `${srv.url}/#/`);
  assert.deepEqual(await attributes(page, 'tr[data-queue]', 'data-queue', 3), queues);
  const ids = await attributes(page, 'tr[data-worker]', 'data-worker', 2);
  assert.deepEqual(ids.toSorted(), workers.map((worker) => worker.id).toSorted());

  await page.goto(`${srv.url}/#/jobs`);
  const options = await attributes(page, '#f-queue option[value]:not([value=""])', 'value', 3);
  assert.deepEqual(options, queues);

  await page.goto(`${srv.url}/#/cron`);
  assert.deepEqual(await attributes(page, 'tr[data-cron]', 'data-cron', 3), queues);
  assert.deepEqual(page.problems, []);
  for (const worker of workers) await worker.close();
});
