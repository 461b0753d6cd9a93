/**
 * Reading Dovecot's running configuration: `doveconf -n -P` output (2.3 and 2.4
 * syntax) parsed into a tree, and the auth settings mailauth depends on pulled
 * out of it with Dovecot's defaults filled in. Pure except `runDoveconf`.
 *
 * Why a hand-written parser: `doveconf -n` prints a normalised, line-per-setting
 * form (`key = value`, `type [name] {`, `}`) that no npm library reads; the
 * grammar is a dozen lines.
 *
 * `-P` is needed because doveconf hides every value whose key ends in `key` or
 * `password` otherwise, `cache_key` included (2.3: `#hidden_use-P_to_show#`,
 * 2.4: `# hidden, use -P to show it`). The text therefore may hold secrets: it
 * is parsed and dropped, never logged or returned whole.
 */
import { execFile } from 'node:child_process';

export interface DoveconfBlock {
  /** `passdb`, `service`, `protocol`, … (`''` for the top level). */
  type: string;
  /** `auth` in `service auth {`, `lua` in 2.4's `passdb lua {`; null when the block has none. */
  name: string | null;
  settings: Record<string, string>;
  blocks: DoveconfBlock[];
  /** 1-based line of the block header (0 for the top level). */
  line: number;
}

export interface Doveconf {
  /** `2.3.19.1`, `2.4.1-4`, … from the first comment line, or null. */
  version: string | null;
  /** The syntax family: from the version, else from the syntax itself. */
  major: '2.3' | '2.4';
  root: DoveconfBlock;
  /** Lines that are neither a setting, a block nor a comment. */
  problems: string[];
}

