// Database handles and the shard router. Every query in the code base takes its handle as the
// first argument (a pool or a transaction), and the handle comes from this router: by role for
// the core data (directory, catalog, inventory) and by logical shard for user-owned data.
// On one node every role and every shard maps to the same pool; a topology maps them to
// different clusters without any query changing.
import postgres from 'postgres';
import { AppError } from './errors.ts';
import { LIMITS } from './limits.ts';
import { LOGICAL_SHARDS, shardOfId, type Id } from './ids.ts';

/** A pool or a transaction: anything that runs tagged-template SQL. */
export type Sql = postgres.ISql;
export type Pool = postgres.Sql;
export type Tx = postgres.TransactionSql;

export type CoreRole = 'directory' | 'catalog' | 'inventory';
export type Role = CoreRole | 'shard';
export const ALL_ROLES: readonly Role[] = ['directory', 'catalog', 'inventory', 'shard'];

export interface ClusterSpec {
  readonly name: string;
  readonly url: string;
  readonly roles: readonly Role[];
  /** Inclusive ranges of logical shards this cluster owns (only with the 'shard' role). */
  readonly shards: readonly (readonly [number, number])[];
  /** Direct URLs of every member, for reads from standbys (a topology; none on one node). */
  readonly members?: readonly { name: string; url: string }[];
}

export interface PoolOptions {
  readonly max: number;
  readonly statementTimeoutMs?: number;
  readonly applicationName?: string;
}

/**
 * Seconds before a reconnect, for every postgres.js client. Its default waits
 * (0.5–1) × min(3^n / 100, 20) s, n counting failures across the whole pool: a 3-s failover with
 * many connections failing pushed that to 20 s, long after the new primary took writes.
 */
export function reconnectBackoffS(attempt: number): number {
  return Math.min(0.05 * 2 ** attempt, 0.5);
}

export function openPool(url: string, options: PoolOptions): Pool {
  return postgres(url, {
    max: options.max,
    connect_timeout: LIMITS.dbConnectTimeoutMs / 1000,
    idle_timeout: 60,
    backoff: reconnectBackoffS,
    onnotice: () => undefined,
    connection: {
      application_name: options.applicationName ?? 'meridian',
      statement_timeout: options.statementTimeoutMs ?? LIMITS.dbStatementTimeoutMs,
      lock_timeout: LIMITS.dbLockTimeoutMs,
      idle_in_transaction_session_timeout: 30_000,
    },
  });
}

export interface Cluster {
  readonly spec: ClusterSpec;
  readonly pool: Pool;
  /** Whether a primary is reachable, as the PrimaryWatcher last saw it (up until told otherwise). */
  readonly primary: { up: boolean; changedAt: number };
}

export class Databases {
  readonly clusters: readonly Cluster[];
  private readonly byRole = new Map<CoreRole, Cluster>();
  /** Index = logical shard; a dense array keeps routing a pure, allocation-free lookup. */
  private shardOwner: Cluster[];
  /** Logical shards being moved: requests for them answer 503 until the map flips. */
  private fenced = new Uint8Array(LOGICAL_SHARDS);
  /** Version of the shard map in force (0: the one from the configuration). */
  mapVersion = 0;
  /**
   * While a ShardMapWatcher follows the map: the lease, on the monotonic clock (performance.now()).
   * Routing to a shard stops (503) when the map was last confirmed longer ago than leaseMs: a
   * shard move stops waiting for a process soon after, and may then delete rows it would read.
   */
  private mapLease: { leaseMs: number; confirmedAt: number } | undefined;

  constructor(specs: readonly ClusterSpec[], poolOptions: PoolOptions) {
    this.clusters = specs.map((spec) => ({ spec, pool: openPool(spec.url, poolOptions), primary: { up: true, changedAt: Date.now() } }));
    this.shardOwner = new Array<Cluster>(LOGICAL_SHARDS);
    for (const cluster of this.clusters) {
      for (const role of cluster.spec.roles) {
        if (role !== 'shard') this.byRole.set(role, cluster);
      }
      for (const [from, to] of cluster.spec.shards) {
        for (let s = from; s <= to; s++) this.shardOwner[s] = cluster;
      }
    }
    for (const role of ['directory', 'catalog', 'inventory'] as const) {
      if (!this.byRole.has(role)) throw new Error(`no cluster holds the ${role} role`);
    }
    for (let s = 0; s < LOGICAL_SHARDS; s++) {
      if (!this.shardOwner[s]) throw new Error(`logical shard ${s} has no owning cluster`);
    }
  }

