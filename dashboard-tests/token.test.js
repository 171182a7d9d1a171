// With --token: the page shows only the sign-in form until the right token is entered, then
// uses it for every call and for the live stream (?token= on /v1/events).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { client, launch, openPage, server, textOf, unique, until } from './helpers.js';

const TOKEN = 'dashboard-test-token';
let srv;
let browser;

before(async () => {
  srv = await server({ args: ['--token', TOKEN] });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

test('asks for the token once and shows nothing else until it is given', async () => {
  const api = client(srv.url, TOKEN);
  const queue = unique('secret');
  await api('/v1/jobs', { method: 'POST', body: { kind: 'classified', queue } });

  // The data routes refuse a request without the token; the shell does not need one.
  assert.equal((await fetch(`${srv.url}/v1/queues`)).status, 401);
  assert.equal((await fetch(`${srv.url}/v1/events?token=wrong`)).status, 401);
  assert.equal((await fetch(`${srv.url}/`)).status, 200);

  const page = await openPage(browser, `${srv.url}/#/jobs`);
  await page.locator('#login-form').waitFor();
  const onlyLogin = async () => {
    assert.equal(await page.locator('#view').isVisible(), false, 'no view');
    assert.equal(await page.locator('#nav').isVisible(), false, 'no navigation');
    assert.equal(await page.locator('table').count(), 0, 'no data');
    assert.doesNotMatch(await page.locator('body').innerText(), new RegExp(queue));
  };
  await onlyLogin();

  // Another route still shows only the form.
  await page.goto(`${srv.url}/#/jobs?queue=${queue}`);
  await page.locator('#login-form').waitFor();
  await onlyLogin();

  // A wrong token is refused.
  await page.locator('#token').fill('not-it');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await until(async () => (await textOf(page, '#login-error')) === 'That token was refused.', { message: 'the refusal' });
  await onlyLogin();

  // The right one opens the dashboard, and the live stream authenticates with it.
  await page.locator('#token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#nav').waitFor();
  await page.goto(`${srv.url}/#/`);
  await page.locator(`tr[data-queue="${queue}"]`).waitFor();
  await until(async () => (await textOf(page, '#live .live-text')) === 'live', { message: 'the stream to be live' });
  await api('/v1/jobs', { method: 'POST', body: { kind: 'classified', queue } });
  await until(async () => (await textOf(page, `tr[data-queue="${queue}"] [data-count="queued"]`)) === '2',
    { message: 'a live update through the token-authenticated stream' });

  // Asked once: a reload goes straight to the data.
  await page.reload();
  await page.locator(`tr[data-queue="${queue}"]`).waitFor();
  assert.equal(await page.locator('#login').isVisible(), false);

  // Signing out forgets it.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#login-form').waitFor();
  await onlyLogin();
  await page.reload();
  await page.locator('#login-form').waitFor();
  await onlyLogin();

  assert.deepEqual(page.problems, []);
  await page.context().close();
});
