/**
 * One outbound request shared by every caller that needs its answer (STYLE 13,
 * single flight), each caller with its own deadline. A caller that gives up
 * leaves the others waiting; once every caller has given up the request is
 * aborted and forgotten, so the next caller starts a new one instead of
 * joining a request that may hang until idp.timeout.
 *
 * Issue 16's fault suite (test/security/idp-faults.test.ts): the Keycloak
 * service-account token and openid-client's discovery were shared this way
 * without the abandonment; an IdP that hung once kept the one request open
 * for idp.timeout, and every login after the IdP had recovered waited on it
 * and failed until then (20 s with idp.timeout 20s, though auth.deadline was 2 s).
 */
export interface SharedRequest<T> {
  /**
   * The answer of the request in flight, or of a new one. `signal` ends this caller's wait
   * (rejecting with `late()`); without one, the caller waits as long as the request does.
   */
  join(signal?: AbortSignal): Promise<T>;
  /** Whether a request is in flight (tests). */
  readonly running: boolean;
}

interface Flight<T> {
  promise: Promise<T>;
  waiters: number;
  /** Callers without a deadline: while one waits, the request is never abandoned. */
  patient: boolean;
  abort: AbortController;
}

export function createSharedRequest<T>(start: (signal: AbortSignal) => Promise<T>, late: () => Error): SharedRequest<T> {
  let current: Flight<T> | null = null;

  function flight(): Flight<T> {
    if (current !== null) return current;
    const abort = new AbortController();
    const f: Flight<T> = {
      waiters: 0,
      patient: false,
      abort,
      promise: Promise.resolve()
        .then(() => start(abort.signal))
        .finally(() => {
          if (current === f) current = null;
        }),
    };
    // Every waiter handles the outcome; an abandoned request's rejection has no waiter left.
    f.promise.catch(() => undefined);
    current = f;
    return f;
  }

  return {
    join(signal) {
      if (signal?.aborted) return Promise.reject(late());
      const f = flight();
      if (!signal) {
        f.patient = true;
        return f.promise;
      }
      f.waiters++;
      return new Promise<T>((resolve, reject) => {
        const giveUp = (): void => {
          f.waiters--;
          if (f.waiters === 0 && !f.patient && current === f) {
            current = null;
            f.abort.abort(late());
          }
          reject(late());
        };
        signal.addEventListener('abort', giveUp, { once: true });
        f.promise.then(
          (v) => {
            signal.removeEventListener('abort', giveUp);
            resolve(v);
          },
          (err: unknown) => {
            signal.removeEventListener('abort', giveUp);
            reject(err);
          },
        );
      });
    },
    get running() {
      return current !== null;
    },
  };
}
