// `tether serve` over TLS in a real browser: Chromium loads the demo from
// https:// over HTTP/2, and its native WebSocket goes over that same HTTP/2
// connection (RFC 8441, extended CONNECT): the server counts each WebSocket
// by the HTTP version it opened over and the TLS connections it accepted
// (two tabs: one), and the chat works over it. Without WebSocket, the SSE
// streams and the long-polls of two tabs share that one connection too.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './browser.mjs';
import { startNode, testCertificate } from '../../clients/js/test/harness.mjs';

const browser = useBrowser();

test('over https, the demo and its WebSockets run on HTTP/2 (RFC 8441)', async (t) => {
  const { cert, key } = testCertificate();
  const server = await startNode(['--tls-cert', cert, '--tls-key', key], { scheme: 'https' });
  t.after(() => server.stop());
  const origin = `https://localhost:${server.port}`;
  // The test's certificate is trusted by this context only.
  const context = await browser().newContext({ ignoreHTTPSErrors: true });
  t.after(() => context.close());
  const errors = [];
  const open = async () => {
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(String(e)));
    const answer = await page.goto(origin);
    assert.equal(answer.status(), 200);
    await page.waitForSelector('.status.live', { timeout: 10_000 });
    return page;
  };
  const alice = await open();
  const bob = await open();
  // The page itself came over HTTP/2.
  const protocol = await alice.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  assert.equal(protocol, 'h2');

  await alice.fill('#text', 'over h2');
  await alice.press('#text', 'Enter');
  await bob.waitForSelector('#messages li:has-text("over h2")', { timeout: 5000 });

  // The server opened every WebSocket over HTTP/2, none over HTTP/1.1.
  const metrics = await alice.evaluate(() => fetch('/metrics').then((r) => r.text()));
  const sample = (name) => Number(metrics.split('\n').find((l) => l.startsWith(name))?.split(' ').at(-1) ?? 0);
  const overH2 = sample('tether_websocket_upgrades_total{http="2"}');
  const overH1 = sample('tether_websocket_upgrades_total{http="1.1"}');
  const connections = sample('tether_tls_connections_total');
  console.log(
    `# https demo: two tabs, pages over ${protocol}; WebSockets opened over HTTP/2: ${overH2}, ` +
      `over HTTP/1.1: ${overH1}; TLS connections: ${connections}`,
  );
  assert.ok(overH2 >= 1, `WebSockets over HTTP/2: ${overH2}\n${metrics}`);
  assert.equal(overH1, 0, 'none over HTTP/1.1');
  // Both tabs, their assets, API calls and the WebSocket: one TCP connection.
  assert.equal(connections, 1, 'the tabs share one connection');
  assert.deepEqual(errors, []);
});

/**
 * Two tabs of the demo in one context, from a TLS server started with
 * `args`; the page's WebSocket removed when `withoutWebSocket`. Checks
 * the transport the tabs use, that the chat crosses, and returns the
 * server's count of TLS connections.
 */
async function twoTabsOver(t, args, { withoutWebSocket = false, transport }) {
  const { cert, key } = testCertificate();
  const server = await startNode(['--tls-cert', cert, '--tls-key', key, ...args], { scheme: 'https' });
  t.after(() => server.stop());
  const context = await browser().newContext({ ignoreHTTPSErrors: true });
  t.after(() => context.close());
  if (withoutWebSocket) await context.addInitScript(() => delete window.WebSocket);
  const errors = [];
  const tabs = [];
  for (let i = 0; i < 2; i++) {
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`https://localhost:${server.port}/`);
    await page.waitForSelector('.status.live', { timeout: 10_000 });
    assert.equal(await page.getAttribute('#status', 'data-transport'), transport);
    tabs.push(page);
  }
  const [alice, bob] = tabs;
  await alice.fill('#text', `over ${transport} on h2`);
  await alice.press('#text', 'Enter');
  await bob.waitForSelector(`#messages li:has-text("over ${transport} on h2")`, { timeout: 5000 });
  const protocol = await bob.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  assert.equal(protocol, 'h2');
  const metrics = await alice.evaluate(() => fetch('/metrics').then((r) => r.text()));
  const sample = (name) => Number(metrics.split('\n').find((l) => l.startsWith(name))?.split(' ').at(-1) ?? 0);
  assert.deepEqual(errors, []);
  return sample('tether_tls_connections_total');
}

test('without WebSocket, two tabs\' SSE streams share one HTTP/2 connection', async (t) => {
  const connections = await twoTabsOver(t, [], { withoutWebSocket: true, transport: 'sse' });
  console.log(`# https, no WebSocket: two tabs on SSE over ${connections} TLS connection(s)`);
  assert.equal(connections, 1, 'both SSE streams, their commands and the assets on one connection');
});

test('with WebSocket and SSE off, two tabs\' long-polls share one HTTP/2 connection', async (t) => {
  const off = ['--websocket.enabled', 'false', '--http.sse', 'false'];
  const connections = await twoTabsOver(t, off, { transport: 'longpoll' });
  console.log(`# https, long-polling: two tabs over ${connections} TLS connection(s)`);
  assert.equal(connections, 1, 'both tabs\' held polls and commands on one connection');
});