  /** One PostgreSQL holds everything: the single-node deployment. */
  static single(url: string, poolOptions: PoolOptions): Databases {
    return new Databases([{ name: 'main', url, roles: ALL_ROLES, shards: [[0, LOGICAL_SHARDS - 1]] }], poolOptions);
  }

  core(role: CoreRole): Pool {
    const cluster = this.byRole.get(role);
    if (!cluster) throw new Error(`no cluster holds the ${role} role`);
    return available(cluster);
  }

  shard(shard: number): Pool {
    const cluster = this.shardOwner[shard];
    if (!cluster) throw new RangeError(`logical shard ${shard} out of range`);
    if (this.fenced[shard]) throw new AppError('unavailable', `shard ${shard} is moving to another cluster; retry in a moment`);
    if (this.mapLease && performance.now() - this.mapLease.confirmedAt > this.mapLease.leaseMs) {
      throw new AppError('unavailable', 'the shard map could not be confirmed; retry in a moment');
    }
    return available(cluster);
  }

  /** The cluster that owns a logical shard now. */
  ownerOf(shard: number): Cluster {
    const cluster = this.shardOwner[shard];
    if (!cluster) throw new RangeError(`logical shard ${shard} out of range`);
    return cluster;
  }

  /** The assignment in force, as ranges: [[from, to, cluster], …]. */
  assignment(): [number, number, string][] {
    const out: [number, number, string][] = [];
    for (let s = 0; s < LOGICAL_SHARDS; s++) {
      const name = this.shardOwner[s]!.spec.name;
      const last = out[out.length - 1];
      if (last && last[2] === name && last[1] === s - 1) last[1] = s;
      else out.push([s, s, name]);
    }
    return out;
  }

  /** The watcher confirmed the map in force as of `at` (performance.now()): routing may go on for leaseMs from then. */
  confirmShardMap(at: number, leaseMs: number): void {
    if (!this.mapLease || at > this.mapLease.confirmedAt) this.mapLease = { leaseMs, confirmedAt: at };
  }

  /** Install a newer shard map (see cluster/shard-map.ts). Older or equal versions are ignored. */
  applyShardMap(map: { version: number; assignment: readonly (readonly [number, number, string])[]; fenced: readonly (readonly [number, number])[] }): boolean {
    if (map.version <= this.mapVersion) return false;
    const byName = new Map(this.clusters.map((c) => [c.spec.name, c]));
    const owner = [...this.shardOwner];
    for (const [from, to, name] of map.assignment) {
      const cluster = byName.get(name);
      if (!cluster) throw new Error(`shard map v${map.version} names an unknown cluster ${name}`);
      for (let s = from; s <= to; s++) owner[s] = cluster;
    }
    const fenced = new Uint8Array(LOGICAL_SHARDS);
    for (const [from, to] of map.fenced) fenced.fill(1, from, to + 1);
    // Swap whole arrays: a request sees either the old map or the new one, never a mix.
    this.shardOwner = owner;
    this.fenced = fenced;
    this.mapVersion = map.version;
    return true;
  }

  /** The pool of the shard that owns this id (a user id, order id, cart id, …). */
  forId(id: Id): Pool {
    return this.shard(shardOfId(id));
  }

  /** The members of the cluster holding a role, for replica reads. */
  membersOf(role: CoreRole): readonly { name: string; url: string }[] {
    return this.byRole.get(role)?.spec.members ?? [];
  }

  /** The clusters that hold user shards, for scatter-gather and sweepers. */
  shardClusters(): Cluster[] {
    return this.clusters.filter((c) => c.spec.roles.includes('shard'));
  }

  shardPools(): Pool[] {
    return this.shardClusters().map((c) => c.pool);
  }

  async close(): Promise<void> {
    await Promise.all(this.clusters.map((c) => c.pool.end({ timeout: 5 })));
  }
}

/** A cluster's pool, or 503 at once while it has no primary (failover in progress). */
function available(cluster: Cluster): Pool {
  if (!cluster.primary.up) {
    throw new AppError('unavailable', `the ${cluster.spec.name} database cluster has no primary right now (failover in progress); retry shortly`);
  }
  return cluster.pool;
}

/**
 * For long-running processes. postgres.js (3.4.9) runs internal queries while it connects (the
 * target_session_attrs check, type discovery) that nobody awaits; a connection dropped at that
 * moment — a primary dying during a failover, a client ended under a waiting query — rejects
 * them unhandled, and Node would stop the process for it. Connection failures, and only those,
 * are reported and survived; anything else still stops the process.
 */
let surviving = false;
export function surviveDriverConnectRejections(report: (err: string) => void): void {
  if (surviving) return;
  surviving = true;
  process.on('unhandledRejection', (reason) => {
    // Seen: CONNECTION_DESTROYED / CONNECTION_CLOSED, and `connect ECONNRESET` during a kill.
    if (isConnectionError(reason)) {
      report(String(reason));
      return;
    }
    throw reason;
  });
}

