// Scale-out, side by side in one run: a single node (one API process on embedded PostgreSQL) and
// the local topology (`meridian cluster up` of topologies/local.yaml moved to ports of its own,
// then one API process with `meridian start --topology`), on the same machine at the same time.
//
//   npm run bench -- scale [--duration S] [--rounds N] [--connections N]
//
// Self-contained: it needs no started server (BENCH_URL is ignored). It starts, in scratch data
// directories under the system temp dir, everything it measures, and stops it all at the end —
// also after a failure or Ctrl-C: API processes by the PIDs it started, the clusters with
// `meridian cluster down --purge` (which stops Patroni, PostgreSQL and etcd by their PID files).
//
// Measured, every phase in each round on both sides, medians over the rounds:
//   - `cluster up` time (once: wall clock of the command, from nothing to migrated clusters);
//   - product reads/s (GET /healthz as the control, the product list, product detail) with
//     autocannon at the same connections and duration on both sides;
//   - single-row autocommit INSERTs: the single node, and a user-shard primary with its
//     synchronous standby (synchronous_commit=on) and without waiting for it (=local): the
//     cost of synchronous replication per commit, on the same server;
//   - checkout orders/s (prepared carts on SKUs no other in-flight checkout touches, as in
//     bench/scenarios/checkout.ts), with the CPU each process tree spent per order, and the
//     replica lag of every standby sampled from pg_stat_replication on each primary meanwhile;
//   - a shard move (`meridian shard move`) of 512 logical shards under a running shopper load
//     (cart, two lines, checkout; retried with the same Idempotency-Key on 503 while fenced):
//     the fence duration the move reports and what the shoppers saw.
// Ratios are topology/single within each round, then the median. Nothing here fails on a timing.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { stringify } from 'yaml';
import { clusterDown, clusterStatus, type ClusterStatus } from '../../src/cluster/pg-cluster.ts';
import type { Topology } from '../../src/cluster/topology.ts';
import type { MoveReport } from '../../src/cluster/shard-move.ts';
import { shardOfId } from '../../src/platform/ids.ts';
import { shiftedLocalTopology } from '../../test/cluster-helpers.ts';
import {
  api,
  BENCH_DIR,
  cpuMsOfTrees,
  fmtInt,
  fmtMs,
  fmtRatio,
  hardware,
  hardwareLine,
  keepAliveClient,
  loadAverage1m,
  machineBusyMs,
  mapConcurrent,
  median,
  mediansOf,
  pidFromFile,
  percentile,
  phaseLine,
  progress,
  runClosedLoop,
  runHttpLoad,
  serverDatabaseUrl,
  sideBySideRatios,
  table,
  writeResults,
  type BenchOptions,
  type KeepAliveClient,
  type PhaseResult,
  type Scenario,
} from '../lib.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = path.dirname(BENCH_DIR);
const MERIDIAN_BIN = path.join(ROOT, 'bin', 'meridian.js');

// Ports of this benchmark alone (tests use shifts 1000–1200, local.yaml itself shift 0).
const PORT_SHIFT = 1500; // members 56901+, Patroni REST 59901+
const ETCD = { clientPort: 26290, peerPort: 26300 };
const SINGLE_API_PORT = 28291;
const TOPOLOGY_API_PORT = 28292;
const SINGLE_PG_PORT = 57391;

const READ_CONNECTIONS = 50;
const CHECKOUT_CONCURRENCY = 32;
const DETAIL_IDS_MAX = 1_000;
const WARMUP_READ_S = 2;
const WARMUP_CHECKOUTS = 100;
const BUYERS = 200;
const PRODUCTS = 25;
const VARIANTS_PER_PRODUCT = 20; // 500 SKUs: 32 carts × 2 lines in flight never share one
const LINES_PER_CART = 2;
const STOCK_PER_SKU = 100_000;
const LOCATION_ID = 'bench-scale';
const PREP_WIDTH = 16;
const PREPARE_MARGIN = 1.6;
/** Orders/s to prepare carts for at least (the warm-up estimate can be far below the real rate). */
const PREPARE_FLOOR_PER_S = 200;
const LAG_SAMPLE_MS = 100;
/** Shoppers keep buying this long before the move starts and after it returns. */
const MOVE_SURROUND_MS = 1_500;
/** Ranges moved, one per round: each a range never moved before (a source keeps its fence). */
const MOVES: readonly { from: number; to: number; target: string }[] = [
  { from: 0, to: 511, target: 'users-b' },
  { from: 2048, to: 2559, target: 'users-a' },
  { from: 512, to: 1023, target: 'users-b' },
  { from: 2560, to: 3071, target: 'users-a' },
  { from: 1024, to: 1535, target: 'users-b' },
  { from: 3072, to: 3583, target: 'users-a' },
];
const TARGET = { topologyReadsVsSingleMin: 0.7, shardMoveFenceMsMax: 1_000 };

type Side = 'single' | 'topology';
const SIDES: readonly Side[] = ['single', 'topology'];
const phaseName = (side: Side, what: string): string => `${side}: ${what}`;

// ---------------------------------------------------------------------------------------------
// Processes: everything started here is tracked and stopped by its PID.

interface Child {
  name: string;
  proc: ChildProcess;
  exited: Promise<number | null>;
  logFile: string;
}

const children = new Set<Child>();

function spawnMeridian(name: string, args: string[], env: NodeJS.ProcessEnv, logFile: string, onStderrLine?: (line: string) => void): Child & { stdout: () => string } {
  const proc = spawn(process.execPath, [MERIDIAN_BIN, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(logFile, { flags: 'a' });
  let out = '';
  let errBuf = '';
  proc.stdout!.on('data', (c: Buffer) => {
    log.write(c);
    if (out.length < 1_000_000) out += c.toString('utf8');
  });
  proc.stderr!.on('data', (c: Buffer) => {
    log.write(c);
    if (!onStderrLine) return;
    errBuf += c.toString('utf8');
    let i: number;
    while ((i = errBuf.indexOf('\n')) >= 0) {
      onStderrLine(errBuf.slice(0, i));
      errBuf = errBuf.slice(i + 1);
    }
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => {
    log.end();
    resolve(code);
  }));
  const child: Child = { name, proc, exited, logFile };
  children.add(child);
  void exited.then(() => children.delete(child));
  return { ...child, stdout: () => out };
}

/** A `meridian …` command run to completion; stdout returned, a non-zero exit thrown. */
async function runMeridian(name: string, args: string[], env: NodeJS.ProcessEnv, logFile: string, timeoutMs: number): Promise<string> {
  const child = spawnMeridian(name, args, env, logFile, (line) => progress(`  ${name}: ${line}`));
  const timer = setTimeout(() => {
    progress(`${name}: no result after ${timeoutMs / 1000} s; stopping pid ${child.proc.pid}`);
    child.proc.kill('SIGTERM');
  }, timeoutMs);
  const code = await child.exited.finally(() => clearTimeout(timer));
  if (code !== 0) throw new Error(`meridian ${args.join(' ')} exited with ${code}; see ${logFile}`);
  return child.stdout();
}

async function stopChild(c: Child, timeoutMs = 20_000): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  progress(`stopping ${c.name} (pid ${c.proc.pid})`);
  c.proc.kill('SIGTERM');
  const done = await Promise.race([c.exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), timeoutMs))]);
  if (!done) {
    progress(`${c.name} (pid ${c.proc.pid}) did not stop in ${timeoutMs / 1000} s: SIGKILL`);
    c.proc.kill('SIGKILL');
    await c.exited;
  }
}

