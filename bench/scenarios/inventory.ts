// The inventory gate at engine level (no HTTP): ONE hot SKU, 64 concurrent clients in this
// process, every engine side by side in one run on a scratch database and a scratch Redis.
//
//   naive              BEGIN; SELECT … FOR UPDATE the stock row; UPDATE reserved (+ the same
//                      reservation, ledger and outbox rows the engines write); COMMIT — the
//                      read-then-write pattern, written here as the baseline
//   pg-direct          PostgresGate: one statement per reservation (inventory_try_reserve)
//   pg-batched         PostgresBatchedGate: group commit (inventory_reserve_many)
//   redis              RedisGate over one Redis: Lua admission, written behind to PostgreSQL (the
//                      arbiter) in group commits; a phase lasts until the last admitted
//                      reservation is in PostgreSQL (its drain time counts)
//   redis-cluster      the same over a Redis Cluster (only with BENCH_REDIS_CLUSTER_NODES)
//   ioredis-admit      diagnostic: this process sending the ceiling's Lua script through ioredis,
//                      no PostgreSQL — what Node + ioredis alone can do
//   redis-benchmark    the ceiling: `redis-benchmark -c 64 EVALSHA` of a single-key admission
//                      script (GET check, then DECRBY)
//
// Two modes, each variant measured for the phase duration, rounds alternating the order:
//   available   a fresh SKU with more stock than the phase can sell: reservations/s
//   sold-out    a fresh SKU with 100 units: 100 reservations succeed, then rejections dominate;
//               answers/s, and how often PostgreSQL was asked (Redis should refuse on its own)
// After every phase: checkInventoryInvariants() returns empty lists, and the SKU's reserved
// units = successful reservations × quantity (zero oversold). A failed check fails the run.
//
// Environment:
//   BENCH_DATABASE_URL          a PostgreSQL server on which to create (and drop) a scratch database;
//                               default: an embedded PostgreSQL in a temporary directory
//   BENCH_REDIS_URL             scratch Redis (default redis://127.0.0.1:6379); only keys of this run
//                               are written and deleted
//   BENCH_REDIS_CLUSTER_NODES   host:port,… of a Redis Cluster: adds the redis-cluster variant
//   BENCH_POOL_MAX              PostgreSQL connections of the bench (default: the concurrency)
//
// Goals (issue 3 §3), printed next to the figures, not asserted: Redis engine ≥ 20× naive and
// ≥ 50% of the redis-benchmark ceiling; batched ≥ 3× conditional UPDATE (pg-direct).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { freePort } from '../../src/platform/ports.ts';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import pino from 'pino';
import postgres from 'postgres';
import { PostgresBatchedGate, PostgresGate, type GateOutcome, type InventoryGate } from '../../src/modules/inventory/gate.ts';
import { checkInventoryInvariants } from '../../src/modules/inventory/invariants.ts';
import { RedisGate } from '../../src/modules/inventory/redis-gate.ts';
import { InventoryService } from '../../src/modules/inventory/service.ts';
import { ALL_ROLES, Databases, transaction, type Pool } from '../../src/platform/db.ts';
import { startEmbeddedPostgres, type EmbeddedServer } from '../../src/platform/embedded.ts';
import { LIMITS } from '../../src/platform/limits.ts';
import { createMetrics, type Metrics } from '../../src/platform/metrics.ts';
import { migrate } from '../../src/platform/migrate.ts';
import { connectRedis, createRedis, type RedisClient } from '../../src/platform/redis.ts';
import {
  fmtInt,
  fmtMs,
  fmtRatio,
  hardware,
  hardwareLine,
  loadAverage1m,
  median,
  mediansOf,
  phaseLine,
  progress,
  redactUrl,
  runClosedLoop,
  sideBySideRatios,
  table,
  UsageError,
  writeResults,
  type BenchOptions,
  type PhaseResult,
  type Scenario,
} from '../lib.ts';

const run$ = promisify(execFile);

const DEFAULT_CONCURRENCY = 64;
const LOCATION_ID = 'bench';
const QUANTITY = 1;
/** Units of the sold-out mode's SKU: these sell in the first moments, everything after is refused. */
const SOLD_OUT_STOCK = 100;
/** Long enough that no reservation expires during the run (no sweeper runs here anyway). */
const RESERVATION_TTL_MS = 15 * 60_000;
const WARMUP_S = 2;
/** Stock of an available-mode SKU = best warm-up rate × duration × this margin (whole receipts). */
const STOCK_MARGIN = 4;
/** As the server configures them (src/app.ts, src/platform/config.ts defaults). */
const BATCHED_OPTIONS = { partitions: 8, maxBatch: 500 };
const WRITE_BEHIND_OPTIONS = { partitions: 8, maxBatch: 2_000 };
const REDIS_GATE_OPTIONS = { holdStaleMs: 30_000, reconcileIntervalMs: 10_000 };
const REDIS_COMMAND_TIMEOUT_MS = 250;
const TARGET = { redisVsNaiveMin: 20, redisVsCeilingMin: 0.5, batchedVsDirectMin: 3 };

