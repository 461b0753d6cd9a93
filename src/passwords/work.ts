/**
 * How much work a stored hash asks for, read from its text without hashing, so a
 * caller can refuse a value under tighter caps than verify() applies (IdP-held
 * hashes, limits.ts) before any CPU or memory is spent on it.
 *
 * The value is split, decoded and classified exactly as verify() and schemeOf() do
 * it (parse.ts, scheme-table.ts), so `{CRYPT}$2y$…`, `{SHA512-CRYPT}$5$…` and
 * `{BLF-CRYPT.HEX}…` are read as the format that would actually run. Only the
 * parameter fields are matched, with patterns that accept everything the verifiers
 * accept: when they do not match, the family's verifier refuses the value as
 * malformed before hashing too. (The verifiers keep their full patterns private;
 * sharing one pattern per family would mean exporting them from each verifier.)
 */
import { asciiText } from './encoding.js';
import {
  MAX_ARGON2_MEMORY_KIB,
  MAX_ARGON2_PARALLELISM,
  MAX_ARGON2_TIME_COST,
  MAX_BCRYPT_COST,
  MAX_PBKDF2_ITERATIONS,
  MAX_SHA_CRYPT_ROUNDS,
  IDP_MAX_ARGON2_MEMORY_KIB,
  IDP_MAX_ARGON2_PARALLELISM,
  IDP_MAX_ARGON2_TIME_COST,
  IDP_MAX_BCRYPT_COST,
  IDP_MAX_PBKDF2_ITERATIONS,
  IDP_MAX_SHA_CRYPT_ROUNDS,
} from './limits.js';
import { parseWithReason } from './parse.js';
import { decodePayload, lookupScheme } from './scheme-table.js';
import { SHA_CRYPT_DEFAULT_ROUNDS } from './unix-crypt.js';

export interface WorkCaps {
  bcryptCost: number;
  argon2MemoryKib: number;
  argon2TimeCost: number;
  argon2Parallelism: number;
  /** {PBKDF2} rounds and {PBKDF2-SHA512} iterations. */
  pbkdf2Iterations: number;
  /** SHA256-CRYPT and SHA512-CRYPT, including the implicit 5000. */
  shaCryptRounds: number;
}

export type WorkParameter = keyof WorkCaps;

export interface HashWork {
  /** The format that would run, as verify() names it (e.g. BLF-CRYPT for `{CRYPT}$2y$…`). */
  scheme: string;
  /** Empty for formats whose work is fixed (digests, MD5-crypt, DES-crypt). */
  work: Partial<Record<WorkParameter, number>>;
}

export interface WorkExcess {
  scheme: string;
  parameter: WorkParameter;
  /** What the parameter is called in a message: "bcrypt cost", "argon2 memory"… */
  label: string;
  value: number;
  cap: number;
  /** ' KiB' for argon2 memory, else ''. */
  unit: string;
}

export const IDP_WORK_CAPS: Readonly<WorkCaps> = Object.freeze({
  bcryptCost: IDP_MAX_BCRYPT_COST,
  argon2MemoryKib: IDP_MAX_ARGON2_MEMORY_KIB,
  argon2TimeCost: IDP_MAX_ARGON2_TIME_COST,
  argon2Parallelism: IDP_MAX_ARGON2_PARALLELISM,
  pbkdf2Iterations: IDP_MAX_PBKDF2_ITERATIONS,
  shaCryptRounds: IDP_MAX_SHA_CRYPT_ROUNDS,
});

/** What verify() reads at all (limits.ts): work above these is refused whatever auth.hash_limits says. */
export const HARD_WORK_CAPS: Readonly<WorkCaps> = Object.freeze({
  bcryptCost: MAX_BCRYPT_COST,
  argon2MemoryKib: MAX_ARGON2_MEMORY_KIB,
  argon2TimeCost: MAX_ARGON2_TIME_COST,
  argon2Parallelism: MAX_ARGON2_PARALLELISM,
  pbkdf2Iterations: MAX_PBKDF2_ITERATIONS,
  shaCryptRounds: MAX_SHA_CRYPT_ROUNDS,
});

const LABELS: Record<WorkParameter, { label: string; unit: string }> = {
  bcryptCost: { label: 'bcrypt cost', unit: '' },
  argon2MemoryKib: { label: 'argon2 memory', unit: ' KiB' },
  argon2TimeCost: { label: 'argon2 time cost', unit: '' },
  argon2Parallelism: { label: 'argon2 parallelism', unit: '' },
  pbkdf2Iterations: { label: 'PBKDF2 iterations', unit: '' },
  shaCryptRounds: { label: 'SHA-crypt rounds', unit: '' },
};

