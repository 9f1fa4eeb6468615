// The server the demo and EventSource browser tests share, started by
// scripts/e2e.sh: one `tether serve`, or with TETHER_CLUSTER=N, N nodes on a
// fresh Redis behind nginx. Prints its URL once it answers, and stops it
// all on SIGTERM or SIGINT.

import { startServer } from '../../clients/js/test/harness.mjs';

const server = await startServer(process.argv.slice(2));
console.log(server.url);
const stop = async () => {
  await server.stop('SIGTERM');
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
