// Redis connections: one server (REDIS_URL) or a Redis Cluster (REDIS_CLUSTER_NODES seeds).
// Commands fail fast (no offline queue, short command timeout) so that callers fall back to
// PostgreSQL at once instead of waiting out an outage or a failover.
import { Cluster, Redis } from 'ioredis';
import { withDeadline } from './deadline.ts';

export type RedisClient = Redis | Cluster;

export interface RedisOptions {
  readonly url?: string | undefined;
  /** host:port seeds of a Redis Cluster */
  readonly clusterNodes?: readonly string[] | undefined;
  readonly commandTimeoutMs: number;
}

const CLUSTER_SLOTS_REFRESH_MS = 1_000;

export function createRedis(options: RedisOptions): RedisClient | undefined {
  const common = {
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: 2_000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    lazyConnect: true,
    retryStrategy: (times: number) => Math.min(100 * times, 1_000),
    // Commands issued in the same tick leave in one socket write. Without it every command is a
    // write system call of its own: under a flash sale that was half of the gate process's CPU.
    enableAutoPipelining: true,
  };
  if (options.clusterNodes && options.clusterNodes.length > 0) {
    const nodes = options.clusterNodes.map((n) => {
      const [host, port] = n.split(':');
      return { host: host ?? '127.0.0.1', port: Number(port) };
    });
    const cluster = new Cluster(nodes, {
      redisOptions: common,
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      lazyConnect: true,
      clusterRetryStrategy: (times: number) => Math.min(100 * times, 1_000),
      slotsRefreshTimeout: 1_000,
      retryDelayOnFailover: 100,
      retryDelayOnClusterDown: 100,
    });
    // Follow a failover: ioredis refreshes its slot map on MOVED, CLUSTERDOWN and "Connection is
    // closed." only. A command to a master that died is refused as "Stream isn't writeable" (no
    // offline queue), which refreshes nothing: if the one refresh the closed connection set off
    // ran before a replica was promoted, the client kept routing that master's slots to the dead
    // node for good. So refresh every second as well (one CLUSTER SLOTS). Our own timer, not
    // ioredis's slotsRefreshInterval: that one re-arms itself after disconnect() when a refresh
    // is in flight, and keeps the process alive.
    const slotsRefresh = setInterval(() => {
      if (cluster.status === 'ready') cluster.refreshSlotsCache();
    }, CLUSTER_SLOTS_REFRESH_MS);
    slotsRefresh.unref();
    cluster.once('end', () => clearInterval(slotsRefresh));
    return cluster;
  }
  if (options.url) return new Redis(options.url, common);
  return undefined;
}

/** The message of a command that missed its deadline (the same as ioredis's commandTimeout). */
export const COMMAND_TIMED_OUT = 'Command timed out';

export function isCommandTimeout(err: unknown): boolean {
  return err instanceof Error && err.message === COMMAND_TIMED_OUT;
}

/**
 * A Redis command that settles within timeoutMs, whatever the client does. ioredis's own
 * commandTimeout covers only a command written to a node: in a Redis Cluster a command waiting
 * for a slot refresh or a failover retry (retryDelayOnFailover, CLUSTERDOWN, TRYAGAIN) waits with
 * no timer at all (ioredis #1604), which hung a test right after a master was SIGKILLed.
 */
export function redisDeadline<T>(command: Promise<T>, timeoutMs: number): Promise<T> {
  return withDeadline(command, timeoutMs, () => new Error(COMMAND_TIMED_OUT));
}

/** Per attempt of connectRedis: a ping that is not answered by then is tried again. */
const CONNECT_PING_TIMEOUT_MS = 1_000;

/** Connect, and wait until a command goes through (a cluster has loaded its slot map). */
export async function connectRedis(client: RedisClient, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // A Cluster's connect() can stay pending for good when a node dies while it connects (its
  // promise is dropped on a retry, ioredis PR #741), though the client then connects anyway.
  if (client.status === 'wait') await redisDeadline(client.connect(), timeoutMs).catch(() => undefined);
  for (;;) {
    try {
      await redisDeadline(client.ping(), Math.min(CONNECT_PING_TIMEOUT_MS, timeoutMs));
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
