// The client: one connection to `tether serve` over the best transport that
// works, with its requests, reconnects, heartbeat, tokens and transport probes.

import { Emitter } from './emitter.js';
import { ErrorCode, TetherError } from './errors.js';
import { HttpLink, LINKS, endpoints } from './links.js';
import { DEFAULTS, backoff, newKey, tokenExpiry } from './options.js';
import { SharedPort, canShare } from './shared.js';
import { Subscription } from './subscription.js';

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
    this._url = url ?? globalThis.location?.origin;
    this._urls = endpoints(this._url);
    /** The port to the shared worker, once made; null while the client is not shared. */
    this._sharing = null;
    this._shares = canShare(this.options);
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
      subscription._reconcile();
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
      if (this._shares) {
        this._sharing ??= new SharedPort(this._url, this.options);
        link = this._sharing.link(events);
      } else {
        link = new LINKS[name](this._urls, this.options, events);
      }
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
    for (const subscription of this._subscriptions.values()) subscription._reconcile();
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
      request?.subscription?._answered(request, message);
      return;
    }
    switch (message.push) {
      case 'publication':
        return this._subscriptions.get(message.channel)?._deliver(message.offset, message.data);
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
    // (A shared client's worker does its own falling back.)
    if (!opened && !this._shares && this._transportIndex + 1 < this.options.transports.length && this.state !== 'connected') {
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
