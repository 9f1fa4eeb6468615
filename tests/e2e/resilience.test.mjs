// The JavaScript client in a real browser when things go wrong: the network
// pulled while a publisher keeps publishing, a deploy (SIGTERM, a new server
// on the same port) with 50 pages open, and the leaderboard's
// publish-to-render time. Each test starts its own `tether serve` (and a TCP
// relay where the network is cut) and stops them by PID.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './browser.mjs';
import { startServer, serverFor, relayFor, until } from '../../clients/js/test/harness.mjs';

const browser = useBrowser();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A page of its own browser context (so pages share nothing) on `origin`
 * with a client subscribed to `channel`, recording every number it is
 * delivered, when it connected, and each `unrecovered` event.
 */
async function feedPage(origin, channel, errors, clientOptions = {}) {
  const context = await browser().newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${origin}/healthz`);
  await page.evaluate(
    async ({ channel, clientOptions }) => {
      const { Client } = await import('/tether.js');
      const client = new Client(location.origin, clientOptions);
      window.feed = { seen: [], connectedAt: [], transports: [], unrecovered: 0, subscribed: false };
      client.on('connected', ({ transport }) => {
        window.feed.connectedAt.push(Date.now());
        window.feed.transports.push(transport);
      });
      client.subscribe(channel, {
        publication: ({ data }) => window.feed.seen.push(data.n),
        subscribed: () => (window.feed.subscribed = true),
        unrecovered: () => window.feed.unrecovered++,
      });
      client.connect();
    },
    { channel, clientOptions },
  );
  return { context, page, feed: () => page.evaluate(() => window.feed) };
}

const numbers = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('the network pulled twice mid-stream: every page shows every number once, in order', async (t) => {
  const server = await serverFor(t, ['--history-size', '1000']);
  const relay = await relayFor(t, server);
  const errors = [];
  const pages = [];
  for (let i = 0; i < 3; i++) pages.push(await feedPage(relay.url, 'numbers:pulled', errors));
  t.after(() => Promise.all(pages.map((p) => p.context.close())));
  await until(async () => (await Promise.all(pages.map((p) => p.feed()))).every((f) => f.subscribed), 10_000, 'every page subscribed');

  const total = 300;
  for (let n = 1; n <= total; n++) {
    await server.publish('numbers:pulled', { n });
    if (n === 80) {
      // The machine goes offline: every link reset, nothing gets through
      // until the browser comes back online (and says so with `online`).
      relay.block(true);
      relay.cut();
      await Promise.all(pages.map((p) => p.context.setOffline(true)));
    }
    if (n === 120) {
      relay.block(false);
      await Promise.all(pages.map((p) => p.context.setOffline(false)));
    }
    // The server's side of every link cut while the browser still thinks
    // it is online.
    if (n === 200) relay.cut();
    await sleep(10);
  }

  const expected = numbers(1, total);
  await until(async () => (await Promise.all(pages.map((p) => p.feed()))).every((f) => f.seen.length >= total), 20_000, 'every page to catch up');
  for (const page of pages) {
    const feed = await page.feed();
    assert.deepEqual(feed.seen, expected);
    assert.equal(feed.unrecovered, 0);
    // Back after the outage (over WebSocket, or over SSE if the first try
    // after coming online was refused: its stream then resumes in its session).
    assert.ok(feed.connectedAt.length >= 2, `reconnected: ${feed.transports}`);
  }
  assert.deepEqual(errors, []);
});

test('a deploy with 50 pages open: reconnects spread over the advised window, nothing lost', async (t) => {
  const advised = 5000;
  const args = ['--reconnect-window', `${advised / 1000}s`];
  const first = await startServer(args);
  t.after(() => first.stop());
  const errors = [];
  const pages = [];
  for (let i = 0; i < 5; i++) {
    pages.push(...(await Promise.all(Array.from({ length: 10 }, () => feedPage(first.url, 'numbers:deploy', errors)))));
  }
  t.after(() => Promise.all(pages.map((p) => p.context.close())));
  const feeds = () => Promise.all(pages.map((p) => p.feed()));
  await until(async () => (await feeds()).every((f) => f.subscribed), 20_000, 'all 50 pages subscribed');

  for (let n = 1; n <= 20; n++) await first.publish('numbers:deploy', { n });
  await until(async () => (await feeds()).every((f) => f.seen.length === 20), 10_000, 'the first 20 numbers everywhere');

  // The deploy: the old process is told to stop and a new one takes its
  // port once it has gone.
  const sigterm = Date.now();
  await first.stop('SIGTERM');
  const second = await startServer(args, { port: first.port });
  t.after(() => second.stop());
  await until(async () => (await feeds()).every((f) => f.connectedAt.length >= 2), 3 * advised, 'every page back');

  // The in-memory engine starts empty: every page is told its channel's
  // history is gone (recovered: false) rather than left with a silent gap.
  for (let n = 21; n <= 40; n++) await second.publish('numbers:deploy', { n });
  await until(async () => (await feeds()).every((f) => f.seen.length === 40), 10_000, 'the next 20 numbers everywhere');

  const all = await feeds();
  const delays = all.map((f) => f.connectedAt[1] - sigterm).sort((a, b) => a - b);
  const perSecond = new Map();
  for (const d of delays) perSecond.set(Math.floor(d / 1000), (perSecond.get(Math.floor(d / 1000)) ?? 0) + 1);
  const busiest = Math.max(...perSecond.values());
  console.log(
    `# deploy: 50 pages back ${delays[0]}..${delays.at(-1)} ms after SIGTERM ` +
      `(median ${delays[25]} ms, window ${advised} ms), busiest second ${busiest}`,
  );
  for (const f of all) {
    assert.deepEqual(f.seen, numbers(1, 40));
    assert.equal(f.unrecovered, 1);
  }
  // Spread, not a storm: uniform over 5 s puts about 10 in each second;
  // those whose delay ends before the new server listens come back together
  // just after, so the bound leaves room for that.
  assert.ok(delays.at(-1) - delays[0] >= advised / 2, `reconnects span ${delays.at(-1) - delays[0]} ms`);
  assert.ok(busiest <= 30, `at most 60% of the pages in one second, saw ${busiest}`);
  assert.ok(delays.at(-1) <= advised + 2000, `all back within the window and a start-up, last at ${delays.at(-1)} ms`);
  assert.deepEqual(errors, []);
});

