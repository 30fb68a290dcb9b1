// The fault schedule of `npm run chaos` and of its short form in the test suite: a real API
// process on a running topology, a steady checkout load, and SIGKILLs of PostgreSQL primaries,
// Redis masters and the API process itself, each followed by the checks of checks.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { clusterCredentials, clusterSpecs, clusterStatus, type ClusterStatus } from '../cluster/pg-cluster.ts';
import { redisClusterStatus, redisClusterUp, redisSpecOfTopology } from '../cluster/redis-cluster.ts';
import type { Topology } from '../cluster/topology.ts';
import { Databases, surviveDriverConnectRejections } from '../platform/db.ts';
import { checkAfterFault, missingFromHistory, type FaultCheck } from './checks.ts';
import { createBackups, restoreToTime } from '../cluster/backup.ts';
import { verifyInvariants } from '../cluster/verify.ts';
import { CheckoutLoad, outageEnd, type Buyer } from './load.ts';
import { WriteProbe } from './write-probe.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export type FaultKind = 'shard-primary' | 'core-primary' | 'redis-master' | 'api';

export interface KillFigure {
  fault: FaultKind;
  target: string;
  /** Kill → first write committed by the cluster's new primary (engine level, direct SQL). */
  newPrimaryWritesMs: number | null;
  /** Kill → first write acknowledged through the API after its last 503 on the affected shards. */
  recoveryMs: number | null;
  /** 503 answers between this kill and the next. */
  unavailable: number;
  retries: number;
}

export interface ChaosOptions {
  readonly topology: Topology;
  readonly topologyFile: string;
  readonly dataDir: string;
  readonly apiPort: number;
  readonly buyers: number;
  readonly workers: number;
  readonly hotStock: number;
  /** Load kept running after a fault has healed, before the next one. */
  readonly settleMs: number;
  readonly progress: (msg: string) => void;
}

const CHAOS_RESERVATION_TTL_MS = 15_000;
const ADMIN = { email: 'chaos-admin@meridian.test', password: 'chaos-admin-password' };

/** The API as a real child process, so that it can be SIGKILLed and started again. */
export class ApiProcess {
  private child: ChildProcess | undefined;
  /** Children this harness killed or stopped on purpose. */
  private readonly stopped = new WeakSet<ChildProcess>();
  /** Exits nobody asked for: a crash is a failed promise, whatever the checks say. */
  readonly crashes: string[] = [];
  constructor(private readonly options: ChaosOptions) {}

  get baseUrl(): string {
    return `http://127.0.0.1:${this.options.apiPort}`;
  }

  async start(): Promise<void> {
    // Another process answering on our port would be measured instead of ours: refuse.
    if (await fetch(`${this.baseUrl}/healthz`, { signal: AbortSignal.timeout(500) }).then(() => true, () => false)) {
      throw new Error(`something already serves ${this.baseUrl}: stop it or choose another --port`);
    }
    const log = openSync(path.join(this.options.dataDir, 'chaos-api.log'), 'a');
    this.child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli.ts'), 'start', '--topology', this.options.topologyFile], {
      cwd: ROOT,
      stdio: ['ignore', log, log],
      env: {
        ...process.env,
        PORT: String(this.options.apiPort),
        MERIDIAN_DATA_DIR: this.options.dataDir,
        MERIDIAN_SEED_DEMO: 'false',
        MERIDIAN_ADMIN_EMAIL: ADMIN.email,
        MERIDIAN_ADMIN_PASSWORD: ADMIN.password,
        // Checkouts cut short by a SIGKILLed API are finished or compensated within seconds, and
        // a reservation whose order was never created expires and is released within seconds.
        ABANDONED_ORDER_MS: '5000',
        RESERVATION_TTL_MS: String(CHAOS_RESERVATION_TTL_MS),
        SWEEPER_INTERVAL_MS: '1000',
        LOG_LEVEL: 'warn',
      },
    });
    const child = this.child;
    child.once('exit', (code, signal) => {
      if (!this.stopped.has(child)) this.crashes.push(`the API process exited by itself (code ${code}, signal ${signal}) at ${new Date().toISOString()}`);
    });
    for (let i = 0; ; i++) {
      if (this.child.exitCode !== null) throw new Error(`the API exited with ${this.child.exitCode}; see ${this.options.dataDir}/chaos-api.log`);
      const ready = await fetch(`${this.baseUrl}/readyz`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.ok, () => false);
      if (ready) return;
      if (i > 600) throw new Error('the API did not become ready within 60 s');
      await sleep(100);
    }
  }

  /** Error-level lines of the API's log (pino level 50 and above), and anything not JSON (a crash). */
  async errorLines(max: number): Promise<string[]> {
    const text = await readFile(path.join(this.options.dataDir, 'chaos-api.log'), 'utf8').catch(() => '');
    return text.split('\n')
      .filter((l) => l.trim() !== '' && (!l.startsWith('{') || /"level":(5|6)\d/.test(l)))
      .slice(0, max)
      .map((l) => l.slice(0, 600));
  }

  kill(): void {
    if (!this.child) return;
    this.stopped.add(this.child);
    this.child.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    this.stopped.add(child);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(10_000)]);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

