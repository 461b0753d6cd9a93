/**
 * A JSON logger (src/logging, as the daemon builds it) writing into memory, for
 * tests that assert on what was logged — and on what was not (no secret).
 */
import { Writable } from 'node:stream';
import { createLogger } from '../../src/logging/index.js';
import type { Logger } from '../../src/logging/index.js';

export interface CapturedLog {
  logger: Logger;
  /** Every line so far, parsed; the same array grows as lines come. */
  lines: Record<string, unknown>[];
  /** The raw text so far. */
  text(): string;
}

export function captureLog(level: string): CapturedLog {
  let text = '';
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const s = chunk.toString('utf8');
      text += s;
      for (const line of s.split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const logger = createLogger({ level, format: 'json', destination: sink as never, isTTY: false });
  return { logger, lines, text: () => text };
}
