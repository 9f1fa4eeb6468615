// Types of tether.js, the JavaScript client for `tether serve`. The wire types
// at the end follow docs/protocol.schema.json; test/types.test.mjs checks them
// against it with the TypeScript compiler.

/** Client-side error codes; the server's own start at 100 (docs/PROTOCOL.md). */
export declare const ErrorCode: Readonly<{
  NOT_CONNECTED: 1;
  TIMEOUT: 2;
  QUEUE_FULL: 3;
  UNSUBSCRIBED: 4;
}>;

/** An error answered by the server (codes 100 and up) or raised by the client (1-4). */
export declare class TetherError extends Error {
  constructor(code: number, message: string);
  readonly code: number;
}

/** A transport's name. */
export type Transport = 'websocket' | 'sse' | 'longpoll';

/** The transports, in the default order of preference. */
export declare const TRANSPORTS: readonly Transport[];

/** Options of `new Client(url, options)`; every one has a default. */
export interface ClientOptions {
  /** Transports to try, in order. Default: websocket, sse, longpoll. */
  transports: readonly Transport[];
  /** A fixed token (JWT) sent in `connect`. */
  token: string | null;
  /** Called for a token at every connect and before the token expires. */
  getToken: (() => Promise<string> | string) | null;
  /** Smallest reconnect delay, ms. Default 500. */
  minReconnectDelay: number;
  /** Largest reconnect delay, ms. Default 20000. */
  maxReconnectDelay: number;
  /** Connected this long, ms, the backoff starts again from its minimum. Default 10000. */
  stableAfter: number;
  /** Silence on the link for this long, ms, and the client pings. Default 25000. */
  pingInterval: number;
  /** No traffic this long after the ping, ms, and the link counts as dead. Default 10000. */
  pingTimeout: number;
  /** How long a request waits for its reply, ms. Default 10000. */
  timeout: number;
  /** Publishes kept while offline and sent in order after reconnect; 0 (default): none. */
  offlineQueue: number;
  /** First delay before probing the preferred transport after a fallback, ms. Default 10000. */
  probeInterval: number;
  /** Largest delay between probes, ms. Default 300000. */
  maxProbeInterval: number;
  /** Refresh a token this long before it expires, ms (at most half its life). Default 30000. */
  tokenRefreshMargin: number;
  /** Numbers in [0, 1) for the jitter; `seededRandom(n)` makes it reproducible. */
  random: () => number;
  /** A WebSocket constructor, where the environment has none (or to wrap it). */
  WebSocket: (new (url: string) => WebSocket) | null;
  /** A fetch function for the HTTP transports. */
  fetch: typeof fetch | null;
  /**
   * Share one connection among the tabs of this origin through a
   * SharedWorker, where the browser has one (and Web Locks) and the client
   * has no `getToken`, `random`, `WebSocket` or `fetch` of its own. Default true.
   */
  shared: boolean;
}

/** The client's defaults. */
export declare const DEFAULTS: Readonly<ClientOptions>;

/** The reconnect delay for `attempt` (from 0): exponential backoff with full jitter. */
export declare function backoff(
  attempt: number,
  bounds: Pick<ClientOptions, 'minReconnectDelay' | 'maxReconnectDelay'>,
  random?: () => number,
): number;

/** A seeded generator of numbers in [0, 1). */
export declare function seededRandom(seed: number): () => number;

/** What a listener returns to stop listening. */
export type Unlisten = () => void;

/** The client's state. */
export type ClientState = 'disconnected' | 'connecting' | 'connected';

/** The client's events and what each carries. */
export interface ClientEvents {
  state: { state: ClientState };
  connecting: Record<string, never>;
  connected: { transport: Transport; client: string | null; user: string | null };
  disconnected: { code: number; reason: string; reconnect: boolean };
  reconnecting: { attempt: number; delay: number; code: number; reason: string };
  error: { type: 'token' | 'transport' | 'protocol'; transport?: Transport; error: unknown };
}

/** A publication as delivered: each offset once, in order. */
export interface Publication<T = unknown> {
  channel: string;
  offset: number;
  data: T;
}

/** The subscription's state. */
export type SubscriptionState = 'unsubscribed' | 'subscribing' | 'subscribed';

