// Shared benchmark helpers: load generators (autocannon for HTTP reads, a closed loop for
// anything else), percentiles and medians, progress lines, the side-by-side table, hardware
// description and results files. Nothing here judges a figure: benchmarks print what they
// measured next to the targets, and readers compare.
import autocannon from 'autocannon';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const RESULTS_DIR = path.join(BENCH_DIR, 'results');

/** Options every scenario receives from bench/run.ts (flags, else environment, else defaults). */
export interface BenchOptions {
  /** Base URL of a started server, e.g. http://127.0.0.1:8080 (no trailing slash). */
  readonly url: string;
  /** Length of one measured phase. */
  readonly durationS: number;
  /** How many times each phase runs; figures are the medians over the rounds. */
  readonly rounds: number;
  /** Concurrency override (HTTP connections or closed-loop workers); undefined = scenario default. */
  readonly connections: number | undefined;
  /** Values of the scenario's own flags (Scenario.flags), by name. */
  readonly flags?: Readonly<Record<string, string | boolean | undefined>>;
}

export interface Scenario {
  readonly name: string;
  readonly summary: string;
  /** Extra usage text (required environment and the like), printed by `npm run bench`. */
  readonly usage?: string;
  /** Flags of this scenario beyond the common ones, e.g. { products: { type: 'string' } }. */
  readonly flags?: Readonly<Record<string, { type: 'string' | 'boolean' }>>;
  run(options: BenchOptions): Promise<void>;
}

/** Thrown for a missing precondition (server down, env var absent): printed with the usage, exit 2. */
export class UsageError extends Error {}

// ---------------------------------------------------------------------------------------------
// Statistics

/** Nearest-rank percentile (p in 0..100) of an ascending array; NaN when empty. */
export function percentile(sortedAscending: ArrayLike<number>, p: number): number {
  const n = sortedAscending.length;
  if (n === 0) return Number.NaN;
  const rank = Math.min(n, Math.max(1, Math.ceil((p / 100) * n)));
  return sortedAscending[rank - 1] ?? Number.NaN;
}

export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** A growable array of latencies in milliseconds, cheap to append to on the hot path. */
export class LatencyRecorder {
  private values = new Float64Array(1 << 16);
  private n = 0;

  record(ms: number): void {
    if (this.n === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2);
      bigger.set(this.values);
      this.values = bigger;
    }
    this.values[this.n++] = ms;
  }

  get count(): number {
    return this.n;
  }

  summary(): LatencySummary {
    const sorted = this.values.slice(0, this.n).sort();
    let total = 0;
    for (const v of sorted) total += v;
    return {
      count: this.n,
      meanMs: this.n ? total / this.n : Number.NaN,
      p50Ms: percentile(sorted, 50),
      p90Ms: percentile(sorted, 90),
      p95Ms: percentile(sorted, 95),
      p99Ms: percentile(sorted, 99),
      maxMs: this.n ? sorted[this.n - 1]! : Number.NaN,
    };
  }
}

export interface LatencySummary {
  count: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  /** Optional: summaries built by hand elsewhere may not have it. */
  p95Ms?: number;
  p99Ms: number;
  maxMs: number;
}

/** One measured phase: what ran, for how long, and what came back. */
export interface PhaseResult {
  phase: string;
  round: number;
  /** Wall-clock start (ISO 8601), to line a phase up with server-side logs and profiles. */
  startedAt: string;
  concurrency: number;
  elapsedS: number;
  completed: number;
  perSecond: number;
  latency: LatencySummary;
  /** Responses per HTTP status (or "ok"/"error" for non-HTTP work). */
  statuses: Record<string, number>;
  /** Transport errors and timeouts: requests that got no answer at all. */
  errors: number;
  notes?: string[];
}

// ---------------------------------------------------------------------------------------------
// Load generators

export interface HttpLoadOptions {
  phase: string;
  round: number;
  url: string;
  connections: number;
  durationS: number;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  /**
   * Paths to rotate over (e.g. many product ids): each connection cycles through all of them from
   * its own random offset. The requests are encoded once up front; autocannon's per-request
   * setupRequest would rebuild every request and make the load generator the bottleneck.
   */
  paths?: readonly string[];
}

