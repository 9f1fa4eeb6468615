// Three `tether serve` nodes on one real Redis behind a real nginx with no
// stickiness: WebSocket, SSE and long-poll clients spread over the nodes
// while numbered messages are published; one node is SIGKILLed mid-stream.
// Its clients come back through nginx to the others (an HTTP session's
// requests reach whichever node holds it, wherever nginx sends them), and
// every client ends with every number exactly once, in order.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../tether.js';
import { until, next } from './harness.mjs';
import { clusterFor } from './cluster.mjs';

const TRANSPORTS = ['websocket', 'sse', 'longpoll'];
const PER_TRANSPORT = Number(process.env.TETHER_CLUSTER_CLIENTS ?? 100);
const COUNT = 300;

/** Publishes `n` through `url`, retried with its idempotency key until acknowledged. */
async function publish(url, n) {
  const body = JSON.stringify({ channel: 'ticks', data: n, idempotency_key: `tick-${n}` });
  for (let attempt = 0; ; attempt++) {
    try {
      const answer = await fetch(`${url}/api/publish`, { method: 'POST', body });
      if (answer.ok) return (await answer.json()).offset;
    } catch {
      // The node nginx picked died with the request: the key makes a retry safe.
    }
    if (attempt > 50) throw new Error(`publish ${n} never acknowledged`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Open sessions per transport on `node`. */
async function sessions(node) {
  const samples = await node.metrics();
  return TRANSPORTS.map((transport) => samples.get(`tether_connections{transport="${transport}"}`) ?? 0);
}

test('through nginx, a node killed mid-stream loses no client a message, on any transport', async (t) => {
  const { nodes, url } = await clusterFor(t, 3, ['--channels.history-size', '1000']);

  const clients = [];
  for (const transport of TRANSPORTS) {
    for (let i = 0; i < PER_TRANSPORT; i++) {
      const client = new Client(url, { transports: [transport], minReconnectDelay: 50, maxReconnectDelay: 500 });
      const seen = [];
      const sub = client.subscribe('ticks', { publication: (p) => seen.push(p.data) });
      const subscribed = next(sub, 'subscribed', 30_000);
      client.connect();
      clients.push({ client, seen, transport, subscribed });
    }
  }
  t.after(() => clients.forEach(({ client }) => client.disconnect()));
  await Promise.all(clients.map((c) => c.subscribed));
  // nginx's round robin spread every transport over every node.
  const spread = await Promise.all(nodes.map(sessions));
  for (const [n, counts] of spread.entries()) {
    assert.ok(counts.every((count) => count > 0), `node ${n} holds ${counts} (websocket, sse, longpoll)`);
  }

  const victim = nodes[1];
  for (let n = 1; n <= COUNT; n++) {
    assert.equal(await publish(url, n), n, 'offsets follow the numbers');
    if (n === 100) await victim.stop('SIGKILL');
    if (n % 10 === 0) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await until(
    () => clients.every(({ seen }) => seen.length >= COUNT),
    60_000,
    `every client to have ${COUNT} messages (short: ${clients.filter(({ seen }) => seen.length < COUNT).length})`,
  );
  const expected = Array.from({ length: COUNT }, (_, i) => i + 1);
  for (const { seen, transport } of clients) {
    assert.deepEqual(seen, expected, `a ${transport} client saw each number once, in order`);
  }
  // The victim's share came back to the survivors, on the transport it had.
  const after = await Promise.all([nodes[0], nodes[2]].map(sessions));
  const total = after.reduce((sum, counts) => sum.map((s, i) => s + counts[i]), [0, 0, 0]);
  assert.deepEqual(total, [PER_TRANSPORT, PER_TRANSPORT, PER_TRANSPORT], 'every session is open on a live node');
  // With no stickiness, most HTTP requests landed on a node other than their session's.
  let forwarded = 0;
  for (const node of [nodes[0], nodes[2]]) {
    forwarded += (await node.metrics()).get('tether_forwarded_requests_total{outcome="answered"}') ?? 0;
  }
  assert.ok(forwarded > PER_TRANSPORT, `requests forwarded to their session's node: ${forwarded}`);
  const victimShare = spread[1].reduce((a, b) => a + b, 0);
  console.log(
    `# ${clients.length} clients (${PER_TRANSPORT} per transport) behind nginx; the node killed at message 100 held ${victimShare} ` +
      `(${spread[1]}); ${forwarded} requests forwarded by the survivors; all saw 1..${COUNT} once, in order`,
  );
});
