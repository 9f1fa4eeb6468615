// Server-Sent Events in a real browser: Chromium's native EventSource against
// `tether serve` (started by scripts/e2e.sh with `http.max_stream_bytes`
// small, so the server ends the stream every few publications). Every
// publication must arrive exactly once and in order across the reconnects
// EventSource makes by itself with Last-Event-ID.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './browser.mjs';

const base = process.env.TETHER_URL;
before(() => {
  assert.ok(base, 'TETHER_URL is set by scripts/e2e.sh');
});

const browser = useBrowser();

async function publish(channel, data) {
  const response = await fetch(new URL('/api/publish', base), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel, data }),
  });
  assert.equal(response.status, 200);
}

test('EventSource receives publications and resumes after the server ends its stream', async () => {
  const page = await browser().newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(base);
  await page.evaluate(() => {
    window.sse = { opens: 0, sessions: new Set(), replies: [], publications: [] };
    const source = new EventSource('/connection/sse?subscribe=sse-e2e');
    source.onopen = () => window.sse.opens++;
    source.addEventListener('session', (e) => window.sse.sessions.add(JSON.parse(e.data).session));
    source.onmessage = (e) => {
      const message = JSON.parse(e.data);
      if (message.push === 'publication') window.sse.publications.push(message);
      else if (message.id !== undefined) window.sse.replies.push(message);
    };
  });
  await page.waitForFunction(() => window.sse.replies.length === 1, null, { timeout: 10_000 });
  const reply = await page.evaluate(() => window.sse.replies[0]);
  assert.equal(reply.id, 1, 'the query subscription is request 1');
  assert.ok(reply.result.epoch);

  const count = 40;
  const filler = 'x'.repeat(300);
  for (let n = 1; n <= count; n++) {
    await publish('sse-e2e', { n, filler });
  }
  // The streams end every ~4 KiB; EventSource reconnects (after its default
  // retry delay) and the session goes on where the last event id says.
  await page.waitForFunction((count) => window.sse.publications.length >= count, count, { timeout: 45_000 });
  const seen = await page.evaluate(() => ({
    opens: window.sse.opens,
    sessions: window.sse.sessions.size,
    data: window.sse.publications.map((p) => p.data.n),
    offsets: window.sse.publications.map((p) => p.offset),
  }));
  assert.deepEqual(seen.data, Array.from({ length: count }, (_, i) => i + 1), 'each once, in order');
  assert.deepEqual(seen.offsets, seen.data);
  assert.ok(seen.opens >= 2, `the stream was resumed (${seen.opens} opens)`);
  assert.equal(seen.sessions, 1, 'one session throughout');
  assert.deepEqual(errors, []);
  await page.close();
});
