/**
 * HTTP load with autocannon: keep-alive connections, a fixed number in flight,
 * a rotating set of request bodies. Latency is recorded per response with
 * sub-millisecond resolution (autocannon's own histogram has 1 ms steps).
 */
import autocannon from 'autocannon';

export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  /** Responses whose status or result was not the expected one. */
  unexpected: number;
  errors: number;
}

export interface LoadSpec {
  url: string;
  path: string;
  bodies: string[];
  connections: number;
  seconds: number;
  /** Stop after this many requests instead of after `seconds`. */
  amount?: number;
  headers?: Record<string, string>;
  /** HTTP status every response should have. */
  status?: number;
}

export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  let next = 0;
  const bodies = spec.bodies;
  const latencies: number[] = [];
  let unexpected = 0;
  const want = spec.status ?? 200;
  const instance = autocannon({
    url: spec.url,
    connections: spec.connections,
    pipelining: 1,
    ...(spec.amount !== undefined ? { amount: spec.amount } : { duration: spec.seconds }),
    requests: [
      {
        method: 'POST',
        path: spec.path,
        headers: { 'content-type': 'application/json', ...spec.headers },
        setupRequest: (req: Record<string, unknown>) => {
          const body = bodies[next++ % bodies.length] as string;
          return { ...req, body };
        },
      },
    ],
  });
  instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
    latencies.push(ms);
    if (status !== want) unexpected++;
  });
  const r = await instance;
  const sorted = Float64Array.from(latencies).sort();
  const seconds = r.duration;
  return {
    requests: latencies.length,
    seconds,
    rps: latencies.length / seconds,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    unexpected,
    errors: r.errors + r.timeouts,
  };
}

/**
 * Send every body once, `width` at a time: fills the caches before a measured run,
 * and proves each request gets the answer the scenario claims to measure.
 */
export async function warmUp(
  url: string,
  path: string,
  bodies: string[],
  width: number,
  expect: { status: number; result?: string },
  headers: Record<string, string> = {},
): Promise<void> {
  let i = 0;
  const wrong: string[] = [];
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (i < bodies.length) {
        const body = bodies[i++] as string;
        const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
        const text = await res.text();
        const result = path === '/v1/passdb' ? (JSON.parse(text) as { result?: string }).result : undefined;
        if (res.status !== expect.status || (expect.result !== undefined && result !== expect.result)) wrong.push(`${res.status} ${text}`);
      }
    }),
  );
  if (wrong.length > 0) throw new Error(`${wrong.length} unexpected answers during warm-up, e.g. ${wrong[0]}`);
}
