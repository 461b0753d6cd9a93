/** Binding one http.Server to TCP and Unix-socket listeners. */
import { chmod, lstat, unlink } from 'node:fs/promises';
import type { Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { SocketListen, TcpListen } from '../config/index.js';
import { MailauthError } from '../errors.js';

export type ListenAddress = { kind: 'tcp'; host: string; port: number; url: string } | { kind: 'unix'; path: string; mode: number; url: string };

/** Does something accept connections on this socket path? */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    const done = (v: boolean): void => {
      s.destroy();
      resolve(v);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(true)); // a hung peer is still a peer: do not steal its path
  });
}

/** Remove a socket file left by a dead process; refuse to touch anything else. */
export async function clearStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new MailauthError('ERR_CONFIG_INVALID', `listen socket ${path}: cannot inspect (${(err as NodeJS.ErrnoException).code})`);
  }
  if (!st.isSocket()) throw new MailauthError('ERR_CONFIG_INVALID', `listen socket ${path}: exists and is not a socket; refusing to replace it`);
  if (await socketAnswers(path)) throw new MailauthError('ERR_CONFIG_INVALID', `listen socket ${path}: another process is listening on it`);
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw new MailauthError('ERR_CONFIG_INVALID', `listen socket ${path}: cannot remove stale socket (${err.code})`);
  });
}

function listenOnce(server: Server, arg: { host: string; port: number } | { path: string }, umask?: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      const where = 'path' in arg ? arg.path : `${arg.host}:${arg.port}`;
      reject(new MailauthError('ERR_CONFIG_INVALID', `cannot listen on ${where}: ${err.code ?? err.message}`, { cause: err }));
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    // bind(2) happens synchronously inside listen(), so the umask is back before anything else runs.
    const previous = umask === undefined ? undefined : process.umask(umask);
    try {
      server.listen(arg);
    } finally {
      if (previous !== undefined) process.umask(previous);
    }
  });
}

export async function bindListener(server: Server, l: TcpListen | SocketListen): Promise<ListenAddress> {
  if (l.kind === 'tcp') {
    await listenOnce(server, { host: l.host, port: l.port });
    const a = server.address() as AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return { kind: 'tcp', host: a.address, port: a.port, url: `http://${host}:${a.port}` };
  }
  await clearStaleSocket(l.path);
  // Bind under a umask that already denies what the mode denies, so the socket is never more open
  // than configured, not even between bind and chmod.
  await listenOnce(server, { path: l.path }, 0o777 & ~l.mode);
  await chmod(l.path, l.mode);
  return { kind: 'unix', path: l.path, mode: l.mode, url: `unix:${l.path}` };
}
