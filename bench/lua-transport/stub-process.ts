/** The fixed-answer stub in its own process, so it does not share an event loop with the load generator. */
import { startPassdbStub } from '../../test/helpers/passdb-stub.js';

const socketPath = process.argv[2];
const stub = await startPassdbStub(null, { record: false, ...(socketPath ? { socketPath } : {}) });
process.stdout.write(`${JSON.stringify({ url: stub.url, socketPath: stub.socketPath })}\n`);
process.on('SIGTERM', () => {
  void stub.close().then(() => process.exit(0));
});
