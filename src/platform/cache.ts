// Read-through caches in two levels. L1: an in-process LRU with TTL and jitter, single-flight
// loading, and invalidation by key or prefix. L2 (optional): Redis, shared by every API process,
// so a process that just started, or evicted a key, fills from Redis instead of the database.
// Invalidations from any process arrive over PostgreSQL LISTEN/NOTIFY (CacheBus), so every API
// process evicts within the relay's latency; the publisher also retires the L2 entries.
import type { Counter } from 'prom-client';
import type { Pool } from './db.ts';
import { connectRedis, type RedisClient } from './redis.ts';

export interface CacheOptions {
  readonly name: string;
  readonly maxEntries: number;
  readonly ttlMs: number;
  /** Spread expiries by ±jitter·ttl, so keys cached together do not all expire together. */
  readonly jitter: number;
  /** L1 lookups by result: hit, miss, coalesced (joined an in-flight load). */
  readonly requests?: Counter<'cache' | 'result'>;
  /**
   * The shared second level. Values must survive JSON.stringify/parse unchanged (plain data:
   * strings, numbers, booleans, arrays, objects; no Date, bigint or undefined).
   */
  readonly l2?: CacheL2 | undefined;
}

interface Entry<T> {
  value: T;
  expiresAtMs: number;
  /** The data is at least this fresh (a WAL position); 0 when unknown. */
  version: bigint;
}

export interface Freshness {
  /** Serve an entry only if it is at least this fresh (read-your-writes). */
  minVersion?: bigint | undefined;
  /** How fresh a value loaded now will be. */
  version?: bigint | undefined;
}

function ttlWithJitter(ttlMs: number, jitter: number): number {
  return Math.max(1, Math.round(ttlMs + ttlMs * jitter * (Math.random() * 2 - 1)));
}

export class Cache<T> {
  private readonly entries = new Map<string, Entry<T>>();
  private readonly inFlight = new Map<string, Promise<T>>();
  /** Bumped by every invalidation: a load that started before one must not store its result. */
  private generation = 0;

  constructor(private readonly options: CacheOptions) {}

  get name(): string {
    return this.options.name;
  }

