// The demo on the JavaScript client when WebSocket is not there: with the
// page's WebSocket removed it runs over SSE, and against a server that
// offers neither WebSocket nor SSE it runs over long-polling; chat, presence
// and the leaderboard work the same. Each test starts its own `tether serve`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './browser.mjs';
import { serverFor } from '../../clients/js/test/harness.mjs';

const browser = useBrowser();

async function openPage(url, errors, { withoutWebSocket = false } = {}) {
  const page = await browser().newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  if (withoutWebSocket) await page.addInitScript(() => delete window.WebSocket);
  await page.goto(`${url}/`);
  await page.waitForSelector('.status.live', { timeout: 10_000 });
  return page;
}

async function chatAndScore(url, options, transport) {
  const errors = [];
  const alice = await openPage(url, errors, options);
  const bob = await openPage(url, errors, options);
  for (const page of [alice, bob]) {
    assert.equal(await page.getAttribute('#status', 'data-transport'), transport);
  }
  await alice.fill('#text', `hello over ${transport}`);
  await alice.press('#text', 'Enter');
  await bob.waitForSelector(`#messages li:has-text("hello over ${transport}")`, { timeout: 5000 });
  await alice.waitForFunction(() => document.querySelectorAll('#presence li').length === 2, null, { timeout: 5000 });
  await bob.click('#scores tr:has-text("Ken") button');
  await alice.waitForFunction(
    () => [...document.querySelectorAll('#scores tr')].some((tr) => tr.children[1]?.textContent === 'Ken' && tr.children[2]?.textContent === '1'),
    null,
    { timeout: 5000 },
  );
  await alice.close();
  await bob.close();
  return errors;
}

test('without WebSocket in the page, the demo runs over SSE', async (t) => {
  const { url } = await serverFor(t, []);
  assert.deepEqual(await chatAndScore(url, { withoutWebSocket: true }, 'sse'), []);
});

test('with WebSocket and SSE switched off on the server, the demo runs over long-polling', async (t) => {
  const { url } = await serverFor(t, ['--websocket.enabled', 'false', '--http.sse', 'false']);
  const errors = await chatAndScore(url, {}, 'longpoll');
  // The browser reports the refused WebSocket and SSE attempts; nothing else.
  assert.deepEqual(errors, []);
});
