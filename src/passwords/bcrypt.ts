/**
 * bcrypt through @node-rs/bcrypt, whose async calls run on the libuv pool so a
 * cost-12 check never stalls the event loop.
 *
 * Variants: $2a$, $2b$ and $2y$ are the same algorithm for every password that
 * matters (crypt_blowfish's $2a$ "safety" tweak only changes results for inputs that
 * collided under the pre-2011 sign-extension bug). $2x$ *is* that bug: it equals the
 * others only while every byte is 7-bit, so we verify those and call the rest
 * unsupported rather than risk a false answer. The library returns `false` for hashes
 * it cannot parse, so the shape is checked here first.
 */
import { hash as bcryptHash, verify as bcryptVerify } from '@node-rs/bcrypt';
import { MailauthError } from '../errors.js';
import { MAX_BCRYPT_COST, MIN_BCRYPT_COST } from './limits.js';
import { compared, malformed, unsupported, type VerifyResult } from './result.js';

const BCRYPT = /^\$2([abxy])\$([0-9]{2})\$([./A-Za-z0-9]{53})$/;

export async function verifyBcrypt(text: string, password: Buffer): Promise<VerifyResult> {
  const m = BCRYPT.exec(text);
  if (!m) return malformed('BLF-CRYPT', 'expected $2y$NN$ followed by 53 characters of salt and checksum');
  const [, variant, costText, rest] = m as unknown as [string, string, string, string];
  const cost = Number(costText);
  if (cost < MIN_BCRYPT_COST || cost > 31) return malformed('BLF-CRYPT', `cost outside ${MIN_BCRYPT_COST}..31`);
  if (cost > MAX_BCRYPT_COST) return malformed('BLF-CRYPT', `cost too high (limit ${MAX_BCRYPT_COST})`);
  if (variant === 'x' && password.some((byte) => byte >= 0x80)) {
    return unsupported('BLF-CRYPT', 'bcrypt $2x$ hashes cannot be verified for passwords with 8-bit characters');
  }
  try {
    return compared(await bcryptVerify(password, `$2b$${costText}$${rest}`), 'BLF-CRYPT');
  } catch {
    return malformed('BLF-CRYPT', 'bcrypt library rejected the hash');
  }
}

/** `$2y$`, like PHP's password_hash() and Dovecot 2.3 write it. */
export async function hashBcrypt(password: Buffer, cost: number): Promise<string> {
  if (!Number.isInteger(cost) || cost < MIN_BCRYPT_COST || cost > MAX_BCRYPT_COST) {
    throw new MailauthError('ERR_INVALID_INPUT', `bcrypt cost must be an integer in ${MIN_BCRYPT_COST}..${MAX_BCRYPT_COST}`, {
      details: { cost },
    });
  }
  const produced = await bcryptHash(password, cost);
  return `$2y$${produced.slice(4)}`;
}
