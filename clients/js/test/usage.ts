// Compiled (never run) by types.test.mjs: the API as an application uses it,
// so a declaration that breaks real use fails the tests.

import { Client, ErrorCode, TetherError, backoff, seededRandom } from '../tether.js';
import type { Publication, PublishAck, Transport } from '../tether.js';

const client = new Client('https://example.com', { transports: ['sse', 'longpoll'], offlineQueue: 100, random: seededRandom(1) });
const stop: () => void = client.on('connected', ({ transport, client: id }) => {
  const t: Transport = transport;
  const s: string | null = id;
  void t;
  void s;
});
stop();
client.on('disconnected', ({ code, reconnect }) => void (code + (reconnect ? 1 : 0)));
client.on('reconnecting', ({ attempt, delay }) => void (attempt + delay));
const sub = client.subscribe('chat:lobby', {
  publication: (p: Publication) => void p.offset,
  unrecovered: ({ epoch }) => void epoch.length,
  join: ({ client: who, user }) => void [who, user],
});
sub.on('subscribed', ({ recovered }) => void recovered);
client.connect();
async function use(): Promise<number> {
  const ack: PublishAck = await sub.publish({ text: 'hi' }, { idempotencyKey: 'k' });
  const { clients } = await sub.presence();
  const { publications } = await sub.history({ limit: 10 });
  try {
    await client.publish('chat:lobby', 1);
  } catch (error) {
    if (error instanceof TetherError && error.code === ErrorCode.QUEUE_FULL) return 0;
  }
  sub.unsubscribe();
  client.disconnect();
  return ack.offset + clients.length + publications.length + backoff(1, client.options);
}
void use;
