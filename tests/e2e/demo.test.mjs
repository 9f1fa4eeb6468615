// The demo in a real browser: two Chromium pages against `tether serve` (started
// by scripts/e2e.sh, URL in TETHER_URL). A chat message, a typing indicator, a
// presence list and a leaderboard click must reach the other page.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './browser.mjs';

const base = process.env.TETHER_URL;
before(() => {
  assert.ok(base, 'TETHER_URL is set by scripts/e2e.sh');
});

const browser = useBrowser();

async function openPage(errors) {
  const page = await browser().newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(base);
  await page.waitForSelector('.status.live', { timeout: 10_000 });
  return page;
}

test('chat, typing, presence and leaderboard reach every viewer', async () => {
  const errors = [];
  const alice = await openPage(errors);
  const bob = await openPage(errors);
  if (base.startsWith('https:')) {
    // Over TLS (TETHER_TLS) Chromium speaks HTTP/2 to the server.
    const protocol = await alice.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    assert.equal(protocol, 'h2');
  }

  await alice.fill('#name', 'alice');
  await alice.dispatchEvent('#name', 'change');
  await alice.fill('#text', 'hello from alice');
  await alice.press('#text', 'Enter');
  await bob.waitForSelector('#messages li:has-text("hello from alice")', { timeout: 5000 });

  await bob.fill('#name', 'bob');
  await bob.dispatchEvent('#name', 'change');
  await bob.fill('#text', 'b');
  await alice.waitForFunction(() => document.getElementById('typing').textContent.includes('bob is typing'), null, { timeout: 5000 });

  await alice.waitForFunction(() => document.querySelectorAll('#presence li').length === 2, null, { timeout: 5000 });

  await bob.click('#scores tr:has-text("Grace") button');
  await alice.waitForFunction(
    () => [...document.querySelectorAll('#scores tr')].some((tr) => tr.children[1]?.textContent === 'Grace' && tr.children[2]?.textContent === '1'),
    null,
    { timeout: 5000 },
  );

  // For people to look at: the demo as the second viewer sees it.
  await alice.screenshot({ path: 'target/e2e/demo.png', fullPage: true });
  assert.deepEqual(errors, []);
});

test('a late viewer sees the leaderboard rebuilt from history', async () => {
  const errors = [];
  const late = await openPage(errors);
  await late.waitForFunction(
    () => [...document.querySelectorAll('#scores tr')].some((tr) => tr.children[1]?.textContent === 'Grace' && tr.children[2]?.textContent === '1'),
    null,
    { timeout: 5000 },
  );
  assert.deepEqual(errors, []);
});
