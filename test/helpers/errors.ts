import { isMailauthError } from '../../src/errors.js';
import type { MailauthError } from '../../src/errors.js';

/** The MailauthError `p` rejects with (to assert on its `code`); anything else fails the test. */
export async function codeOf(p: Promise<unknown>): Promise<MailauthError> {
  try {
    await p;
  } catch (err) {
    if (isMailauthError(err)) return err;
    throw err;
  }
  throw new Error('expected a MailauthError, got success');
}
