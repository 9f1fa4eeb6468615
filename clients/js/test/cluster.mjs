// A cluster for tests: Debian's `redis-server` and `nginx` started on free
// loopback ports (nginx with deploy/nginx.conf's settings, pointed at the
// test's nodes), and `tether serve` nodes on that Redis. Each is killed by
// PID when the test ends, pass or fail.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { accepts, freePort, metricsOf, publishTo, startNode, until } from './harness.mjs';

const NGINX_CONF = fileURLToPath(new URL('../../../deploy/nginx.conf', import.meta.url));

/** Runs `command` until `stop()`; killed with `signal` then. Its errors show unless `quiet`. */
function child(command, args, { quiet = false } = {}) {
  const process = spawn(command, args, { stdio: ['ignore', 'ignore', quiet ? 'ignore' : 'inherit'] });
  const exited = new Promise((resolve) => process.once('exit', resolve));
  return {
    pid: process.pid,
    async stop(signal = 'SIGKILL') {
      if (process.exitCode === null && process.signalCode === null) process.kill(signal);
      await exited;
    },
  };
}

/** A `redis-server` with no persistence on a free port. */
export async function startRedis() {
  const port = await freePort();
  const redis = child('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await until(() => accepts(port), 10_000, 'redis-server to listen');
  return { ...redis, port, url: `redis://127.0.0.1:${port}` };
}

/**
 * nginx in front of `nodes` on `port` (a free one by default), with
 * deploy/nginx.conf's settings (its upstream and port replaced).
 */
export async function startNginx(nodes, { port } = {}) {
  port ??= await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-nginx-'));
  mkdirSync(path.join(dir, 'tmp'));
  const upstreams = nodes.map((node) => `        server 127.0.0.1:${node.port} max_fails=1 fail_timeout=5s;`);
  const lines = [];
  let replaced = false;
  for (const line of readFileSync(NGINX_CONF, 'utf8').split('\n')) {
    if (line.trim().startsWith('server 127.0.0.1:808')) {
      if (!replaced) lines.push(...upstreams);
      replaced = true;
      continue;
    }
    lines.push(line.replace('listen 127.0.0.1:8080;', `listen 127.0.0.1:${port};`).replace('worker_processes auto;', 'worker_processes 1;'));
  }
  writeFileSync(path.join(dir, 'nginx.conf'), lines.join('\n'));
  // Quiet: a node killed on purpose makes nginx log every request it cut.
  const nginx = child('/usr/sbin/nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir, '-g', 'daemon off;'], { quiet: true });
  await until(() => accepts(port), 10_000, 'nginx to listen');
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    async stop() {
      await nginx.stop('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A fresh Redis, `nodes` `tether serve` nodes on it (each with `args`) and
 * nginx in front of them on `port` (a free one by default), used like one
 * server: `url`, `port`, `publish`, `metrics` (summed over the nodes), and
 * `stop(signal)`, which signals every node at once, then stops nginx and Redis.
 */
export async function startCluster(args = [], { port, nodes: count = 2 } = {}) {
  const redis = await startRedis();
  const nodes = [];
  let nginx;
  try {
    for (let i = 0; i < count; i++) nodes.push(await startNode(['--engine', redis.url, ...args]));
    nginx = await startNginx(nodes, { port });
  } catch (error) {
    await Promise.all(nodes.map((node) => node.stop()));
    await redis.stop();
    throw error;
  }
  return {
    url: nginx.url,
    port: nginx.port,
    redis,
    nodes,
    async stop(signal = 'SIGKILL') {
      await Promise.all(nodes.map((node) => node.stop(signal)));
      await nginx.stop();
      await redis.stop();
    },
    publish: (channel, data) => publishTo(nginx.url, channel, data),
    async metrics() {
      const sum = new Map();
      for (const node of nodes) {
        for (const [name, value] of await metricsOf(node.url).catch(() => new Map())) {
          sum.set(name, (sum.get(name) ?? 0) + value);
        }
      }
      return sum;
    },
  };
}

/** `startCluster(args, { nodes: count })`, stopped when the test `t` ends. */
export async function clusterFor(t, count, args = []) {
  const cluster = await startCluster(args, { nodes: count });
  t.after(() => cluster.stop());
  return cluster;
}
