// Cron schedules: next fire times, pause / resume, trigger now.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { client, launch, openPage, server, textOf, unique, until } from './helpers.js';

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

test('lists schedules with next fire times; pauses, resumes and triggers one', async () => {
  const name = unique('hourly');
  const queue = unique('cron');
  const created = await api(`/v1/cron/${name}`, {
    method: 'PUT', body: { schedule: 'every 1h', job: { kind: 'sessions.cleanup', queue, args: { older_than: '7d' } } },
  });
  assert.equal(created.next_fire_times.length, 5);
  const page = await openPage(browser, `${srv.url}/#/cron`);
  const row = page.locator(`tr[data-cron="${name}"]`);
  await row.waitFor();
  assert.match(await row.textContent(), /every 1h[\s\S]*sessions\.cleanup[\s\S]*active/);
  assert.equal(await row.locator('[data-next]').getAttribute('data-next'), created.next_fire_times[0]);
  assert.match(await row.locator('[data-next] time').textContent(), /^in /);

  await row.getByRole('button', { name: 'Pause' }).click();
  await row.locator('[data-paused="true"]').waitFor();
  assert.equal((await api(`/v1/cron/${name}`)).paused, true);
  await row.getByRole('button', { name: 'Resume' }).click();
  await row.locator('[data-paused="false"]').waitFor();
  assert.equal((await api(`/v1/cron/${name}`)).paused, false);

  await row.getByRole('button', { name: 'Trigger now' }).click();
  const { jobs } = await until(async () => {
    const page = await api(`/v1/jobs?queue=${queue}`);
    return page.jobs.length === 1 && page;
  }, { message: 'the triggered job' });
  assert.equal(jobs[0].kind, 'sessions.cleanup');
  assert.deepEqual(jobs[0].tags, [`cron:${name}`]);
  // The notice links to the new job.
  await page.locator('.toast a').click();
  await page.waitForURL(`**/#/jobs/${jobs[0].id}`);
  await page.locator('#job-id').waitFor();
  assert.equal(await textOf(page, '#job-id'), jobs[0].id);

  await page.goto(`${srv.url}/#/cron`);
  await row.waitFor();
  await page.screenshot({ path: `${process.env.SCREENSHOT_DIR ?? '/tmp'}/dashboard-cron.png`, fullPage: true });
  assert.deepEqual(page.problems, []);
  await page.context().close();
});
