/**
 * Dovecot's auth-policy protocol (auth_policy_server_url), served from the same
 * throttle the passdb uses, so any passdb behind Dovecot gets the defence.
 *
 * Dovecot POSTs a JSON object to URL?command=allow before authenticating (and,
 * with auth_policy_check_after_auth, again after a success) and to
 * URL?command=report afterwards. The object holds the attributes of
 * auth_policy_request_attributes — by default login, pwhash, remote, device_id,
 * protocol, session_id (2.4 adds fail_type) — all as strings, plus "tls" and, on
 * report, "success" and "policy_reject" as booleans. pwhash is
 * hex(trunc(H(auth_policy_hash_nonce ‖ login ‖ NUL ‖ password))) cut to
 * auth_policy_hash_truncate bits (default 12): enough to tell one wrong
 * password from another, too little to test a guess against.
 *
 * Answer: {"status": N, "msg": "…"}; N < 0 refuses the login (msg becomes the
 * failure reason), N > 0 delays it N seconds (Dovecot's tarpit, not on
 * successful after-auth checks), 0 lets it go on. The report's body is ignored.
 */
import { randomBytes } from 'node:crypto';
import type { SessionMemory } from './guard.js';
import type { Throttle } from './throttle.js';

export interface PolicyRequest {
  command: 'allow' | 'report';
  login: string;
  /** The client address ("remote"); empty when Dovecot had none. */
  remote: string;
  pwhash: string | null;
  session: string | null;
  success: boolean;
  policyReject: boolean;
}

export interface PolicyAnswer {
  status: number;
  msg: string;
}

/** What the client is told on a refusal (Dovecot sends msg as the failure reason). */
export const POLICY_REFUSAL_MESSAGE = 'Too many failed logins, try again later.';

const MAX_FIELD = 1024;

function str(body: Record<string, unknown>, name: string, problems: string[]): string | null {
  const v = body[name];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') {
    problems.push(`${name}: must be a string, got ${Array.isArray(v) ? 'array' : typeof v}`);
    return null;
  }
  if (Buffer.byteLength(v) > MAX_FIELD) {
    problems.push(`${name}: longer than ${MAX_FIELD} bytes`);
    return null;
  }
  return v;
}

function bool(body: Record<string, unknown>, name: string, problems: string[]): boolean {
  const v = body[name];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') {
    problems.push(`${name}: must be true or false, got ${typeof v}`);
    return false;
  }
  return v;
}

/** The command query parameter and the JSON body → a request, or what is wrong with it. */
export function parsePolicyRequest(command: string | null, body: unknown): PolicyRequest | { problem: string } {
  if (command !== 'allow' && command !== 'report') {
    return { problem: `the query parameter command must be allow or report, got ${command === null ? 'none' : JSON.stringify(command.slice(0, 32))}` };
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { problem: 'the body must be a JSON object' };
  const b = body as Record<string, unknown>;
  const problems: string[] = [];
  const login = str(b, 'login', problems);
  const remote = str(b, 'remote', problems) ?? '';
  const pwhash = str(b, 'pwhash', problems);
  const session = str(b, 'session_id', problems);
  const success = bool(b, 'success', problems);
  const policyReject = bool(b, 'policy_reject', problems);
  if (login === null && problems.length === 0) problems.push('login: missing (auth_policy_request_attributes must send login=%{requested_username})');
  if (problems.length > 0 || login === null) return { problem: problems.join('; ') };
  if (pwhash !== null && !/^[0-9a-fA-F]*$/.test(pwhash)) return { problem: 'pwhash: must be hex (%{hashed_password})' };
  return { command, login, remote, pwhash: pwhash === '' ? null : pwhash, session: session === '' ? null : session, success, policyReject };
}

export function answerPolicy(throttle: Throttle, sessions: SessionMemory | undefined, req: PolicyRequest): PolicyAnswer {
  if (req.command === 'allow') {
    const v = throttle.check(req.remote, req.login);
    if (v.allowed) return { status: 0, msg: '' };
    // A block refuses; back-off becomes Dovecot's own tarpit (the attempt waits, no worker is held).
    if (v.blocked) return { status: -1, msg: POLICY_REFUSAL_MESSAGE };
    return { status: Math.max(1, Math.ceil(v.retryAfterMs / 1000)), msg: '' };
  }
  // report: our own refusals are not guesses, and a failure the passdb already counted is not counted twice.
  if (req.policyReject) return { status: 0, msg: '' };
  if (req.session !== null && sessions?.take(req.session)) return { status: 0, msg: '' };
  if (req.success) throttle.succeeded(req.remote, req.login);
  else {
    // Without pwhash every failure has to count as a new password.
    const fp = req.pwhash !== null ? throttle.fingerprint(req.login, `\u0000dovecot-pwhash\u0000${req.pwhash.toLowerCase()}`) : randomBytes(4).readUInt32BE(0);
    throttle.failed(req.remote, req.login, fp);
  }
  return { status: 0, msg: '' };
}
