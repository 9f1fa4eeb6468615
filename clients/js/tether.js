// tether: the JavaScript client for `tether serve`, for browsers and Node >= 20.
//
// One ES module, no dependencies. It speaks the server's JSON protocol
// (docs/PROTOCOL.md) over WebSocket, Server-Sent Events or long-polling, and
// keeps what an application would otherwise write by hand: reconnecting with
// backoff and jitter, resubscribing every channel from its last offset and
// epoch, delivering each publication once and in order, refreshing tokens,
// falling back when WebSocket is blocked and moving back when it returns.
// Types: tether.d.ts. Guide: README.md.

/** Client-side error codes; the server's own start at 100. */
export const ErrorCode = Object.freeze({
  /** The client is disconnected (never connected, or `disconnect()` was called). */
  NOT_CONNECTED: 1,
  /** No reply within the request's timeout. */
  TIMEOUT: 2,
  /** The offline queue of publishes is full. */
  QUEUE_FULL: 3,
  /** The subscription was ended before its request could be sent. */
  UNSUBSCRIBED: 4,
});

/** Server error codes that a client should retry after a pause. */
const RETRIABLE = new Set([109, 112]);

/** An error answered by the server (codes 100 and up) or raised by the client (1-4). */
export class TetherError extends Error {
  /**
   * @param {number} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = 'TetherError';
    this.code = code;
  }
}

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
function newKey() {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Seconds since the epoch at which a JWT expires, or null when it has no `exp`. */
function tokenExpiry(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    return typeof claims.exp === 'number' ? claims.exp : null;
  } catch {
    return null;
  }
}