const HIDDEN = /^(?:#hidden_use-P_to_show#|# hidden, use -P to show it)$/;

/** A value doveconf printed without -P. */
export function isHidden(value: string | undefined): boolean {
  return value !== undefined && HIDDEN.test(value.trim());
}

export function parseDoveconf(text: string): Doveconf {
  const root: DoveconfBlock = { type: '', name: null, settings: {}, blocks: [], line: 0 };
  const stack: DoveconfBlock[] = [root];
  const problems: string[] = [];
  let version: string | null = null;
  let sawNamedDb = false;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    const top = stack[stack.length - 1] as DoveconfBlock;
    if (line === '') return;
    if (line.startsWith('#')) {
      const v = /^#\s*(2\.\d+\.\d+(?:\.\d+)?(?:-\S+)?)\s+\(/.exec(line);
      if (v && version === null) version = v[1] as string;
      return;
    }
    if (line === '}') {
      if (stack.length > 1) stack.pop();
      else problems.push(`line ${i + 1}: } without a block`);
      return;
    }
    const setting = /^([^\s={}]+)\s*=\s?(.*)$/.exec(line);
    if (setting) {
      top.settings[setting[1] as string] = (setting[2] as string).trim();
      return;
    }
    const header = /^([^\s={}]+)(?:\s+([^={]*?))?\s*\{$/.exec(line);
    if (header) {
      const name = header[2] ? header[2].replace(/^"(.*)"$/, '$1') : null;
      const block: DoveconfBlock = { type: header[1] as string, name, settings: {}, blocks: [], line: i + 1 };
      if ((block.type === 'passdb' || block.type === 'userdb') && name !== null) sawNamedDb = true;
      top.blocks.push(block);
      stack.push(block);
      return;
    }
    problems.push(`line ${i + 1}: not a setting or a block`);
  });
  if (stack.length > 1) problems.push(`${stack.length - 1} block(s) not closed`);
  const fromVersion = version === null ? null : /^2\.(\d+)/.exec(version)?.[1];
  const major = fromVersion !== null && fromVersion !== undefined ? (Number(fromVersion) >= 4 ? '2.4' : '2.3') : sawNamedDb || 'dovecot_config_version' in root.settings ? '2.4' : '2.3';
  return { version, major, root, problems };
}

/** Every block of `type` in the tree, with the filter blocks (`protocol imap`, …) it sits in. */
export function findBlocks(block: DoveconfBlock, type: string, path: string[] = []): { block: DoveconfBlock; filters: string[] }[] {
  const out: { block: DoveconfBlock; filters: string[] }[] = [];
  for (const b of block.blocks) {
    if (b.type === type) out.push({ block: b, filters: path });
    else out.push(...findBlocks(b, type, [...path, b.name === null ? b.type : `${b.type} ${b.name}`]));
  }
  return out;
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4 };

/** `10 M`, `10M`, `0`, `512 k` → bytes; null when it is not a size. */
export function parseSize(value: string): number | null {
  const m = /^(\d+)\s*([a-z]*)$/i.exec(value.trim());
  const unit = m ? SIZE_UNITS[(m[2] as string).toLowerCase()] : undefined;
  return m && unit !== undefined ? Number(m[1]) * unit : null;
}

const TIME_UNITS: [RegExp, number][] = [
  [/^(?:ms|msecs?|milliseconds?)$/, 0.001],
  [/^(?:|s|secs?|seconds?)$/, 1],
  [/^(?:m|mins?|minutes?)$/, 60],
  [/^(?:h|hours?)$/, 3600],
  [/^(?:d|days?)$/, 86400],
  [/^(?:w|weeks?)$/, 604800],
];

/** `5 mins`, `4294967295 secs`, `1 min`, `infinite` → seconds (Infinity); null when it is not a time. */
export function parseInterval(value: string): number | null {
  const v = value.trim().toLowerCase();
  if (v === 'infinite' || v === 'unlimited') return Infinity;
  const m = /^(\d+)\s*([a-z]*)$/.exec(v);
  if (!m) return null;
  const unit = TIME_UNITS.find(([re]) => re.test(m[2] as string));
  return unit ? Number(m[1]) * unit[1] : null;
}

/** A Lua passdb or userdb as doveconf shows it, in either syntax. */
export interface LuaDb {
  kind: 'passdb' | 'userdb';
  /** The 2.4 block name (`lua`, `mailauth`); null on 2.3. */
  name: string | null;
  /** The script it loads. */
  file: string | null;
  /** Runs in an auth-worker: 2.3 `blocking=` (default yes), 2.4 `use_worker` (default yes for the Lua driver). */
  worker: boolean;
  /** How the worker setting was given (`blocking=no`, `use_worker = no`), or null for the default. */
  workerSetting: string | null;
  /** The cache key the block sets: null when it sets none (2.3: the Lua default %u; 2.4: the script's), 'hidden' without -P. */
  cacheKey: string | 'hidden' | null;
  /** The SASL mechanisms it is limited to (2.3 `mechanisms`, 2.4 `mechanisms_filter`), lower case; null when not limited. */
  mechanisms: string[] | null;
  /** 2.4 `lua_settings { config_file }`: the settings file mailauth.lua reads. */
  configFile: string | null;
  /** 2.4 `use_cache = no` turns the cache off for this block. */
  useCache: boolean;
  /** `protocol imap`, … when the block sits inside a filter. */
  filters: string[];
  line: number;
}

function mechanismList(value: string | undefined): string[] | null {
  const list = (value ?? '').toLowerCase().split(/[\s,]+/).filter(Boolean);
  return list.length ? list : null;
}

/** A passdb that checks passwords: not limited to mechanisms, or limited to some that include PLAIN or LOGIN. */
export function checksPasswords(db: LuaDb): boolean {
  return db.mechanisms === null || db.mechanisms.some((m) => m === 'plain' || m === 'login');
}

function luaDbs(conf: Doveconf, kind: 'passdb' | 'userdb'): LuaDb[] {
  const out: LuaDb[] = [];
  for (const { block: b, filters } of findBlocks(conf.root, kind)) {
    const s = b.settings;
    const driver = s.driver ?? (conf.major === '2.4' ? b.name : null);
    if (driver !== 'lua') continue;
    if (conf.major === '2.3' || s.args !== undefined) {
      // 2.3: args = file=/path blocking=yes cache_key=%u%s (the file may also be the first bare word).
      const words = (s.args ?? '').split(/\s+/).filter(Boolean);
      const opt = (k: string): string | undefined => words.find((w) => w.startsWith(`${k}=`))?.slice(k.length + 1);
      const file = opt('file') ?? words.find((w) => !w.includes('=')) ?? null;
      const blocking = opt('blocking');
      const ck = opt('cache_key');
      out.push({
        kind,
        name: b.name,
        file,
        worker: blocking === undefined ? true : blocking.toLowerCase() === 'yes',
        workerSetting: blocking === undefined ? null : `blocking=${blocking}`,
        cacheKey: ck === undefined ? null : isHidden(ck) || /^#hidden/.test(ck) ? 'hidden' : ck,
        mechanisms: mechanismList(s.mechanisms),
        configFile: null,
        useCache: true,
        filters,
        line: b.line,
      });
      continue;
    }
    const luaSettings = b.blocks.find((x) => x.type === 'lua_settings')?.settings ?? {};
    const ckName = kind === 'passdb' ? 'cache_key' : 'userdb_cache_key';
    const ck = luaSettings[ckName] ?? (kind === 'userdb' ? luaSettings.cache_key : undefined);
    const useWorker = s.use_worker ?? s[`${kind}_use_worker`];
    const useCache = s.use_cache ?? s[`${kind}_use_cache`];
    out.push({
      kind,
      name: b.name,
      file: s.lua_file ?? s[`${kind}_lua_file`] ?? null,
      worker: useWorker === undefined ? true : useWorker === 'yes',
      workerSetting: useWorker === undefined ? null : `use_worker = ${useWorker}`,
      cacheKey: ck === undefined ? null : isHidden(ck) ? 'hidden' : ck,
      mechanisms: mechanismList(s.mechanisms_filter ?? s[`${kind}_mechanisms_filter`] ?? s.mechanisms),
      configFile: luaSettings.config_file ?? null,
      useCache: useCache === undefined ? true : useCache === 'yes',
      filters,
      line: b.line,
    });
  }
  return out;
}

/** A setting with where its value came from. */
export interface Sourced<T> {
  value: T;
  /** The setting as written (`service auth { idle_kill = 5 mins }`), or `default` when Dovecot's default applies. */
  from: string;
}

/** The auth settings mailauth depends on, Dovecot's defaults filled in. */
export interface DovecotAuthSettings {
  version: string | null;
  major: '2.3' | '2.4';
  luaPassdbs: LuaDb[];
  luaUserdbs: LuaDb[];
  /** All passdb drivers in order (to tell "no Lua passdb" from "another one first"). */
  passdbDrivers: string[];
  /** auth_cache_size in bytes (0 = off, Dovecot's default). */
  cacheSize: Sourced<number>;
  cacheTtl: Sourced<number>;
  /** Seconds an idle auth process lives (Infinity = never killed). */
  authIdleKill: Sourced<number>;
  /** Auth worker processes: lookups running at once toward mailauth. */
  authWorkers: Sourced<number>;
  /** `MAILAUTH_LUA_CONFIG` passed through `import_environment` (how 2.3 names the script's settings file). */
  luaConfigEnv: string | null;
}

function service(conf: Doveconf, name: string): Record<string, string> {
  return conf.root.blocks.find((b) => b.type === 'service' && b.name === name)?.settings ?? {};
}

export function dovecotAuthSettings(conf: Doveconf): DovecotAuthSettings {
  const top = conf.root.settings;
  const size = top.auth_cache_size === undefined ? null : parseSize(top.auth_cache_size);
  const ttl = top.auth_cache_ttl === undefined ? null : parseInterval(top.auth_cache_ttl);
  const auth = service(conf, 'auth');
  const worker = service(conf, 'auth-worker');

  // Idle kill: 2.3 `idle_kill` (0 = default_idle_kill, 1 min); 2.4 `idle_kill_interval` (0 = default_idle_kill_interval, 1 min).
  const own = conf.major === '2.4' ? 'idle_kill_interval' : 'idle_kill';
  const dflt = conf.major === '2.4' ? 'default_idle_kill_interval' : 'default_idle_kill';
  const ownValue = auth[own] === undefined ? null : parseInterval(auth[own]);
  const dfltValue = top[dflt] === undefined ? null : parseInterval(top[dflt]);
  const authIdleKill: Sourced<number> =
    ownValue !== null && ownValue !== 0
      ? { value: ownValue, from: `service auth { ${own} = ${auth[own]} }` }
      : dfltValue !== null && dfltValue !== 0
        ? { value: dfltValue, from: `${dflt} = ${top[dflt]}` }
        : { value: 60, from: 'default' };

  // Workers: 2.3 auth_worker_max_count (default 30), capped by a non-zero service process_limit;
  // 2.4 service auth-worker { process_limit } (default 30).
  let authWorkers: Sourced<number> = { value: 30, from: 'default' };
  const limit = worker.process_limit === undefined ? null : Number(worker.process_limit);
  if (conf.major === '2.3' && top.auth_worker_max_count !== undefined) {
    authWorkers = { value: Number(top.auth_worker_max_count), from: `auth_worker_max_count = ${top.auth_worker_max_count}` };
  }
  if (limit !== null && Number.isFinite(limit) && (conf.major === '2.4' || (limit > 0 && limit < authWorkers.value))) {
    authWorkers = { value: limit, from: `service auth-worker { process_limit = ${worker.process_limit} }` };
  }

  return {
    version: conf.version,
    major: conf.major,
    luaPassdbs: luaDbs(conf, 'passdb'),
    luaUserdbs: luaDbs(conf, 'userdb'),
    passdbDrivers: findBlocks(conf.root, 'passdb').map(({ block: b }) => b.settings.driver ?? b.name ?? '?'),
    cacheSize: size === null ? { value: 0, from: 'default' } : { value: size, from: `auth_cache_size = ${top.auth_cache_size}` },
    cacheTtl: ttl === null ? { value: 3600, from: 'default' } : { value: ttl, from: `auth_cache_ttl = ${top.auth_cache_ttl}` },
    authIdleKill,
    authWorkers,
    luaConfigEnv: /(?:^|\s)MAILAUTH_LUA_CONFIG=(\S+)/.exec(top.import_environment ?? '')?.[1] ?? conf.root.blocks.find((b) => b.type === 'import_environment')?.settings.MAILAUTH_LUA_CONFIG ?? null,
  };
}

export interface RunDoveconfOptions {
  /** Dovecot's config file (`-c`); Dovecot's own default when absent. */
  configFile?: string;
  /** A root directory Dovecot runs in (`chroot ROOT doveconf …`); the config file is a path inside it. */
  root?: string;
  timeoutMs?: number;
}

/** `doveconf -n -P` (with `-c FILE`, inside `chroot ROOT` when given): its output, or why not. */
export function runDoveconf(opts: RunDoveconfOptions = {}): Promise<{ text: string } | { error: string }> {
  const args = ['-n', '-P', ...(opts.configFile ? ['-c', opts.configFile] : [])];
  const [cmd, argv] = opts.root ? ['chroot', [opts.root, 'doveconf', ...args]] : ['doveconf', args];
  return new Promise((resolve) => {
    execFile(cmd, argv, { timeout: opts.timeoutMs ?? 10_000, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (!err) return resolve({ text: stdout });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return resolve({ error: `${cmd} is not installed here` });
      const line = stderr
        .split('\n')
        .map((l) => l.trim())
        .find((l) => l !== '');
      resolve({ error: line ?? err.message });
    });
  });
}
