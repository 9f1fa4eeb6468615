// The client's options and the small rules they feed: backoff with jitter,
// idempotency keys, token expiry.

/** The transports, in the default order of preference. */
export const TRANSPORTS = Object.freeze(['websocket', 'sse', 'longpoll']);

/** The client's defaults; every option of `new Client(url, options)`. */
export const DEFAULTS = Object.freeze({
  transports: TRANSPORTS,
  token: null,
  getToken: null,
  minReconnectDelay: 500,
  maxReconnectDelay: 20000,
  stableAfter: 10000,
  pingInterval: 25000,
  pingTimeout: 10000,
  timeout: 10000,
  offlineQueue: 0,
  probeInterval: 10000,
  maxProbeInterval: 300000,
  tokenRefreshMargin: 30000,
  random: Math.random,
  WebSocket: null,
  fetch: null,
  shared: true,
});

/**
 * The delay before reconnect attempt `attempt` (0 for the first): exponential
 * backoff with full jitter between the minimum and the attempt's ceiling, so
 * clients cut at the same moment do not come back at the same moment.
 * @param {number} attempt
 * @param {{minReconnectDelay: number, maxReconnectDelay: number}} bounds
 * @param {() => number} random in [0, 1)
 */
export function backoff(attempt, bounds, random = Math.random) {
  const min = bounds.minReconnectDelay;
  const ceiling = Math.min(bounds.maxReconnectDelay, min * 2 ** Math.min(attempt, 30));
  return Math.round(min + random() * Math.max(0, ceiling - min));
}

/**
 * A seeded generator of numbers in [0, 1) (mulberry32), for reproducible jitter
 * in tests and simulations.
 * @param {number} seed
 */
export function seededRandom(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A new idempotency key: 128 random bits in hex. */
export function newKey() {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Seconds since the epoch at which a JWT expires, or null when it has no `exp`. */
export function tokenExpiry(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    return typeof claims.exp === 'number' ? claims.exp : null;
  } catch {
    return null;
  }
}
