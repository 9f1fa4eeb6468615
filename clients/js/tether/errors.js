// What goes wrong, numbered: the client's own codes and the server's.

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
export const RETRIABLE = new Set([109, 112]);

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
