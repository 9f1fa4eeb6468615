// Listeners by event name, for the client and its subscriptions.

/** Listeners by event name. */
export class Emitter {
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
