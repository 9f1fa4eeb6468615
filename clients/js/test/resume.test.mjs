// Losing the link and getting everything back: the network pulled while a
// publisher keeps publishing numbered messages (on every transport), a
// restart that lost the channel's history (`unrecovered`), and the server's
// shutdown advice.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, serverFor, relayFor, clientFor, until, next } from './harness.mjs';

const FAST = { minReconnectDelay: 20, maxReconnectDelay: 300 };

for (const transport of ['websocket', 'sse', 'longpoll']) {
  test(`${transport}: every number exactly once, in order, across three cuts of the network`, async (t) => {
    // Sessions over HTTP outlive a short cut; the last cut outlasts them.
    const server = await serverFor(t, ['--http.session-ttl', '400ms']);
    const relay = await relayFor(t, server);
    const client = clientFor(t, relay.url, { ...FAST, transports: [transport] });
    const seen = [];
    const lost = [];
    client.subscribe('numbers', {
      publication: (p) => seen.push(p.data),
      unrecovered: (e) => lost.push(e),
    });
    let reconnects = 0;
    client.on('connected', (c) => {
      assert.equal(c.transport, transport);
      reconnects += 1;
    });
    client.connect();
    await next(client.getSubscription('numbers'), 'subscribed');
    const COUNT = 300;
    const publishing = (async () => {
      for (let n = 1; n <= COUNT; n++) {
        await server.publish('numbers', n);
        if (n % 10 === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    for (const at of [60, 140]) {
      await until(() => seen.length >= at, 15_000, `${at} numbers`);
      relay.cut();
    }
    // Down for longer than a session lives: the client opens a new one and
    // recovers its channel from the offset it reached.
    await until(() => seen.length >= 220, 15_000, '220 numbers');
    relay.block(true);
    relay.cut();
    await new Promise((resolve) => setTimeout(resolve, 1200));
    relay.block(false);
    await publishing;
    await until(() => seen.length >= COUNT, 20_000, `all ${COUNT} numbers (have ${seen.length})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(seen, Array.from({ length: COUNT }, (_, i) => i + 1));
    assert.deepEqual(lost, []);
    // A WebSocket is a new connection after every cut; an HTTP session
    // resumes over a cut (its stream or poll sent again) and is new only
    // after the long one.
    assert.ok(reconnects >= (transport === 'websocket' ? 4 : 2), `${reconnects} connections`);
  });
}

test('a restart that lost the history is reported as unrecovered, never as a silent gap', async (t) => {
  let server = await startServer(['--reconnect-window', '300ms']);
  const port = server.port;
  t.after(() => server.stop());
  const client = clientFor(t, server.url, FAST);
  const seen = [];
  const unrecovered = [];
  const subscribed = [];
  const sub = client.subscribe('board', {
    publication: (p) => seen.push(p.offset),
    unrecovered: (e) => unrecovered.push(e),
    subscribed: (e) => subscribed.push(e),
  });
  client.connect();
  await next(sub, 'subscribed');
  await server.publish('board', 'a');
  await server.publish('board', 'b');
  await until(() => seen.length === 2);
  const advice = next(client, 'disconnected');
  await server.stop('SIGTERM');
  const disconnected = await advice;
  assert.equal(disconnected.code, 4000);
  assert.equal(disconnected.reconnect, true);
  server = await startServer([], { port });
  await until(() => unrecovered.length === 1, 10_000, 'unrecovered');
  assert.equal(unrecovered[0].channel, 'board');
  assert.equal(subscribed.at(-1).recovering, true);
  assert.equal(subscribed.at(-1).recovered, false);
  assert.equal(sub.offset, 0);
  // Live again from the new epoch.
  await server.publish('board', 'c');
  await until(() => seen.length === 3);
  assert.deepEqual(seen, [1, 2, 1]);
});

test('reconnects after the delay the server advised on shutdown', async (t) => {
  const server = await serverFor(t, ['--reconnect-window', '2s']);
  const client = clientFor(t, server.url, { minReconnectDelay: 10, maxReconnectDelay: 20 });
  client.connect();
  await next(client, 'connected');
  const reconnecting = next(client, 'reconnecting');
  server.stop('SIGTERM');
  const { delay, code } = await reconnecting;
  assert.equal(code, 4000);
  // The server's advice, not the client's own 10-20 ms backoff.
  assert.ok(delay <= 2000, `${delay} ms`);
  assert.ok(delay > 20 || delay === 0, `${delay} ms is the server's advice`);
});
