// One connection per browser: three tabs of one origin share one session on
// the server through the client's SharedWorker, and closing the tab that
// started it (mid-stream) loses no publication in the others. Starts its own
// `tether serve` and stops it by PID.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './browser.mjs';
import { serverFor, relayFor, until } from '../../clients/js/test/harness.mjs';

const browser = useBrowser();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A tab in `context` whose client (shared, the default) records the numbers of `channel`. */
async function tab(context, origin, channel, errors) {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${origin}/healthz`);
  await page.evaluate(async (channel) => {
    const { Client } = await import('/tether.js');
    const client = new Client();
    window.feed = { seen: [], subscribed: false, transport: null, client: null };
    client.on('connected', ({ transport, client: id }) => Object.assign(window.feed, { transport, client: id }));
    client.subscribe(channel, {
      publication: ({ data }) => window.feed.seen.push(data.n),
      subscribed: () => (window.feed.subscribed = true),
    });
    client.connect();
    window.client = client;
  }, channel);
  return { page, feed: () => page.evaluate(() => window.feed) };
}

test('three tabs share one session; closing the first loses nothing in the others', async (t) => {
  const server = await serverFor(t, ['--history-size', '1000']);
  const context = await browser().newContext();
  t.after(() => context.close());
  const errors = [];
  const tabs = [];
  for (let i = 0; i < 3; i++) tabs.push(await tab(context, server.url, 'numbers:tabs', errors));
  const feeds = () => Promise.all(tabs.map((x) => x.feed()));
  await until(async () => (await feeds()).every((f) => f.subscribed), 10_000, 'every tab subscribed');

  const samples = await server.metrics();
  assert.equal(samples.get('tether_connections{transport="websocket"}'), 1, 'one WebSocket for three tabs');
  const first = await feeds();
  assert.ok(first.every((f) => f.transport === 'websocket' && f.client === first[0].client), JSON.stringify(first));
  // Presence sees the browser once.
  const presence = await tabs[1].page.evaluate(() => window.client.presence('numbers:tabs'));
  assert.equal(presence.clients.length, 1);

  const total = 200;
  for (let n = 1; n <= total; n++) {
    await server.publish('numbers:tabs', { n });
    if (n === 60) await tabs[0].page.close();
    await sleep(5);
  }
  const rest = tabs.slice(1);
  await until(async () => (await Promise.all(rest.map((x) => x.feed()))).every((f) => f.seen.length >= total), 10_000, 'the other tabs to see every number');
  for (const x of rest) assert.deepEqual((await x.feed()).seen, Array.from({ length: total }, (_, i) => i + 1));
  // The connection stayed: the same one session all along.
  const after = await server.metrics();
  assert.equal(after.get('tether_connections{transport="websocket"}'), 1);
  assert.equal(after.get('tether_connections_accepted_total') ?? 1, 1);

  // A tab opened later joins the same connection and starts from now.
  const late = await tab(context, server.url, 'numbers:tabs', errors);
  await until(async () => (await late.feed()).subscribed, 10_000, 'the late tab subscribed');
  await server.publish('numbers:tabs', { n: total + 1 });
  await until(async () => (await late.feed()).seen.includes(total + 1), 5000, 'the late tab to see the next number');
  assert.deepEqual((await late.feed()).seen, [total + 1]);
  assert.equal((await server.metrics()).get('tether_connections{transport="websocket"}'), 1);
  assert.deepEqual(errors, []);
});

test('tabs on a shared connection recover together after the network cuts it', async (t) => {
  const server = await serverFor(t, ['--history-size', '1000']);
  const relay = await relayFor(t, server);
  const context = await browser().newContext();
  t.after(() => context.close());
  const errors = [];
  const tabs = [];
  for (let i = 0; i < 2; i++) tabs.push(await tab(context, relay.url, 'numbers:cut', errors));
  const feeds = () => Promise.all(tabs.map((x) => x.feed()));
  await until(async () => (await feeds()).every((f) => f.subscribed), 10_000, 'every tab subscribed');

  const total = 120;
  for (let n = 1; n <= total; n++) {
    await server.publish('numbers:cut', { n });
    // The browser's one connection is reset mid-stream, twice.
    if (n === 40 || n === 80) relay.cut();
    await sleep(5);
  }
  await until(async () => (await feeds()).every((f) => f.seen.length >= total), 15_000, 'both tabs to catch up');
  for (const f of await feeds()) assert.deepEqual(f.seen, Array.from({ length: total }, (_, i) => i + 1));
  assert.equal((await server.metrics()).get('tether_connections{transport="websocket"}'), 1, 'still one connection');
  assert.deepEqual(errors, []);
});
