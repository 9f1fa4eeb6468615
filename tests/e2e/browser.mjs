// The browser the tests drive: Debian's chromium through playwright-core,
// headless, launched before a file's tests and closed after them; trusting
// any certificate when the servers are the test's own over TLS.

import { before, after } from 'node:test';
import { chromium } from 'playwright-core';

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
// Against servers with the test's own certificate (TETHER_TLS, see
// harness.mjs), for these tests only.
if (process.env.TETHER_TLS) FLAGS.push('--ignore-certificate-errors');

/** Launches chromium for this test file; returns a function giving the browser. */
export function useBrowser() {
  let browser = null;
  before(async () => {
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: FLAGS });
  });
  after(async () => {
    await browser?.close();
  });
  return () => browser;
}
