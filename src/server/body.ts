/** Reading a request body: bounded, strictly UTF-8, strictly JSON. */
import type { IncomingMessage } from 'node:http';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** `application/json`, optionally with parameters; `requireType: false` also accepts no header. */
export function checkContentType(req: IncomingMessage, requireType: boolean): void {
  const ct = req.headers['content-type'];
  if (ct === 'application/json' || (ct === undefined && !requireType)) return;
  const mime = (ct ?? '').split(';')[0]?.trim().toLowerCase();
  if (mime !== 'application/json') {
    throw new HttpError(415, 'unsupported_media_type', 'Content-Type must be application/json');
  }
}

export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(new HttpError(413, 'payload_too_large', `the body is larger than ${limit} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err: Error | null): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      if (err) {
        // Keep discarding what the client still sends so the error answer can be read.
        req.resume();
        reject(err);
      } else resolve(Buffer.concat(chunks, size));
    };
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > limit) finish(new HttpError(413, 'payload_too_large', `the body is larger than ${limit} bytes`));
      else chunks.push(c);
    };
    const onEnd = (): void => finish(null);
    const onError = (err: Error): void => finish(new HttpError(400, 'bad_request', `request stream failed: ${err.message}`));
    const onAborted = (): void => finish(new HttpError(400, 'bad_request', 'request aborted'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

export function parseJson(raw: Buffer): unknown {
  let text: string;
  try {
    text = decoder.decode(raw);
  } catch {
    throw new HttpError(400, 'invalid_json', 'the body is not valid UTF-8');
  }
  if (text.trim() === '') throw new HttpError(400, 'invalid_json', 'the body is empty');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // The parser's message can quote the body (and with it a password): say only where it failed.
    throw new HttpError(400, 'invalid_json', 'the body is not valid JSON');
  }
}
