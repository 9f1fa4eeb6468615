// The offline queue: publishes made while the link is down wait, in order,
// up to its bound, and go out once the client is back.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode } from '../tether.js';
import { serverFor, relayFor, clientFor, until, next } from './harness.mjs';

test('publishes made offline are sent in order after reconnect; past the bound they are refused', async (t) => {
  const server = await serverFor(t);
  const relay = await relayFor(t, server);
  const client = clientFor(t, relay.url, { minReconnectDelay: 50, maxReconnectDelay: 100, offlineQueue: 5 });
  client.connect();
  await next(client, 'connected');
  relay.block(true);
  relay.cut();
  await until(() => client.state === 'connecting', 5000, 'the link lost');
  const acks = [];
  for (let n = 1; n <= 5; n++) acks.push(client.publish('orders', n));
  await assert.rejects(client.publish('orders', 6), (e) => e.code === ErrorCode.QUEUE_FULL);
  // Queued publishes wait however long the outage lasts (well past `timeout`).
  relay.block(false);
  const offsets = (await Promise.all(acks)).map((a) => a.offset);
  assert.deepEqual(offsets, [1, 2, 3, 4, 5]);
  const history = await client.history('orders');
  assert.deepEqual(history.publications.map((p) => p.data), [1, 2, 3, 4, 5]);
});

test('without the offline queue a publish waits at most its timeout', async (t) => {
  const server = await serverFor(t);
  const relay = await relayFor(t, server);
  const client = clientFor(t, relay.url, { minReconnectDelay: 50, maxReconnectDelay: 100, timeout: 300 });
  client.connect();
  await next(client, 'connected');
  relay.block(true);
  relay.cut();
  await until(() => client.state === 'connecting', 5000, 'the link lost');
  await assert.rejects(client.publish('orders', 1), (e) => e.code === ErrorCode.TIMEOUT);
});
