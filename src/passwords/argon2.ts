/**
 * Argon2 PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) through @node-rs/argon2,
 * whose async calls run on the libuv pool. Dovecot verifies both {ARGON2I} and
 * {ARGON2ID} with libsodium's crypto_pwhash_str_verify, which dispatches on the
 * string, so either label accepts either variant; the result names the one found.
 * Parameters are checked against limits.ts before the library allocates memory.
 */
import { createRequire } from 'node:module';
import { MAX_ARGON2_MEMORY_KIB, MAX_ARGON2_PARALLELISM, MAX_ARGON2_TIME_COST } from './limits.js';
import { compared, malformed, unsupported, type VerifyResult } from './result.js';

const PHC = /^\$(argon2id|argon2i|argon2d)\$(?:v=([0-9]+)\$)?m=([0-9]{1,10}),t=([0-9]{1,10}),p=([0-9]{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

export type Argon2Scheme = 'ARGON2I' | 'ARGON2ID';

// Loaded at the first argon2 hash: the native module costs ~8 MB of RSS in every daemon,
// and most mailcow databases hold no argon2 hash at all. Synchronous (CommonJS) so the
// first call needs no extra await.
const requireHere = createRequire(import.meta.url);
let lib: typeof import('@node-rs/argon2') | undefined;
const argon2 = (): typeof import('@node-rs/argon2') => (lib ??= requireHere('@node-rs/argon2') as typeof import('@node-rs/argon2'));

export async function verifyArgon2(text: string, password: Buffer, label: string): Promise<VerifyResult> {
  const m = PHC.exec(text);
  if (!m) return malformed(label, 'not an argon2 PHC string');
  const [, variant, version, memory, time, lanes] = m as unknown as [string, string, string | undefined, string, string, string];
  if (variant === 'argon2d') return unsupported(label, `argon2d is not a Dovecot scheme (found under ${label})`);
  const scheme: Argon2Scheme = variant === 'argon2id' ? 'ARGON2ID' : 'ARGON2I';
  if (version !== undefined && version !== '16' && version !== '19') return malformed(scheme, 'unknown argon2 version');
  if (Number(memory) > MAX_ARGON2_MEMORY_KIB) return malformed(scheme, `memory cost too high (limit ${MAX_ARGON2_MEMORY_KIB} KiB)`);
  if (Number(time) > MAX_ARGON2_TIME_COST) return malformed(scheme, `time cost too high (limit ${MAX_ARGON2_TIME_COST})`);
  if (Number(lanes) > MAX_ARGON2_PARALLELISM) return malformed(scheme, `parallelism too high (limit ${MAX_ARGON2_PARALLELISM})`);
  try {
    return compared(await argon2().verify(text, password), scheme);
  } catch {
    // Salt too short, m below 8·p, t = 0, undecodable base64…: the library knows the rules.
    return malformed(scheme, 'argon2 library rejected the hash parameters');
  }
}

/** Dovecot's defaults (libsodium "interactive"): argon2id m=64 MiB t=3, argon2i m=32 MiB t=4; p=1, 16-byte salt, 32-byte hash. */
export async function hashArgon2(scheme: Argon2Scheme, password: Buffer): Promise<string> {
  const { Algorithm, hash } = argon2();
  return scheme === 'ARGON2ID'
    ? hash(password, { algorithm: Algorithm.Argon2id, memoryCost: 65536, timeCost: 3, parallelism: 1, outputLen: 32 })
    : hash(password, { algorithm: Algorithm.Argon2i, memoryCost: 32768, timeCost: 4, parallelism: 1, outputLen: 32 });
}