async function waitHealthy(url: string, c: Child, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (c.proc.exitCode !== null) throw new Error(`${c.name} exited with ${c.proc.exitCode} before answering; see ${c.logFile}`);
    const ok = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.ok, () => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${c.name} not healthy after ${timeoutMs / 1000} s; see ${c.logFile}`);
    await sleep(250);
  }
}

// ---------------------------------------------------------------------------------------------
// Replica lag: pg_stat_replication on each primary, every LAG_SAMPLE_MS.

interface LagSeries {
  bytes: number[];
  replayLagMs: number[];
  syncState: string;
}

class LagSampler {
  readonly series = new Map<string, LagSeries>();
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(private readonly primaries: readonly { cluster: string; sql: postgres.Sql; standbys: readonly string[] }[]) {}

  start(): void {
    this.timer = setInterval(() => void this.sample(), LAG_SAMPLE_MS);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    while (this.busy) await sleep(10);
  }

  private async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      await Promise.all(this.primaries.map(async (p) => {
        const rows = await p.sql<{ name: string; bytes: number | null; lag_ms: number | null; sync_state: string }[]>`
          SELECT application_name AS name,
                 pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS bytes,
                 (EXTRACT(epoch FROM replay_lag) * 1000)::float8 AS lag_ms,
                 sync_state
          FROM pg_stat_replication`;
        for (const r of rows) {
          // Only the physical standbys of the topology (a shard move's subscription shows here too).
          if (!p.standbys.includes(r.name) || r.bytes === null) continue;
          const key = `${p.cluster}/${r.name}`;
          const s = this.series.get(key) ?? { bytes: [], replayLagMs: [], syncState: r.sync_state };
          s.bytes.push(r.bytes);
          // NULL once the standby has caught up and nothing new arrived: no lag.
          s.replayLagMs.push(r.lag_ms ?? 0);
          s.syncState = r.sync_state;
          this.series.set(key, s);
        }
      }));
    } catch {
      // a missed sample is not a measurement
    } finally {
      this.busy = false;
    }
  }
}

interface LagSummary {
  standby: string;
  syncState: string;
  samples: number;
  bytesP50: number;
  bytesP99: number;
  bytesMax: number;
  replayLagMsP50: number;
  replayLagMsP99: number;
  replayLagMsMax: number;
}

function summariseLag(merged: Map<string, LagSeries>): LagSummary[] {
  return [...merged.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([standby, s]) => {
    const b = [...s.bytes].sort((x, y) => x - y);
    const l = [...s.replayLagMs].sort((x, y) => x - y);
    return {
      standby,
      syncState: s.syncState,
      samples: b.length,
      bytesP50: percentile(b, 50),
      bytesP99: percentile(b, 99),
      bytesMax: b[b.length - 1] ?? Number.NaN,
      replayLagMsP50: percentile(l, 50),
      replayLagMsP99: percentile(l, 99),
      replayLagMsMax: l[l.length - 1] ?? Number.NaN,
    };
  });
}

// ---------------------------------------------------------------------------------------------
// A shop on one side: catalog, stock and buyers prepared through the API (as checkout.ts does).

interface Buyer {
  email: string;
  token: string;
  userId: string;
}

interface PreparedCart {
  cartId: string;
  token: string;
}

interface Shop {
  side: Side;
  url: string;
  client: KeepAliveClient;
  skus: string[];
  buyers: Buyer[];
  pool: PreparedCart[];
  cartSeq: number;
  detailPaths: string[];
  prepMs: Record<string, number>;
}

async function productPaths(url: string): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const query: string = `/v1/products?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const page: { items: { id: string }[]; nextCursor: string | null } = (await api<{ items: { id: string }[]; nextCursor: string | null }>(url, 'GET', query)).body;
    ids.push(...page.items.map((p) => p.id));
    cursor = page.nextCursor;
  } while (cursor && ids.length < DETAIL_IDS_MAX);
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  return ids.slice(0, DETAIL_IDS_MAX).map((id) => `/v1/products/${id}`);
}

async function prepareShop(side: Side, url: string, admin: { email: string; password: string }, runId: string): Promise<Shop> {
  const prepMs: Record<string, number> = {};
  const timed = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const out = await work();
    prepMs[what] = Math.round(performance.now() - t0);
    return out;
  };
  const detailPaths = await productPaths(url);
  if (detailPaths.length === 0) throw new Error(`${side}: the catalog has no products (the demo seed should have made 300)`);
  const adminToken = (await api<{ token: string }>(url, 'POST', '/v1/auth/login', { body: admin, expect: [200] })).body.token;
  await api(url, 'PUT', `/v1/admin/inventory/locations/${LOCATION_ID}`, { token: adminToken, body: { name: 'Scale benchmark warehouse' }, expect: [204] });
  await timed('createProductsMs', () =>
    mapConcurrent(Array.from({ length: PRODUCTS }, (_, i) => i), PREP_WIDTH, async (i) => {
      const variants = Array.from({ length: VARIANTS_PER_PRODUCT }, (_, j) => ({
        sku: `SCALE-${runId}-${i}-${j}`,
        title: `Variant ${j}`,
        prices: [{ amount: 1_000 + j, currency: 'USD' }],
      }));
      await api(url, 'POST', '/v1/admin/products', {
        token: adminToken,
        body: { title: `Scale product ${runId} #${i}`, description: 'created by bench/scenarios/scale.ts', variants },
        expect: [201],
      });
    }),
  );
  const skus: string[] = [];
  for (let i = 0; i < PRODUCTS; i++) for (let j = 0; j < VARIANTS_PER_PRODUCT; j++) skus.push(`SCALE-${runId}-${i}-${j}`);
  await timed('receiveStockMs', () =>
    mapConcurrent(skus, PREP_WIDTH, (sku) =>
      api(url, 'POST', '/v1/admin/inventory/receipts', { token: adminToken, body: { sku, locationId: LOCATION_ID, quantity: STOCK_PER_SKU }, expect: [201] }),
    ),
  );
  progress(`${side}: ${PRODUCTS} products, ${skus.length} SKUs × ${fmtInt(STOCK_PER_SKU)} units (${prepMs.createProductsMs} + ${prepMs.receiveStockMs} ms)`);
  const buyers = await timed('registerBuyersMs', () =>
    mapConcurrent(Array.from({ length: BUYERS }, (_, i) => `buyer-${runId}-${i}@scale.bench`), PREP_WIDTH, async (email): Promise<Buyer> => {
      const res = await api<{ token: string; user: { id: string } }>(url, 'POST', '/v1/auth/register', { body: { email, password: 'bench-buyer-password' }, expect: [201] });
      return { email, token: res.body.token, userId: res.body.user.id };
    }),
  );
  progress(`${side}: registered ${buyers.length} buyers (${prepMs.registerBuyersMs} ms)`);
  return { side, url, client: keepAliveClient(url, Math.max(READ_CONNECTIONS, CHECKOUT_CONCURRENCY)), skus, buyers, pool: [], cartSeq: 0, detailPaths, prepMs };
}