async function api<T>(baseUrl: string, method: string, route: string, body: unknown, token?: string): Promise<T> {
  const res = await fetch(`${baseUrl}${route}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
  return (text === '' ? undefined : JSON.parse(text)) as T; // 204: no body
}

/** Products with plenty of stock, one hot SKU that sells out, and registered buyers. */
async function prepareShop(baseUrl: string, options: ChaosOptions, runId: string): Promise<{ buyers: Buyer[]; plentySkus: string[]; hotSku: string }> {
  const { token } = await api<{ token: string }>(baseUrl, 'POST', '/v1/auth/login', ADMIN);
  await api(baseUrl, 'PUT', '/v1/admin/inventory/locations/chaos', { name: 'Chaos warehouse' }, token);
  const skus = [...Array.from({ length: 8 }, (_, i) => `CHAOS-${runId}-P${i}`), `CHAOS-${runId}-HOT`];
  for (const sku of skus) {
    await api(baseUrl, 'POST', '/v1/admin/products', { title: `Chaos ${sku}`, variants: [{ sku, prices: [{ amount: 1000, currency: 'USD' }] }] }, token);
    const quantity = sku.endsWith('HOT') ? options.hotStock : 1_000_000;
    await api(baseUrl, 'POST', '/v1/admin/inventory/receipts', { sku, locationId: 'chaos', quantity }, token);
  }
  const buyers: Buyer[] = [];
  for (let i = 0; i < options.buyers; i++) {
    const r = await api<{ user: { id: string }; token: string }>(baseUrl, 'POST', '/v1/auth/register', { email: `buyer-${runId}-${i}@chaos.test`, password: 'chaos-buyer-password' });
    buyers.push({ userId: r.user.id, token: r.token });
  }
  return { buyers, plentySkus: skus.slice(0, -1), hotSku: skus[skus.length - 1]! };
}

function primaryOf(status: ClusterStatus[], cluster: string): ClusterStatus['members'][number] | undefined {
  return status.find((c) => c.name === cluster)?.members.find((m) => m.role === 'primary');
}

/** Every member running, one primary, and a synchronous standby where the cluster asks for one. */
async function waitHealed(options: ChaosOptions, cluster: string, killedPid: number, timeoutMs: number): Promise<void> {
  const spec = options.topology.clusters.find((c) => c.name === cluster)!;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = (await clusterStatus(options.topology, options.dataDir)).find((x) => x.name === cluster)!;
    // The killed postmaster's pid must be gone from the status: right after a kill Patroni may
    // still report the old primary as running.
    const healthy = c.members.every((m) => m.role !== 'down' && m.pid !== killedPid)
      && c.members.filter((m) => m.role === 'primary').length === 1
      && (!(spec.synchronous ?? true) || c.members.some((m) => m.role === 'sync_standby'));
    if (healthy) return;
    if (Date.now() > deadline) throw new Error(`${cluster} did not heal within ${timeoutMs / 1000} s: ${JSON.stringify(c.members.map((m) => [m.name, m.role]))}`);
    await sleep(500);
  }
}

export interface ChaosReport {
  kills: KillFigure[];
  totals: { acknowledged: number; outOfStock: number; statuses: Record<string, number>; forbidden: number; retries: number };
  forbiddenSamples: { status: number; body: string; route: string }[];
  apiCrashes: string[];
  /** The API's own error log lines (level error), the first few: what a 500 was. */
  apiErrors: string[];
  check: FaultCheck;
  ok: boolean;
}

/**
 * Runs the schedule: for each entry, kill, wait for the first acknowledged write on the affected
 * cluster, wait until the cluster has healed (the old primary back as a standby), let the load
 * run on, then the next. After the last one the load stops and everything is checked.
 */
export async function runChaos(options: ChaosOptions, schedule: readonly { fault: FaultKind; cluster?: string }[]): Promise<ChaosReport> {
  const { topology, progress } = options;
  // The probes drop clients stuck on a dead primary's connections (write-probe.ts).
  surviveDriverConnectRejections((err) => progress(`  (a probe connection dropped while connecting: ${err})`));
  const apiProcess = new ApiProcess(options);
  const specs = clusterSpecs(topology, await clusterCredentials(options.dataDir));
  const dbs = new Databases(specs, { max: 4 });
  const redisSpec = topology.redis ? redisSpecOfTopology(topology, options.dataDir) : undefined;
  let load: CheckoutLoad | undefined;
  const probes = new Map(specs.map((c) => [c.name, new WriteProbe(c.url)]));
  try {
    for (const p of probes.values()) p.start();
    await apiProcess.start();
    progress('API ready');
    const runId = Date.now().toString(36);
    const shop = await prepareShop(apiProcess.baseUrl, options, runId);
    progress(`shop ready: ${shop.buyers.length} buyers, ${shop.plentySkus.length} SKUs with plenty of stock, hot SKU with ${options.hotStock} units`);
    load = new CheckoutLoad({
      baseUrl: apiProcess.baseUrl, buyers: shop.buyers, plentySkus: shop.plentySkus, hotSku: shop.hotSku,
      hotEvery: 4, workers: options.workers, attemptTimeoutMs: 30_000, stepDeadlineMs: 60_000,
    });
    load.start();
    await sleep(options.settleMs);
    const kills: KillFigure[] = [];
    for (const entry of schedule) {
      const before503 = load.tally.statuses.get(503) ?? 0;
      const beforeRetries = load.tally.retries;
      let target: string;
      let onShard: (shard: number) => boolean = () => true;
      let killedPid = 0;
      let killedPort = 0;
      let killedCluster = '';
      const killedAt = Date.now();
      if (entry.fault === 'shard-primary' || entry.fault === 'core-primary') {
        const clusterName = entry.cluster ?? (entry.fault === 'core-primary' ? 'core' : topology.clusters.find((c) => c.roles.includes('shard'))!.name);
        const primary = primaryOf(await clusterStatus(topology, options.dataDir), clusterName);
        if (!primary?.pid) throw new Error(`${clusterName} has no primary to kill`);
        process.kill(primary.pid, 'SIGKILL');
        killedPid = primary.pid;
        killedPort = primary.port;
        killedCluster = clusterName;
        target = `${clusterName}/${primary.name}`;
        if (entry.fault === 'shard-primary') {
          const ranges = topology.clusters.find((c) => c.name === clusterName)!.shards ?? [];
          onShard = (s) => ranges.some(([a, b]) => s >= a && s <= b);
        }
      } else if (entry.fault === 'redis-master') {
        if (!redisSpec) throw new Error('the topology has no Redis Cluster');
        const master = (await redisClusterStatus(redisSpec)).find((n) => n.role === 'master' && n.pid);
        if (!master?.pid) throw new Error('no Redis master to kill');
        process.kill(master.pid, 'SIGKILL');
        target = `redis ${master.port}`;
      } else {
        apiProcess.kill();
        target = 'api';
        await apiProcess.start();
      }
      progress(`killed ${target}`);
      if (entry.fault === 'shard-primary' || entry.fault === 'core-primary') {
        await waitHealed(options, target.split('/')[0]!, killedPid, 90_000);
        progress(`  ${target.split('/')[0]} healed: a new primary, and the old one back as a standby`);
      } else if (entry.fault === 'redis-master' && redisSpec) {
        await sleep(5_000); // a replica is promoted within cluster-node-timeout (2 s) + election
        await redisClusterUp(redisSpec); // restarts the killed node; it rejoins as a replica
        progress('  redis node restarted; it rejoined as a replica');
      }
      await sleep(options.settleMs);
      const end = outageEnd(load.tally, killedAt, Date.now(), onShard);
      const recoveryMs = end === undefined ? null : end - killedAt;
      progress(`  writes back ${recoveryMs === null ? 'NEVER' : `${(recoveryMs / 1000).toFixed(2)} s`} after the kill`);
      await sleep(options.settleMs);
      const newPrimaryAck = killedCluster ? probes.get(killedCluster)?.firstAckElsewhere(killedAt, killedPort) : undefined;
      const newPrimaryWritesMs = newPrimaryAck === undefined ? null : newPrimaryAck - killedAt;
      if (killedCluster) progress(`  new primary took its first write ${newPrimaryWritesMs === null ? 'NEVER' : `${(newPrimaryWritesMs / 1000).toFixed(2)} s`} after the kill`);
      kills.push({
        fault: entry.fault, target, newPrimaryWritesMs, recoveryMs,
        unavailable: (load.tally.statuses.get(503) ?? 0) - before503,
        retries: load.tally.retries - beforeRetries,
      });
    }
    await load.stop();
    progress('load stopped; waiting for the sweeper to settle interrupted checkouts and expired reservations');
    await sleep(CHAOS_RESERVATION_TTL_MS + 3_000);
    const check = await checkAfterFault(dbs, apiProcess.baseUrl, shop.buyers, load.tally.acknowledged);
    const t = load.tally;
    return {
      kills,
      totals: {
        acknowledged: t.acknowledged.length, outOfStock: t.outOfStock,
        statuses: Object.fromEntries([...t.statuses].sort(([a], [b]) => a - b).map(([k, v]) => [String(k), v])),
        forbidden: t.forbidden.length, retries: t.retries,
      },
      forbiddenSamples: t.forbidden.slice(0, 10),
      apiCrashes: apiProcess.crashes,
      apiErrors: await apiProcess.errorLines(10),
      check,
      ok: check.ok && t.forbidden.length === 0 && apiProcess.crashes.length === 0,
    };
  } finally {
    if (load) await load.stop().catch(() => undefined);
    await Promise.all([...probes.values()].map((p) => p.stop()));
    await apiProcess.stop();
    await dbs.close();
  }
}

export interface PitrReport {
  backupSeconds: number;
  targetTime: string;
  ordersBefore: number;
  ordersAfter: number;
  restoreSeconds: number;
  /** Orders acknowledged before T that the restored clusters do not hold (must be none). */
  missingBefore: string[];
  /** Orders acknowledged after T that the restored clusters still hold (must be none). */
  presentAfter: string[];
  verify: FaultCheck['verify'];
  ok: boolean;
}

/**
 * The point-in-time drill of the fault schedule: full backup, orders A under load, time T,
 * orders B, restore every cluster to T, then A must all be there (through the API, as their
 * buyers see them), B must be gone from every shard, and meridian verify must be clean.
 */
export async function runPitrDrill(options: ChaosOptions): Promise<PitrReport> {
  const { topology, progress } = options;
  const apiProcess = new ApiProcess(options);
  const loadFor = async (shop: Awaited<ReturnType<typeof prepareShop>>, ms: number): Promise<CheckoutLoad> => {
    const load = new CheckoutLoad({
      baseUrl: apiProcess.baseUrl, buyers: shop.buyers, plentySkus: shop.plentySkus, hotSku: shop.hotSku,
      hotEvery: 4, workers: options.workers, attemptTimeoutMs: 30_000, stepDeadlineMs: 60_000,
    });
    load.start();
    await sleep(ms);
    await load.stop();
    return load;
  };
  try {
    await apiProcess.start();
    const shop = await prepareShop(apiProcess.baseUrl, options, Date.now().toString(36));
    let started = Date.now();
    await createBackups(topology, options.dataDir, 'full', progress);
    const backupSeconds = (Date.now() - started) / 1000;
    progress(`full backup of every cluster in ${backupSeconds.toFixed(1)} s`);
    const before = (await loadFor(shop, options.settleMs)).tally.acknowledged;
    // Commit timestamps and the client's clock are not the same instant: keep T clear of both loads.
    await sleep(1_500);
    const target = new Date();
    await sleep(1_500);
    const after = (await loadFor(shop, options.settleMs)).tally.acknowledged;
    progress(`orders A: ${before.length}, T = ${target.toISOString()}, orders B: ${after.length}`);
    await apiProcess.stop();
    started = Date.now();
    await restoreToTime(topology, options.dataDir, target, progress);
    const restoreSeconds = (Date.now() - started) / 1000;
    await apiProcess.start();
    const missingBefore = await missingFromHistory(apiProcess.baseUrl, shop.buyers, before);
    const dbs = new Databases(clusterSpecs(topology, await clusterCredentials(options.dataDir)), { max: 4 });
    try {
      const presentAfter: string[] = [];
      const ids = after.map((o) => o.orderId);
      for (const c of dbs.shardClusters()) {
        const rows = await c.pool<{ id: string }[]>`SELECT id::text FROM orders WHERE id = ANY(${ids}::bigint[])`;
        presentAfter.push(...rows.map((r) => r.id));
      }
      const report = await verifyInvariants({ dbs }, { graceMs: 0, findingsMax: 20 });
      const verify = { ok: report.ok, invariants: report.invariants, findings: report.findings };
      return {
        backupSeconds, targetTime: target.toISOString(), ordersBefore: before.length, ordersAfter: after.length, restoreSeconds,
        missingBefore, presentAfter, verify,
        ok: before.length > 0 && after.length > 0 && missingBefore.length === 0 && presentAfter.length === 0 && report.ok,
      };
    } finally {
      await dbs.close();
    }
  } finally {
    await apiProcess.stop();
  }
}
