// Redis connections: one server (REDIS_URL) or a Redis Cluster (REDIS_CLUSTER_NODES seeds).
// Commands fail fast (no offline queue, short command timeout) so that callers fall back to
// PostgreSQL at once instead of waiting out an outage or a failover.
import { Cluster, Redis } from 'ioredis';

export type RedisClient = Redis | Cluster;

export interface RedisOptions {
  readonly url?: string | undefined;
  /** host:port seeds of a Redis Cluster */
  readonly clusterNodes?: readonly string[] | undefined;
  readonly commandTimeoutMs: number;
}

export function createRedis(options: RedisOptions): RedisClient | undefined {
  const common = {
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: 2_000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    lazyConnect: true,
    retryStrategy: (times: number) => Math.min(100 * times, 1_000),
  };
  if (options.clusterNodes && options.clusterNodes.length > 0) {
    const nodes = options.clusterNodes.map((n) => {
      const [host, port] = n.split(':');
      return { host: host ?? '127.0.0.1', port: Number(port) };
    });
    return new Cluster(nodes, {
      redisOptions: common,
      enableOfflineQueue: false,
      lazyConnect: true,
      clusterRetryStrategy: (times: number) => Math.min(100 * times, 1_000),
      // Follow a failover quickly: refresh the slot map as soon as a MOVED or error says so.
      slotsRefreshTimeout: 1_000,
      retryDelayOnFailover: 100,
      retryDelayOnClusterDown: 100,
    });
  }
  if (options.url) return new Redis(options.url, common);
  return undefined;
}

/** Connect, and wait until a command goes through (a cluster has loaded its slot map). */
export async function connectRedis(client: RedisClient, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  if (client.status === 'wait') await client.connect().catch(() => undefined);
  for (;;) {
    try {
      await client.ping();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
