import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

/** A free loopback port chosen by the OS (bound, read, released; the server under test takes it a moment later). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolvePort(port));
    });
  });
}
