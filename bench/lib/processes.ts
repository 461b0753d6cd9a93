/**
 * The processes under test, each in its own child so its CPU time and peak RSS
 * are its own: the mailauth daemon (through bin/mailauth, as installed) and a
 * bare node:http server answering a fixed JSON body.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { freePort } from '../../test/helpers/free-port.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const TICKS_PER_SECOND = 100; // USER_HZ on Linux

export interface Proc {
  pid: number;
  url: string;
  /** user+system CPU seconds so far. */
  cpuSeconds(): number;
  /** Peak resident set (VmHWM), bytes. */
  peakRss(): number;
  rss(): number;
  stop(): Promise<void>;
}

export function procCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND;
}

function statusKb(pid: number, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

async function waitReady(url: string, child: ChildProcess, logFile: string): Promise<void> {
  const until = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`process exited (${child.exitCode}): ${readFileSync(logFile, 'utf8').slice(-2000)}`);
    try {
      const res = await fetch(`${url}/healthz`);
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not yet
    }
    if (Date.now() > until) throw new Error(`not ready at ${url}: ${readFileSync(logFile, 'utf8').slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function wrap(child: ChildProcess, url: string, dir: string): Proc {
  const pid = child.pid ?? 0;
  return {
    pid,
    url,
    cpuSeconds: () => procCpuSeconds(pid),
    peakRss: () => statusKb(pid, 'VmHWM'),
    rss: () => statusKb(pid, 'VmRSS'),
    stop: () =>
      new Promise<void>((done) => {
        if (child.exitCode !== null) {
          rmSync(dir, { recursive: true, force: true });
          done();
          return;
        }
        child.once('exit', () => {
          rmSync(dir, { recursive: true, force: true });
          done();
        });
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
      }),
  };
}

export interface DaemonOptions {
  databaseUrl: string;
  /** YAML tree merged over the defaults (cache: …, log: …). */
  config?: Record<string, unknown>;
  env?: Record<string, string>;
  /** Extra node flags, e.g. --cpu-prof for profiling. */
  nodeArgs?: string[];
}

export async function startDaemon(o: DaemonOptions): Promise<Proc & { logFile: string; configFile: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'mab-daemon-'));
  const port = await freePort();
  const extra = { ...o.config };
  const listen = { address: `127.0.0.1:${port}`, ...(extra.listen as Record<string, unknown> | undefined) };
  delete extra.listen;
  const tree = {
    listen,
    database: { url: o.databaseUrl, pool_size: 10 },
    log: { level: 'info', format: 'json' },
    ...extra,
  };
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, YAML.stringify(tree));
  const logFile = join(dir, 'daemon.log');
  const fd = openSync(logFile, 'w');
  const child = spawn(process.execPath, [...(o.nodeArgs ?? []), join(ROOT, 'bin/mailauth'), '--config', configFile, 'serve'], {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, ...o.env },
  });
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, child, logFile);
  return { ...wrap(child, url, dir), logFile, configFile };
}

/** The bare node:http yardstick; `spinUs` adds that much busy CPU per request (calibration). */
export async function startBare(spinUs = 0): Promise<Proc> {
  const dir = mkdtempSync(join(tmpdir(), 'mab-bare-'));
  const port = await freePort();
  const logFile = join(dir, 'bare.log');
  const fd = openSync(logFile, 'w');
  const child = spawn(process.execPath, [join(ROOT, 'bench/bare-server.mjs'), String(port), String(spinUs)], { stdio: ['ignore', fd, fd] });
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, child, logFile);
  return wrap(child, url, dir);
}

/** GET /metrics, parsed to name{labels} → value. */
export async function scrape(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