/** A subscription's events and what each carries. */
export interface SubscriptionEvents {
  publication: Publication;
  subscribed: { channel: string; epoch: string; offset: number; recovering: boolean; recovered: boolean };
  /** The channel's history no longer reaches the last offset seen: reload your state. */
  unrecovered: { channel: string; epoch: string; offset: number };
  join: { client: string; user: string | null };
  leave: { client: string; user: string | null };
  error: { type: 'subscribe'; error: TetherError };
  state: { state: SubscriptionState; error?: TetherError };
}

/** Listeners to attach in `client.subscribe(channel, handlers)`. */
export type SubscriptionHandlers = { [E in keyof SubscriptionEvents]?: (event: SubscriptionEvents[E]) => void };

/** The server's acknowledgement of a publish. */
export interface PublishAck {
  offset: number;
  epoch: string;
}

/** Options of a publish. */
export interface PublishOptions {
  /** A key of the application's own, to retry a publish across page loads. */
  idempotencyKey?: string;
  /** What the publication is about, for `latest-per-key` namespaces. */
  key?: string;
}

/** A channel's present clients. */
export interface Presence {
  clients: { client: string; user?: string | null }[];
}

/** A page of a channel's history. */
export interface History {
  epoch: string;
  offset: number;
  publications: { offset: number; data: unknown }[];
}

/** One channel, as the application sees it. */
export declare class Subscription {
  readonly client: Client;
  readonly channel: string;
  readonly state: SubscriptionState;
  /** The newest offset delivered (0: none yet). */
  readonly offset: number;
  /** The channel's epoch as last seen. */
  readonly epoch: string | null;
  on<E extends keyof SubscriptionEvents>(event: E, listener: (event: SubscriptionEvents[E]) => void): Unlisten;
  off<E extends keyof SubscriptionEvents>(event: E, listener: (event: SubscriptionEvents[E]) => void): void;
  publish(data: unknown, options?: PublishOptions): Promise<PublishAck>;
  presence(): Promise<Presence>;
  history(options?: { limit?: number }): Promise<History>;
  /** Leaves the channel; safe to call any number of times. */
  unsubscribe(): void;
}

/** The tether client. */
export declare class Client {
  constructor(url?: string, options?: Partial<ClientOptions>);
  readonly options: ClientOptions;
  readonly state: ClientState;
  readonly transport: Transport | null;
  readonly clientId: string | null;
  on<E extends keyof ClientEvents>(event: E, listener: (event: ClientEvents[E]) => void): Unlisten;
  off<E extends keyof ClientEvents>(event: E, listener: (event: ClientEvents[E]) => void): void;
  connect(): void;
  disconnect(): void;
  subscribe(channel: string, handlers?: SubscriptionHandlers): Subscription;
  getSubscription(channel: string): Subscription | null;
  publish(channel: string, data: unknown, options?: PublishOptions): Promise<PublishAck>;
  presence(channel: string): Promise<Presence>;
  history(channel: string, options?: { limit?: number }): Promise<History>;
}

// -- the wire (docs/PROTOCOL.md) --------------------------------------------

/** Where a client left off in a channel. */
export type WirePosition = {
  offset: number;
  epoch: string;
};

/** A request's operation and fields (each request also carries a numeric `id`). */
export type WireRequest =
  | { op: 'connect'; token?: string | null }
  | { op: 'subscribe'; channel: string; recover?: WirePosition | null }
  | { op: 'unsubscribe'; channel: string }
  | { op: 'publish'; channel: string; data: unknown; idempotency_key?: string | null; key?: string | null }
  | { op: 'presence'; channel: string }
  | { op: 'history'; channel: string; limit?: number | null }
  | { op: 'ping' };

/** A message the server sends on its own. */
export type WirePush =
  | { push: 'publication'; channel: string; offset: number; data: unknown }
  | { push: 'join'; channel: string; client: string; user?: string | null }
  | { push: 'leave'; channel: string; client: string; user?: string | null }
  | {
      push: 'disconnect';
      code: number;
      reason: string;
      reconnect: boolean;
      reconnect_after_ms?: number | null;
      positions?: { [channel: string]: WirePosition };
    };
