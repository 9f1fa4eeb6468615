// Tokens: fetched at connect, refreshed before they expire, retried with
// backoff when fetching fails, and an explicit refusal ends the client's
// attempts instead of starting a retry storm.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../tether.js';
import { serverFor, clientFor, token, until, next } from './harness.mjs';

const SECRET = 'test-secret-of-sufficient-length';
const FAST = { minReconnectDelay: 20, maxReconnectDelay: 200 };

test('a token is refreshed before it expires, on the same connection', async (t) => {
  const server = await serverFor(t, ['--auth.hmac-secret', SECRET]);
  let calls = 0;
  const client = clientFor(t, server.url, {
    ...FAST,
    tokenRefreshMargin: 1500,
    getToken: async () => {
      calls += 1;
      return token(SECRET, 'alice', 3);
    },
  });
  let connections = 0;
  client.on('connected', () => (connections += 1));
  client.connect();
  const connected = await next(client, 'connected');
  assert.equal(connected.user, 'alice');
  await until(() => calls >= 3, 10_000, 'two refreshes');
  assert.equal(connections, 1, 'refreshed in place, not by reconnecting');
  assert.equal((await client.publish('notes', 'still allowed')).offset, 1);
});

test('a failing getToken is retried with backoff until it answers', async (t) => {
  const server = await serverFor(t, ['--auth.hmac-secret', SECRET]);
  let calls = 0;
  const client = clientFor(t, server.url, {
    ...FAST,
    getToken: async () => {
      calls += 1;
      if (calls < 4) throw new Error('auth service down');
      return token(SECRET, 'bob', 60);
    },
  });
  const delays = [];
  client.on('reconnecting', (r) => delays.push(r.delay));
  client.connect();
  const connected = await next(client, 'connected');
  assert.equal(connected.user, 'bob');
  assert.equal(calls, 4);
  assert.equal(delays.length, 3);
  assert.ok(delays.every((d) => d >= 20 && d <= 200), String(delays));
});

test('a refused token disconnects for good: no retry storm', async (t) => {
  const server = await serverFor(t, ['--auth.hmac-secret', SECRET]);
  let calls = 0;
  const client = new Client(server.url, {
    ...FAST,
    getToken: async () => {
      calls += 1;
      return token('another-secret-entirely-wrong!!', 'mallory', 60);
    },
  });
  const disconnected = next(client, 'disconnected');
  client.connect();
  const detail = await disconnected;
  assert.equal(detail.code, 111);
  assert.equal(detail.reconnect, false);
  assert.equal(client.state, 'disconnected');
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(calls, 1, 'asked for a token once, and stopped');
});

test('a refresh the server refuses disconnects the client', async (t) => {
  const server = await serverFor(t, ['--auth.hmac-secret', SECRET]);
  let calls = 0;
  const client = new Client(server.url, {
    ...FAST,
    tokenRefreshMargin: 1500,
    getToken: async () => {
      calls += 1;
      return calls === 1 ? token(SECRET, 'carol', 2) : 'not.a.token';
    },
  });
  client.connect();
  await next(client, 'connected');
  const detail = await next(client, 'disconnected', 5000);
  assert.equal(detail.code, 111);
  assert.equal(detail.reconnect, false);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(calls, 2);
});
