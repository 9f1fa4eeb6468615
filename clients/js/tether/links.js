// Links: one connection over one transport. A link reports `open` (with the
// client id when the transport gives it), every message, its traffic, and
// `close` once; the client decides what happens next.

import { ErrorCode, TetherError } from './errors.js';

/** The server's endpoints, from the URL the application gave. */
export function endpoints(url) {
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
export class HttpLink {
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

export const LINKS = { websocket: WebSocketLink, sse: SseLink, longpoll: LongPollLink };
