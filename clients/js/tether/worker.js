// The shared worker behind `shared: true` (see shared.js): one client, one
// connection to the server, for every tab of the origin. To each tab it
// answers the server's protocol (connect, subscribe with recovery,
// unsubscribe, publish, presence, history, ping), holding one server
// subscription per channel however many tabs want it and forwarding each
// publication to the tabs subscribed, so a tab resumes and de-duplicates by
// the same offsets and epochs as it would against the server.

import { Client } from './client.js';

/** The one client, made by the first tab's hello with that tab's options. */
let client = null;
let user = null;
/** Every tab's links: `{port, link, open, channels: Map<channel, {pending, buffer}>}`. */
const sessions = new Set();
/** By channel: the server subscription, the sessions on it, and subscribes waiting for it. */
const channels = new Map();

globalThis.onconnect = (event) => {
  const port = event.ports[0];
  port.links = new Map();
  port.onmessage = (message) => receive(port, message.data);
  port.start();
};

function receive(port, message) {
  switch (message.type) {
    case 'hello':
      if (!client) start(message.url, message.options);
      // Granted once the tab that holds it has gone, however it went.
      globalThis.navigator.locks.request(`tether-tab-${message.tab}`, () => dropPort(port));
      return;
    case 'open': {
      const session = { port, link: message.link, open: false, channels: new Map() };
      port.links.set(message.link, session);
      sessions.add(session);
      if (client?.state === 'connected') open(session);
      return;
    }
    case 'send': {
      const session = port.links.get(message.link);
      if (session?.open) for (const request of message.requests) handle(session, request);
      return;
    }
    case 'close': {
      const session = port.links.get(message.link);
      if (session) end(session);
      return;
    }
    default:
  }
}

function start(url, options) {
  client = new Client(url, { ...options, shared: false });
  client.on('connected', (detail) => {
    user = detail.user;
    for (const session of sessions) if (!session.open) open(session);
  });
  // The tabs' links end with the server's: each tab reconnects (to this
  // worker, which answers once it is back) and recovers by its own offsets.
  client.on('disconnected', ({ code, reason, reconnect }) => {
    const advice = reconnect ? undefined : { code, reason, reconnect: false };
    for (const session of [...sessions]) {
      if (!session.open) continue;
      post(session, { type: 'close', code, reason, advice });
      end(session);
    }
  });
  // A worker hears the network come back too.
  globalThis.addEventListener?.('online', () => client._reconnectNow());
  client.connect();
}

function post(session, message) {
  session.port.postMessage({ ...message, link: session.link });
}

function open(session) {
  session.open = true;
  post(session, { type: 'open', client: client.clientId, transport: client.transport });
}

function end(session) {
  sessions.delete(session);
  session.port.links.delete(session.link);
  for (const channel of session.channels.keys()) release(channel, session);
  session.channels.clear();
}

function dropPort(port) {
  for (const session of [...port.links.values()]) end(session);
}

function reply(session, id, result) {
  post(session, { type: 'message', message: { id, result } });
}

function fail(session, id, code, message) {
  post(session, { type: 'message', message: { id, error: { code, message } } });
}

/** Answers a request the way the server would, for this session. */
function handle(session, request) {
  const { id, op, channel } = request;
  const answer = (promise) =>
    promise.then(
      (result) => reply(session, id, result),
      (error) => fail(session, id, error.code ?? 100, error.message),
    );
  switch (op) {
    case 'connect':
      return reply(session, id, { client: client.clientId, user });
    case 'ping':
      // A tab pings when its page woke up or came online: the worker checks
      // its own link then too (or reconnects now if it was waiting to).
      client._reconnectNow();
      return reply(session, id, {});
    case 'subscribe':
      return subscribe(session, request);
    case 'unsubscribe':
      if (!session.channels.delete(channel)) return fail(session, id, 105, 'not subscribed');
      release(channel, session);
      return reply(session, id, {});
    case 'publish':
      return answer(client.publish(channel, request.data, { idempotencyKey: request.idempotency_key, key: request.key }));
    case 'presence':
      return answer(client.presence(channel));
    case 'history':
      return answer(client.history(channel, { limit: request.limit }));
    default:
      return fail(session, id, 101, `unknown op ${op}`);
  }
}

