// What the client tests share: a real `tether serve` on a free loopback port
// (killed by PID when the test ends), a TCP relay that can cut every
// connection at once (the network pulled), HS256 tokens, and waiting for a
// condition instead of sleeping.

import { execFileSync, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '../tether.js';

const BIN = process.env.TETHER_BIN ?? fileURLToPath(new URL('../../../target/release/tether', import.meta.url));

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/**
 * What the tests run against: one `tether serve` ([`startNode`]), or, when
 * `TETHER_CLUSTER` is a number of nodes, that many nodes on a fresh Redis
 * behind nginx (see cluster.mjs), which a test uses the same way. With
 * `TETHER_TLS` set, the one server speaks only https:// with a certificate
 * of the test's own ([`testCertificate`]): browsers then reach it over
 * HTTP/2, WebSockets included (RFC 8441).
 */
export async function startServer(args = [], options = {}) {
  const nodes = Number(process.env.TETHER_CLUSTER ?? 0);
  if (nodes > 0) {
    const { startCluster } = await import('./cluster.mjs');
    return startCluster(args, { ...options, nodes });
  }
  if (process.env.TETHER_TLS) {
    const { cert, key } = testCertificate();
    return startNode([...args, '--tls-cert', cert, '--tls-key', key], { ...options, scheme: 'https' });
  }
  return startNode(args, options);
}

let certificate = null;

/**
 * A self-signed certificate for localhost and 127.0.0.1, made once per
 * process with openssl in a temporary directory removed at exit: `{cert,
 * key}` paths.
 */
export function testCertificate() {
  if (certificate) return certificate;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-test-tls-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { stdio: 'ignore' });
  certificate = { cert, key };
  return certificate;
}

/**
 * Starts `tether serve` with `args` on `port` (a free one by default) and
 * waits until it answers /healthz (or, with `scheme: 'https'`, until it
 * accepts connections: its certificate is the test's own). `stop(signal)`
 * ends it and waits for its exit.
 */
export async function startNode(args = [], { port, scheme = 'http' } = {}) {
  port ??= await freePort();
  const child = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--log', 'warn', ...args], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: serverEnv(),
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = `${scheme}://127.0.0.1:${port}`;
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`tether serve exited with ${child.exitCode}`);
    if (scheme === 'https') return accepts(port);
    try {
      return (await fetch(`${url}/healthz`)).ok;
    } catch {
      return false;
    }
  }, 10_000, 'tether serve to answer');
  return {
    url,
    port,
    pid: child.pid,
    async stop(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
    publish: (channel, data) => publishTo(url, channel, data),
    metrics: () => metricsOf(url),
  };
}

/** Resolves whether something accepts on 127.0.0.1:`port`. */
export function accepts(port) {
  return new Promise((resolve) => {
    const probe = net.connect(port, '127.0.0.1');
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** The environment without the tests' own TETHER_* variables, which the server would warn of. */
function serverEnv() {
  const env = { ...process.env };
  for (const name of ['TETHER_URL', 'TETHER_BIN', 'TETHER_CLUSTER', 'TETHER_CLUSTER_CLIENTS', 'TETHER_TLS']) delete env[name];
  return env;
}

/** Publishes through the HTTP API at `url`; the answer's `{offset, epoch}`. */
export async function publishTo(url, channel, data) {
  const answer = await fetch(`${url}/api/publish`, { method: 'POST', body: JSON.stringify({ channel, data }) });
  if (!answer.ok) throw new Error(`publish answered ${answer.status}: ${await answer.text()}`);
  return answer.json();
}

/** The metrics of the server at `url`, by sample name. */
export async function metricsOf(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const samples = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** `startServer(args, options)`, stopped when the test `t` ends, pass or fail. */
export async function serverFor(t, args = [], options = {}) {
  const server = await startServer(args, options);
  t.after(() => server.stop());
  return server;
}

/** `startRelay` to `server`, closed when the test `t` ends. */
export async function relayFor(t, server) {
  const relay = await startRelay(server.port, { scheme: new URL(server.url).protocol.slice(0, -1) });
  t.after(() => relay.close());
  return relay;
}

/** A `Client` of `url`, disconnected when the test `t` ends. */
export function clientFor(t, url, options = {}) {
  const client = new Client(url, options);
  t.after(() => client.disconnect());
  return client;
}

/**
 * A TCP relay on a free port to `target`: `cut()` resets every connection
 * through it (the network pulled), `block(true)` refuses new ones until
 * `block(false)`. Its `url` has the target's `scheme` (bytes pass as they
 * are, TLS included).
 */
export async function startRelay(targetPort, { scheme = 'http' } = {}) {
  const sockets = new Set();
  let blocked = false;
  /** Connections whose bytes are dropped. */
  const frozen = new WeakSet();
  const server = net.createServer((inbound) => {
    if (blocked) return inbound.destroy();
    const outbound = net.connect(targetPort, '127.0.0.1');
    sockets.add(inbound);
    sockets.add(outbound);
    // Bytes are relayed unless frozen: then they are dropped, as on a
    // link that died without a reset (a sleeping laptop, a dead NAT entry).
    inbound.on('data', (bytes) => frozen.has(inbound) || outbound.write(bytes));
    outbound.on('data', (bytes) => frozen.has(inbound) || inbound.write(bytes));
    inbound.on('end', () => outbound.end());
    outbound.on('end', () => inbound.end());
    const end = () => {
      inbound.destroy();
      outbound.destroy();
      sockets.delete(inbound);
      sockets.delete(outbound);
    };
    inbound.on('error', end).on('close', end);
    outbound.on('error', end).on('close', end);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    cut() {
      // A socket still connecting is destroyed plainly: reset-and-destroy
      // would leave its handle open, and this process with it.
      for (const socket of sockets) socket.connecting ? socket.destroy() : socket.resetAndDestroy();
      sockets.clear();
    },
    block(on) {
      blocked = on;
    },
    /** Drops every byte of the connections open now; new ones work. */
    freeze() {
      for (const socket of sockets) frozen.add(socket);
    },
    get connections() {
      return sockets.size / 2;
    },
    close() {
      this.cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** An HS256 JWT for `sub`, expiring `seconds` from now. */
export function token(secret, sub, seconds, claims = {}) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const head = encode({ alg: 'HS256', typ: 'JWT' });
  const body = encode({ sub, exp: Math.floor(Date.now() / 1000) + seconds, ...claims });
  const signature = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${signature}`;
}

/** Waits until `check()` is truthy (checked every 20 ms), at most `ms`. */
export async function until(check, ms = 10_000, what = 'the condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Resolves with the first `event` the emitter reports (and its payload). */
export function next(emitter, event, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    const off = emitter.on(event, (payload) => {
      clearTimeout(timer);
      off();
      resolve(payload);
    });
  });
}
