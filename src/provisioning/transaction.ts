/**
 * One transaction per provisioning step, the way the CLI and the portal both
 * call it: a refusal from `fn` undoes whatever `fn` wrote before refusing.
 */
import type { Db, Queryable } from '../db/index.js';
import { MailauthError, isMailauthError } from '../errors.js';
import { isRefusal } from './refusal.js';
import type { Refusal } from './refusal.js';

/**
 * Run `fn` in a transaction; when it returns a refusal, roll back (whatever it
 * wrote before refusing) and hand the refusal back as a value.
 */
export async function inTransaction<T extends object>(db: Db, fn: (tx: Queryable) => Promise<T | Refusal>): Promise<T | Refusal> {
  try {
    return await db.transaction(async (tx) => {
      const r = await fn(tx);
      if (isRefusal(r)) throw new MailauthError('ERR_REFUSED', r.message, { details: { refusal: r } });
      return r;
    });
  } catch (err) {
    const refusal = isMailauthError(err, 'ERR_REFUSED') ? err.details?.refusal : undefined;
    if (isRefusal(refusal)) return refusal;
    throw err;
  }
}
