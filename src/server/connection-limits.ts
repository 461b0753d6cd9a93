/**
 * Connection limits for every listener (issue 16). Idle keep-alive sockets (GET /healthz
 * needs no token; a POST refused with 401 also kept its socket for 65 s) exhausted the
 * daemon's file descriptors: every new client was reset and nothing was logged.
 *
 * - At most `maxConnections` open in total and `maxPerPeer` per client address (Unix-socket
 *   clients share one peer, "unix"), both below the file-descriptor limit.
 * - A connection that never sent a request with a valid token (or, without a token, to a
 *   deciding route) is closed after `untrustedIdleMs` without a request in flight.
 * - When a new connection would pass a limit, an idle connection in its scope is closed so
 *   that the newcomer is still served (as nginx reclaims keep-alive connections), in this
 *   order: one that was answered and holds no valid token (oldest-idle first); one that has
 *   sent nothing for NEW_GRACE_MS (oldest first); one accepted less than NEW_GRACE_MS ago that
 *   has sent nothing yet (youngest first); last, one with a valid token (oldest-idle first).
 *   Youngest first among the new ones: under a connection flood every newcomer would
 *   otherwise push out the one accepted just before it, a /healthz probe included, before
 *   it could send its request (the availability suite saw that). A valid token's connection
 *   (Dovecot's) goes only when nothing else can: an unauthenticated flood must not cut it.
 *   When nothing can be closed the newcomer is refused.
 * - Reaching a limit, and accept() failing for lack of file descriptors, is logged (at most
 *   once a second per kind) and counted (stats(), the metrics' mailauth_connection_limit_total).
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../logging/index.js';

export interface ConnectionLimitOptions {
  maxConnections: number;
  maxPerPeer: number;
  untrustedIdleMs: number;
  logger: Logger;
  /** Date.now, injected for tests. */
  now?: () => number;
}

/** How long a new connection may take to send its first request before it can be reclaimed. */
const NEW_GRACE_MS = 500;

export type LimitKind = 'total' | 'per_peer' | 'fd';

export interface ConnectionStats {
  open: number;
  /** Idle connections closed to make room for a new one. */
  reclaimed: number;
  /** Connections closed for idling without a valid token. */
  idleClosed: number;
  /** Times a limit was reached, by kind (fd: accept() failed with EMFILE/ENFILE). */
  hits: Record<LimitKind, number>;
  /** New connections refused because nothing could be reclaimed. */
  refused: number;
}

interface Tracked {
  socket: Socket;
  peer: string;
  trusted: boolean;
  /** It has sent at least one request. */
  served: boolean;
  inFlight: number;
  idleSince: number;
}

export interface ConnectionLimiter {
  /** Track the listener's connections and accept errors. */
  attach(server: Server): void;
  requestStarted(socket: Socket): void;
  requestDone(socket: Socket): void;
  /** The connection sent a request with a valid token: the long keep-alive applies. */
  trust(socket: Socket): void;
  stats(): ConnectionStats;
  close(): void;
}