let onRetry: () => void = () => undefined;

/** Tells the metrics about transactions retried after a connection failure (see transaction()). */
export function setRetryListener(listener: () => void): void {
  onRetry = listener;
}

/**
 * Runs fn in a transaction on a connection reserved for it alone.
 *
 * Why not postgres.js's sql.begin(): in 3.4.x, under load, BEGIN can be pipelined onto a busy
 * connection without that connection being reserved (porsager/postgres#823, #1189), so other
 * queries may run inside the transaction. reserve() only hands out an idle connection, so
 * nothing else ever shares it. Waiting for a connection is bounded by acquireTimeoutMs.
 */
export async function transaction<T>(pool: Pool, fn: (tx: Sql) => Promise<T>, acquireTimeoutMs: number = LIMITS.dbAcquireTimeoutMs): Promise<T> {
  let conn: postgres.ReservedSql;
  try {
    conn = await begin(pool, acquireTimeoutMs);
  } catch (err) {
    // Nothing has run yet, so trying once more is safe: after a failover the pool's old
    // connections die one by one, and the next attempt gets one to the new primary.
    if (!isConnectionError(err)) throw err;
    onRetry();
    await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    conn = await begin(pool, acquireTimeoutMs);
  }
  try {
    try {
      const result = await fn(conn);
      await conn`COMMIT`;
      return result;
    } catch (err) {
      // On a broken connection the server has rolled back already and ROLLBACK fails at once
      // (scripts/patch-postgres.mjs makes a broken reservation refuse statements); on a live one
      // it must run, or the connection would go back to the pool inside a failed transaction.
      await conn`ROLLBACK`.catch(() => undefined);
      // This connection reached a server that is no longer the primary (a demoted old primary
      // after a failover): end it, so that the pool's next connection finds the new primary.
      if (pgCode(err) === PG.readOnlyTransaction) await conn`SELECT pg_terminate_backend(pg_backend_pid())`.catch(() => undefined);
      throw err;
    }
  } finally {
    conn.release();
  }
}

/** A reserved connection with BEGIN sent: the part of a transaction that is always safe to repeat. */
async function begin(pool: Pool, acquireTimeoutMs: number): Promise<postgres.ReservedSql> {
  const pending = pool.reserve();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new AppError('unavailable', 'the database is too busy; retry shortly')), acquireTimeoutMs);
  });
  let conn: postgres.ReservedSql;
  try {
    conn = await Promise.race([pending, timedOut]);
  } catch (err) {
    // The reservation may still be granted later: hand that connection straight back.
    pending.then((c) => c.release(), () => undefined);
    throw err;
  } finally {
    clearTimeout(timer);
  }
  try {
    await conn`BEGIN`;
    return conn;
  } catch (err) {
    conn.release();
    throw err;
  }
}

/** PostgreSQL error codes we turn into business outcomes. */
export const PG = {
  uniqueViolation: '23505',
  serializationFailure: '40001',
  deadlockDetected: '40P01',
  lockNotAvailable: '55P03',
  queryCanceled: '57014',
  readOnlyTransaction: '25006',
} as const;

export function pgCode(err: unknown): string | undefined {
  return err instanceof postgres.PostgresError ? err.code : undefined;
}

export function pgConstraint(err: unknown): string | undefined {
  return err instanceof postgres.PostgresError ? err.constraint_name : undefined;
}

// 55006: a shard-move fence refusing a write to a range that is changing clusters.
// 25006: a write reached a server that stopped being the primary (a failover under way).
const TRANSIENT_SQLSTATES = new Set(['25006', '40001', '40P01', '55P03', '55006', '57014', '57P01', '57P02', '57P03', '53300']);
const TRANSIENT_CLIENT_CODES = new Set(['CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);

/** The connection failed or was refused: nothing reached the database. */
function isConnectionError(err: unknown): boolean {
  if (err instanceof postgres.PostgresError) return err.code.startsWith('08') || ['57P01', '57P02', '57P03'].includes(err.code);
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && TRANSIENT_CLIENT_CODES.has(code);
}

/**
 * Errors that say "not now" rather than "wrong": lock and statement time-outs, serialization
 * failures, deadlocks, a database shutting down or unreachable. They answer 503 with
 * Retry-After, never 500.
 */
export function isTransientDbError(err: unknown): boolean {
  if (err instanceof postgres.PostgresError) return TRANSIENT_SQLSTATES.has(err.code) || err.code.startsWith('08');
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && TRANSIENT_CLIENT_CODES.has(code);
}