/** The ceiling's script: the essence of admission on one key — check, then decrement. */
const CEILING_LUA =
  "local a = tonumber(redis.call('GET', KEYS[1])) if a and a >= tonumber(ARGV[1]) then redis.call('DECRBY', KEYS[1], ARGV[1]) return 1 end return 0";

type Mode = 'available' | 'sold-out';
const MODES: readonly Mode[] = ['available', 'sold-out'];

type VariantKind = 'naive' | 'gate' | 'ioredis' | 'redis-benchmark';

interface Variant {
  key: string;
  label: string;
  kind: VariantKind;
  /** For 'gate': the engine under test. */
  gate?: InventoryGate;
  /** For redis gates: calls that reached PostgreSQL through the arbiter. */
  arbiterCalls?: () => number;
  /** For write-behind gates: resolves when every admitted reservation is in PostgreSQL. */
  drain?: () => Promise<void>;
  /** For redis gates and the Redis diagnostics: the client whose keys this run owns. */
  redis?: RedisClient;
  metrics?: Metrics;
}

interface PhaseCheck {
  sku: string;
  stock: number;
  reservedUnits: number;
  expectedReservedUnits: number;
  invariantsOk: boolean;
  invariantViolations?: Record<string, number>;
  invariantsCheckMs: number;
  /** Calls of the PostgreSQL arbiter behind a Redis gate during the phase. */
  arbiterCalls?: number;
  /** Write-behind gates: time after the last answer until PostgreSQL had recorded everything (counted in the phase's time). */
  writeBehindDrainMs?: number;
  redisFallbacks?: number;
  soldOutDuringPhase: boolean;
}

interface InventoryPhase extends PhaseResult {
  mode: Mode;
  variant: string;
  loadAverage1m: number;
  /** Event-loop utilisation of the bench process during the phase (1 = Node itself was the limit). */
  eventLoopUtilization?: number;
  /** CPU seconds of the bench process per wall second (2 = two cores busy). */
  processCpuPerSecond?: number;
  /** PostgreSQL transactions committed or rolled back in the scratch database during the phase. */
  pgTransactions?: number;
  check?: PhaseCheck;
}

const USAGE = [
  'engine level, no server needed: a scratch PostgreSQL (embedded in a temp dir, or a database created on',
  'BENCH_DATABASE_URL) and a scratch Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379; optional',
  'BENCH_REDIS_CLUSTER_NODES=host:port,… for a Redis Cluster). Needs redis-benchmark on PATH for the ceiling.',
  '(concurrency: --connections, default 64; BENCH_POOL_MAX: PostgreSQL connections, default = concurrency)',
].join('\n');

// ---------------------------------------------------------------------------------------------
// Scratch database

interface ScratchDatabase {
  url: string;
  description: string;
  drop(): Promise<void>;
}

