// Configuration is read from the environment once, validated, and frozen. A bad value fails at
// boot with a message naming the variable, never later in a request.
import path from 'node:path';

export interface Config {
  readonly port: number;
  readonly host: string;
  /** External PostgreSQL; when absent an embedded server is started under dataDir. */
  readonly databaseUrl: string | undefined;
  /** A topology file (topologies/local.yaml): sharded, replicated clusters instead of one database. */
  readonly topologyFile: string | undefined;
  readonly dataDir: string;
  readonly embeddedPgPort: number;
  readonly dbPoolMax: number;
  /**
   * Searches one process runs at once (the rest queue): about the cores of the database search
   * reads. Undefined: the search module's default (SEARCH.concurrencyDefault, this machine's cores).
   */
  readonly searchConcurrencyMax: number | undefined;
  readonly logLevel: string;
  readonly adminEmail: string | undefined;
  readonly adminPassword: string | undefined;
  /** How long stock stays held for a checkout before the sweeper releases it. */
  readonly reservationTtlMs: number;
  /** A pending order older than this is finished or compensated by the sweeper. */
  readonly abandonedOrderMs: number;
  readonly sweeperIntervalMs: number;
  readonly outboxPollIntervalMs: number;
  readonly requestTimeoutMs: number;
  readonly bodyLimitBytes: number;
  readonly sessionTtlMs: number;
  /** Redis (one server) for the inventory gate; or a Redis Cluster's seed nodes. */
  readonly redisUrl: string | undefined;
  readonly redisClusterNodes: readonly string[];
  readonly redisCommandTimeoutMs: number;
  /** postgres | postgres-batched | redis; default redis when Redis is configured. */
  readonly inventoryGate: 'postgres' | 'postgres-batched' | 'redis';
  readonly gateReconcileIntervalMs: number;
  /** A standby further behind its primary than this stops serving reads. */
  readonly replicaMaxLagBytes: number;
  /** Skip the demo catalog on first start. */
  readonly seedDemo: boolean;
}

type Env = Record<string, string | undefined>;

export class ConfigError extends Error {}

function int<Fallback extends number | undefined>(env: Env, name: string, fallback: Fallback, min: number, max: number): number | Fallback {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer in ${min}..${max}, got "${raw}"`);
  }
  return value;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'yes'].includes(raw.toLowerCase())) return true;
  if (['0', 'false', 'no'].includes(raw.toLowerCase())) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

function nodeList(env: Env, name: string): string[] {
  const raw = env[name];
  if (!raw) return [];
  const nodes = raw.split(',').map((n) => n.trim()).filter(Boolean);
  for (const n of nodes) {
    if (!/^[A-Za-z0-9.-]+:\d{1,5}$/.test(n)) throw new ConfigError(`${name} must be host:port,host:port…, got "${n}"`);
  }
  return nodes;
}

const GATE_ENGINES = ['postgres', 'postgres-batched', 'redis'] as const;

function gateEngine(env: Env): Config['inventoryGate'] {
  const raw = env.INVENTORY_GATE;
  const hasRedis = Boolean(env.REDIS_URL || env.REDIS_CLUSTER_NODES);
  if (!raw) return hasRedis ? 'redis' : 'postgres-batched';
  if (!(GATE_ENGINES as readonly string[]).includes(raw)) throw new ConfigError(`INVENTORY_GATE must be one of ${GATE_ENGINES.join(', ')}, got "${raw}"`);
  if (raw === 'redis' && !hasRedis) throw new ConfigError('INVENTORY_GATE=redis needs REDIS_URL or REDIS_CLUSTER_NODES');
  return raw as Config['inventoryGate'];
}

export function loadConfig(env: Env = process.env, overrides: Partial<Config> = {}): Config {
  const dataDir = path.resolve(env.MERIDIAN_DATA_DIR ?? '.meridian');
  const config: Config = {
    port: int(env, 'PORT', 8080, 0, 65535),
    host: env.HOST ?? '127.0.0.1',
    databaseUrl: env.DATABASE_URL || undefined,
    topologyFile: env.MERIDIAN_TOPOLOGY || undefined,
    dataDir,
    embeddedPgPort: int(env, 'MERIDIAN_PG_PORT', 54329, 1024, 65535),
    dbPoolMax: int(env, 'DB_POOL_MAX', 20, 1, 500),
    searchConcurrencyMax: int(env, 'SEARCH_CONCURRENCY_MAX', undefined, 1, 500),
    logLevel: env.LOG_LEVEL ?? 'info',
    adminEmail: env.MERIDIAN_ADMIN_EMAIL || undefined,
    adminPassword: env.MERIDIAN_ADMIN_PASSWORD || undefined,
    reservationTtlMs: int(env, 'RESERVATION_TTL_MS', 5 * 60_000, 1_000, 24 * 3_600_000),
    abandonedOrderMs: int(env, 'ABANDONED_ORDER_MS', 10 * 60_000, 1_000, 7 * 24 * 3_600_000),
    sweeperIntervalMs: int(env, 'SWEEPER_INTERVAL_MS', 5_000, 50, 3_600_000),
    outboxPollIntervalMs: int(env, 'OUTBOX_POLL_INTERVAL_MS', 200, 10, 60_000),
    requestTimeoutMs: int(env, 'REQUEST_TIMEOUT_MS', 15_000, 100, 600_000),
    bodyLimitBytes: int(env, 'BODY_LIMIT_BYTES', 64 * 1024, 1024, 16 * 1024 * 1024),
    sessionTtlMs: int(env, 'SESSION_TTL_MS', 30 * 24 * 3_600_000, 60_000, 365 * 24 * 3_600_000),
    seedDemo: bool(env, 'MERIDIAN_SEED_DEMO', true),
    redisUrl: env.REDIS_URL || undefined,
    redisClusterNodes: nodeList(env, 'REDIS_CLUSTER_NODES'),
    redisCommandTimeoutMs: int(env, 'REDIS_COMMAND_TIMEOUT_MS', 250, 10, 60_000),
    inventoryGate: gateEngine(env),
    gateReconcileIntervalMs: int(env, 'GATE_RECONCILE_INTERVAL_MS', 10_000, 100, 3_600_000),
    replicaMaxLagBytes: int(env, 'REPLICA_MAX_LAG_BYTES', 16 * 1024 * 1024, 0, 1024 * 1024 * 1024),
    ...overrides,
  };
  if (config.adminPassword !== undefined && config.adminPassword.length < 12) {
    throw new ConfigError('MERIDIAN_ADMIN_PASSWORD must have at least 12 characters');
  }
  return Object.freeze(config);
}