/** Cart n belongs to buyer n mod BUYERS and holds SKUs n·L … n·L+L−1: in-flight carts share neither. */
async function prepareCarts(shop: Shop, count: number): Promise<void> {
  const seqs = Array.from({ length: count }, () => shop.cartSeq++);
  const t0 = performance.now();
  const carts = await mapConcurrent(seqs, CHECKOUT_CONCURRENCY, async (n) => {
    const buyer = shop.buyers[n % shop.buyers.length]!;
    const headers = { authorization: `Bearer ${buyer.token}`, 'content-type': 'application/json' };
    const call = async (urlPath: string, body: unknown): Promise<string> => {
      const res = await shop.client.request('POST', urlPath, headers, JSON.stringify(body));
      if (res.status !== 201) throw new Error(`${shop.side}: POST ${urlPath} answered ${res.status}: ${res.body.slice(0, 200)}`);
      return res.body;
    };
    const cart = JSON.parse(await call('/v1/carts', {})) as { id: string };
    for (let j = 0; j < LINES_PER_CART; j++) {
      await call(`/v1/carts/${cart.id}/lines`, { sku: shop.skus[(n * LINES_PER_CART + j) % shop.skus.length]!, quantity: 1 });
    }
    return { cartId: cart.id, token: buyer.token };
  });
  shop.pool.push(...carts);
  progress(`${shop.side}: prepared ${count} carts in ${((performance.now() - t0) / 1000).toFixed(1)} s (pool ${shop.pool.length})`);
}

function checkoutOp(shop: Shop, runId: string, nonCreated: string[]): (cart: PreparedCart) => Promise<string> {
  return async (cart) => {
    const res = await shop.client.request(
      'POST',
      '/v1/checkout',
      { authorization: `Bearer ${cart.token}`, 'content-type': 'application/json', 'idempotency-key': `scale-${runId}-${cart.cartId}` },
      JSON.stringify({ cartId: cart.cartId, payment: { token: 'tok_visa' } }),
    );
    if (res.status !== 201) {
      if (nonCreated.length < 5) nonCreated.push(`${shop.side}: ${res.status} ${res.body.slice(0, 200)}`);
      return String(res.status);
    }
    const status = (JSON.parse(res.body) as { order?: { status?: string } }).order?.status;
    return status === 'paid' ? '201' : `201 (order ${status ?? 'missing'})`;
  };
}

// ---------------------------------------------------------------------------------------------

interface MoveResult {
  round: number;
  from: number;
  to: number;
  source: string;
  target: string;
  fencedMs: number;
  fencePhasesMs: MoveReport['fencePhasesMs'] | undefined;
  totalMs: number;
  copiedRows: number;
  commandWallMs: number;
  shoppers: { journeys: number; perSecond: number; journeysDelayed: number; answered503: number; retried409: number; maxJourneyMs: number; p99JourneyMs: number; movedRangeBuyers: number; errors: number };
}

