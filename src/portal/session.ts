/**
 * Server-side portal sessions: the browser holds only a random id (HttpOnly
 * cookie); the signed-in mailbox, sign-in time and CSRF token stay here.
 * Chosen over signed+encrypted cookies because sign-out must end the session
 * for real (a cookie that was copied stops working too) and nothing secret
 * ever leaves the process. The price: a restart signs everyone out, and
 * several daemons behind one proxy need sticky sessions (docs/portal.md).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../auth/index.js';

export interface PortalSession {
  /** The mailbox's canonical username (as stored). */
  username: string;
  /** How the user signed in: the IdP's authorization-code flow, or the mailbox password. */
  method: 'idp' | 'password';
  /** When the session began. */
  createdAt: number;
  /** When the user last proved who they are (sign-in or re-authentication). */
  authAt: number;
  /** The per-session CSRF token every form carries. */
  csrf: string;
  /** A message shown once on the next page (e.g. "app password revoked"). */
  flash: string | null;
  /** A freshly created app password, shown once, then forgotten. */
  reveal: { id: number; name: string; password: string; protocols: string[] } | null;
}

/** A sign-in in progress (between the redirect to the IdP and the callback). */
export interface PendingSignIn {
  state: string;
  nonce: string;
  verifier: string;
  createdAt: number;
  /** The signed-in session that asked to re-authenticate, if any. */
  reauthOf: string | null;
  returnTo: string;
}

export interface StoreOptions {
  ttlMs: number;
  clock: Clock;
  /** Bound on sessions (and, separately, pending sign-ins) held at once; the oldest go first. */
  maxEntries?: number;
}

export const PENDING_TTL_MS = 10 * 60_000;

export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/** Constant-time comparison of two tokens (different lengths are simply unequal). */
export function tokensEqual(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y) && a.length === b.length;
}

/** A bounded map with expiry, oldest insertion first (Map keeps insertion order). */
class ExpiringMap<V extends { createdAt: number }> {
  private readonly map = new Map<string, V>();
  constructor(
    private readonly ttlMs: number,
    private readonly clock: Clock,
    private readonly max: number,
  ) {}

  get(id: string): V | null {
    const v = this.map.get(id);
    if (!v) return null;
    if (this.clock.now() - v.createdAt >= this.ttlMs) {
      this.map.delete(id);
      return null;
    }
    return v;
  }

  set(id: string, v: V): void {
    this.prune();
    while (this.map.size >= this.max) {
      const oldest = this.map.keys().next().value as string | undefined;
      if (oldest === undefined) break;
      this.map.delete(oldest);
    }
    this.map.set(id, v);
  }

  delete(id: string): boolean {
    return this.map.delete(id);
  }

  deleteWhere(fn: (v: V, id: string) => boolean): number {
    let n = 0;
    for (const [k, v] of this.map) if (fn(v, k) && this.map.delete(k)) n++;
    return n;
  }

  get size(): number {
    return this.map.size;
  }

  private prune(): void {
    const now = this.clock.now();
    for (const [k, v] of this.map) {
      if (now - v.createdAt < this.ttlMs) break; // insertion order = age order
      this.map.delete(k);
    }
  }
}

export interface SessionStore {
  create(s: Omit<PortalSession, 'csrf' | 'flash' | 'reveal' | 'createdAt' | 'authAt'>): { id: string; session: PortalSession };
  get(id: string | undefined): PortalSession | null;
  /** Sign-out: the id stops working at once. */
  destroy(id: string | undefined): void;
  /** Ends every session of a mailbox but `keep` (after a password change: other browsers sign in again). */
  destroyUser(username: string, keep?: string): number;
  /** Mark a fresh proof of identity. */
  reauthenticated(id: string): void;
  beginSignIn(p: Omit<PendingSignIn, 'createdAt'>): string;
  /** The pending sign-in for this cookie; consumed (one use only). */
  takeSignIn(id: string | undefined): PendingSignIn | null;
  stats(): { sessions: number; pending: number };
}

export function createSessionStore(opts: StoreOptions): SessionStore {
  const max = opts.maxEntries ?? 100_000;
  const sessions = new ExpiringMap<PortalSession>(opts.ttlMs, opts.clock, max);
  const pending = new ExpiringMap<PendingSignIn>(PENDING_TTL_MS, opts.clock, max);
  return {
    create(s) {
      const now = opts.clock.now();
      const session: PortalSession = { ...s, createdAt: now, authAt: now, csrf: randomToken(), flash: null, reveal: null };
      const id = randomToken();
      sessions.set(id, session);
      return { id, session };
    },
    get(id) {
      return id ? sessions.get(id) : null;
    },
    destroy(id) {
      if (id) sessions.delete(id);
    },
    destroyUser(username, keep) {
      return sessions.deleteWhere((s, id) => s.username === username && id !== keep);
    },
    reauthenticated(id) {
      const s = sessions.get(id);
      if (s) s.authAt = opts.clock.now();
    },
    beginSignIn(p) {
      const id = randomToken();
      pending.set(id, { ...p, createdAt: opts.clock.now() });
      return id;
    },
    takeSignIn(id) {
      if (!id) return null;
      const p = pending.get(id);
      pending.delete(id);
      return p;
    },
    stats: () => ({ sessions: sessions.size, pending: pending.size }),
  };
}