test('leaderboard: scores posted through the HTTP API render in every page (publish-to-render p50, p99)', async (t) => {
  const server = await serverFor(t);
  const errors = [];
  const pages = [];
  for (let i = 0; i < 3; i++) {
    const context = await browser().newContext();
    t.after(() => context.close());
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${server.url}/`);
    await page.waitForSelector('.status.live', { timeout: 10_000 });
    // Each render of Ada's row is stamped with the wall clock, to the
    // microsecond, as the browser shows it.
    await page.evaluate(() => {
      window.renders = [];
      const score = () => [...document.querySelectorAll('#scores tr')].find((tr) => tr.children[1]?.textContent === 'Ada')?.children[2]?.textContent;
      new MutationObserver(() => window.renders.push([Number(score()), performance.timeOrigin + performance.now()])).observe(document.getElementById('scores'), {
        childList: true,
        subtree: true,
      });
    });
    pages.push(page);
  }

  const updates = 120;
  const sentAt = [];
  for (let k = 1; k <= updates; k++) {
    sentAt[k] = performance.timeOrigin + performance.now();
    await server.publish('scores:leaderboard', { player: 'Ada', delta: 1 });
    await sleep(15);
  }
  const latencies = [];
  for (const page of pages) {
    await page.waitForFunction((n) => window.renders.some(([score]) => score === n), updates, { timeout: 10_000 });
    const renders = await page.evaluate(() => window.renders);
    for (let k = 1; k <= updates; k++) {
      const shown = renders.find(([score]) => score === k);
      assert.ok(shown, `score ${k} rendered`);
      latencies.push(shown[1] - sentAt[k]);
    }
  }
  latencies.sort((a, b) => a - b);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))].toFixed(1);
  console.log(`# leaderboard: publish-to-render over ${latencies.length} renders (${updates} updates x ${pages.length} pages): p50 ${at(0.5)} ms, p99 ${at(0.99)} ms`);
  assert.deepEqual(errors, []);
});