const BCRYPT_COST = /^\$2[abxy]\$([0-9]{2})\$/;
const ARGON2_PARAMS = /^\$argon2(?:id|i)\$(?:v=[0-9]+\$)?m=([0-9]{1,10}),t=([0-9]{1,10}),p=([0-9]{1,3})\$/;
// Without a rounds= field the default applies. Where the verifier would take
// `rounds=N` as the salt instead (`$5$rounds=N$checksum`, default rounds) this
// still reads N: it errs towards refusing. A rounds= that is not a number is either
// refused by the verifier or, as salt, costs the default; "0200000" reads as 200000.
const SHA_CRYPT_ROUNDS = /^\$[56]\$rounds=([^$]*)\$/;
const DOVECOT_PBKDF2_ROUNDS = /^\$1\$[^$]*\$([0-9]{1,10})\$/;
const PBKDF2_SHA512_ITERATIONS = /^([0-9]{1,10})\$/;

const TUNABLE = new Set(['BLF-CRYPT', 'ARGON2I', 'ARGON2ID', 'SHA256-CRYPT', 'SHA512-CRYPT', 'PBKDF2', 'PBKDF2-SHA512']);

function readWork(scheme: string, text: string): HashWork['work'] | null {
  switch (scheme) {
    case 'BLF-CRYPT': {
      const m = BCRYPT_COST.exec(text);
      return m ? { bcryptCost: Number(m[1]) } : null;
    }
    case 'ARGON2I':
    case 'ARGON2ID': {
      const m = ARGON2_PARAMS.exec(text);
      return m ? { argon2MemoryKib: Number(m[1]), argon2TimeCost: Number(m[2]), argon2Parallelism: Number(m[3]) } : null;
    }
    case 'SHA256-CRYPT':
    case 'SHA512-CRYPT': {
      const m = SHA_CRYPT_ROUNDS.exec(text);
      if (!m) return { shaCryptRounds: SHA_CRYPT_DEFAULT_ROUNDS };
      return /^[0-9]{1,10}$/.test(m[1] as string) ? { shaCryptRounds: Number(m[1]) } : null;
    }
    case 'PBKDF2': {
      const m = DOVECOT_PBKDF2_ROUNDS.exec(text);
      return m ? { pbkdf2Iterations: Number(m[1]) } : null;
    }
    case 'PBKDF2-SHA512': {
      const m = PBKDF2_SHA512_ITERATIONS.exec(text);
      return m ? { pbkdf2Iterations: Number(m[1]) } : null;
    }
    default:
      return {};
  }
}

/**
 * The work parameters of a stored value, or null when it names no scheme we know or
 * its parameters cannot be read (then verify() answers malformed or unsupported
 * without hashing). Never throws; does no hashing.
 */
export function readHashWork(stored: string, defaultScheme = 'CRYPT'): HashWork | null {
  if (typeof stored !== 'string') return null;
  const parsed = parseWithReason(stored, defaultScheme);
  if ('error' in parsed) return null;
  const spec = lookupScheme(parsed.scheme);
  if (spec === undefined) return null;
  const raw = decodePayload(spec, parsed.encoding, parsed.payload);
  if (typeof raw === 'string') return null;
  // A label with several formats that holds none of them runs nothing.
  const scheme = spec.effective === undefined ? spec.name : spec.effective(raw);
  if (scheme === null) return null;
  if (!TUNABLE.has(scheme)) return { scheme, work: {} };
  // The tunable formats are text; verify() reads them from printable ASCII only.
  const text = asciiText(raw);
  const work = text === null ? null : readWork(scheme, text);
  return work === null ? null : { scheme, work };
}

/**
 * Every work parameter of `stored` above `caps`, in the order readHashWork gives them
 * (none also when the value cannot be read: see readHashWork). Pure; no hashing.
 * `mailauth doctor` lists them all per stored hash (issue 16).
 */
export function workExcesses(stored: string, caps: Readonly<WorkCaps>, defaultScheme = 'CRYPT'): WorkExcess[] {
  const read = readHashWork(stored, defaultScheme);
  return read === null ? [] : excessesOf(read, caps);
}

/** workExcesses for a hash already read (the hash queue reads it once per check). */
export function excessesOf(read: HashWork, caps: Readonly<WorkCaps>): WorkExcess[] {
  const out: WorkExcess[] = [];
  for (const [parameter, value] of Object.entries(read.work) as [WorkParameter, number][]) {
    const cap = caps[parameter];
    if (value > cap) out.push({ scheme: read.scheme, parameter, value, cap, ...LABELS[parameter] });
  }
  return out;
}

/**
 * The first work parameter of `stored` above `caps`, or null when none is (also
 * when the value cannot be read: see readHashWork). Pure; safe to call before
 * verify() on any input.
 */
export function workOverCaps(stored: string, caps: Readonly<WorkCaps>, defaultScheme = 'CRYPT'): WorkExcess | null {
  return workExcesses(stored, caps, defaultScheme)[0] ?? null;
}