async function run(o: BenchOptions): Promise<void> {
  const runId = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  const readConnections = o.connections ?? READ_CONNECTIONS;
  const admin = { email: 'scale-admin@bench.local', password: randomBytes(12).toString('base64url') };
  const loadAtStart = loadAverage1m();
  progress(`scale: ${o.rounds} rounds × ${o.durationS} s per phase, ${readConnections} read connections, checkout concurrency ${CHECKOUT_CONCURRENCY}, run ${runId}`);
  progress(`hardware: ${hardwareLine()}; load average ${loadAtStart}`);

  const tmp = os.tmpdir();
  const singleDir = await mkdtemp(path.join(tmp, 'meridian-scale-single-'));
  // The postgres user must traverse the cluster's data dir: `cluster up` opens it (o+x) itself,
  // so it is made directly under the temp dir, not inside another 0700 directory.
  const topoDir = await mkdtemp(path.join(tmp, 'meridian-scale-topology-'));
  const topologyFile = path.join(topoDir, 'topology.yaml');
  const topology: Topology = await shiftedLocalTopology(PORT_SHIFT);
  topology.etcd = { ...ETCD };
  await writeFile(topologyFile, `# written by bench/scenarios/scale.ts: topologies/local.yaml shifted by ${PORT_SHIFT}, no Redis\n${stringify(topology)}`);
  progress(`scratch data: single ${singleDir}, topology ${topoDir} (${topologyFile})`);

  const baseEnv: NodeJS.ProcessEnv = {
    ...process.env,
    LOG_LEVEL: 'warn',
    MERIDIAN_ADMIN_EMAIL: admin.email,
    MERIDIAN_ADMIN_PASSWORD: admin.password,
    // The same gate on both sides (the topology has no Redis here): the PostgreSQL group commit.
    INVENTORY_GATE: 'postgres-batched',
  };
  delete baseEnv.DATABASE_URL;
  delete baseEnv.MERIDIAN_TOPOLOGY;
  delete baseEnv.REDIS_URL;
  delete baseEnv.REDIS_CLUSTER_NODES;
  const singleEnv = { ...baseEnv, PORT: String(SINGLE_API_PORT), MERIDIAN_DATA_DIR: singleDir, MERIDIAN_PG_PORT: String(SINGLE_PG_PORT) };
  const topoEnv = { ...baseEnv, PORT: String(TOPOLOGY_API_PORT), MERIDIAN_DATA_DIR: topoDir };
  const urls: Record<Side, string> = { single: `http://127.0.0.1:${SINGLE_API_PORT}`, topology: `http://127.0.0.1:${TOPOLOGY_API_PORT}` };

  const apis: Partial<Record<Side, Child>> = {};
  const sqls: postgres.Sql[] = [];
  const shops: Shop[] = [];
  let clusterStarted = false;
  let failed = false;

  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      progress('cleaning up');
      for (const s of shops) s.client.close();
      await Promise.all(sqls.map((s) => s.end({ timeout: 5 }).catch(() => undefined)));
      for (const side of SIDES) {
        const c = apis[side];
        if (c) await stopChild(c).catch((err: unknown) => progress(`could not stop ${c.name}: ${String(err)}`));
      }
      // Commands still running (a shard move, cluster up after a failure): by their PIDs.
      for (const c of [...children]) await stopChild(c, 10_000).catch(() => undefined);
      // The embedded PostgreSQL stops with its API process; if that was killed, stop it here.
      const embeddedPid = pidFromFile(path.join(singleDir, 'pg', 'postmaster.pid'));
      if (embeddedPid && existsSync(`/proc/${embeddedPid}`)) {
        progress(`stopping the embedded PostgreSQL left running (pid ${embeddedPid})`);
        try {
          process.kill(embeddedPid, 'SIGINT'); // fast shutdown
        } catch {
          // already gone
        }
        for (let i = 0; i < 100 && existsSync(`/proc/${embeddedPid}`); i++) await sleep(100);
      }
      if (clusterStarted) {
        progress('meridian cluster down --purge');
        await runMeridian('cluster down', ['cluster', 'down', '--purge', '--topology', topologyFile], topoEnv, path.join(topoDir, 'cluster-down.log'), 120_000)
          .catch(async (err: unknown) => {
            progress(`cluster down failed (${String(err)}); stopping the members in-process`);
            await clusterDown(topology, topoDir, { purge: true }, (m) => progress(`  ${m}`));
          });
      }
      if (failed) {
        progress(`kept for inspection: logs in ${singleDir} and ${topoDir}`);
        // The data of a failed run is not worth keeping; the logs are.
        await rm(path.join(singleDir, 'pg'), { recursive: true, force: true }).catch(() => undefined);
      } else {
        await rm(singleDir, { recursive: true, force: true });
        await rm(topoDir, { recursive: true, force: true });
      }
      progress('cleaned up');
    })();
    return cleaning;
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    progress(`${signal}: stopping everything this benchmark started`);
    failed = true;
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    // --- 1. single node, then the topology (cluster up, then the API on it)
    const singleStart = performance.now();
    apis.single = spawnMeridian('single-node API', ['start'], singleEnv, path.join(singleDir, 'api.log'));
    progress(`single node: API pid ${apis.single.proc.pid} on :${SINGLE_API_PORT}, embedded PostgreSQL on :${SINGLE_PG_PORT}; waiting for /healthz (first start seeds the demo catalog)`);
    await waitHealthy(urls.single, apis.single, 180_000);
    const singleStartS = (performance.now() - singleStart) / 1000;
    progress(`single node: serving after ${singleStartS.toFixed(1)} s`);

    progress(`meridian cluster up --topology ${topologyFile}`);
    clusterStarted = true;
    const upStart = performance.now();
    let upReportedS: number | undefined;
    const upChild = spawnMeridian('cluster up', ['cluster', 'up', '--topology', topologyFile], topoEnv, path.join(topoDir, 'cluster-up.log'), (line) => {
      progress(`  cluster up: ${line}`);
      const m = /^cluster up in ([\d.]+) s/.exec(line);
      if (m) upReportedS = Number(m[1]);
    });
    const upCode = await upChild.exited;
    if (upCode !== 0) throw new Error(`meridian cluster up exited with ${upCode}; see ${upChild.logFile}`);
    const clusterUpS = (performance.now() - upStart) / 1000;
    progress(`cluster up: ${clusterUpS.toFixed(1)} s wall clock (the command reports ${upReportedS ?? '?'} s)`);

    const topoStart = performance.now();
    apis.topology = spawnMeridian('topology API', ['start', '--topology', topologyFile], topoEnv, path.join(topoDir, 'api.log'));
    progress(`topology: API pid ${apis.topology.proc.pid} on :${TOPOLOGY_API_PORT}; waiting for /healthz`);
    await waitHealthy(urls.topology, apis.topology, 180_000);
    const topoStartS = (performance.now() - topoStart) / 1000;
    progress(`topology: serving after ${topoStartS.toFixed(1)} s`);

    const status: ClusterStatus[] = await clusterStatus(topology, topoDir);
    for (const c of status) progress(`  ${c.name}: ${c.members.map((m) => `${m.name} ${m.role} pid ${m.pid ?? '-'}`).join(', ')}`);
    const primaryOf = (name: string): ClusterStatus['members'][number] => {
      const p = status.find((c) => c.name === name)?.members.find((m) => m.role === 'primary');
      if (!p) throw new Error(`${name} has no primary`);
      return p;
    };
    const postmasters = (name: string): number[] => (status.find((c) => c.name === name)?.members ?? []).flatMap((m) => (m.pid ? [m.pid] : []));

    // Databases for the commit baselines, the lag sampler and the sizes.
    const singleSql = postgres(serverDatabaseUrl(singleEnv), { max: CHECKOUT_CONCURRENCY, onnotice: () => undefined, connect_timeout: 10 });
    const shardPrimaryUrl = primaryOf('users-a').url;
    const shardSync = postgres(shardPrimaryUrl, { max: CHECKOUT_CONCURRENCY, onnotice: () => undefined, connect_timeout: 10 });
    const shardLocal = postgres(shardPrimaryUrl, { max: CHECKOUT_CONCURRENCY, onnotice: () => undefined, connect_timeout: 10, connection: { synchronous_commit: 'local' } });
    sqls.push(singleSql, shardSync, shardLocal);
    const lagSqls = status.map((c) => ({
      cluster: c.name,
      sql: postgres(primaryOf(c.name).url, { max: 1, onnotice: () => undefined, connect_timeout: 10 }),
      standbys: c.members.filter((m) => m.role !== 'primary').map((m) => m.name),
    }));
    sqls.push(...lagSqls.map((l) => l.sql));
    const [syncSettings] = await shardSync<{ sync_names: string; sync_commit: string; version: string }[]>`
      SELECT current_setting('synchronous_standby_names') AS sync_names, current_setting('synchronous_commit') AS sync_commit,
             current_setting('server_version') AS version`;
    const [singleSettings] = await singleSql<{ version: string; sync_commit: string; fsync: string }[]>`
      SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS sync_commit, current_setting('fsync') AS fsync`;
    progress(`users-a primary: synchronous_standby_names=${syncSettings?.sync_names}, PostgreSQL ${syncSettings?.version}; single node PostgreSQL ${singleSettings?.version}`);
    for (const s of [singleSql, shardSync]) {
      await s`DROP TABLE IF EXISTS bench_scale_inserts`;
      await s`CREATE TABLE bench_scale_inserts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`;
    }

    // --- 2. shops on both sides
    for (const side of SIDES) {
      progress(`${side}: preparing catalog, stock and buyers`);
      shops.push(await prepareShop(side, urls[side], admin, runId));
    }
    const shopOf = (side: Side): Shop => shops.find((s) => s.side === side)!;
    const topoShop = shopOf('topology');
    const byCluster: Record<string, number> = {};
    for (const b of topoShop.buyers) {
      const shard = shardOfId(b.userId);
      const owner = topology.clusters.find((c) => (c.shards ?? []).some(([a, z]) => shard >= a && shard <= z))?.name ?? '?';
      byCluster[owner] = (byCluster[owner] ?? 0) + 1;
    }
    progress(`topology buyers by cluster: ${JSON.stringify(byCluster)}`);

    const readPhases: Record<string, (shop: Shop) => { path: string; paths?: string[] }> = {
      'healthz (control)': () => ({ path: '/healthz' }),
      'product list': () => ({ path: '/v1/products?limit=20' }),
      'product detail': (shop) => ({ path: shop.detailPaths[0]!, paths: shop.detailPaths }),
    };
    const readLoad = (side: Side, what: string, round: number, durationS: number): Promise<PhaseResult> => {
      const shop = shopOf(side);
      const p = readPhases[what]!(shop);
      return runHttpLoad({ phase: phaseName(side, what), round, url: `${shop.url}${p.path}`, connections: readConnections, durationS, ...(p.paths ? { paths: p.paths } : {}) });
    };
    const commitPhases: Record<string, postgres.Sql> = {
      'single: commit (autocommit INSERT)': singleSql,
      'topology: commit, users-a primary, synchronous_commit=local': shardLocal,
      'topology: commit, users-a primary, sync standby': shardSync,
    };
    let insertSeq = 0;
    const commitLoad = (name: string, round: number, durationS: number): Promise<PhaseResult> => {
      const sql = commitPhases[name]!;
      return runClosedLoop({
        phase: name, round, concurrency: CHECKOUT_CONCURRENCY, durationS, next: () => true,
        op: async () => {
          await sql`INSERT INTO bench_scale_inserts (payload) VALUES (${`row ${insertSeq++}`})`;
          return 'ok';
        },
      });
    };
    const nonCreated: string[] = [];
    // The embedded PostgreSQL is a child of its API process: counted apart, not twice.
    const embeddedPostmaster = (): number => pidFromFile(path.join(singleDir, 'pg', 'postmaster.pid')) ?? -1;
    const cpuRoots = (side: Side): Record<string, number[]> =>
      side === 'single'
        ? { api: [apis.single!.proc.pid!], postgres: [embeddedPostmaster()] }
        : {
            api: [apis.topology!.proc.pid!],
            core: postmasters('core'), 'users-a': postmasters('users-a'), 'users-b': postmasters('users-b'),
            // The primaries alone: on dedicated servers the standbys' replay does not compete with them.
            'core primary': [primaryOf('core').pid ?? -1], 'users-a primary': [primaryOf('users-a').pid ?? -1], 'users-b primary': [primaryOf('users-b').pid ?? -1],
          };
    const cpuMs = (side: Side, group: string, pids: number[]): number =>
      cpuMsOfTrees(pids, side === 'single' && group === 'api' ? [embeddedPostmaster()] : []);
    const cpuPerOrder: { side: Side; round: number; orders: number; msPerOrder: Record<string, number> }[] = [];
    const lagByRound: { round: number; lag: LagSummary[] }[] = [];
    const lagAll = new Map<string, LagSeries>();
    const checkoutLoad = async (side: Side, round: number, durationS: number): Promise<PhaseResult> => {
      const shop = shopOf(side);
      const roots = cpuRoots(side);
      const before = Object.fromEntries(Object.entries(roots).map(([k, pids]) => [k, cpuMs(side, k, pids)]));
      const machineBefore = machineBusyMs();
      // Fresh sockets: a keep-alive socket left idle through the other side's phases may be closed
      // by the server just as it is reused ("socket hang up"), which is the client's race, not ours.
      shop.client.close();
      shop.client = keepAliveClient(shop.url, Math.max(READ_CONNECTIONS, CHECKOUT_CONCURRENCY));
      const sampler = side === 'topology' ? new LagSampler(lagSqls) : undefined;
      sampler?.start();
      const r = await runClosedLoop({
        phase: phaseName(side, 'checkout'), round, concurrency: CHECKOUT_CONCURRENCY, durationS,
        next: () => shop.pool.shift(), op: checkoutOp(shop, runId, nonCreated),
      });
      await sampler?.stop();
      const orders = r.statuses['201'] ?? 0;
      if (round > 0 && orders > 0) {
        const msPerOrder: Record<string, number> = {};
        for (const [k, pids] of Object.entries(roots)) msPerOrder[k] = (cpuMs(side, k, pids) - before[k]!) / orders;
        msPerOrder['machine (all processes, incl. others)'] = (machineBusyMs() - machineBefore) / orders;
        cpuPerOrder.push({ side, round, orders, msPerOrder });
      }
      if (sampler && round > 0) {
        lagByRound.push({ round, lag: summariseLag(sampler.series) });
        for (const [k, s] of sampler.series) {
          const all = lagAll.get(k) ?? { bytes: [], replayLagMs: [], syncState: s.syncState };
          all.bytes.push(...s.bytes);
          all.replayLagMs.push(...s.replayLagMs);
          lagAll.set(k, all);
        }
      }
      return r;
    };

    // Sizes, for the capacity model: what each cluster grows by per order (taken before the
    // measured rounds and after them; the difference over the orders made in between).
    interface SizeSnapshot { cluster: string; databaseBytes: number; users: number; orders: number; orderBytes: number; userBytes: number }
    const sizeSnapshot = async (): Promise<SizeSnapshot[]> =>
      Promise.all(lagSqls.map(async (l): Promise<SizeSnapshot> => {
        const [db] = await l.sql<{ bytes: number }[]>`SELECT pg_database_size(current_database())::float8 AS bytes`;
        if (l.cluster === 'core') return { cluster: l.cluster, databaseBytes: db?.bytes ?? Number.NaN, users: 0, orders: 0, orderBytes: 0, userBytes: 0 };
        const [c] = await l.sql<{ users: number; orders: number; order_bytes: number; user_bytes: number }[]>`
          SELECT (SELECT count(*) FROM users)::int AS users, (SELECT count(*) FROM orders)::int AS orders,
                 (pg_total_relation_size('orders') + pg_total_relation_size('order_lines') + pg_total_relation_size('order_history')
                  + pg_total_relation_size('payments') + pg_total_relation_size('idempotency_keys'))::float8 AS order_bytes,
                 (pg_total_relation_size('users') + pg_total_relation_size('sessions') + pg_total_relation_size('carts')
                  + pg_total_relation_size('cart_lines'))::float8 AS user_bytes`;
        return { cluster: l.cluster, databaseBytes: db?.bytes ?? Number.NaN, users: c?.users ?? 0, orders: c?.orders ?? 0, orderBytes: c?.order_bytes ?? 0, userBytes: c?.user_bytes ?? 0 };
      }));

    // --- 3. warm-up (not recorded): JIT, pools, caches, and a first estimate of the order rate
    const estimate: Record<Side, number> = { single: 0, topology: 0 };
    for (const side of SIDES) {
      for (const what of Object.keys(readPhases)) {
        const w = await readLoad(side, what, 0, WARMUP_READ_S);
        progress(`warm-up ${side} ${what}: ${fmtInt(w.perSecond)}/s`);
      }
      await prepareCarts(shopOf(side), WARMUP_CHECKOUTS);
      const w = await checkoutLoad(side, 0, 600);
      estimate[side] = w.perSecond;
      progress(`warm-up ${side} checkout: ${fmtInt(w.perSecond)}/s over ${w.completed} orders [${Object.entries(w.statuses).map(([k, v]) => `${k}:${v}`).join(' ')}]`);
    }

    // --- 4. measured rounds
    const sizesBefore = await sizeSnapshot();
    const results: PhaseResult[] = [];
    const moves: MoveResult[] = [];
    const phasesPerRound = 2 * Object.keys(readPhases).length + Object.keys(commitPhases).length + 2;
    const total = o.rounds * phasesPerRound;
    const record = (r: PhaseResult): void => {
      results.push(r);
      progress(phaseLine(r, results.length, total));
    };
    for (let round = 1; round <= o.rounds; round++) {
      progress(`— round ${round}/${o.rounds} (load average ${loadAverage1m()})`);
      // Alternate which side goes first, so a drift of the machine favours neither.
      const order: Side[] = round % 2 === 1 ? ['single', 'topology'] : ['topology', 'single'];
      for (const what of Object.keys(readPhases)) for (const side of order) record(await readLoad(side, what, round, o.durationS));
      const commitOrder = Object.keys(commitPhases);
      for (const name of round % 2 === 1 ? commitOrder : [...commitOrder].reverse()) record(await commitLoad(name, round, o.durationS));
      for (const side of order) {
        const shop = shopOf(side);
        // The warm-up's rate is a poor guess on a busy machine: never prepare for fewer than the floor.
        const wanted = Math.ceil(Math.max(estimate[side], PREPARE_FLOOR_PER_S) * o.durationS * PREPARE_MARGIN) + CHECKOUT_CONCURRENCY;
        if (shop.pool.length < wanted) await prepareCarts(shop, wanted - shop.pool.length);
      }
      for (const side of order) {
        const r = await checkoutLoad(side, round, o.durationS);
        record(r);
        estimate[side] = Math.max(estimate[side], r.perSecond);
      }
      const lag = lagByRound.find((l) => l.round === round)?.lag ?? [];
      for (const l of lag.filter((x) => x.standby.startsWith('core/'))) {
        progress(`  lag ${l.standby} (${l.syncState}): p50 ${fmtInt(l.bytesP50)} B, p99 ${fmtInt(l.bytesP99)} B, max ${fmtInt(l.bytesMax)} B; replay lag p99 ${fmtMs(l.replayLagMsP99)} ms`);
      }

      // --- shard move under a shopper load (topology only)
      const move = MOVES[round - 1];
      if (!move) {
        progress(`no further range to move in round ${round} (ranges are never moved twice)`);
        continue;
      }
      moves.push(await moveUnderLoad(round, move));
    }

    async function moveUnderLoad(round: number, move: (typeof MOVES)[number]): Promise<MoveResult> {
      const shop = topoShop;
      const inRange = (b: Buyer): boolean => {
        const s = shardOfId(b.userId);
        return s >= move.from && s <= move.to;
      };
      let stop = false;
      let answered503 = 0;
      let retried409 = 0;
      let journeysDelayed = 0;
      const request = async (buyer: Buyer, method: string, urlPath: string, body: unknown, expect: number, key: string | undefined, seen: { refused: boolean }): Promise<string> => {
        for (let attempt = 0; attempt < 500; attempt++) {
          const res = await shop.client.request(method, urlPath, {
            authorization: `Bearer ${buyer.token}`, 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}),
          }, JSON.stringify(body));
          if (res.status === expect) return res.body;
          // 503 while the range is fenced; 409 for a key a 503 stranded mid-saga, until its lease ends.
          seen.refused = true;
          if (res.status === 503) {
            answered503++;
            await sleep(20);
          } else if (res.status === 409 && res.body.includes('idempotency_conflict')) {
            // The key's lease (REQUEST_TIMEOUT_MS) must end first: no point asking 50 times a second.
            retried409++;
            await sleep(250);
          } else {
            throw new Error(`${method} ${urlPath}: ${res.status} ${res.body.slice(0, 200)}`);
          }
        }
        throw new Error(`${method} ${urlPath}: still refused after 500 attempts`);
      };
      const journey = async (n: number): Promise<string> => {
        const buyer = shop.buyers[n % shop.buyers.length]!;
        const seen = { refused: false };
        const cart = JSON.parse(await request(buyer, 'POST', '/v1/carts', {}, 201, undefined, seen)) as { id: string };
        for (let j = 0; j < LINES_PER_CART; j++) {
          await request(buyer, 'POST', `/v1/carts/${cart.id}/lines`, { sku: shop.skus[(n * LINES_PER_CART + j) % shop.skus.length]!, quantity: 1 }, 201, undefined, seen);
        }
        await request(buyer, 'POST', '/v1/checkout', { cartId: cart.id, payment: { token: 'tok_visa' } }, 201, `scale-move-${runId}-${n}`, seen);
        if (seen.refused) journeysDelayed++;
        return '201';
      };
      progress(`shard move ${round}: shoppers start (${CHECKOUT_CONCURRENCY} concurrent: cart, ${LINES_PER_CART} lines, checkout); moving ${move.from}-${move.to} → ${move.target} in ${MOVE_SURROUND_MS} ms`);
      shop.client.close();
      shop.client = keepAliveClient(shop.url, Math.max(READ_CONNECTIONS, CHECKOUT_CONCURRENCY));
      const loadDone = runClosedLoop({
        phase: 'topology: shoppers during a shard move', round, concurrency: CHECKOUT_CONCURRENCY, durationS: 600,
        next: () => (stop ? undefined : shop.cartSeq++), op: journey,
      });
      let report: Pick<MoveReport, 'fencedMs' | 'fencePhasesMs' | 'totalMs' | 'copiedRows' | 'source'> | undefined;
      const t0 = performance.now();
      try {
        await sleep(MOVE_SURROUND_MS);
        const out = await runMeridian(`shard move ${round}`, ['shard', 'move', '--shards', `${move.from}-${move.to}`, '--to', move.target, '--topology', topologyFile], topoEnv, path.join(topoDir, `shard-move-${round}.log`), 300_000);
        report = JSON.parse(out.trim().split('\n').pop() ?? '{}') as typeof report;
        await sleep(MOVE_SURROUND_MS);
      } finally {
        stop = true;
      }
      const commandWallMs = performance.now() - t0 - 2 * MOVE_SURROUND_MS;
      const r = await loadDone;
      const result: MoveResult = {
        round, from: move.from, to: move.to, source: report?.source ?? '?', target: move.target,
        fencedMs: report?.fencedMs ?? Number.NaN, fencePhasesMs: report?.fencePhasesMs, totalMs: report?.totalMs ?? Number.NaN, copiedRows: report?.copiedRows ?? 0,
        commandWallMs: Math.round(commandWallMs),
        shoppers: {
          journeys: r.completed, perSecond: r.perSecond, journeysDelayed, answered503, retried409, maxJourneyMs: r.latency.maxMs, p99JourneyMs: r.latency.p99Ms,
          movedRangeBuyers: shop.buyers.filter(inRange).length, errors: r.errors,
        },
      };
      progress(
        `shard move ${round}: ${move.from}-${move.to} ${result.source} → ${move.target}: fenced ${result.fencedMs} ms (${JSON.stringify(result.fencePhasesMs)}), move ${result.totalMs} ms (${result.copiedRows} orders copied); ` +
          `shoppers ${r.completed} journeys (${fmtInt(r.perSecond)}/s, ${journeysDelayed} delayed by the move), ${answered503} × 503, ${retried409} × 409 retried, slowest journey ${fmtMs(r.latency.maxMs)} ms` +
          (r.errors ? `, ${r.errors} errors: ${(r.notes ?? []).join('; ')}` : ''),
      );
      return result;
    }

    // --- 5. sizes, for the capacity model
    const sizesAfter = await sizeSnapshot();
    const sum = (xs: SizeSnapshot[], f: (x: SizeSnapshot) => number, shardOnly = true): number =>
      xs.filter((x) => !shardOnly || x.cluster !== 'core').reduce((n, x) => n + f(x), 0);
    const ordersMade = sum(sizesAfter, (x) => x.orders) - sum(sizesBefore, (x) => x.orders);
    const coreOf = (xs: SizeSnapshot[]): number => xs.find((x) => x.cluster === 'core')?.databaseBytes ?? Number.NaN;
    const [singleSize] = await singleSql<{ bytes: number }[]>`SELECT pg_database_size(current_database())::float8 AS bytes`;
    const sizes = {
      before: sizesBefore,
      after: sizesAfter,
      single: { databaseBytes: singleSize?.bytes ?? Number.NaN },
      ordersMadeOnTopology: ordersMade,
      // Marginal bytes per order (tables + indexes; WAL and standbys' copies not included).
      shardBytesPerOrder: ordersMade > 0 ? (sum(sizesAfter, (x) => x.orderBytes) - sum(sizesBefore, (x) => x.orderBytes)) / ordersMade : Number.NaN,
      shardDatabaseBytesPerOrder: ordersMade > 0 ? (sum(sizesAfter, (x) => x.databaseBytes) - sum(sizesBefore, (x) => x.databaseBytes)) / ordersMade : Number.NaN,
      coreDatabaseBytesPerOrder: ordersMade > 0 ? (coreOf(sizesAfter) - coreOf(sizesBefore)) / ordersMade : Number.NaN,
      note: 'marginal growth over the measured rounds divided by the orders made on the topology meanwhile (incl. the shard-move shoppers, whose carts count too); page-granular, so a rough figure',
    };
    progress(`sizes: ${ordersMade} orders made on the topology; ${fmtInt(sizes.shardBytesPerOrder)} B of order tables per order on the shard clusters (${fmtInt(sizes.shardDatabaseBytesPerOrder)} B of database), ${fmtInt(sizes.coreDatabaseBytesPerOrder)} B on core`);
    for (const s of [singleSql, shardSync]) await s`DROP TABLE IF EXISTS bench_scale_inserts`;

    // --- 6. report
    const loadAtEnd = loadAverage1m();
    const statusText = (s: Record<string, number>, errors: number): string => Object.entries(s).map(([k, v]) => `${k}:${v}`).join(' ') + (errors ? ` err:${errors}` : '');
    const pairs = [...Object.keys(readPhases), 'checkout'];
    const ratios: Record<string, ReturnType<typeof sideBySideRatios>> = {};
    const rows: string[][] = [];
    for (const what of pairs) {
      const s = mediansOf(phaseName('single', what), results);
      const t = mediansOf(phaseName('topology', what), results);
      const ratio = sideBySideRatios(results, phaseName('topology', what), phaseName('single', what));
      ratios[`topology/single: ${what}`] = ratio;
      const isRead = what !== 'checkout' && what !== 'healthz (control)';
      rows.push([
        what === 'checkout' ? 'checkout (orders/s)' : `${what} (req/s)`,
        `${fmtInt(s.perSecond)} (p99 ${fmtMs(s.p99Ms)})`,
        `${fmtInt(t.perSecond)} (p99 ${fmtMs(t.p99Ms)})`,
        fmtRatio(ratio.perSecond),
        isRead ? `≥ 0.70×: ${ratio.perSecond >= TARGET.topologyReadsVsSingleMin ? 'meets' : 'below'}` : '',
        `${statusText(s.statuses, s.errors)} | ${statusText(t.statuses, t.errors)}`,
      ]);
    }
    const commitSingle = mediansOf('single: commit (autocommit INSERT)', results);
    const commitLocal = mediansOf('topology: commit, users-a primary, synchronous_commit=local', results);
    const commitSync = mediansOf('topology: commit, users-a primary, sync standby', results);
    const syncCost = sideBySideRatios(results, 'topology: commit, users-a primary, sync standby', 'topology: commit, users-a primary, synchronous_commit=local');
    ratios['sync standby / local commit (users-a primary)'] = syncCost;
    ratios['users-a primary sync commit / single-node commit'] = sideBySideRatios(results, 'topology: commit, users-a primary, sync standby', 'single: commit (autocommit INSERT)');
    rows.push([
      'commits/s, 32 conc. (single | users-a primary)',
      `${fmtInt(commitSingle.perSecond)} (p50 ${fmtMs(commitSingle.p50Ms)})`,
      `sync ${fmtInt(commitSync.perSecond)} (p50 ${fmtMs(commitSync.p50Ms)}); local ${fmtInt(commitLocal.perSecond)} (p50 ${fmtMs(commitLocal.p50Ms)})`,
      `sync/local ${fmtRatio(syncCost.perSecond)}`,
      '',
      '',
    ]);
    const lagSummary = summariseLag(lagAll);
    const fence = moves.map((m) => m.fencedMs);
    const cpuMedian = (side: Side): Record<string, number> => {
      const mine = cpuPerOrder.filter((c) => c.side === side);
      const keys = [...new Set(mine.flatMap((c) => Object.keys(c.msPerOrder)))];
      return Object.fromEntries(keys.map((k) => [k, Math.round(median(mine.map((c) => c.msPerOrder[k] ?? Number.NaN)) * 100) / 100]));
    };
    const cpu = { single: cpuMedian('single'), topology: cpuMedian('topology') };

    console.log('');
    console.log(`scale — single node vs local topology, medians of ${o.rounds} rounds × ${o.durationS} s; ${readConnections} read connections, checkout concurrency ${CHECKOUT_CONCURRENCY}; ratios topology/single within each round, median`);
    console.log(`hardware: ${hardwareLine()}; load average ${loadAtStart} at start, ${loadAtEnd} at end`);
    console.log(`PostgreSQL: single node ${singleSettings?.version} (embedded, fsync=${singleSettings?.fsync}); topology ${syncSettings?.version} under Patroni (synchronous_standby_names=${syncSettings?.sync_names}); inventory gate postgres-batched on both`);
    console.log(table(['figure', 'single node', 'topology', 'ratio', 'target', 'statuses single | topology'], rows));
    console.log('');
    console.log(`cluster up (3 clusters, 7 PostgreSQL members, etcd, pgBackRest stanzas, migrations): ${clusterUpS.toFixed(1)} s; API ready after ${topoStartS.toFixed(1)} s (single node incl. embedded PostgreSQL and demo seed: ${singleStartS.toFixed(1)} s)`);
    console.log(`CPU per order, median (ms): single ${JSON.stringify(cpu.single)}; topology ${JSON.stringify(cpu.topology)}`);
    console.log('replica lag during the topology checkout phases (pg_stat_replication on each primary, every 100 ms):');
    console.log(table(
      ['standby', 'sync state', 'samples', 'bytes p50', 'bytes p99', 'bytes max', 'replay lag p50 ms', 'p99 ms', 'max ms'],
      lagSummary.map((l) => [l.standby, l.syncState, String(l.samples), fmtInt(l.bytesP50), fmtInt(l.bytesP99), fmtInt(l.bytesMax), fmtMs(l.replayLagMsP50), fmtMs(l.replayLagMsP99), fmtMs(l.replayLagMsMax)]),
    ));
    console.log('shard moves under a shopper load:');
    console.log(table(
      ['round', 'range', 'move', 'fenced ms', 'move ms', 'orders copied', 'journeys/s', 'delayed', '503s', '409s', 'slowest journey ms'],
      moves.map((m) => [
        String(m.round), `${m.from}-${m.to}`, `${m.source} → ${m.target}`, fmtInt(m.fencedMs), fmtInt(m.totalMs), fmtInt(m.copiedRows), fmtInt(m.shoppers.perSecond),
        `${m.shoppers.journeysDelayed}/${m.shoppers.journeys}`, String(m.shoppers.answered503), String(m.shoppers.retried409), fmtMs(m.shoppers.maxJourneyMs),
      ]),
    ));
    console.log(`fence: median ${fmtInt(median(fence))} ms, max ${fmtInt(Math.max(...fence))} ms (target ≤ ${TARGET.shardMoveFenceMsMax} ms: ${Math.max(...fence) <= TARGET.shardMoveFenceMsMax ? 'meets' : 'above'})`);
    const checkoutsTotal = results.filter((r) => r.phase.endsWith(': checkout')).reduce((n, r) => n + r.completed + r.errors, 0);
    const created = results.filter((r) => r.phase.endsWith(': checkout')).reduce((n, r) => n + (r.statuses['201'] ?? 0), 0);
    console.log(`checkouts answered 201 with a paid order: ${created} of ${checkoutsTotal}`);
    if (created !== checkoutsTotal || moves.some((m) => m.shoppers.errors > 0)) {
      console.log(`NOT EVERY CHECKOUT SUCCEEDED — first answers that were not 201:\n  ${nonCreated.join('\n  ') || '(transport errors or shopper errors only)'}`);
      process.exitCode = 1;
    }

    const file = await writeResults({
      scenario: 'scale',
      date: new Date().toISOString(),
      hardware: hardware(),
      loadAverage1m: { start: loadAtStart, end: loadAtEnd },
      parameters: {
        durationS: o.durationS,
        rounds: o.rounds,
        readConnections,
        checkoutConcurrency: CHECKOUT_CONCURRENCY,
        buyers: BUYERS,
        skus: PRODUCTS * VARIANTS_PER_PRODUCT,
        linesPerCart: LINES_PER_CART,
        inventoryGate: 'postgres-batched (both sides)',
        single: { api: urls.single, embeddedPostgresPort: SINGLE_PG_PORT, postgres: singleSettings ?? null },
        topology: {
          api: urls.topology,
          portShift: PORT_SHIFT,
          etcd: ETCD,
          clusters: topology.clusters.map((c) => ({ name: c.name, roles: c.roles, shards: c.shards ?? [], members: c.members.map((m) => `${m.name}:${m.port}${m.nosync ? ' (nosync)' : ''}`) })),
          redis: 'none (the gate is postgres-batched on both sides)',
          postgres: syncSettings ?? null,
        },
        buyersByCluster: byCluster,
        loadGenerator: 'autocannon (reads) and closed loops of node:http keep-alive requests (checkout), in the bench process, same machine',
        preparationMs: Object.fromEntries(shops.map((s) => [s.side, s.prepMs])),
        runId,
      },
      targets: TARGET,
      medians: [...new Set(results.map((r) => r.phase))].map((p) => mediansOf(p, results)),
      ratios,
      phases: results,
      notes: [
        'ratios are topology/single (or sync/local) within each round, then the median over rounds',
        `checkouts answered 201 with a paid order: ${created} of ${checkoutsTotal}`,
        ...nonCreated.map((n) => `non-201: ${n}`),
      ],
      details: {
        clusterUpS: Math.round(clusterUpS * 10) / 10,
        clusterUpReportedS: upReportedS ?? null,
        apiReadyS: { single: Math.round(singleStartS * 10) / 10, topology: Math.round(topoStartS * 10) / 10 },
        cpuMsPerOrderMedian: cpu,
        cpuMsPerOrder: cpuPerOrder,
        replicaLag: { all: lagSummary, byRound: lagByRound, sampleIntervalMs: LAG_SAMPLE_MS },
        shardMoves: moves,
        shardMoveFenceMs: { median: median(fence), max: Math.max(...fence) },
        sizes,
      },
    });
    console.log(`results: ${file}`);
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await cleanup();
  }
}

export const scenario: Scenario = {
  name: 'scale',
  summary: 'single node vs `meridian cluster up` topology: reads/s, orders/s, sync-commit cost, replica lag, shard-move fence, cluster up time',
  usage: [
    'self-contained: starts its own single node (embedded PostgreSQL) and its own topology (local.yaml shifted by 1500:',
    'members 56901+, Patroni 59901+, etcd 26290/26300; APIs on :28291/:28292) under the temp dir, and tears both down',
    '(needs the cluster packages: scripts/bootstrap.sh --cluster; runs as root for the postgres user)',
  ].join('\n'),
  run,
};

