// One channel as the application holds it, and its side of the protocol:
// subscribing with its position, recovering, and delivering each publication once.

import { Emitter } from './emitter.js';
import { RETRIABLE, TetherError } from './errors.js';
import { backoff } from './options.js';

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
    this._reconcile();
  }

  _setState(state, detail) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', { state, ...detail });
  }

  // -- the subscription's side of the protocol ------------------------------

  /** Brings the server's view to what the application wants, one request at a time. */
  _reconcile() {
    const client = this.client;
    if (this._inFlight || client.state !== 'connected' || !client._link) return;
    if (this._wanted && this._server !== 'subscribed') {
      const fields = { channel: this.channel };
      const recovering = this.epoch !== null;
      if (recovering) fields.recover = { offset: this.offset, epoch: this.epoch };
      this._request('subscribe', fields, recovering);
    } else if (!this._wanted && this._server === 'subscribed') {
      this._request('unsubscribe', { channel: this.channel }, false);
    } else if (!this._wanted && client._subscriptions.get(this.channel) === this) {
      // Nothing held on either side: a later subscribe makes a new one.
      client._subscriptions.delete(this.channel);
    }
  }

  _request(op, fields, recovering) {
    const client = this.client;
    const request = { id: client._nextId++, op, fields, link: null, timer: null, subscription: this, recovering };
    request.resolve = () => {};
    request.reject = () => {};
    this._inFlight = request;
    client._requests.set(request.id, request);
    client._sendRequest(request);
  }

  /** The server answered this subscription's request in flight. */
  _answered(request, message) {
    if (this._inFlight !== request) return;
    this._inFlight = null;
    const error = message.error;
    if (request.op === 'subscribe') {
      if (!error || error.code === 104) {
        this._server = 'subscribed';
        if (!error) this._subscribed(request, message.result);
      } else {
        this._emit('error', { type: 'subscribe', error: new TetherError(error.code, error.message) });
        if (RETRIABLE.has(error.code)) {
          const { options } = this.client;
          this._retryTimer = this.client._later(() => this._reconcile(), backoff(1, options, options.random));
          return;
        }
        this._wanted = false;
        this._setState('unsubscribed', { error: new TetherError(error.code, error.message) });
      }
    } else {
      // Unsubscribed (or never was: 105). A later subscribe starts afresh.
      this._server = 'none';
      this.offset = 0;
      this.epoch = null;
    }
    this._reconcile();
  }

  _subscribed(request, result) {
    const wanted = this._wanted;
    if (request.recovering && result.recovered) {
      this.epoch = result.epoch;
      for (const publication of result.publications ?? []) this._deliver(publication.offset, publication.data);
      this.offset = Math.max(this.offset, result.offset);
    } else {
      const lost = request.recovering;
      this.epoch = result.epoch;
      this.offset = result.offset;
      if (lost && wanted) this._emit('unrecovered', { channel: this.channel, epoch: result.epoch, offset: result.offset });
    }
    if (!wanted) return;
    this._setState('subscribed');
    this._emit('subscribed', {
      channel: this.channel,
      epoch: result.epoch,
      offset: result.offset,
      recovering: request.recovering,
      recovered: request.recovering ? result.recovered === true : false,
    });
  }

  /** A publication for this channel, delivered unless already seen. */
  _deliver(offset, data) {
    if (!this._wanted || this._server !== 'subscribed') return;
    // Exactly once, in order: a publication at or below the position was
    // delivered already (by the recovered reply, or on the previous link).
    if (offset !== undefined && offset <= this.offset) return;
    if (offset !== undefined) this.offset = offset;
    this._emit('publication', { channel: this.channel, offset, data });
  }
}