async function scratchDatabase(runId: string): Promise<ScratchDatabase> {
  const server = process.env.BENCH_DATABASE_URL;
  if (server) {
    const name = `meridian_bench_inventory_${runId}`;
    const admin = postgres(server, { max: 1, onnotice: () => undefined, connect_timeout: 10 });
    try {
      await admin.unsafe(`CREATE DATABASE ${name}`);
    } catch (err) {
      throw new UsageError(`cannot create a scratch database on BENCH_DATABASE_URL (${redactUrl(server)}): ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      await admin.end({ timeout: 5 });
    }
    const u = new URL(server);
    u.pathname = `/${name}`;
    return {
      url: u.toString(),
      description: `database ${name} on ${redactUrl(server)}`,
      async drop() {
        const a = postgres(server, { max: 1, onnotice: () => undefined });
        await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).finally(() => a.end({ timeout: 5 }));
      },
    };
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'meridian-bench-inventory-'));
  const port = await freePort();
  progress(`starting an embedded PostgreSQL in ${dir} on port ${port}`);
  let pg: EmbeddedServer;
  try {
    pg = await startEmbeddedPostgres({ dataDir: dir, port, database: 'meridian' });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: pg.url,
    description: `embedded PostgreSQL in ${dir}, port ${port} (default settings of src/platform/embedded.ts)`,
    async drop() {
      await pg.stop().catch((err: unknown) => progress(`could not stop the embedded PostgreSQL: ${String(err)}`));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The naive baseline: read, decide in the client, write — under a row lock held across round trips.

async function naiveReserve(pool: Pool, reservationId: string, sku: string, quantity: number): Promise<GateOutcome> {
  return transaction(pool, async (tx) => {
    const [row] = await tx<{ available: string }[]>`
      SELECT on_hand - reserved AS available FROM stock WHERE sku = ${sku} AND location_id = ${LOCATION_ID} FOR UPDATE`;
    const available = Number(row?.available ?? 0);
    if (available < quantity) return { ok: false, sku, requested: quantity, available };
    // The same rows the engines write, so I2–I4 hold and the write volume is comparable.
    await tx`
      WITH s AS (
        UPDATE stock SET reserved = reserved + ${quantity}, updated_at = now() WHERE sku = ${sku} AND location_id = ${LOCATION_ID}
      ), r AS (
        INSERT INTO reservations (id, sku, location_id, quantity, status, expires_at)
        VALUES (${reservationId}, ${sku}, ${LOCATION_ID}, ${quantity}, 'live', now() + ${RESERVATION_TTL_MS} * interval '1 millisecond')
      ), o AS (
        INSERT INTO outbox (topic, aggregate_id, payload) VALUES ('inventory.stock_changed', ${reservationId}, jsonb_build_object('sku', ${sku}::text))
      )
      INSERT INTO stock_ledger (sku, location_id, kind, on_hand_delta, reserved_delta, reservation_id)
      VALUES (${sku}, ${LOCATION_ID}, 'reserve', 0, ${quantity}, ${reservationId})`;
    return { ok: true };
  });
}

// ---------------------------------------------------------------------------------------------
// redis-benchmark

interface RedisTarget {
  host: string;
  port: number;
  password?: string;
}

function redisTarget(url: string): RedisTarget {
  const u = new URL(url);
  return { host: u.hostname || '127.0.0.1', port: Number(u.port || 6379), ...(u.password ? { password: decodeURIComponent(u.password) } : {}) };
}

interface RedisBenchmarkResult {
  rps: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  elapsedS: number;
}

async function redisBenchmark(t: RedisTarget, clients: number, requests: number, sha: string, key: string): Promise<RedisBenchmarkResult> {
  const args = ['-h', t.host, '-p', String(t.port), ...(t.password ? ['-a', t.password] : []), '-c', String(clients), '-n', String(requests), '--csv', 'EVALSHA', sha, '1', key, String(QUANTITY)];
  const t0 = performance.now();
  const { stdout } = await run$('redis-benchmark', args, { timeout: 600_000, maxBuffer: 1 << 20 });
  const elapsedS = (performance.now() - t0) / 1000;
  // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('"EVALSHA')).pop();
  const cells = line?.match(/"([^"]*)"/g)?.map((c) => c.slice(1, -1)) ?? [];
  const num = (i: number): number => Number(cells[i]);
  if (cells.length < 8 || !Number.isFinite(num(1))) throw new Error(`cannot parse redis-benchmark output: ${stdout.slice(0, 500)}`);
  return { rps: num(1), meanMs: num(2), p50Ms: num(4), p95Ms: num(5), p99Ms: num(6), maxMs: num(7), elapsedS };
}

// ---------------------------------------------------------------------------------------------

type AdmitClient = RedisClient & { benchAdmit(key: string, qty: number): Promise<number> };

const availKey = (sku: string): string => `mrd:inv:{${sku}}:avail`;
const holdsKey = (sku: string): string => `mrd:inv:{${sku}}:holds`;

async function run(o: BenchOptions): Promise<void> {
  const concurrency = o.connections ?? DEFAULT_CONCURRENCY;
  const poolMax = Number(process.env.BENCH_POOL_MAX || concurrency);
  if (!Number.isInteger(poolMax) || poolMax < 1 || poolMax > 250) throw new UsageError(`BENCH_POOL_MAX must be an integer in 1..250, got "${process.env.BENCH_POOL_MAX}"`);
  const redisUrl = process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379';
  const clusterNodes = (process.env.BENCH_REDIS_CLUSTER_NODES ?? '').split(',').map((n) => n.trim()).filter(Boolean);
  try {
    await run$('redis-benchmark', ['--version'], { timeout: 5_000 });
  } catch {
    throw new UsageError('redis-benchmark is not on PATH (Debian: apt-get install redis-tools)');
  }

  const runId = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  const loadAtStart = loadAverage1m();
  progress(`inventory: one hot SKU, concurrency ${concurrency}, ${o.durationS} s per phase, ${o.rounds} rounds, run ${runId}`);
  progress(`hardware: ${hardwareLine()}; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  // Ids: unique positive 63-bit integers (ms << 20 stays below 2^61 until the year 2100).
  const idBase = BigInt(Date.now()) << 20n;
  let idSeq = 0n;
  const nextId = (): string => String(idBase + ++idSeq);

  const scratch = await scratchDatabase(runId);
  const log = pino({ level: 'warn' }, pino.destination(2));
  const dbs = Databases.single(scratch.url, { max: poolMax, applicationName: 'meridian-bench-inventory' });
  const pool = dbs.core('inventory');
  const clients: RedisClient[] = [];
  const variants: Variant[] = [];
  const createdSkus: string[] = [];
  const ceilingKeys: string[] = [];
  let primaryRedis: RedisClient | undefined;
  try {
    await migrate(pool, ALL_ROLES);
    const [settings] = await pool<{ version: string; fsync: string; synchronous_commit: string; shared_buffers: string; max_connections: string; datname: string }[]>`
      SELECT current_setting('server_version') AS version, current_setting('fsync') AS fsync,
             current_setting('synchronous_commit') AS synchronous_commit, current_setting('shared_buffers') AS shared_buffers,
             current_setting('max_connections') AS max_connections, current_database() AS datname`;
    progress(`database: ${scratch.description}; PostgreSQL ${settings?.version} fsync=${settings?.fsync} synchronous_commit=${settings?.synchronous_commit}`);
    const plainService = new InventoryService(dbs, new PostgresGate(pool));
    await plainService.upsertLocation(LOCATION_ID, 'Benchmark warehouse');

    // --- Redis clients: one per gate (the gate's stop() disconnects it) and one for diagnostics
    const newRedis = async (kind: 'url' | 'cluster', commandTimeoutMs = REDIS_COMMAND_TIMEOUT_MS): Promise<RedisClient> => {
      const c = createRedis(kind === 'url' ? { url: redisUrl, commandTimeoutMs } : { clusterNodes, commandTimeoutMs });
      if (!c) throw new Error('no redis client');
      clients.push(c);
      try {
        await connectRedis(c, 5_000);
      } catch (err) {
        throw new UsageError(`cannot reach ${kind === 'url' ? redactUrl(redisUrl) : `the Redis Cluster ${clusterNodes.join(',')}`}: ${err instanceof Error ? err.message : String(err)}`);
      }
      return c;
    };
    primaryRedis = await newRedis('url');
    const redisInfo = (await primaryRedis.info('server')).match(/redis_version:(\S+)/)?.[1] ?? '?';
    progress(`redis: ${redactUrl(redisUrl)} (Redis ${redisInfo})${clusterNodes.length ? `; cluster ${clusterNodes.join(',')}` : ''}`);

    const redisGateVariant = async (key: string, label: string, kind: 'url' | 'cluster'): Promise<Variant> => {
      // As src/app.ts builds it: the gate applies the command timeout itself (lag-tolerant), the client's is a backstop.
      const client = await newRedis(kind, Math.max(8 * REDIS_COMMAND_TIMEOUT_MS, 2_000));
      const metrics = createMetrics(false);
      const arbiter = new PostgresBatchedGate(pool, WRITE_BEHIND_OPTIONS);
      let calls = 0;
      const enqueue = arbiter.enqueue.bind(arbiter);
      arbiter.enqueue = (...args) => {
        calls++;
        return enqueue(...args);
      };
      const gate = new RedisGate(client, pool, arbiter, { ...REDIS_GATE_OPTIONS, commandTimeoutMs: REDIS_COMMAND_TIMEOUT_MS }, log, {
        reservations: metrics.gateReservations,
        latency: metrics.gateLatency,
        fallbacks: metrics.gateFallbacks,
        drift: metrics.gateDrift,
        driftCorrections: metrics.gateDriftCorrections,
      });
      return { key, label, kind: 'gate', gate, arbiterCalls: () => calls, drain: () => gate.drain(), redis: client, metrics };
    };

    variants.push({ key: 'naive', label: 'naive SELECT FOR UPDATE + UPDATE (baseline)', kind: 'naive' });
    variants.push({ key: 'pg-direct', label: 'PostgreSQL conditional (PostgresGate)', kind: 'gate', gate: new PostgresGate(pool) });
    variants.push({ key: 'pg-batched', label: 'PostgreSQL batched (PostgresBatchedGate)', kind: 'gate', gate: new PostgresBatchedGate(pool, BATCHED_OPTIONS) });
    variants.push(await redisGateVariant('redis', 'Redis engine (RedisGate, one Redis)', 'url'));
    if (clusterNodes.length) variants.push(await redisGateVariant('redis-cluster', 'Redis engine (RedisGate, Redis Cluster)', 'cluster'));
    const admitClient = primaryRedis as AdmitClient;
    admitClient.defineCommand('benchAdmit', { numberOfKeys: 1, lua: CEILING_LUA });
    variants.push({ key: 'ioredis-admit', label: 'diagnostic: ioredis + ceiling script, no PostgreSQL', kind: 'ioredis', redis: admitClient });
    variants.push({ key: 'redis-benchmark', label: 'ceiling: redis-benchmark EVALSHA', kind: 'redis-benchmark' });
    for (const v of variants) await v.gate?.start();
    const ceilingSha = String(await primaryRedis.script('LOAD', CEILING_LUA));
    const target = redisTarget(redisUrl);

    // --- one phase
    let skuSeq = 0;
    let availableStock = LIMITS.stockMovementMax;
    const receive = async (service: InventoryService, sku: string, units: number): Promise<void> => {
      for (let left = units; left > 0; left -= LIMITS.stockMovementMax) {
        await service.changeStock('receipt', sku, LOCATION_ID, Math.min(left, LIMITS.stockMovementMax), 'bench/scenarios/inventory.ts');
      }
    };
    const pgTransactions = async (): Promise<number> => {
      const [r] = await pool<{ n: string }[]>`SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = current_database()`;
      return Number(r?.n ?? 0);
    };
    const failures: string[] = [];
    let redisBenchmarkRate = 0;

    const runPhase = async (v: Variant, mode: Mode, round: number, durationS: number): Promise<InventoryPhase> => {
      const phase = `${mode}/${v.key}`;
      const stock = mode === 'available' ? availableStock : SOLD_OUT_STOCK;
      const startedAtLoad = loadAverage1m();
      // Each phase starts from a comparable database state: hot row vacuumed, WAL checkpointed.
      await pool`VACUUM stock`.catch(() => undefined);
      await pool`CHECKPOINT`.catch(() => undefined);

      if (v.kind === 'redis-benchmark') {
        const key = `mrd:bench:{${runId}-ceiling-${++skuSeq}}`;
        ceilingKeys.push(key);
        await primaryRedis!.set(key, mode === 'available' ? '1000000000000' : '0');
        const requests = Math.max(10_000, Math.round((redisBenchmarkRate || 20_000) * durationS));
        const startedAt = new Date().toISOString();
        const r = await redisBenchmark(target, concurrency, requests, ceilingSha, key);
        const left = Number(await primaryRedis!.get(key));
        await primaryRedis!.del(key);
        return {
          phase, round, startedAt, mode, variant: v.key, loadAverage1m: startedAtLoad, concurrency,
          elapsedS: requests / r.rps,
          completed: requests,
          perSecond: r.rps,
          latency: { count: requests, meanMs: r.meanMs, p50Ms: r.p50Ms, p90Ms: Number.NaN, p95Ms: r.p95Ms, p99Ms: r.p99Ms, maxMs: r.maxMs },
          statuses: mode === 'available' ? { reserved: 1_000_000_000_000 - left } : { out_of_stock: requests },
          errors: 0,
          notes: [`redis-benchmark -c ${concurrency} -n ${requests} EVALSHA (ceiling script); figures as redis-benchmark reports them (wall ${r.elapsedS.toFixed(1)} s)`],
        };
      }

      if (v.kind === 'ioredis') {
        const key = `mrd:bench:{${runId}-node-${++skuSeq}}`;
        ceilingKeys.push(key);
        await primaryRedis!.set(key, mode === 'available' ? '1000000000000' : '0');
        const elu0 = performance.eventLoopUtilization();
        const cpu0 = process.cpuUsage();
        const r = await runClosedLoop({
          phase, round, concurrency, durationS, next: () => true,
          op: async () => ((await admitClient.benchAdmit(key, QUANTITY)) === 1 ? 'reserved' : 'out_of_stock'),
        });
        const cpu = process.cpuUsage(cpu0);
        await primaryRedis!.del(key);
        return {
          ...r, mode, variant: v.key, loadAverage1m: startedAtLoad,
          eventLoopUtilization: performance.eventLoopUtilization(elu0).utilization,
          processCpuPerSecond: (cpu.user + cpu.system) / 1e6 / r.elapsedS,
        };
      }

      // PostgreSQL-backed variants: a fresh SKU, stocked through the service so the gate follows.
      const sku = `INV-${runId}-${++skuSeq}-${v.key}`;
      createdSkus.push(sku);
      await receive(new InventoryService(dbs, v.gate ?? plainService.gate), sku, stock);
      const gate = v.gate;
      const fallbacks0 = v.metrics ? (await v.metrics.gateFallbacks.get()).values[0]?.value ?? 0 : 0;
      const calls0 = v.arbiterCalls?.() ?? 0;
      const tx0 = await pgTransactions();
      const elu0 = performance.eventLoopUtilization();
      const cpu0 = process.cpuUsage();
      const lines = [{ sku, quantity: QUANTITY }];
      const loop = await runClosedLoop({
        phase, round, concurrency, durationS, next: () => true,
        op: async () => {
          const outcome = gate ? await gate.reserve(nextId(), lines, RESERVATION_TTL_MS) : await naiveReserve(pool, nextId(), sku, QUANTITY);
          return outcome.ok ? 'reserved' : 'out_of_stock';
        },
      });
      // A write-behind gate answers before PostgreSQL has recorded: the phase ends when the last
      // admitted reservation is in PostgreSQL, so its rate is what PostgreSQL kept up with.
      const drainStarted = performance.now();
      await v.drain?.();
      const writeBehindDrainMs = v.drain ? Math.round(performance.now() - drainStarted) : undefined;
      const r = writeBehindDrainMs === undefined ? loop : { ...loop, elapsedS: loop.elapsedS + writeBehindDrainMs / 1000, perSecond: loop.completed / (loop.elapsedS + writeBehindDrainMs / 1000) };
      const cpu = process.cpuUsage(cpu0);
      const eventLoopUtilization = performance.eventLoopUtilization(elu0).utilization;
      const pgTx = (await pgTransactions()) - tx0;
      const arbiterCalls = v.arbiterCalls ? v.arbiterCalls() - calls0 : undefined;
      const redisFallbacks = v.metrics ? ((await v.metrics.gateFallbacks.get()).values[0]?.value ?? 0) - fallbacks0 : undefined;

      // --- the checks: zero oversold, invariants I1–I4
      const reservedOk = r.statuses.reserved ?? 0;
      const [row] = await pool<{ reserved: string; on_hand: string }[]>`SELECT reserved, on_hand FROM stock WHERE sku = ${sku} AND location_id = ${LOCATION_ID}`;
      const reservedUnits = Number(row?.reserved ?? -1);
      const t0 = performance.now();
      const report = await checkInventoryInvariants(pool);
      const invariantsCheckMs = Math.round(performance.now() - t0);
      const violations = Object.fromEntries(Object.entries(report).filter(([, rows]) => (rows as unknown[]).length > 0).map(([k, rows]) => [k, (rows as unknown[]).length]));
      const invariantsOk = Object.keys(violations).length === 0;
      const soldOutDuringPhase = mode === 'available' && (r.statuses.out_of_stock ?? 0) > 0;
      const check: PhaseCheck = {
        sku, stock, reservedUnits, expectedReservedUnits: reservedOk * QUANTITY, invariantsOk,
        ...(invariantsOk ? {} : { invariantViolations: violations }),
        invariantsCheckMs,
        ...(arbiterCalls !== undefined ? { arbiterCalls } : {}),
        ...(writeBehindDrainMs !== undefined ? { writeBehindDrainMs } : {}),
        ...(redisFallbacks !== undefined ? { redisFallbacks } : {}),
        soldOutDuringPhase,
      };
      const notes = [...(r.notes ?? [])];
      if (reservedUnits !== reservedOk * QUANTITY) failures.push(`${phase} round ${round}: reserved ${reservedUnits} ≠ ${reservedOk} successes × ${QUANTITY}`);
      if (reservedUnits > stock) failures.push(`${phase} round ${round}: OVERSOLD ${reservedUnits} > ${stock}`);
      if (mode === 'sold-out' && reservedOk !== SOLD_OUT_STOCK) failures.push(`${phase} round ${round}: ${reservedOk} successes for ${SOLD_OUT_STOCK} units`);
      if (!invariantsOk) failures.push(`${phase} round ${round}: invariants violated ${JSON.stringify(violations)}`);
      if (soldOutDuringPhase) notes.push(`SOLD OUT during an available-mode phase: ${stock} units were not enough`);
      if (r.errors > 0) failures.push(`${phase} round ${round}: ${r.errors} errors (${r.notes?.join('; ') ?? ''})`);
      return {
        ...r, mode, variant: v.key, loadAverage1m: startedAtLoad, eventLoopUtilization,
        processCpuPerSecond: (cpu.user + cpu.system) / 1e6 / r.elapsedS,
        pgTransactions: pgTx, check, ...(notes.length ? { notes } : {}),
      };
    };

    const checkLine = (p: InventoryPhase): string => {
      const c = p.check;
      const parts = [`ELU ${p.eventLoopUtilization?.toFixed(2) ?? '–'}`, `load ${p.loadAverage1m}`];
      if (p.pgTransactions !== undefined) parts.push(`pg tx ${p.pgTransactions}`);
      if (c) {
        parts.push(`reserved ${c.reservedUnits}/${c.expectedReservedUnits} ${c.reservedUnits === c.expectedReservedUnits ? 'ok' : 'MISMATCH'}`);
        parts.push(`invariants ${c.invariantsOk ? 'ok' : 'VIOLATED'} (${c.invariantsCheckMs} ms)`);
        if (c.arbiterCalls !== undefined) parts.push(`arbiter calls ${c.arbiterCalls}`);
        if (c.writeBehindDrainMs !== undefined) parts.push(`write-behind drain ${c.writeBehindDrainMs} ms`);
        if (c.redisFallbacks) parts.push(`redis fallbacks ${c.redisFallbacks}`);
      }
      return parts.join(', ');
    };

    // --- warm-up (not recorded): JIT, pools, scripts; and the rates that size stock and redis-benchmark
    let bestRate = 0;
    for (const v of variants) {
      if (v.kind === 'redis-benchmark') {
        const key = `mrd:bench:{${runId}-warm}`;
        ceilingKeys.push(key);
        await primaryRedis.set(key, '1000000000000');
        const r = await redisBenchmark(target, concurrency, 50_000, ceilingSha, key);
        await primaryRedis.del(key);
        redisBenchmarkRate = r.rps;
        progress(`warm-up ${v.key}: ${fmtInt(r.rps)}/s`);
        continue;
      }
      const w = await runPhase(v, 'available', 0, WARMUP_S);
      if (v.kind !== 'ioredis') bestRate = Math.max(bestRate, w.perSecond);
      progress(`warm-up ${v.key}: ${fmtInt(w.perSecond)}/s (${checkLine(w)})`);
    }
    availableStock = Math.max(1, Math.ceil((bestRate * o.durationS * STOCK_MARGIN) / LIMITS.stockMovementMax)) * LIMITS.stockMovementMax;
    progress(`available-mode SKUs get ${fmtInt(availableStock)} units (best warm-up rate ${fmtInt(bestRate)}/s × ${o.durationS} s × ${STOCK_MARGIN})`);

    // --- measured rounds: order alternates, so a drift of the machine favours no variant
    const results: InventoryPhase[] = [];
    const total = o.rounds * MODES.length * variants.length;
    for (let round = 1; round <= o.rounds; round++) {
      const order = round % 2 === 1 ? variants : [...variants].reverse();
      for (const mode of MODES) {
        for (const v of order) {
          const r = await runPhase(v, mode, round, o.durationS);
          results.push(r);
          if (v.kind === 'redis-benchmark' && mode === 'available') redisBenchmarkRate = r.perSecond;
          progress(`${phaseLine(r, results.length, total)} | ${checkLine(r)}`);
        }
      }
    }

    // --- report
    const byKey = (mode: Mode, key: string): string => `${mode}/${key}`;
    const has = (key: string): boolean => variants.some((v) => v.key === key);
    const ratio = (mode: Mode, a: string, b: string): number => sideBySideRatios(results, byKey(mode, a), byKey(mode, b)).perSecond;
    const statusText = (s: Record<string, number>, errors: number): string =>
      Object.entries(s).map(([k, v]) => `${k}:${fmtInt(v)}`).join(' ') + (errors ? ` err:${errors}` : '');
    console.log('');
    console.log(`inventory gate, engine level — one hot SKU, ${concurrency} concurrent clients, medians of ${o.rounds} rounds × ${o.durationS} s; ratios within each round, then the median`);
    console.log(`hardware: ${hardwareLine()}; load average at start ${loadAtStart}, end ${loadAverage1m()}`);
    console.log(`PostgreSQL ${settings?.version} (${scratch.description}; fsync=${settings?.fsync}, synchronous_commit=${settings?.synchronous_commit}), pool ${poolMax}; Redis ${redisInfo} at ${redactUrl(redisUrl)}`);
    for (const mode of MODES) {
      console.log('');
      console.log(
        mode === 'available'
          ? `available — every answer a successful reservation (fresh SKU with ${fmtInt(availableStock)} units per phase)`
          : `sold-out — fresh SKU with ${SOLD_OUT_STOCK} units per phase: ${SOLD_OUT_STOCK} reservations, then rejections (answers/s)`,
      );
      const rows = variants.map((v) => {
        const m = mediansOf(byKey(mode, v.key), results);
        const mine = results.filter((r) => r.phase === byKey(mode, v.key));
        const elu = median(mine.map((r) => r.eventLoopUtilization ?? Number.NaN));
        const arbiter = mine.map((r) => r.check?.arbiterCalls).filter((x): x is number => x !== undefined);
        const pgTx = median(mine.map((r) => r.pgTransactions ?? Number.NaN));
        return [
          v.label,
          fmtInt(m.perSecond),
          fmtMs(m.p50Ms),
          fmtMs(m.p99Ms),
          v.key === 'naive' ? '1.00×' : fmtRatio(ratio(mode, v.key, 'naive')),
          v.key === 'redis-benchmark' ? '1.00×' : fmtRatio(ratio(mode, v.key, 'redis-benchmark')),
          Number.isFinite(elu) ? elu.toFixed(2) : '–',
          Number.isFinite(pgTx) ? fmtInt(pgTx) : '–',
          arbiter.length ? arbiter.map(fmtInt).join('/') : '–',
          statusText(m.statuses, m.errors),
        ];
      });
      console.log(table([mode === 'available' ? 'variant' : 'variant (sold out)', mode === 'available' ? 'reserv./s' : 'answers/s', 'p50 ms', 'p99 ms', 'vs naive', 'vs ceiling', 'ELU', 'pg tx/phase', 'arbiter calls', 'outcomes (all rounds)'], rows));
    }

    // --- goals
    const goal = (name: string, value: number, min: number, fmt: (n: number) => string): { name: string; value: number; min: number; met: boolean; text: string } => {
      const met = Number.isFinite(value) && value >= min;
      return { name, value, min, met, text: `${met ? 'MET   ' : 'MISSED'} ${name}: ${fmt(value)} (goal ≥ ${fmt(min)})` };
    };
    const pct = (n: number): string => (Number.isFinite(n) ? `${(n * 100).toFixed(0)}%` : '–');
    const goals = [];
    for (const key of ['redis', 'redis-cluster'].filter(has)) {
      for (const mode of MODES) {
        goals.push(goal(`${key} vs naive [${mode}]`, ratio(mode, key, 'naive'), TARGET.redisVsNaiveMin, fmtRatio));
        goals.push(goal(`${key} vs redis-benchmark ceiling [${mode}]`, ratio(mode, key, 'redis-benchmark'), TARGET.redisVsCeilingMin, pct));
      }
    }
    goals.push(goal('pg-batched vs pg-direct (conditional UPDATE) [available]', ratio('available', 'pg-batched', 'pg-direct'), TARGET.batchedVsDirectMin, fmtRatio));
    console.log('');
    console.log('goals (issue 3 §3; printed, not asserted — the "available" mode is the one the goals are about):');
    for (const g of goals) console.log(`  ${g.text}`);

    console.log('');
    if (failures.length) {
      console.log(`CHECKS FAILED:\n  ${failures.join('\n  ')}`);
      process.exitCode = 1;
    } else {
      const checked = results.filter((r) => r.check).length;
      console.log(`checks: all ${checked} PostgreSQL-backed phases: reserved units = successes × ${QUANTITY}, never above stock, sold-out phases sold exactly ${SOLD_OUT_STOCK}, invariants I1–I4 empty`);
    }

    const file = await writeResults({
      scenario: 'inventory',
      date: new Date().toISOString(),
      hardware: hardware(),
      loadAverage1m: { start: loadAtStart, end: loadAverage1m() },
      parameters: {
        concurrency,
        durationS: o.durationS,
        rounds: o.rounds,
        warmupS: WARMUP_S,
        quantityPerReservation: QUANTITY,
        availableStockPerPhase: availableStock,
        soldOutStockPerPhase: SOLD_OUT_STOCK,
        reservationTtlMs: RESERVATION_TTL_MS,
        poolMax,
        batchedOptions: BATCHED_OPTIONS,
        writeBehindOptions: WRITE_BEHIND_OPTIONS,
        redisGateOptions: REDIS_GATE_OPTIONS,
        redisCommandTimeoutMs: REDIS_COMMAND_TIMEOUT_MS,
        database: scratch.description,
        postgres: settings ?? null,
        redis: { url: redactUrl(redisUrl), version: redisInfo, clusterNodes },
        ceilingScript: CEILING_LUA,
        variants: variants.map((v) => ({ key: v.key, label: v.label })),
        naive: 'transaction(): BEGIN; SELECT on_hand - reserved … FOR UPDATE; UPDATE stock + INSERT reservation, ledger, outbox (one statement); COMMIT',
        loadGenerator: `closed loop of ${concurrency} async clients in the bench process (redis-benchmark: its own ${concurrency} connections)`,
      },
      targets: TARGET,
      medians: MODES.flatMap((mode) => variants.map((v) => mediansOf(byKey(mode, v.key), results))),
      ratios: Object.fromEntries(
        MODES.flatMap((mode) =>
          variants.flatMap((v) => [
            ...(v.key !== 'naive' ? [[`${byKey(mode, v.key)} vs naive`, sideBySideRatios(results, byKey(mode, v.key), byKey(mode, 'naive'))]] : []),
            ...(v.key !== 'redis-benchmark' ? [[`${byKey(mode, v.key)} vs redis-benchmark`, sideBySideRatios(results, byKey(mode, v.key), byKey(mode, 'redis-benchmark'))]] : []),
          ]),
        ).concat([['available/pg-batched vs pg-direct', sideBySideRatios(results, byKey('available', 'pg-batched'), byKey('available', 'pg-direct'))]]),
      ),
      phases: results,
      notes: [...goals.map((g) => g.text), ...(failures.length ? failures.map((f) => `CHECK FAILED: ${f}`) : ['all checks passed'])],
    });
    console.log(`results: ${file}`);
  } finally {
    for (const v of variants) await v.gate?.stop().catch(() => undefined);
    if (primaryRedis && primaryRedis.status === 'ready') {
      for (const key of ceilingKeys) await primaryRedis.del(key).catch(() => undefined);
    }
    // Only this run's keys: the Redis may be shared.
    const cleanup = createRedis({ url: redisUrl, commandTimeoutMs: 2_000 });
    const clusterCleanup = clusterNodes.length ? createRedis({ clusterNodes, commandTimeoutMs: 2_000 }) : undefined;
    for (const c of [cleanup, clusterCleanup]) {
      if (!c) continue;
      try {
        await connectRedis(c, 5_000);
        for (const sku of createdSkus) await c.del(availKey(sku), holdsKey(sku));
      } catch (err) {
        progress(`could not delete this run's Redis keys: ${String(err)}`);
      } finally {
        c.disconnect();
      }
    }
    for (const c of clients) c.disconnect();
    await dbs.close().catch(() => undefined);
    await scratch.drop().catch((err: unknown) => progress(`could not drop the scratch database: ${String(err)}`));
  }
}

export const scenario: Scenario = {
  name: 'inventory',
  summary: 'inventory gate engines on one hot SKU at 64 clients: naive vs PostgreSQL direct/batched vs Redis, vs redis-benchmark',
  usage: USAGE,
  run,
};
