/**
 * Shape checks that run before any database or hash work (STYLE 6). Each returns
 * null when the value is acceptable, else a reason that is safe to log: it
 * describes the value, never repeats it.
 */
export const MAX_USER_BYTES = 255;

// Local part: RFC 5322 atext in dot-separated runs; domain: LDH labels with at least one dot,
// as PHP's FILTER_VALIDATE_EMAIL (what mailcow checks) requires. IDNs arrive in punycode.
const EMAIL = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const PLAIN_NAME = /^[A-Za-z0-9._-]+$/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const CONTROL_ALL = new RegExp(CONTROL.source, 'g');

export function userNameProblem(user: string): string | null {
  if (user === '') return 'empty user name';
  if (Buffer.byteLength(user, 'utf8') > MAX_USER_BYTES) return `user name longer than ${MAX_USER_BYTES} bytes`;
  if (CONTROL.test(user)) return 'user name contains control characters';
  if (!EMAIL.test(user) && !PLAIN_NAME.test(user)) return 'user name is neither an email address nor [A-Za-z0-9._-]+';
  return null;
}

export function passwordProblem(password: string | Uint8Array, maxBytes: number): string | null {
  if (password.length === 0) return 'empty password';
  if ((typeof password === 'string' ? Buffer.byteLength(password, 'utf8') : password.length) > maxBytes) return `password longer than ${maxBytes} bytes`;
  return null;
}

/** A user name fit for a log line even when it failed validation. */
export function loggableUser(user: string): string {
  const cut = user.length > MAX_USER_BYTES ? `${user.slice(0, MAX_USER_BYTES)}…` : user;
  return cut.replace(CONTROL_ALL, '?');
}