  /**
   * The cached value if it may be served now (unexpired, and at least `minVersion` fresh),
   * counted as a hit; undefined otherwise, with nothing counted (load through getOrLoad). The
   * allocation-free path for hot reads: callers build their loader only when this misses.
   */
  hit(key: string, minVersion?: bigint): T | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined || entry.expiresAtMs <= Date.now() || (minVersion !== undefined && entry.version < minVersion)) return undefined;
    // Refresh recency: Map iteration order is insertion order, so re-insert at the end.
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.count('hit');
    return entry.value;
  }

  async getOrLoad(key: string, load: () => Promise<T>, freshness: Freshness = {}): Promise<T> {
    const fresh = this.hit(key, freshness.minVersion);
    if (fresh !== undefined) return fresh;
    const min = freshness.minVersion;
    const held = min === undefined ? undefined : this.entries.get(key);
    if (min !== undefined && (held === undefined || held.version < min)) {
      // The client has written something newer than what we hold: load for it alone.
      this.count('miss');
      const loaded = await this.loadThrough(key, load, freshness);
      this.store(key, loaded.value, loaded.version);
      return loaded.value;
    }
    const pending = this.inFlight.get(key);
    if (pending) {
      this.count('coalesced');
      return pending;
    }
    this.count('miss');
    const startedAt = this.generation;
    const promise = this.loadThrough(key, load, freshness).then(
      (loaded) => {
        this.inFlight.delete(key);
        if (startedAt === this.generation) this.store(key, loaded.value, loaded.version);
        return loaded.value;
      },
      (err: unknown) => {
        this.inFlight.delete(key);
        throw err;
      },
    );
    this.inFlight.set(key, promise);
    return promise;
  }

  /** L2, then the loader; a loaded value is written back to L2 under the stamp read before the load. */
  private async loadThrough(key: string, load: () => Promise<T>, freshness: Freshness): Promise<{ value: T; version: bigint }> {
    const l2 = this.options.l2;
    if (!l2) return { value: await load(), version: freshness.version ?? 0n };
    const found = await l2.get(this.options.name, key, freshness.minVersion ?? 0n);
    if (found.hit) return { value: found.hit.value as T, version: found.hit.version };
    const value = await load();
    const version = freshness.version ?? 0n;
    if (found.stamp) l2.set(this.options.name, key, value, version, found.stamp, ttlWithJitter(this.options.ttlMs, this.options.jitter));
    return { value, version };
  }

  private store(key: string, value: T, version: bigint): void {
    const { ttlMs, jitter, maxEntries } = this.options;
    this.entries.delete(key);
    this.entries.set(key, { value, expiresAtMs: Date.now() + ttlWithJitter(ttlMs, jitter), version });
    while (this.entries.size > maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }

  /** Evicts from this process's L1 only; CacheBus.publish retires L2 entries and other processes' L1. */
  invalidate(keyOrPrefix: string): void {
    this.generation++;
    if (keyOrPrefix.endsWith('*')) {
      const prefix = keyOrPrefix.slice(0, -1);
      for (const key of [...this.entries.keys()]) if (key.startsWith(prefix)) this.entries.delete(key);
    } else {
      this.entries.delete(keyOrPrefix);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  private count(result: 'hit' | 'miss' | 'coalesced'): void {
    this.options.requests?.inc({ cache: this.options.name, result });
  }
}

// ---------------------------------------------------------------------------------------------
// L2

/** What an L2 entry was written under; it is served only while both are still current. */
export interface L2Stamp {
  /** Bumped by invalidating the whole cache ('*'). */
  readonly epoch: number;
  /** Bumped by invalidating the entry's group (the key up to its first ':'), or a key in it. */
  readonly group: number;
}

export interface L2Lookup {
  hit: { value: unknown; version: bigint } | undefined;
  /** The stamp to store a value loaded now under; undefined when L2 cannot be written now. */
  stamp: L2Stamp | undefined;
}

export interface CacheL2 {
  /** Never throws: an unreachable L2 is a miss. */
  get(cache: string, key: string, minVersion: bigint): Promise<L2Lookup>;
  /** Fire and forget. */
  set(cache: string, key: string, value: unknown, version: bigint, stamp: L2Stamp, ttlMs: number): void;
  /** Retires entries: '*' (all), 'group:*' (a group), or one key (its whole group). */
  invalidate(items: readonly { cache: string; key: string }[]): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface RedisL2Options {
  /** Key prefix in Redis, so several deployments can share one server. */
  readonly prefix?: string;
  /** Lookups by result: hit, miss, stale (older than the client's last write), error. */
  readonly requests?: Counter<'cache' | 'result'>;
  /** Disconnect the client on stop() (true when the L2 made it). */
  readonly ownsClient: boolean;
  /** Group counters outlive every entry written under them (≥ the longest cache TTL). */
  readonly groupTtlMs: number;
}

interface StoredEntry {
  v: unknown;
  /** version (a WAL position) as a decimal string: JSON has no bigint */
  ver: string;
  e: number;
  g: number;
}

/** The group of a key: its text up to and including the first ':' (the whole key without one). */
export function groupOf(key: string): string {
  const i = key.indexOf(':');
  return i < 0 ? key : key.slice(0, i + 1);
}

/** How long start() waits for Redis before the cache serves from L1 and the database alone. */
const L2_CONNECT_TIMEOUT_MS = 2_000;

/**
 * Redis as the shared L2. Entries are plain string keys with a TTL. Invalidation never scans:
 * each cache has an epoch counter ('*') and each key group a counter (e.g. one product's
 * currencies, 'p1:*'); an entry records both counters as read BEFORE its value was loaded and is
 * served only while they are unchanged. So a load that raced an invalidation can never plant a
 * stale value, and a prefix invalidation costs one INCR. Works on one server and on a Redis
 * Cluster (every command touches one key).
 */
export class RedisCacheL2 implements CacheL2 {
  private readonly prefix: string;

  constructor(
    private readonly redis: RedisClient,
    private readonly options: RedisL2Options,
  ) {
    this.prefix = options.prefix ?? 'meridian:cache';
  }

  async start(): Promise<void> {
    // Bounded (a Cluster's connect() can stay pending for good): the cache works without L2 meanwhile.
    await connectRedis(this.redis, L2_CONNECT_TIMEOUT_MS).catch(() => undefined);
  }

  async stop(): Promise<void> {
    if (this.options.ownsClient) this.redis.disconnect();
  }

  private entryKey(cache: string, key: string): string {
    return `${this.prefix}:${cache}:k:${key}`;
  }

  private groupKey(cache: string, group: string): string {
    return `${this.prefix}:${cache}:g:${group}`;
  }

  private epochKey(cache: string): string {
    return `${this.prefix}:${cache}:epoch`;
  }

  private usable(): boolean {
    // No offline queue: commands on a connection that is not ready fail at once. Skip them.
    if (this.redis.status === 'wait') void this.redis.connect().catch(() => undefined);
    return this.redis.status === 'ready';
  }

  async get(cache: string, key: string, minVersion: bigint): Promise<L2Lookup> {
    if (!this.usable()) {
      this.count(cache, 'error');
      return { hit: undefined, stamp: undefined };
    }
    try {
      // Three single-key reads sent together: one round trip, and valid on a Redis Cluster.
      const [raw, group, epoch] = await Promise.all([
        this.redis.get(this.entryKey(cache, key)),
        this.redis.get(this.groupKey(cache, groupOf(key))),
        this.redis.get(this.epochKey(cache)),
      ]);
      const stamp = { epoch: Number(epoch ?? 0), group: Number(group ?? 0) };
      if (raw === null) {
        this.count(cache, 'miss');
        return { hit: undefined, stamp };
      }
      const entry = JSON.parse(raw) as StoredEntry;
      if (entry.e !== stamp.epoch || entry.g !== stamp.group) {
        this.count(cache, 'miss');
        return { hit: undefined, stamp };
      }
      const version = BigInt(entry.ver);
      if (version < minVersion) {
        this.count(cache, 'stale');
        return { hit: undefined, stamp };
      }
      this.count(cache, 'hit');
      return { hit: { value: entry.v, version }, stamp };
    } catch {
      this.count(cache, 'error');
      return { hit: undefined, stamp: undefined };
    }
  }

  set(cache: string, key: string, value: unknown, version: bigint, stamp: L2Stamp, ttlMs: number): void {
    if (!this.usable()) return;
    const entry: StoredEntry = { v: value, ver: version.toString(), e: stamp.epoch, g: stamp.group };
    this.redis.set(this.entryKey(cache, key), JSON.stringify(entry), 'PX', ttlMs).catch(() => this.count(cache, 'error'));
  }

  async invalidate(items: readonly { cache: string; key: string }[]): Promise<void> {
    if (!this.usable()) throw new Error(`redis is ${this.redis.status}: cache invalidation not delivered to L2`);
    const epochs = new Set<string>();
    const groups = new Set<string>();
    for (const { cache, key } of items) {
      if (!key.endsWith('*')) {
        groups.add(`${cache}\n${groupOf(key)}`); // the key's whole group: coarser, and race-free
        continue;
      }
      const prefix = key.slice(0, -1);
      // A prefix that is exactly one group ('p1:') retires that group; any other retires the cache.
      if (prefix.length > 0 && prefix.indexOf(':') === prefix.length - 1) groups.add(`${cache}\n${prefix}`);
      else epochs.add(cache);
    }
    for (const g of groups) if (epochs.has(g.slice(0, g.indexOf('\n')))) groups.delete(g); // covered by the epoch
    const ops: Promise<unknown>[] = [];
    for (const cache of epochs) ops.push(this.redis.incr(this.epochKey(cache)));
    for (const g of groups) {
      const [cache, group] = g.split('\n') as [string, string];
      const k = this.groupKey(cache, group);
      ops.push(this.redis.incr(k).then(() => this.redis.pexpire(k, this.options.groupTtlMs)));
    }
    // Throws when Redis is unreachable: the caller counts it. Entries then live until their TTL.
    await Promise.all(ops);
  }

  private count(cache: string, result: 'hit' | 'miss' | 'stale' | 'error'): void {
    this.options.requests?.inc({ cache, result });
  }
}

// ---------------------------------------------------------------------------------------------
// Invalidation across processes

const CHANNEL = 'meridian_cache';
const NOTIFY_PAYLOAD_MAX_BYTES = 7_000; // PostgreSQL's limit is 8,000 bytes

/** Fans cache invalidations out to every API process through PostgreSQL LISTEN/NOTIFY. */
export class CacheBus {
  private readonly caches = new Map<string, Cache<unknown>>();
  private unlisten: (() => Promise<void>) | undefined;

  constructor(
    private readonly pool: Pool,
    private readonly l2?: CacheL2,
    /** Counts L2 invalidations that could not reach Redis (their entries live until their TTL). */
    private readonly onL2Error?: (err: unknown) => void,
  ) {}

  register(name: string, cache: Cache<unknown>): void {
    this.caches.set(name, cache);
  }

  async start(): Promise<void> {
    await this.l2?.start();
    const handle = await this.pool.listen(CHANNEL, (payload) => this.apply(payload));
    this.unlisten = () => handle.unlisten();
  }

  async stop(): Promise<void> {
    await this.unlisten?.();
    this.unlisten = undefined;
    await this.l2?.stop();
  }

  /** Retire L2 entries first (so no process refills its L1 from them), then evict locally and everywhere else. */
  async publish(invalidations: readonly { cache: string; key: string }[]): Promise<void> {
    if (this.l2) {
      try {
        await this.l2.invalidate(invalidations);
      } catch (err) {
        this.onL2Error?.(err);
      }
    }
    const payload = JSON.stringify(invalidations);
    this.apply(payload);
    if (Buffer.byteLength(payload) > NOTIFY_PAYLOAD_MAX_BYTES) {
      await this.pool.notify(CHANNEL, JSON.stringify([...this.caches.keys()].map((cache) => ({ cache, key: '*' }))));
    } else {
      await this.pool.notify(CHANNEL, payload);
    }
  }

  private apply(payload: string): void {
    try {
      for (const { cache, key } of JSON.parse(payload) as { cache: string; key: string }[]) this.caches.get(cache)?.invalidate(key);
    } catch {
      for (const c of this.caches.values()) c.invalidate('*'); // unreadable: be safe, drop everything
    }
  }
}
