/**
 * One `mailauth sync --force --json` in this process, measured: wall time of
 * the command, peak RSS (getrusage maxRSS) and the peak JS heap (sampled
 * every 20 ms). Prints one JSON line.
 *
 *   node node_modules/.cache/mailauth-bench-sync/bench/sync/once.js CONFIG
 */
import { Readable } from 'node:stream';
import { runCli } from '../../src/cli/main.js';
import type { Io } from '../../src/cli/io.js';

const config = process.argv[2] ?? '';
let out = '';
// Kept short: the per-change log lines of a 100,000-user import would otherwise pile up in this string.
let err = '';
let errLines = 0;
const io: Io = {
  stdout: { write: (s: string) => (out += s) },
  stderr: {
    write: (s: string) => {
      errLines += 1;
      if (err.length < 2000) err += s;
    },
  },
  stdin: Readable.from([]) as Io['stdin'],
  env: {},
  stdoutIsTTY: false,
  stderrIsTTY: false,
};
const mib = (b: number): number => Math.round((b / 1048576) * 10) / 10;
const rssBefore = process.memoryUsage().rss;
let heapPeak = 0;
let rssPeak = 0;
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  heapPeak = Math.max(heapPeak, m.heapUsed);
  rssPeak = Math.max(rssPeak, m.rss);
}, 20);
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const code = await runCli(['--config', config, 'sync', '--force', '--json'], io);
const ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
clearInterval(sampler);
const report = out.trim() ? (JSON.parse(out) as { counts?: unknown; status?: string }) : {};
process.stdout.write(
  JSON.stringify({
    code,
    ms: Math.round(ms),
    rssBeforeMiB: mib(rssBefore),
    maxRssMiB: Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10,
    sampledRssPeakMiB: mib(rssPeak),
    heapPeakMiB: mib(heapPeak),
    cpuMs: Math.round((cpu.user + cpu.system) / 1000),
    status: report.status,
    counts: report.counts,
    logLines: errLines,
    stderr: err.slice(0, 2000),
  }) + '\n',
);
