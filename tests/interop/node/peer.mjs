// Node `ws` peer for tether's interop tests.
//
// client mode: runs every scenario against a tether server, printing one
// `ok <scenario>` line each; exits non-zero at the first failure.
// server mode: an echo server; prints `listening <port>` once ready. A text message
// `close <code>` makes it close with that code.

import { WebSocket, WebSocketServer } from 'ws';
import assert from 'node:assert/strict';

const BIG = 16 << 20;
const say = (line) => console.log(line);

function open(url, options = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: 0, ...options });
    const inbox = [];
    const waiters = [];
    ws.on('message', (data, isBinary) => {
      const message = isBinary ? data : data.toString('utf8');
      const waiter = waiters.shift();
      if (waiter) waiter(message); else inbox.push(message);
    });
    ws.next = () => new Promise((res) => {
      if (inbox.length) res(inbox.shift()); else waiters.push(res);
    });
    ws.closed = new Promise((res) => ws.on('close', (code, reason) => res({ code, reason: reason.toString() })));
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  });
}

async function roundtrip(ws, message, options) {
  ws.send(message, options);
  const got = await ws.next();
  if (typeof message === 'string') assert.equal(got, message);
  else assert.ok(Buffer.compare(Buffer.from(got), Buffer.from(message)) === 0, 'binary echo differs');
}

async function client(base, smallBase) {
  for (const compress of [true, false]) {
    const tag = compress ? 'compressed' : 'plain';
    const ws = await open(`${base}/echo`, { perMessageDeflate: compress });
    assert.equal(ws.extensions.includes('permessage-deflate'), compress, `extensions: ${ws.extensions}`);
    await roundtrip(ws, 'héllo wörld ✓');
    await roundtrip(ws, Buffer.from([...Array(256).keys()]), { binary: true });
    say(`ok text and binary (${tag})`);
    const big = Buffer.alloc(BIG);
    for (let i = 0; i < BIG; i++) big[i] = (i * 7919) & 0xff;
    await roundtrip(ws, big, { binary: true });
    say(`ok 16 MiB message (${tag})`);
    ws.send('frag', { fin: false });
    ws.send('men', { fin: false });
    ws.send('ted', { fin: true });
    assert.equal(await ws.next(), 'fragmented');
    say(`ok fragmented message (${tag})`);
    const pong = new Promise((res) => ws.once('pong', (data) => res(data.toString())));
    ws.ping('payload');
    assert.equal(await pong, 'payload');
    say(`ok ping answered with pong (${tag})`);
    ws.close(4000, 'client bye');
    const { code } = await ws.closed;
    assert.equal(code, 4000);
    say(`ok client close 4000 echoed (${tag})`);
  }

  const closing = await open(`${base}/close/4001`);
  assert.equal((await closing.closed).code, 4001);
  say('ok server close 4001 received');

  const small = await open(`${smallBase}/echo`, { perMessageDeflate: false });
  small.send(Buffer.alloc(4096), { binary: true });
  assert.equal((await small.closed).code, 1009);
  say('ok oversize message closed with 1009');
}

function server(port, compress) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: compress, maxPayload: 20 << 20 });
  wss.on('connection', (ws) => {
    // An oversize message is closed with 1009 and reported here; it is expected.
    ws.on('error', (e) => console.error(`peer server: ${e.message}`));
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? null : data.toString('utf8');
      if (text && text.startsWith('close ')) {
        ws.close(Number(text.split(' ')[1]), 'server bye');
        return;
      }
      ws.send(isBinary ? data : text, { binary: isBinary });
    });
  });
  wss.on('listening', () => say(`listening ${wss.address().port}`));
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'client') {
  const timer = setTimeout(() => { say('FAILED: timed out'); process.exit(1); }, 120_000);
  client(rest[0], rest[1]).then(() => { clearTimeout(timer); process.exit(0); }, (e) => {
    say(`FAILED: ${e.stack || e}`);
    process.exit(1);
  });
} else if (mode === 'server') {
  server(Number(rest.find((a) => /^\d+$/.test(a)) ?? 0), rest.includes('--compress'));
} else {
  console.error('usage: peer.mjs client URL SMALL_URL | server [PORT] [--compress]');
  process.exit(2);
}
