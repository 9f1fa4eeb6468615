// One connection per browser: the tabs of an origin share one client that
// runs in a SharedWorker (worker.js), so ten open tabs hold one WebSocket,
// not ten. The worker speaks the server's protocol to each tab over a
// MessagePort, so the tab's client runs unchanged on top of it: a tab opens a
// link to the worker as it would to the server, and resumes, de-duplicates
// and reconnects by the same rules.

import { newKey } from './options.js';

const WORKER = new URL('./worker.js', import.meta.url);
/** The tab-worker messages' version: a tab never talks to a worker of another. */
const VERSION = 1;

/** Options a worker cannot take: functions and injected implementations. */
const LOCAL_ONLY = ['getToken', 'random', 'WebSocket', 'fetch', 'shared'];

/**
 * Whether a client with `options` shares the browser's connection: it asked
 * to (the default), the browser has SharedWorker and Web Locks, the worker
 * script is of the page's origin, and nothing in its options is a function
 * the worker could not be given.
 */
export function canShare(options) {
  if (!options.shared || typeof globalThis.SharedWorker !== 'function' || !globalThis.navigator?.locks) return false;
  // A page without WebSocket (taken away to try the fallbacks) keeps its
  // own connection: the worker would have one.
  if (typeof globalThis.WebSocket !== 'function') return false;
  if (options.getToken || options.WebSocket || options.fetch || options.random !== Math.random) return false;
  return WORKER.origin === globalThis.location?.origin;
}

/** This tab's port to the shared worker, and the links opened through it. */
export class SharedPort {
  /**
   * @param {string} url the server, as the application gave it
   * @param {object} options the client's options
   */
  constructor(url, options) {
    const settings = Object.fromEntries(Object.entries(options).filter(([name]) => !LOCAL_ONLY.includes(name)));
    // One worker per server (and per version of this exchange): the name
    // keys it, with the script's URL.
    const worker = new globalThis.SharedWorker(WORKER, { type: 'module', name: `tether/${VERSION} ${url}` });
    this._port = worker.port;
    this._links = new Map();
    this._nextLink = 1;
    this._port.onmessage = (event) => this._receive(event.data);
    this._port.start();
    // The worker learns that this tab is gone when its lock is released,
    // which the browser does however the tab ends (closed, crashed, killed);
    // the hello goes only once the lock is held, so it is never early.
    const tab = newKey();
    this._ready = new Promise((held) => {
      globalThis.navigator.locks.request(`tether-tab-${tab}`, () => {
        held();
        return new Promise(() => {});
      });
    }).then(() => this._port.postMessage({ type: 'hello', tab, url, options: settings }));
  }

  /** A new link to the worker, reporting to `events` as a transport's link does. */
  link(events) {
    return new SharedLink(this, events);
  }

  _post(message) {
    this._ready.then(() => this._port.postMessage(message));
  }

  _receive(message) {
    const link = this._links.get(message.link);
    if (!link) return;
    if (message.type === 'open') {
      link.name = message.transport;
      link._events.open({ client: message.client });
    } else if (message.type === 'message') {
      link._events.traffic();
      link._events.message(message.message);
    } else if (message.type === 'close') {
      link.advice = message.advice;
      link._finish(message.code, message.reason);
    }
  }
}

/** A session with the worker: what a link to the server is, one hop shorter. */
class SharedLink {
  constructor(shared, events) {
    /** The worker's transport once open. */
    this.name = 'shared';
    this._shared = shared;
    this._events = events;
    this._closed = false;
    this._id = shared._nextLink++;
    shared._links.set(this._id, this);
    shared._post({ type: 'open', link: this._id });
  }

  send(requests) {
    if (!this._closed) this._shared._post({ type: 'send', link: this._id, requests });
  }

  close() {
    if (this._closed) return;
    this._shared._post({ type: 'close', link: this._id });
    this._finish(1000, 'closed by the client');
  }

  _finish(code, reason) {
    if (this._closed) return;
    this._closed = true;
    this._shared._links.delete(this._id);
    this._events.close({ code, reason });
  }
}