/** Listeners by event name. */
class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /**
   * Calls `listener` on every `event`; returns a function that stops it.
   * @param {string} event
   * @param {Function} listener
   */
  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(listener);
    return () => this.off(event, listener);
  }

  /** Stops calling `listener` on `event`. */
  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
  }

  _emit(event, payload) {
    for (const listener of [...(this._listeners.get(event) ?? [])]) {
      try {
        listener(payload);
      } catch (error) {
        // An application's handler must not break delivery to the others.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Links: one connection over one transport. A link reports `open` (with the
// client id when the transport gives it), every message, its traffic, and
// `close` once; the client decides what happens next.

/** The server's endpoints, from the URL the application gave. */
function endpoints(url) {
  const base = new URL(url);
  base.protocol = base.protocol.replace(/^ws/, 'http');
  const path = base.pathname.replace(/\/connection\/websocket\/?$/, '').replace(/\/$/, '');
  const http = `${base.origin}${path}`;
  return {
    websocket: `${http.replace(/^http/, 'ws')}/connection/websocket`,
    sse: `${http}/connection/sse`,
    longpoll: `${http}/connection/longpoll`,
    session: `${http}/connection/session`,
  };
}

class WebSocketLink {
  constructor(urls, options, events) {
    this.name = 'websocket';
    this._events = events;
    this._closed = false;
    const Impl = options.WebSocket ?? globalThis.WebSocket;
    if (!Impl) throw new TetherError(ErrorCode.NOT_CONNECTED, 'no WebSocket in this environment');
    this._ws = new Impl(urls.websocket);
    this._ws.onopen = () => events.open({});
    this._ws.onmessage = (event) => {
      events.traffic();
      if (typeof event.data !== 'string') return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return this.close();
      }
      events.message(message);
    };
    this._ws.onclose = (event) => this._finish(event.code, event.reason);
    // An error ends the link: some implementations (Node 20's) report a
    // failed opening with an error and never a close.
    this._ws.onerror = () => {
      this._finish(1006, 'network error');
      try {
        this._ws.close();
      } catch {
        // Not open yet: nothing to close.
      }
    };
  }

  send(requests) {
    for (const request of requests) this._ws.send(JSON.stringify(request));
  }

  close() {
    try {
      this._ws.close(1000);
    } catch {
      // Closing a socket that never opened may throw; it is gone either way.
    }
    this._finish(1000, 'closed by the client');
  }

  _finish(code, reason) {
    if (this._closed) return;
    this._closed = true;
    this._events.close({ code, reason });
  }
}

/** What the SSE and long-poll links share: a session key and POSTed requests. */
class HttpLink {
  constructor(urls, options, events) {
    this._urls = urls;
    this._events = events;
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this._abort = new AbortController();
    this._closed = false;
    this.session = null;
    /** Requests waiting for the POST in flight, sent in order. */
    this._outbox = [];
    this._posting = false;
  }

  send(requests) {
    this._outbox.push(...requests);
    if (!this._posting) this._post();
  }

  async _post() {
    this._posting = true;
    while (this._outbox.length && !this._closed) {
      const batch = this._outbox.splice(0);
      try {
        const answer = await this._fetch(`${this._urls.session}/${this.session}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify(batch),
          signal: this._abort.signal,
        });
        if (answer.status === 404) return this._finish(4002, 'session expired');
        if (!answer.ok) return this._finish(1006, `requests refused with ${answer.status}`);
      } catch {
        // Whether the requests arrived is unknown: the link is replaced and
        // the client sends them again (publishes keep their idempotency keys).
        return this._finish(1006, 'requests could not be sent');
      }
    }
    this._posting = false;
  }

  close() {
    if (this._closed) return;
    if (this.session) {
      // The session leaves its channels now rather than after its ttl.
      this._fetch(`${this._urls.session}/${this.session}`, { method: 'DELETE' }).catch(() => {});
    }
    this._finish(1000, 'closed by the client');
  }

  _finish(code, reason) {
    if (this._closed) return;
    this._closed = true;
    this._abort.abort();
    this._events.close({ code, reason });
  }
}

/** Server-Sent Events read through fetch, which works in browsers and Node alike. */
class SseLink extends HttpLink {
  constructor(urls, options, events) {
    super(urls, options, events);
    this.name = 'sse';
    this._lastEventId = null;
    this._stream(0);
  }

  async _stream(retries) {
    const headers = { Accept: 'text/event-stream' };
    if (this._lastEventId) headers['Last-Event-ID'] = this._lastEventId;
    let answer;
    try {
      answer = await this._fetch(this._urls.sse, { headers, signal: this._abort.signal });
    } catch {
      return this._retry(retries);
    }
    if (!answer.ok || !answer.body) {
      return this._finish(answer.status === 404 ? 4002 : 1006, `stream refused with ${answer.status}`);
    }
    const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let event = { name: '', data: [], id: null };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this._events.traffic();
        buffer += value;
        let newline;
        while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
          if (line === '') {
            if (event.data.length && !this._dispatch(event)) return;
            event = { name: '', data: [], id: null };
            continue;
          }
          const colon = line.indexOf(':');
          if (colon === 0) continue; // a comment: the server's heartbeat
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') event.name = value;
          else if (field === 'data') event.data.push(value);
          else if (field === 'id') event.id = value;
        }
        retries = 0;
      }
    } catch {
      // The stream broke: resumed below from the last event id.
    }
    if (!this._closed) this._retry(retries);
  }

  /** Handles one event; false once the link is over. */
  _dispatch(event) {
    const data = JSON.parse(event.data.join('\n'));
    if (event.name === 'session') {
      if (this.session && this.session !== data.session) {
        // The old session expired and the server opened a new one: its
        // subscriptions are gone, so the client starts over on a new link.
        this.session = data.session;
        this.close();
        return false;
      }
      if (!this.session) {
        this.session = data.session;
        this._events.open({ client: data.client });
      }
      return true;
    }
    if (event.id) this._lastEventId = event.id;
    this._events.message(data);
    return !this._closed;
  }

  _retry(retries) {
    if (this._closed) return;
    if (retries >= 3 || !this.session) return this._finish(1006, 'stream lost');
    setTimeout(() => this._stream(retries + 1), 100 * 2 ** retries);
  }
}

/** Long-polling: one held GET at a time, acknowledging by cursor. */
class LongPollLink extends HttpLink {
  constructor(urls, options, events) {
    super(urls, options, events);
    this.name = 'longpoll';
    this._cursor = 0;
    this._open();
  }

  async _open() {
    try {
      const answer = await this._fetch(this._urls.longpoll, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: '[]',
        signal: this._abort.signal,
      });
      if (!answer.ok) return this._finish(1006, `session refused with ${answer.status}`);
      const opened = await answer.json();
      this.session = opened.session;
      this._events.open({ client: opened.client });
    } catch {
      return this._finish(1006, 'session could not be opened');
    }
    this._poll(0);
  }

  async _poll(retries) {
    while (!this._closed) {
      let answer;
      try {
        const reply = await this._fetch(`${this._urls.longpoll}/${this.session}?cursor=${this._cursor}`, {
          signal: this._abort.signal,
          cache: 'no-store',
        });
        if (reply.status === 404) return this._finish(4002, 'session expired');
        if (!reply.ok) throw new Error(`poll answered ${reply.status}`);
        answer = await reply.json();
      } catch {
        if (this._closed) return;
        // A lost answer is sent again by the next poll with the same cursor.
        if (retries >= 3) return this._finish(1006, 'polls failing');
        await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** retries));
        retries += 1;
        continue;
      }
      retries = 0;
      this._events.traffic();
      const first = answer.cursor - answer.messages.length + 1;
      answer.messages.forEach((message, i) => {
        if (first + i > this._cursor && !this._closed) this._events.message(message);
      });
      this._cursor = Math.max(this._cursor, answer.cursor);
      if (answer.ended) return this._finish(1000, 'session ended');
    }
  }
}

const LINKS = { websocket: WebSocketLink, sse: SseLink, longpoll: LongPollLink };

// ---------------------------------------------------------------------------

/**
 * One channel, as the application sees it: its handlers, its state, and the
 * position (offset and epoch) it resumes from. `client.subscribe` returns the
 * same object for the same channel while it exists.
 */
export class Subscription extends Emitter {
  constructor(client, channel) {
    super();
    this.client = client;
    this.channel = channel;
    /** @type {'unsubscribed' | 'subscribing' | 'subscribed'} */
    this.state = 'unsubscribed';
    /** The newest offset delivered (0: none yet). */
    this.offset = 0;
    /** The channel's epoch as last seen (null: not yet). */
    this.epoch = null;
    /** Whether the application wants this subscription. */
    this._wanted = false;
    /** What the server holds: 'none' | 'subscribed'. */
    this._server = 'none';
    /** The subscribe or unsubscribe request in flight, if any. */
    this._inFlight = null;
    /** Handlers given to `subscribe`, removed by `unsubscribe`. */
    this._handlerOffs = [];
    this._retryTimer = null;
  }

  /** Publishes `data` on this channel (see `Client.publish`). */
  publish(data, options) {
    return this.client.publish(this.channel, data, options);
  }

  /** The channel's present clients: `{clients: [{client, user?}]}`. */
  presence() {
    return this.client.presence(this.channel);
  }

  /** The channel's history: `{epoch, offset, publications: [{offset, data}]}`. */
  history(options) {
    return this.client.history(this.channel, options);
  }

  /**
   * Leaves the channel and removes the handlers given to `subscribe`. Safe to
   * call any number of times, and before the subscribe finished.
   */
  unsubscribe() {
    for (const off of this._handlerOffs.splice(0)) off();
    this._wanted = false;
    this._setState('unsubscribed');
    this.client._reconcile(this);
  }

  _setState(state, detail) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', { state, ...detail });
  }
}

/** The tether client: one connection to `tether serve`, over the best transport that works. */
export class Client extends Emitter {
  /**
   * @param {string} [url] the server, e.g. `https://example.com` or `ws://127.0.0.1:8080`;
   *   in a browser, the page's origin by default
   * @param {Partial<typeof DEFAULTS>} [options]
   */
  constructor(url, options = {}) {
    super();
    this.options = { ...DEFAULTS, ...options };
    for (const name of this.options.transports) {
      if (!LINKS[name]) throw new TypeError(`unknown transport ${name}`);
    }
    this._urls = endpoints(url ?? globalThis.location?.origin);
    /** @type {'disconnected' | 'connecting' | 'connected'} */
    this.state = 'disconnected';
    /** The transport in use while connected. */
    this.transport = null;
    /** The server's id for this connection, as presence shows it. */
    this.clientId = null;
    /** @type {Map<string, Subscription>} */
    this._subscriptions = new Map();
    /** Requests by id, until answered. */
    this._requests = new Map();
    this._nextId = 1;
    this._link = null;
    this._generation = 0;
    this._attempt = 0;
    this._transportIndex = 0;
    this._timers = new Set();
    this._reconnectTimer = null;
    this._heartbeatTimer = null;
    this._stableTimer = null;
    this._refreshTimer = null;
    this._probe = null;
    this._probeAttempt = 0;
    this._token = this.options.token;
    this._browserHooks = null;
  }

  /** Starts connecting (and reconnecting) until `disconnect()`. Idempotent. */
  connect() {
    if (this.state !== 'disconnected') return;
    this._hookBrowser();
    this._attempt = 0;
    this._transportIndex = 0;
    this._open();
  }

  /** Closes the connection and stops reconnecting; pending requests are rejected. */
  disconnect() {
    this._stop({ code: 1000, reason: 'disconnected by the client', reconnect: false });
  }

  /**
   * The subscription to `channel`, wanted from now on, with `handlers` (event
   * name → listener: `publication`, `subscribed`, `unrecovered`, `join`,
   * `leave`, `error`, `state`) attached until it is unsubscribed. Subscribing
   * to a channel already wanted is not an error: the same subscription comes
   * back, with the new handlers added.
   * @param {string} channel
   * @param {Record<string, Function>} [handlers]
   */
  subscribe(channel, handlers = {}) {
    let subscription = this._subscriptions.get(channel);
    if (!subscription) {
      subscription = new Subscription(this, channel);
      this._subscriptions.set(channel, subscription);
    }
    for (const [event, listener] of Object.entries(handlers)) {
      subscription._handlerOffs.push(subscription.on(event, listener));
    }
    if (!subscription._wanted) {
      subscription._wanted = true;
      if (subscription._server === 'subscribed' && !subscription._inFlight) {
        subscription._setState('subscribed');
      } else {
        subscription._setState('subscribing');
      }
      this._reconcile(subscription);
    }
    return subscription;
  }

  /** The subscription to `channel`, if one was made. */
  getSubscription(channel) {
    return this._subscriptions.get(channel) ?? null;
  }

  /**
   * Publishes `data` on `channel`; resolves with the server's `{offset, epoch}`,
   * rejects with a `TetherError`. Every publish carries an idempotency key (one
   * of its own unless `options.idempotencyKey` is given), so the client can send
   * it again after a lost link without it being delivered twice.
   * @param {string} channel
   * @param {unknown} data
   * @param {{idempotencyKey?: string, key?: string}} [options]
   */
  publish(channel, data, options = {}) {
    const fields = { channel, data, idempotency_key: options.idempotencyKey ?? newKey() };
    if (options.key !== undefined) fields.key = options.key;
    return this._call('publish', fields, { queueable: true });
  }

  /** The channel's present clients: `{clients: [{client, user?}]}`. */
  presence(channel) {
    return this._call('presence', { channel });
  }

  /** The channel's history: `{epoch, offset, publications}`, newest `limit` if given. */
  history(channel, options = {}) {
    const fields = { channel };
    if (options.limit !== undefined) fields.limit = options.limit;
    return this._call('history', fields);
  }

  // -- requests ------------------------------------------------------------

  _call(op, fields, { queueable = false, internal = false } = {}) {
    if (this.state === 'disconnected' && !internal) {
      return Promise.reject(new TetherError(ErrorCode.NOT_CONNECTED, 'the client is disconnected'));
    }
    return new Promise((resolve, reject) => {
      const request = { id: this._nextId++, op, fields, resolve, reject, link: null, timer: null, internal };
      const queued = queueable && this.options.offlineQueue > 0 && this.state !== 'connected';
      if (queued) {
        const waiting = [...this._requests.values()].filter((r) => r.queued).length;
        if (waiting >= this.options.offlineQueue) {
          reject(new TetherError(ErrorCode.QUEUE_FULL, `the offline queue holds ${waiting} publishes already`));
          return;
        }
        request.queued = true;
      } else if (!internal) {
        request.timer = this._later(() => {
          this._requests.delete(request.id);
          reject(new TetherError(ErrorCode.TIMEOUT, `no reply to ${op} within ${this.options.timeout} ms`));
        }, this.options.timeout);
      }
      this._requests.set(request.id, request);
      if (this.state === 'connected' || internal) this._sendRequest(request);
    });
  }

  _sendRequest(request, link = this._link) {
    request.link = link;
    link.send([{ id: request.id, op: request.op, ...request.fields }]);
  }

  _settle(id, message) {
    const request = this._requests.get(id);
    if (!request) return null;
    this._requests.delete(id);
    this._clearTimer(request.timer);
    if (message.error) request.reject(new TetherError(message.error.code, message.error.message));
    else request.resolve(message.result);
    return request;
  }

  // -- the link's life -----------------------------------------------------

  async _open() {
    const generation = ++this._generation;
    this._setState('connecting');
    if (this.options.getToken) {
      try {
        this._token = await this.options.getToken();
      } catch (error) {
        if (generation !== this._generation) return;
        this._emit('error', { type: 'token', error });
        return this._scheduleReconnect({ code: 0, reason: 'getToken failed', reconnect: true });
      }
      if (generation !== this._generation) return;
    }
    const name = this.options.transports[this._transportIndex];
    let opened = false;
    let link;
    const events = {
      open: (info) => {
        if (generation !== this._generation) return;
        opened = true;
        this._onOpen(link, info);
      },
      message: (message) => generation === this._generation && this._onMessage(link, message),
      traffic: () => generation === this._generation && this._traffic(),
      close: (close) => {
        if (generation !== this._generation) return;
        this._onClose(link, close, opened);
      },
    };
    try {
      link = new LINKS[name](this._urls, this.options, events);
    } catch (error) {
      this._emit('error', { type: 'transport', transport: name, error });
      return this._onClose(null, { code: 1006, reason: String(error) }, false);
    }
    this._link = link;
  }

  _onOpen(link, info) {
    this._traffic();
    // `connect` goes first: its token governs what follows.
    const connecting = this._call('connect', this._token ? { token: this._token } : {}, { internal: true });
    connecting.then(
      (result) => {
        if (link !== this._link) return;
        this.clientId = result.client ?? info.client ?? null;
        this.transport = link.name;
        this._setState('connected');
        this._emit('connected', { transport: link.name, client: this.clientId, user: result.user ?? null });
        this._stableTimer = this._later(() => {
          this._attempt = 0;
        }, this.options.stableAfter);
        this._scheduleRefresh();
        this._resume(link);
        if (this._transportIndex > 0) this._scheduleProbe();
      },
      (error) => {
        if (link !== this._link) return;
        if (error.code === 111) {
          this._stop({ code: 111, reason: `unauthorized: ${error.message}`, reconnect: false });
        } else {
          link.close();
        }
      },
    );
  }

  /** After (re)connecting: every wanted channel, then every unanswered request. */
  _resume(link) {
    for (const subscription of this._subscriptions.values()) this._reconcile(subscription);
    const unanswered = [...this._requests.values()].filter((r) => r.link !== link && !r.internal);
    unanswered.sort((a, b) => a.id - b.id);
    for (const request of unanswered) {
      request.queued = false;
      if (!request.timer && !request.subscription) {
        // A queued publish waits no longer than any other request from now.
        request.timer = this._later(() => {
          this._requests.delete(request.id);
          request.reject(new TetherError(ErrorCode.TIMEOUT, `no reply to ${request.op}`));
        }, this.options.timeout);
      }
      if (!request.subscription) this._sendRequest(request, link);
    }
  }

  _onMessage(link, message) {
    if (message.id !== undefined) {
      if (message.id === 0) {
        this._emit('error', { type: 'protocol', error: new TetherError(message.error?.code ?? 100, message.error?.message ?? 'bad request') });
        return;
      }
      const request = this._settle(message.id, message);
      if (request?.subscription) this._answered(request.subscription, request, message);
      return;
    }
    switch (message.push) {
      case 'publication':
        return this._deliver(this._subscriptions.get(message.channel), message.offset, message.data);
      case 'join':
      case 'leave': {
        const subscription = this._subscriptions.get(message.channel);
        if (subscription?._wanted) subscription._emit(message.push, { client: message.client, user: message.user ?? null });
        return;
      }
      case 'disconnect':
        // The server's last word: its code and advice decide what comes next.
        // An HTTP session is over with it; a WebSocket's close follows.
        link.advice = message;
        if (link instanceof HttpLink) link._finish(message.code, message.reason);
        return;
      default:
    }
  }

  _deliver(subscription, offset, data) {
    if (!subscription || !subscription._wanted || subscription._server !== 'subscribed') return;
    // Exactly once, in order: a publication at or below the position was
    // delivered already (by the recovered reply, or on the previous link).
    if (offset !== undefined && offset <= subscription.offset) return;
    if (offset !== undefined) subscription.offset = offset;
    subscription._emit('publication', { channel: subscription.channel, offset, data });
  }

  _onClose(link, close, opened) {
    if (link && link !== this._link) return;
    this._link = null;
    this._clearTimer(this._stableTimer);
    this._clearTimer(this._heartbeatTimer);
    this._clearTimer(this._refreshTimer);
    this._cancelProbe();
    const advice = link?.advice;
    const code = advice?.code ?? close.code;
    const reason = advice?.reason ?? close.reason ?? '';
    // 4500-4999: the server says not to reconnect as is.
    const reconnect = advice ? advice.reconnect !== false : !(code >= 4500 && code <= 4999);
    this._forgetLink();
    if (!opened && this._transportIndex + 1 < this.options.transports.length && this.state !== 'connected') {
      // This transport does not get through: the next one is tried at once.
      this._transportIndex += 1;
      this._emit('error', { type: 'transport', transport: link?.name, error: new Error(reason) });
      if (this.state !== 'disconnected') this._open();
      return;
    }
    if (!reconnect) return this._stop({ code, reason, reconnect: false });
    this._emit('disconnected', { code, reason, reconnect: true });
    if (!opened) this._transportIndex = 0;
    this._scheduleReconnect({ code, reason, reconnect: true }, advice?.reconnect_after_ms);
  }

  _scheduleReconnect(detail, advised) {
    this._setState('connecting');
    const delay = advised ?? backoff(this._attempt, this.options, this.options.random);
    const attempt = ++this._attempt;
    this._emit('reconnecting', { attempt, delay, code: detail.code, reason: detail.reason });
    this._clearTimer(this._reconnectTimer);
    this._reconnectTimer = this._later(() => this._open(), delay);
  }

  /** Reconnects now if waiting to: the network came back, or the page woke up. */
  _reconnectNow() {
    if (this.state === 'connecting' && this._reconnectTimer && !this._link) {
      this._clearTimer(this._reconnectTimer);
      this._reconnectTimer = null;
      this._attempt = 0;
      this._open();
    } else if (this.state === 'connected') {
      this._ping();
    }
  }

  _stop(detail) {
    const wasConnected = this.state !== 'disconnected';
    this._generation += 1;
    for (const timer of this._timers) clearTimeout(timer);
    this._timers.clear();
    this._reconnectTimer = null;
    this._cancelProbe();
    const link = this._link;
    this._link = null;
    link?.close();
    this.transport = null;
    this._forgetLink();
    const requests = [...this._requests.values()];
    this._requests.clear();
    for (const request of requests) {
      if (!request.subscription) request.reject(new TetherError(ErrorCode.NOT_CONNECTED, detail.reason));
    }
    this._unhookBrowser();
    this._setState('disconnected');
    if (wasConnected) this._emit('disconnected', detail);
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', { state });
    if (state === 'connecting') this._emit('connecting', {});
  }

  // -- heartbeat -----------------------------------------------------------

  /** Any traffic proves the link alive; silence past the ping interval is checked with a ping. */
  _traffic() {
    this._clearTimer(this._heartbeatTimer);
    this._heartbeatTimer = this._later(() => this._ping(), this.options.pingInterval);
  }

  _ping() {
    const link = this._link;
    if (!link) return;
    this._clearTimer(this._heartbeatTimer);
    // Any traffic (not only the answer) resets this timer.
    this._heartbeatTimer = this._later(() => {
      if (link !== this._link) return;
      // Dead: replaced at once, and its own close (whenever the network
      // delivers it) is no longer news.
      this._onClose(link, { code: 4002, reason: 'no traffic within the heartbeat' }, true);
      this._drop(link);
    }, this.options.pingTimeout);
    this._call('ping', {}, { internal: true }).catch(() => {});
  }

  /** Closes a link the client has given up on, quietly: its close is not news. */
  _drop(link) {
    try {
      link.close();
    } catch {
      // Already gone.
    }
  }

  // -- subscriptions -------------------------------------------------------

  /** Brings the server's view of `subscription` to what the application wants, one request at a time. */
  _reconcile(subscription) {
    if (subscription._inFlight || this.state !== 'connected' || !this._link) return;
    if (subscription._wanted && subscription._server !== 'subscribed') {
      const fields = { channel: subscription.channel };
      const recovering = subscription.epoch !== null;
      if (recovering) fields.recover = { offset: subscription.offset, epoch: subscription.epoch };
      this._subscriptionRequest(subscription, 'subscribe', fields, recovering);
    } else if (!subscription._wanted && subscription._server === 'subscribed') {
      this._subscriptionRequest(subscription, 'unsubscribe', { channel: subscription.channel }, false);
    } else if (!subscription._wanted && this._subscriptions.get(subscription.channel) === subscription) {
      // Nothing held on either side: a later subscribe makes a new one.
      this._subscriptions.delete(subscription.channel);
    }
  }

  _subscriptionRequest(subscription, op, fields, recovering) {
    const request = { id: this._nextId++, op, fields, link: null, timer: null, subscription, recovering };
    request.resolve = () => {};
    request.reject = () => {};
    subscription._inFlight = request;
    this._requests.set(request.id, request);
    this._sendRequest(request);
  }

  _answered(subscription, request, message) {
    if (subscription._inFlight !== request) return;
    subscription._inFlight = null;
    const error = message.error;
    if (request.op === 'subscribe') {
      if (!error || error.code === 104) {
        subscription._server = 'subscribed';
        if (!error) this._subscribed(subscription, request, message.result);
      } else {
        subscription._emit('error', { type: 'subscribe', error: new TetherError(error.code, error.message) });
        if (RETRIABLE.has(error.code)) {
          subscription._retryTimer = this._later(() => this._reconcile(subscription), backoff(1, this.options, this.options.random));
          return;
        }
        subscription._wanted = false;
        subscription._setState('unsubscribed', { error: new TetherError(error.code, error.message) });
      }
    } else {
      // Unsubscribed (or never was: 105). A later subscribe starts afresh.
      subscription._server = 'none';
      subscription.offset = 0;
      subscription.epoch = null;
    }
    this._reconcile(subscription);
  }

  _subscribed(subscription, request, result) {
    const wanted = subscription._wanted;
    if (request.recovering && result.recovered) {
      subscription.epoch = result.epoch;
      for (const publication of result.publications ?? []) {
        this._deliver(subscription, publication.offset, publication.data);
      }
      subscription.offset = Math.max(subscription.offset, result.offset);
    } else {
      const lost = request.recovering;
      subscription.epoch = result.epoch;
      subscription.offset = result.offset;
      if (lost && wanted) {
        subscription._emit('unrecovered', { channel: subscription.channel, epoch: result.epoch, offset: result.offset });
      }
    }
    if (!wanted) return;
    subscription._setState('subscribed');
    subscription._emit('subscribed', {
      channel: subscription.channel,
      epoch: result.epoch,
      offset: result.offset,
      recovering: request.recovering,
      recovered: request.recovering ? result.recovered === true : false,
    });
  }

  // -- tokens --------------------------------------------------------------

  _scheduleRefresh() {
    if (!this.options.getToken || !this._token) return;
    const expiry = tokenExpiry(this._token);
    if (expiry === null) return;
    const lifetime = expiry * 1000 - Date.now();
    const margin = Math.min(this.options.tokenRefreshMargin, lifetime / 2);
    this._refreshTimer = this._later(() => this._refreshToken(0), Math.max(0, lifetime - margin));
  }

  async _refreshToken(failures) {
    const link = this._link;
    let token;
    try {
      token = await this.options.getToken();
    } catch (error) {
      if (link !== this._link) return;
      this._emit('error', { type: 'token', error });
      this._refreshTimer = this._later(() => this._refreshToken(failures + 1), backoff(failures, this.options, this.options.random));
      return;
    }
    if (link !== this._link || !link) return;
    this._token = token;
    try {
      await this._call('connect', { token }, { internal: true });
    } catch (error) {
      if (link !== this._link) return;
      if (error.code === 111) this._stop({ code: 111, reason: `unauthorized: ${error.message}`, reconnect: false });
      return;
    }
    this._scheduleRefresh();
  }

  // -- transport probes ----------------------------------------------------

  /** On a fallback transport: tries the preferred one now and then, and moves back when it works. */
  _scheduleProbe() {
    const delay = Math.min(this.options.maxProbeInterval, this.options.probeInterval * 2 ** this._probeAttempt);
    this._probe = { timer: this._later(() => this._runProbe(), delay), link: null };
  }

  _runProbe() {
    const name = this.options.transports[0];
    const generation = this._generation;
    let link;
    const give = () => {
      this._probeAttempt += 1;
      if (this._probe?.link === link) this._probe = null;
      if (generation === this._generation && this.state === 'connected') this._scheduleProbe();
    };
    const events = {
      open: () => {
        if (generation !== this._generation || this.state !== 'connected') return this._drop(link);
        this._probeAttempt = 0;
        this._probe = null;
        this._switchTo(link, name);
      },
      message: (message) => {
        if (this._link === link) this._onMessage(link, message);
      },
      traffic: () => this._link === link && this._traffic(),
      close: (close) => {
        if (this._link === link) this._onClose(link, close, true);
        else give();
      },
    };
    try {
      link = new LINKS[name](this._urls, this.options, events);
      this._probe.link = link;
    } catch {
      give();
    }
  }

  /** Makes `link` the connection: connected afresh there, subscriptions recovered from their offsets. */
  _switchTo(link, name) {
    const old = this._link;
    // The old link's events are ignored from now (they check the generation).
    this._generation += 1;
    this._transportIndex = this.options.transports.indexOf(name);
    this._link = link;
    this._clearTimer(this._refreshTimer);
    this._clearTimer(this._stableTimer);
    this._forgetLink();
    this._setState('connecting');
    this._onOpen(link, {});
    if (old) this._drop(old);
  }

  /** What the server held for the link that is gone: its subscriptions and its answers. */
  _forgetLink() {
    for (const subscription of this._subscriptions.values()) {
      subscription._server = 'none';
      subscription._inFlight = null;
      if (subscription._wanted) subscription._setState('subscribing');
    }
    for (const request of this._requests.values()) {
      if (request.internal || request.subscription) {
        this._requests.delete(request.id);
        this._clearTimer(request.timer);
      }
    }
  }

  _cancelProbe() {
    if (!this._probe) return;
    this._clearTimer(this._probe.timer);
    if (this._probe.link) this._drop(this._probe.link);
    this._probe = null;
  }

  // -- timers and the browser ----------------------------------------------

  _later(fn, ms) {
    const timer = setTimeout(() => {
      this._timers.delete(timer);
      fn();
    }, ms);
    this._timers.add(timer);
    return timer;
  }

  _clearTimer(timer) {
    if (timer === null || timer === undefined) return;
    clearTimeout(timer);
    this._timers.delete(timer);
  }

  _hookBrowser() {
    const win = globalThis.window;
    const doc = globalThis.document;
    if (!win?.addEventListener || this._browserHooks) return;
    const online = () => this._reconnectNow();
    const visible = () => {
      if (doc.visibilityState === 'visible') this._reconnectNow();
    };
    win.addEventListener('online', online);
    doc?.addEventListener('visibilitychange', visible);
    this._browserHooks = () => {
      win.removeEventListener('online', online);
      doc?.removeEventListener('visibilitychange', visible);
    };
  }

  _unhookBrowser() {
    this._browserHooks?.();
    this._browserHooks = null;
  }
}
