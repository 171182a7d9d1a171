// Shared pieces of the dashboard tests: a server, the browser, the HTTP API, and a worker that
// the tests drive by hand over the worker WebSocket (docs/protocol.md).

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const DESKTOP = { width: 1360, height: 900 };
export const PHONE = { width: 390, height: 844 };

/** A short random suffix, so tests sharing a server use their own queues. */
export function unique(prefix) {
  return `${prefix}-${randomBytes(3).toString('hex')}`;
}

/** Polls `check` until it returns a truthy value (returned) or the time runs out. */
export async function until(check, { timeout = 10_000, interval = 50, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${message} (last: ${last})`);
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

async function freePort() {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * The server to test: ERRANDS_URL when run.sh started one, or (with `own: true`, or extra
 * arguments such as a token) a fresh `errands serve --memory` from ERRANDS_BIN.
 */
export async function server({ own = false, args = [] } = {}) {
  if (!own && args.length === 0 && process.env.ERRANDS_URL) {
    return { url: process.env.ERRANDS_URL, stop: async () => {} };
  }
  const bin = process.env.ERRANDS_BIN ?? new URL('../target/release/errands', import.meta.url).pathname;
  const port = await freePort();
  const child = spawn(bin, ['serve', '--memory', '--listen', `127.0.0.1:${port}`, ...args], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await until(async () => (await fetch(`${url}/healthz`)).ok, { message: `${bin} to listen` });
  return {
    url,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    },
  };
}

/** A JSON client of the HTTP API. */
export function client(url, token) {
  return async function api(path, { method = 'GET', body } = {}) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(url + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const error = new Error(`${method} ${path}: ${response.status} ${text}`);
      error.status = response.status;
      throw error;
    }
    return data;
  };
}

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/**
 * A page in a fresh context. `problems` collects uncaught exceptions and Content-Security-Policy
 * violations, which every test expects to stay empty.
 */
export async function openPage(browser, url, { viewport = DESKTOP } = {}) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (error) => page.problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|SyntaxError|TypeError/.test(message.text())) {
      page.problems.push(`console: ${message.text()}`);
    }
  });
  page.on('dialog', (dialog) => page.problems.push(`unexpected native dialog: ${dialog.message()}`));
  await page.goto(url);
  return page;
}

/** A worker driven by the test: it takes jobs and reports exactly what the test tells it to. */
export class TestWorker {
  static async connect(url, { queues, capacity = 1, name = 'test-worker', token } = {}) {
    const headers = token ? { authorization: `Bearer ${token}` } : {};
    const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/worker`, { headers });
    await once(socket, 'open');
    const worker = new TestWorker(socket);
    worker.send({
      type: 'hello', queues, capacity, name, host: 'test-host', pid: process.pid,
      sdk: 'dashboard-tests', version: '1.0.0',
    });
    await until(() => worker.id, { message: 'welcome' });
    return worker;
  }

  constructor(socket) {
    this.socket = socket;
    this.id = null;
    this.pending = [];
    this.waiting = [];
    this.errors = [];
    socket.on('message', (data) => {
      const parsed = JSON.parse(data.toString());
      for (const message of Array.isArray(parsed) ? parsed : [parsed]) {
        if (message.type === 'welcome') this.id = message.worker_id;
        else if (message.type === 'job') this.deliver(message);
        else if (message.type === 'error') this.errors.push(message);
      }
    });
  }

  deliver(job) {
    const waiter = this.waiting.shift();
    if (waiter) waiter(job);
    else this.pending.push(job);
  }

  /** The next job the server pushes. */
  nextJob(timeout = 10_000) {
    const ready = this.pending.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = this.waiting.filter((w) => w !== take);
        reject(new Error('no job was pushed in time'));
      }, timeout);
      const take = (job) => {
        clearTimeout(timer);
        resolve(job);
      };
      this.waiting.push(take);
    });
  }

  send(message) {
    this.socket.send(JSON.stringify(message));
  }

  progress(id, percent, message) {
    this.send({ type: 'progress', id, percent, message });
  }

  complete(id, result = null) {
    this.send({ type: 'complete', id, result });
  }

  fail(id, error, options = {}) {
    this.send({ type: 'fail', id, error, ...options });
  }

  async close() {
    if (this.socket.readyState === WebSocket.CLOSED) return;
    this.socket.close();
    await once(this.socket, 'close');
  }
}

/** Waits until the job reaches `state` according to the API. */
export async function jobInState(api, id, state) {
  return until(async () => {
    const job = await api(`/v1/jobs/${id}`);
    return job.state === state ? job : false;
  }, { message: `job ${id} to be ${state}` });
}

/** Text of the first element matching selector, or null. */
export async function textOf(page, selector) {
  const el = page.locator(selector).first();
  return (await el.count()) ? (await el.textContent()).trim() : null;
}