/** The soft RLIMIT_NOFILE of this process, or null where /proc does not say (not Linux). */
export function fileDescriptorLimit(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(read('/proc/self/limits'));
    if (!m) return null;
    return m[1] === 'unlimited' ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/**
 * listen.max_connections 0: the file-descriptor limit minus 64 for everything else the daemon
 * holds (database pool, log, worker threads, Node's own), at most 4,096, at least 16.
 * listen.max_connections_per_peer 0: half of that (Dovecot's auth workers all come from one
 * address, and a peer at its limit gets its own idle connections reclaimed first).
 */
export function resolveConnectionLimits(maxConnections: number, maxPerPeer: number, fdLimit: number | null): { maxConnections: number; maxPerPeer: number } {
  const total = maxConnections > 0 ? maxConnections : Math.max(16, Math.min(4096, (fdLimit ?? 4160) - 64));
  const perPeer = maxPerPeer > 0 ? Math.min(maxPerPeer, total) : Math.max(1, Math.floor(total / 2));
  return { maxConnections: total, maxPerPeer: perPeer };
}

export function createConnectionLimiter(o: ConnectionLimitOptions): ConnectionLimiter {
  const now = o.now ?? Date.now;
  const all = new Map<Socket, Tracked>();
  const perPeer = new Map<string, number>();
  const stats: ConnectionStats = { open: 0, reclaimed: 0, idleClosed: 0, hits: { total: 0, per_peer: 0, fd: 0 }, refused: 0 };
  const lastLog: Record<LimitKind, number> = { total: 0, per_peer: 0, fd: 0 };

  function hit(kind: LimitKind, fields: Record<string, unknown>): void {
    stats.hits[kind]++;
    const t = now();
    if (t - lastLog[kind] < 1000) return;
    lastLog[kind] = t;
    const what = kind === 'fd' ? 'file-descriptor limit reached: accept() failed' : `connection limit reached (${kind === 'total' ? 'listen.max_connections' : 'listen.max_connections_per_peer'})`;
    o.logger.warn({ limit: kind, open: all.size, hits: stats.hits[kind], ...fields }, what);
  }

  /** 0 goes first; null: not to be closed for a newcomer (a request in flight). */
  function reclaimRank(c: Tracked, t: number): number | null {
    if (c.inFlight > 0) return null;
    if (c.served) return c.trusted ? 3 : 0;
    return t - c.idleSince >= NEW_GRACE_MS ? 1 : 2;
  }

  /** Closes the idle connection in scope that should go first; false when none can go. */
  function reclaim(peer: string | null): boolean {
    const t = now();
    let best: Tracked | null = null;
    let bestRank = Number.POSITIVE_INFINITY;
    for (const c of all.values()) {
      if (peer !== null && c.peer !== peer) continue;
      const rank = reclaimRank(c, t);
      if (rank === null || rank > bestRank) continue;
      // Map order is accept order: ties in the clock go to the older (<) or the younger (>=).
      const better = rank < bestRank || (rank === 2 ? c.idleSince >= (best as Tracked).idleSince : c.idleSince < (best as Tracked).idleSince);
      if (better) {
        best = c;
        bestRank = rank;
      }
    }
    if (best === null) return false;
    stats.reclaimed++;
    forget(best.socket);
    best.socket.destroy();
    return true;
  }

  function forget(socket: Socket): void {
    const c = all.get(socket);
    if (!c) return;
    all.delete(socket);
    const n = (perPeer.get(c.peer) ?? 1) - 1;
    if (n <= 0) perPeer.delete(c.peer);
    else perPeer.set(c.peer, n);
    stats.open = all.size;
  }

  function onConnection(socket: Socket): void {
    const peer = socket.remoteAddress ?? 'unix';
    if ((perPeer.get(peer) ?? 0) >= o.maxPerPeer) {
      hit('per_peer', { peer });
      if (!reclaim(peer)) {
        stats.refused++;
        socket.destroy();
        return;
      }
    }
    if (all.size >= o.maxConnections) {
      hit('total', {});
      if (!reclaim(null)) {
        stats.refused++;
        socket.destroy();
        return;
      }
    }
    all.set(socket, { socket, peer, trusted: false, served: false, inFlight: 0, idleSince: now() });
    perPeer.set(peer, (perPeer.get(peer) ?? 0) + 1);
    stats.open = all.size;
    socket.once('close', () => forget(socket));
  }

  const sweep = setInterval(() => {
    const cutoff = now() - o.untrustedIdleMs;
    for (const c of all.values()) {
      if (!c.trusted && c.inFlight === 0 && c.idleSince <= cutoff) {
        stats.idleClosed++;
        forget(c.socket);
        c.socket.destroy();
      }
    }
  }, Math.max(100, Math.min(1000, Math.floor(o.untrustedIdleMs / 2))));
  sweep.unref();

  return {
    attach(server) {
      server.on('connection', onConnection);
      server.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EMFILE' || err.code === 'ENFILE') hit('fd', { code: err.code });
      });
    },
    requestStarted(socket) {
      const c = all.get(socket);
      if (!c) return;
      c.inFlight++;
      c.served = true;
    },
    requestDone(socket) {
      const c = all.get(socket);
      if (!c) return;
      c.inFlight = Math.max(0, c.inFlight - 1);
      c.idleSince = now();
    },
    trust(socket) {
      const c = all.get(socket);
      if (c) c.trusted = true;
    },
    stats: () => ({ ...stats, hits: { ...stats.hits } }),
    close() {
      clearInterval(sweep);
    },
  };
}
