/** Expected negatives of provisioning are values with a stable reason code, never exceptions. */

export interface Refusal<R extends string = string> {
  refused: R;
  /** For people: names the object and the limit; never contains a secret. */
  message: string;
  details?: Record<string, unknown>;
}

export function refuse<R extends string>(refused: R, message: string, details?: Record<string, unknown>): Refusal<R> {
  return details === undefined ? { refused, message } : { refused, message, details };
}

export function isRefusal(v: unknown): v is Refusal {
  return typeof v === 'object' && v !== null && typeof (v as { refused?: unknown }).refused === 'string';
}

export const MIB = 1024 * 1024;

/** Bytes as whole MiB for messages. */
export function mib(bytes: number): string {
  return `${Math.floor(bytes / MIB)} MiB`;
}