/**
 * HTTP load with autocannon (closed loop: each connection sends its next request when the
 * previous answer arrives). Latencies are taken from every response, not only the 2xx ones,
 * and kept exactly (autocannon's own histogram has 1 ms resolution).
 */
export async function runHttpLoad(o: HttpLoadOptions): Promise<PhaseResult> {
  const latencies = new LatencyRecorder();
  const statuses: Record<string, number> = {};
  const paths = o.paths;
  const startedAt = new Date().toISOString();
  const started = process.hrtime.bigint();
  let instance: autocannon.Instance | undefined;
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(
      {
        url: o.url,
        connections: o.connections,
        duration: o.durationS,
        method: o.method ?? 'GET',
        headers: o.headers,
        timeout: 10,
        ...(paths?.length
          ? {
              requests: paths.map((path) => ({ path })),
              setupClient: (client: autocannon.Client): void => {
                const offset = Math.floor(Math.random() * paths.length);
                client.setRequests([...paths.slice(offset), ...paths.slice(0, offset)].map((path) => ({ path })));
              },
            }
          : {}),
      },
      (err: unknown, result: autocannon.Result) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(result)),
    );
  });
  instance?.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
    latencies.record(responseTimeMs);
    const key = String(statusCode);
    statuses[key] = (statuses[key] ?? 0) + 1;
  });
  const result = await done;
  const elapsedS = Number(process.hrtime.bigint() - started) / 1e9;
  // autocannon's duration runs from its start to its stop (it stops on its next 1 s sample tick,
  // so it can exceed the configured time); every response counted arrived in it. Our own clock
  // also includes connection setup and teardown, so it is only the fallback.
  const measuredS = result.duration > 0 ? result.duration : elapsedS;
  return {
    phase: o.phase,
    round: o.round,
    startedAt,
    concurrency: o.connections,
    elapsedS: measuredS,
    completed: latencies.count,
    perSecond: latencies.count / measuredS,
    latency: latencies.summary(),
    statuses,
    errors: result.errors,
  };
}

export interface ClosedLoopOptions<T> {
  phase: string;
  round: number;
  concurrency: number;
  durationS: number;
  /** The next unit of work, or undefined when the supply is exhausted (the phase then ends early). */
  next: () => T | undefined;
  /** Performs one unit; returns a status label to count ("201", "ok", …). Throwing counts as an error. */
  op: (item: T) => Promise<string>;
}

/**
 * A closed loop of `concurrency` workers, each doing one operation at a time until the deadline
 * (or until `next` runs dry). Operations in flight at the deadline are waited for and counted.
 */