function subscribe(session, request) {
  const { id, channel } = request;
  if (session.channels.has(channel)) return fail(session, id, 104, 'already subscribed');
  // Until its answer is sent the session's publications wait here, so the
  // tab gets them after the answer, as the server would send them.
  const entry = { pending: true, buffer: [] };
  session.channels.set(channel, entry);
  const held = hold(channel, session);
  const answer = () => recover(session, request, entry, held.subscription);
  if (held.subscription.state === 'subscribed') answer();
  else held.waiting.push({ session, id, answer });
}

function hold(channel, session) {
  let held = channels.get(channel);
  if (!held) {
    held = { sessions: new Set(), waiting: [] };
    const forward = (push) => (detail) => {
      for (const s of held.sessions) if (s.channels.has(channel)) post(s, { type: 'message', message: { push, channel, ...detail } });
    };
    held.subscription = client.subscribe(channel, {
      publication: ({ offset, data }) => {
        for (const s of held.sessions) {
          const entry = s.channels.get(channel);
          if (entry?.pending) entry.buffer.push({ offset, data });
          else if (entry) post(s, { type: 'message', message: { push: 'publication', channel, offset, data } });
        }
      },
      subscribed: () => {
        for (const waiting of held.waiting.splice(0)) waiting.answer();
      },
      join: forward('join'),
      leave: forward('leave'),
      state: ({ state, error }) => {
        if (state !== 'unsubscribed' || !error) return;
        // The server refused the channel: so is every tab that asked.
        for (const { session: s, id } of held.waiting.splice(0)) {
          s.channels.delete(channel);
          fail(s, id, error.code, error.message);
        }
        for (const s of held.sessions) s.channels.delete(channel);
        channels.delete(channel);
      },
    });
    channels.set(channel, held);
  }
  held.sessions.add(session);
  return held;
}

function release(channel, session) {
  const held = channels.get(channel);
  if (!held) return;
  held.sessions.delete(session);
  held.waiting = held.waiting.filter((w) => w.session !== session);
  if (held.sessions.size === 0) {
    channels.delete(channel);
    held.subscription.unsubscribe();
  }
}

/**
 * Answers a tab's subscribe from the worker's position: at once when the tab
 * is not behind, from the server's history when it is (recovered only if
 * nothing between is missing), and `recovered: false` on another epoch.
 */
async function recover(session, request, entry, subscription) {
  const { epoch, offset } = subscription;
  const from = request.recover;
  if (!from) return settle(session, request, entry, { epoch, offset });
  if (from.epoch !== epoch) return settle(session, request, entry, { epoch, offset, recovered: false });
  if (from.offset >= offset) return settle(session, request, entry, { epoch, offset, recovered: true, publications: [] });
  const found = new Map();
  try {
    const page = await client.history(request.channel);
    if (page.epoch === epoch) for (const p of page.publications) found.set(p.offset, p);
  } catch {
    // Counted as missing below.
  }
  if (!session.open || session.channels.get(request.channel) !== entry) return;
  for (const p of entry.buffer) found.set(p.offset, p);
  const upTo = Math.max(subscription.offset, ...found.keys());
  const publications = [];
  for (let o = from.offset + 1; o <= upTo; o++) {
    const p = found.get(o);
    if (!p) return settle(session, request, entry, { epoch, offset: subscription.offset, recovered: false });
    publications.push({ offset: o, data: p.data });
  }
  entry.buffer = [];
  settle(session, request, entry, { epoch, offset: upTo, recovered: true, publications });
}

/** Sends the subscribe's answer, then what arrived for the tab meanwhile. */
function settle(session, request, entry, result) {
  reply(session, request.id, result);
  entry.pending = false;
  for (const { offset, data } of entry.buffer.splice(0)) {
    if (offset > result.offset) post(session, { type: 'message', message: { push: 'publication', channel: request.channel, offset, data } });
  }
}
