// tether: the JavaScript client for `tether serve`, for browsers and Node >= 20.
//
// ES modules, no dependencies. It speaks the server's JSON protocol
// (docs/PROTOCOL.md) over WebSocket, Server-Sent Events or long-polling, and
// keeps what an application would otherwise write by hand: reconnecting with
// backoff and jitter, resubscribing every channel from its last offset and
// epoch, delivering each publication once and in order, refreshing tokens,
// falling back when WebSocket is blocked and moving back when it returns.
// Types: tether.d.ts. Guide: README.md. The parts live in tether/: the
// client (client.js), one channel (subscription.js), one connection per
// transport (links.js), options and backoff (options.js), errors (errors.js).

export { Client } from './tether/client.js';
export { Subscription } from './tether/subscription.js';
export { ErrorCode, TetherError } from './tether/errors.js';
export { TRANSPORTS, DEFAULTS, backoff, seededRandom } from './tether/options.js';
