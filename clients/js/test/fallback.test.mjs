// Transport fallback: WebSocket, then SSE, then long-polling, as the server
// offers them; and back to WebSocket, probed in the background, once it
// works again, without losing or repeating a publication.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../tether.js';
import { startServer, serverFor, clientFor, until, next } from './harness.mjs';

const FAST = { minReconnectDelay: 20, maxReconnectDelay: 200 };

async function transportWith(args, options = {}) {
  const server = await startServer(args);
  const client = new Client(server.url, { ...FAST, ...options });
  const sub = client.subscribe('news');
  client.connect();
  const connected = await next(client, 'connected');
  await next(sub, 'subscribed');
  await server.publish('news', 'hello');
  const history = await sub.history();
  client.disconnect();
  await server.stop();
  assert.deepEqual(history.publications.map((p) => p.data), ['hello']);
  return connected.transport;
}

test('falls back in order as the server switches transports off', async () => {
  assert.equal(await transportWith([]), 'websocket');
  assert.equal(await transportWith(['--websocket.enabled', 'false']), 'sse');
  assert.equal(await transportWith(['--websocket.enabled', 'false', '--http.sse', 'false']), 'longpoll');
  // The order is the application's to choose, and transports can be left out.
  assert.equal(await transportWith([], { transports: ['longpoll', 'websocket'] }), 'longpoll');
  assert.equal(await transportWith(['--http.longpoll', 'false'], { transports: ['longpoll', 'sse'] }), 'sse');
});

test('moves back to WebSocket once the server offers it again', async (t) => {
  let server = await startServer(['--websocket.enabled', 'false']);
  const port = server.port;
  t.after(() => server.stop());
  const client = clientFor(t, server.url, { ...FAST, probeInterval: 200 });
  client.connect();
  assert.equal((await next(client, 'connected')).transport, 'sse');
  await server.stop('SIGTERM');
  server = await startServer([], { port });
  await until(() => client.transport === 'websocket' && client.state === 'connected', 10_000, 'back on websocket');
});

/** A WebSocket that a test can block, as a proxy that refuses upgrades would. */
function blockableWebSocket() {
  const control = { blocked: true, opened: 0 };
  control.WebSocket = class extends WebSocket {
    constructor(url) {
      super(control.blocked ? url.replace('/connection/websocket', '/blocked-by-proxy') : url);
      control.opened += 1;
    }
  };
  return control;
}

test('the move back to WebSocket loses and repeats nothing while publications flow', async (t) => {
  const server = await serverFor(t);
  const proxy = blockableWebSocket();
  const client = clientFor(t, server.url, { ...FAST, probeInterval: 100, WebSocket: proxy.WebSocket });
  const seen = [];
  const sub = client.subscribe('ticks', { publication: (p) => seen.push(p.data) });
  const transports = [];
  client.on('connected', (c) => transports.push(c.transport));
  client.connect();
  await next(sub, 'subscribed');
  assert.deepEqual(transports, ['sse']);
  const COUNT = 200;
  const publishing = (async () => {
    for (let n = 1; n <= COUNT; n++) {
      await server.publish('ticks', n);
      if (n === 50) proxy.blocked = false;
      if (n % 10 === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  await publishing;
  await until(() => seen.length >= COUNT, 10_000, `${COUNT} ticks (have ${seen.length})`);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(seen, Array.from({ length: COUNT }, (_, i) => i + 1));
  assert.deepEqual(transports, ['sse', 'websocket']);
  // The SSE session was closed behind it, not left to expire.
  const samples = await server.metrics();
  assert.equal(samples.get('tether_connections{transport="sse"}') ?? 0, 0);
});
