// A link that dies silently (no reset, no close: bytes just stop) is found
// by the client's heartbeat and replaced, and nothing published meanwhile
// is lost.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverFor, relayFor, clientFor, until, next } from './harness.mjs';

for (const transport of ['websocket', 'longpoll']) {
  test(`${transport}: a silent link is replaced within ping interval plus timeout`, async (t) => {
    const server = await serverFor(t, ['--http.poll-timeout', '10s']);
    const relay = await relayFor(t, server);
    const client = clientFor(t, relay.url, {
      transports: [transport],
      minReconnectDelay: 20,
      maxReconnectDelay: 100,
      pingInterval: 300,
      pingTimeout: 300,
    });
    const seen = [];
    const sub = client.subscribe('quiet', { publication: (p) => seen.push(p.data) });
    client.connect();
    await next(sub, 'subscribed');
    await server.publish('quiet', 1);
    await until(() => seen.length === 1);
    relay.freeze();
    const started = Date.now();
    await server.publish('quiet', 2);
    const lost = await next(client, 'disconnected', 5000);
    const took = Date.now() - started;
    assert.equal(lost.code, 4002);
    assert.ok(took < 1500, `found dead after ${took} ms`);
    await until(() => seen.length === 2, 5000, 'the publication made while the link was dead');
    assert.deepEqual(seen, [1, 2]);
  });
}
