// The client against a real `tether serve`: requests and their answers,
// subscribe/unsubscribe under rapid repetition, and the backoff's bounds.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, ErrorCode, backoff, seededRandom } from '../tether.js';
import { serverFor, clientFor, until, next } from './harness.mjs';

test('publish is acknowledged with its offset, presence and history answer, errors carry their numbers', async (t) => {
  const server = await serverFor(t);
  const client = clientFor(t, server.url);
  const received = [];
  const room = client.subscribe('chat:room', { publication: (p) => received.push(p) });
  client.connect();
  const connected = await next(client, 'connected');
  assert.equal(connected.transport, 'websocket');
  assert.match(connected.client, /^c\d+/);
  await next(room, 'subscribed');
  assert.equal(room.state, 'subscribed');

  const ack = await room.publish({ text: 'one' });
  assert.equal(ack.offset, 1);
  assert.equal(typeof ack.epoch, 'string');
  assert.deepEqual((await client.publish('chat:room', { text: 'two' })).offset, 2);
  await until(() => received.length === 2, 5000, 'both publications');
  assert.deepEqual(received.map((p) => [p.offset, p.data.text]), [[1, 'one'], [2, 'two']]);

  const presence = await room.presence();
  assert.deepEqual(presence.clients.map((c) => c.client), [connected.client]);
  const history = await room.history({ limit: 10 });
  assert.deepEqual(history.publications.map((p) => p.data.text), ['one', 'two']);

  await assert.rejects(client.publish('bad channel', 1), (e) => e.code === 102);
  await assert.rejects(client.publish('chat:room', 'x'.repeat(70 << 10)), (e) => e.code === 108);
});

test('a publish retried with its idempotency key is delivered once', async (t) => {
  const server = await serverFor(t);
  const client = clientFor(t, server.url);
  const received = [];
  client.subscribe('news', { publication: (p) => received.push(p.offset) });
  client.connect();
  await next(client.getSubscription('news'), 'subscribed');
  const first = await client.publish('news', 'hi', { idempotencyKey: 'k-1' });
  const again = await client.publish('news', 'hi', { idempotencyKey: 'k-1' });
  assert.equal(again.offset, first.offset);
  await client.publish('news', 'after');
  await until(() => received.length === 2, 5000, 'two deliveries');
  assert.deepEqual(received, [1, 2]);
});

test('subscribe, unsubscribe, subscribe within a few milliseconds ends subscribed once, with no error', async (t) => {
  const server = await serverFor(t);
  const client = clientFor(t, server.url);
  client.connect();
  await next(client, 'connected');
  const errors = [];
  const got = { first: [], second: [], third: [] };
  // Three mounts of a component, each unmounting the one before at once.
  let sub = client.subscribe('feed', { publication: (p) => got.first.push(p.offset), error: (e) => errors.push(e) });
  sub.unsubscribe();
  sub = client.subscribe('feed', { publication: (p) => got.second.push(p.offset), error: (e) => errors.push(e) });
  sub.unsubscribe();
  sub = client.subscribe('feed', { publication: (p) => got.third.push(p.offset), error: (e) => errors.push(e) });
  await until(() => sub.state === 'subscribed' && !sub._inFlight, 5000, 'subscribed');
  for (let i = 0; i < 5; i++) await server.publish('feed', i);
  await until(() => got.third.length === 5, 5000, 'five deliveries');
  const channels = await (await fetch(`${server.url}/api/channels`)).json();
  assert.deepEqual(channels.channels, [{ name: 'feed', subscribers: 1 }]);
  assert.deepEqual(got, { first: [], second: [], third: [1, 2, 3, 4, 5] });
  assert.deepEqual(errors, []);
  // And the same again at any pace: 50 toggles end where the last call says.
  for (let i = 0; i < 50; i++) {
    client.subscribe('feed').unsubscribe();
    if (i % 7 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await until(async () => (await (await fetch(`${server.url}/api/channels`)).json()).channels.length === 0, 5000, 'unsubscribed');
  assert.deepEqual(errors, []);
});

test('requests made before the connection wait for it; after disconnect() they fail at once', async (t) => {
  const server = await serverFor(t);
  const client = new Client(server.url);
  client.connect();
  const ack = await client.publish('early', 1);
  assert.equal(ack.offset, 1);
  client.disconnect();
  assert.equal(client.state, 'disconnected');
  await assert.rejects(client.publish('early', 2), (e) => e.code === ErrorCode.NOT_CONNECTED);
});

test('backoff stays within its bounds and spreads its delays (seeded)', () => {
  const bounds = { minReconnectDelay: 500, maxReconnectDelay: 20000 };
  const random = seededRandom(42);
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceiling = Math.min(20000, 500 * 2 ** attempt);
    const delays = Array.from({ length: 500 }, () => backoff(attempt, bounds, random));
    assert.ok(delays.every((d) => d >= 500 && d <= ceiling), `attempt ${attempt} within [500, ${ceiling}]`);
    if (ceiling > 500) {
      // Full jitter: the delays cover the range, not one point of it.
      const sorted = [...delays].sort((a, b) => a - b);
      const span = ceiling - 500;
      assert.ok(sorted[25] < 500 + span * 0.15, `attempt ${attempt}: low delays exist`);
      assert.ok(sorted[475] > 500 + span * 0.85, `attempt ${attempt}: high delays exist`);
      const distinct = new Set(delays).size;
      assert.ok(distinct > Math.min(400, span / 2), `attempt ${attempt}: ${distinct} distinct delays`);
    }
  }
  // The same seed gives the same sequence: a test of timing is reproducible.
  const a = seededRandom(7);
  const b = seededRandom(7);
  assert.deepEqual([a(), a(), a()], [b(), b(), b()]);
});