export async function runClosedLoop<T>(o: ClosedLoopOptions<T>): Promise<PhaseResult & { exhausted: boolean }> {
  const latencies = new LatencyRecorder();
  const statuses: Record<string, number> = {};
  let errors = 0;
  let exhausted = false;
  const firstErrors: string[] = [];
  const startedAt = new Date().toISOString();
  const started = performance.now();
  const deadline = started + o.durationS * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const item = o.next();
      if (item === undefined) {
        exhausted = true;
        return;
      }
      const t0 = performance.now();
      try {
        const status = await o.op(item);
        statuses[status] = (statuses[status] ?? 0) + 1;
        latencies.record(performance.now() - t0);
      } catch (err) {
        errors++;
        if (firstErrors.length < 3) firstErrors.push(err instanceof Error ? err.message : String(err));
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  const elapsedS = (performance.now() - started) / 1000;
  const notes: string[] = [];
  if (exhausted) notes.push(`prepared work ran out after ${elapsedS.toFixed(1)} s`);
  for (const e of firstErrors) notes.push(`error: ${e}`);
  return {
    phase: o.phase,
    round: o.round,
    startedAt,
    concurrency: o.concurrency,
    elapsedS,
    completed: latencies.count,
    perSecond: latencies.count / elapsedS,
    latency: latencies.summary(),
    statuses,
    errors,
    exhausted,
    ...(notes.length ? { notes } : {}),
  };
}

/** Runs `work` over `items` with at most `width` in flight; results keep the input order. */
export async function mapConcurrent<T, R>(items: readonly T[], width: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let nextIndex = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = nextIndex++;
      if (i >= items.length) return;
      out[i] = await work(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return out;
}

// ---------------------------------------------------------------------------------------------
// HTTP clients

export interface KeepAliveClient {
  request(method: string, urlPath: string, headers: Record<string, string>, body?: string): Promise<{ status: number; body: string }>;
  close(): void;
}

/**
 * Plain node:http with a keep-alive agent, for measured loops that autocannon cannot express:
 * cheaper per request than fetch, and the bench shares the machine with the server.
 * `agentOptions` adds to the agent's (e.g. maxFreeSockets, to keep more than 256 warm sockets).
 */
export function keepAliveClient(baseUrl: string, maxSockets: number, timeoutMs = 30_000, agentOptions: http.AgentOptions = {}): KeepAliveClient {
  const agent = new http.Agent({ keepAlive: true, maxSockets, ...agentOptions });
  const base = new URL(baseUrl);
  return {
    request(method, urlPath, headers, body) {
      return new Promise((resolve, reject) => {
        const req = http.request(
          {
            agent,
            host: base.hostname,
            port: base.port || 80,
            method,
            path: urlPath,
            headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) },
            timeout: timeoutMs,
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
            res.on('error', reject);
          },
        );
        req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer within ${timeoutMs} ms`)));
        req.on('error', reject);
        req.end(body);
      });
    },
    close() {
      agent.destroy();
    },
  };
}

// For preparation steps (not measured):

export class ApiError extends Error {
  constructor(readonly status: number, readonly body: string, what: string) {
    super(`${what} answered ${status}: ${body.slice(0, 300)}`);
  }
}

export interface ApiResponse<T> {
  status: number;
  body: T;
}

/** A small JSON client over fetch; `expect` lists the statuses that count as success. */
export async function api<T>(
  baseUrl: string,
  method: string,
  urlPath: string,
  opts: { token?: string; body?: unknown; headers?: Record<string, string>; expect?: number[] } = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${baseUrl}${urlPath}`, {
    method,
    headers,
    ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  const expect = opts.expect ?? [200, 201, 204];
  if (!expect.includes(res.status)) throw new ApiError(res.status, text, `${method} ${urlPath}`);
  return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
}

/** Fails with a usage message unless a Meridian server answers /healthz at `url`. */
export async function requireServer(url: string): Promise<void> {
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(3_000) });
    if (res.ok) return;
    throw new Error(`status ${res.status}`);
  } catch (err) {
    throw new UsageError(
      `no Meridian server answers at ${url}/healthz (${err instanceof Error ? err.message : String(err)}).\n` +
        'Start one first (`npm start`), or point BENCH_URL at a running server.',
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Database URL for baselines that talk to PostgreSQL directly

/**
 * The server's database: BENCH_DATABASE_URL, else DATABASE_URL, else the embedded server's
 * credentials under ${MERIDIAN_DATA_DIR:-.meridian} on port ${MERIDIAN_PG_PORT:-54329}.
 */
export function serverDatabaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.BENCH_DATABASE_URL || env.DATABASE_URL;
  if (explicit) return explicit;
  const dataDir = path.resolve(env.MERIDIAN_DATA_DIR ?? '.meridian');
  const file = path.join(dataDir, 'credentials.json');
  if (!existsSync(file)) {
    throw new UsageError(
      `cannot find the database: set BENCH_DATABASE_URL (or DATABASE_URL), or MERIDIAN_DATA_DIR to the embedded server's data directory (${file} does not exist)`,
    );
  }
  const creds = JSON.parse(readFileSync(file, 'utf8')) as { user?: unknown; password?: unknown };
  if (typeof creds.user !== 'string' || typeof creds.password !== 'string') throw new UsageError(`${file} has no user/password`);
  const port = env.MERIDIAN_PG_PORT || '54329';
  return `postgres://${encodeURIComponent(creds.user)}:${encodeURIComponent(creds.password)}@127.0.0.1:${port}/meridian`;
}

/** The URL with its password hidden, for printing and results files. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

// ---------------------------------------------------------------------------------------------
// Output

export interface Hardware {
  cpuModel: string;
  cpuCount: number;
  totalMemoryGiB: number;
  platform: string;
  node: string;
}

export function hardware(): Hardware {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpuCount: cpus.length,
    totalMemoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
  };
}

export function hardwareLine(h: Hardware = hardware()): string {
  return `${h.cpuCount} × ${h.cpuModel}, ${h.totalMemoryGiB} GiB RAM, ${h.platform}, Node ${h.node}`;
}

/** 1-minute load average: on a shared machine, how much else was running (recorded, not judged). */
export function loadAverage1m(): number {
  return Math.round((os.loadavg()[0] ?? 0) * 100) / 100;
}

const startedAt = Date.now();

/** One progress line on stderr, prefixed with the time since the run began. */
export function progress(message: string): void {
  const s = ((Date.now() - startedAt) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${s}s] ${message}\n`);
}

export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–';
}

export function fmtMs(n: number): string {
  if (!Number.isFinite(n)) return '–';
  return n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0);
}

export function fmtRatio(n: number): string {
  if (!Number.isFinite(n)) return '–';
  // Small ratios keep three significant digits: at two decimals 0.0349 and 0.0425 both read 0.04×.
  return `${Math.abs(n) >= 0.1 || n === 0 ? n.toFixed(2) : n.toPrecision(3)}×`;
}

/** The progress line printed after each phase. */
export function phaseLine(r: PhaseResult, index: number, total: number): string {
  const statuses = Object.entries(r.statuses).map(([k, v]) => `${k}:${v}`).join(' ');
  return (
    `phase ${index}/${total} ${r.phase} (round ${r.round}, ${r.concurrency} conc): ` +
    `${fmtInt(r.perSecond)}/s, p50 ${fmtMs(r.latency.p50Ms)} ms, p99 ${fmtMs(r.latency.p99Ms)} ms, ` +
    `${r.completed} done in ${r.elapsedS.toFixed(1)} s [${statuses || 'no responses'}]` +
    (r.errors ? `, ${r.errors} errors` : '') +
    (r.notes?.length ? ` — ${r.notes.join('; ')}` : '')
  );
}

/** A plain text table with right-aligned columns except the first. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Medians over rounds of one phase. */
export interface PhaseMedians {
  phase: string;
  rounds: number;
  perSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  completed: number;
  statuses: Record<string, number>;
  errors: number;
}

export function mediansOf(phase: string, results: readonly PhaseResult[]): PhaseMedians {
  const mine = results.filter((r) => r.phase === phase);
  const statuses: Record<string, number> = {};
  for (const r of mine) for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  return {
    phase,
    rounds: mine.length,
    perSecond: median(mine.map((r) => r.perSecond)),
    p50Ms: median(mine.map((r) => r.latency.p50Ms)),
    p95Ms: median(mine.map((r) => r.latency.p95Ms ?? Number.NaN)),
    p99Ms: median(mine.map((r) => r.latency.p99Ms)),
    completed: mine.reduce((n, r) => n + r.completed, 0),
    statuses,
    errors: mine.reduce((n, r) => n + r.errors, 0),
  };
}

export interface Ratios {
  /** ours / baseline, throughput: below 1 means slower than the baseline. */
  perSecond: number;
  /** ours / baseline, latency: above 1 means slower than the baseline. */
  p50: number;
  p99: number;
}

/**
 * Ratios of a phase to its baseline, computed within each round (the two ran minutes apart at
 * most, on the same noisy machine) and then the median over the rounds.
 */
export function sideBySideRatios(results: readonly PhaseResult[], phase: string, baseline: string): Ratios {
  const rounds = [...new Set(results.map((r) => r.round))];
  const per = rounds.flatMap((round) => {
    const a = results.find((r) => r.round === round && r.phase === phase);
    const b = results.find((r) => r.round === round && r.phase === baseline);
    return a && b ? [{ perSecond: a.perSecond / b.perSecond, p50: a.latency.p50Ms / b.latency.p50Ms, p99: a.latency.p99Ms / b.latency.p99Ms }] : [];
  });
  return { perSecond: median(per.map((x) => x.perSecond)), p50: median(per.map((x) => x.p50)), p99: median(per.map((x) => x.p99)) };
}

/**
 * The bench's checkout of the code (read-only git queries; --no-optional-locks keeps `status`
 * from refreshing the index). The server may run other code if it was started from elsewhere or
 * before an edit; a dirty tree is listed so a reader can tell.
 */
export function codeVersion(): { commit: string; dirtyFiles: string[] } | null {
  try {
    const git = (...args: string[]): string => execFileSync('git', args, { cwd: BENCH_DIR, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const dirtyFiles = git('--no-optional-locks', 'status', '--porcelain', '--untracked-files=no').split('\n').filter(Boolean).map((l) => l.slice(3));
    return { commit: git('rev-parse', 'HEAD').trim(), dirtyFiles };
  } catch {
    return null;
  }
}

export interface ResultsFile {
  scenario: string;
  date: string;
  hardware: Hardware;
  /** 1-minute load average when the scenario started and when it wrote its results. */
  loadAverage1m?: { start: number; end: number };
  code?: ReturnType<typeof codeVersion>;
  parameters: Record<string, unknown>;
  targets: Record<string, unknown>;
  medians: PhaseMedians[];
  ratios: Record<string, Ratios>;
  phases: PhaseResult[];
  notes?: string[];
  /** Anything else a scenario measured (e.g. sizes, build times, quality checks). */
  details?: Record<string, unknown>;
}

/** Writes bench/results/<scenario>.json (via a temporary file, so a crash leaves no half file). */
export async function writeResults(results: ResultsFile): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${results.scenario}.json`);
  results = { ...results, code: results.code ?? codeVersion() };
  const tmp = path.join(RESULTS_DIR, `${results.scenario}.tmp.json`);
  await writeFile(tmp, `${JSON.stringify(results, null, 2)}\n`);
  await rename(tmp, file);
  return file;
}

// ---------------------------------------------------------------------------------------------
// CPU of process trees (/proc): utime + stime, plus the children a process has reaped (a
// postmaster reaps its backends, so their CPU lands in its cutime/cstime).

const CLOCK_TICKS = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** A process's parent and CPU ticks (its own, and its reaped children's); undefined once it is gone. */
function procStat(pid: number): { ppid: number; ownTicks: number; childrenTicks: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    return { ppid: Number(fields[1]), ownTicks: Number(fields[11]) + Number(fields[12]), childrenTicks: Number(fields[13]) + Number(fields[14]) };
  } catch {
    return undefined;
  }
}

/** The PID on the first line of a PID file (postmaster.pid); undefined if there is none. */
export function pidFromFile(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').split('\n')[0]?.trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** One process's own CPU (utime + stime), milliseconds; undefined once it is gone. */
export function cpuMsOfProcess(pid: number): number | undefined {
  const s = procStat(pid);
  return s ? (s.ownTicks * 1000) / CLOCK_TICKS : undefined;
}

export function cpuMsOfTrees(roots: readonly number[], exclude: readonly number[] = []): number {
  const parent = new Map<number, number>();
  const cpu = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = procStat(Number(entry));
    if (!s) continue; // gone meanwhile
    parent.set(Number(entry), s.ppid);
    cpu.set(Number(entry), s.ownTicks + s.childrenTicks);
  }
  const rootSet = new Set(roots);
  const excluded = new Set(exclude);
  let ticks = 0;
  for (const [pid, t] of cpu) {
    for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 20; p = parent.get(p), hops++) {
      if (excluded.has(p)) break; // a subtree counted apart (the embedded PostgreSQL under its API process)
      if (rootSet.has(p)) {
        ticks += t;
        break;
      }
    }
  }
  return (ticks * 1000) / CLOCK_TICKS;
}

/** CPU of the whole machine (all processes, ours and others'), busy milliseconds. */
export function machineBusyMs(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (line[3] ?? 0) + (line[4] ?? 0);
  const total = line.slice(0, 8).reduce((a, b) => a + b, 0);
  return ((total - idle) * 1000) / CLOCK_TICKS;
}
