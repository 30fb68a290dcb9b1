// In-process read-through cache (L1): LRU with TTL and jitter, single-flight loading, and
// invalidation by key or prefix. Invalidations from any process arrive over PostgreSQL
// LISTEN/NOTIFY (CacheBus), so every API process evicts within the relay's latency.
import type { Counter } from 'prom-client';
import type { Pool } from './db.ts';

export interface CacheOptions {
  readonly name: string;
  readonly maxEntries: number;
  readonly ttlMs: number;
  /** Spread expiries by ±jitter·ttl, so keys cached together do not all expire together. */
  readonly jitter: number;
  readonly requests?: Counter<'cache' | 'result'>;
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

export class Cache<T> {
  private readonly entries = new Map<string, Entry<T>>();
  private readonly inFlight = new Map<string, Promise<T>>();
  /** Bumped by every invalidation: a load that started before one must not store its result. */
  private generation = 0;

  constructor(private readonly options: CacheOptions) {}

  async getOrLoad(key: string, load: () => Promise<T>, freshness: Freshness = {}): Promise<T> {
    const hit = this.entries.get(key);
    const min = freshness.minVersion;
    if (min !== undefined && (!hit || hit.version < min)) {
      // The client has written something newer than what we hold: load for it alone.
      this.count('miss');
      const value = await load();
      this.store(key, value, freshness.version ?? 0n);
      return value;
    }
    if (hit && hit.expiresAtMs > Date.now()) {
      // Refresh recency: Map iteration order is insertion order, so re-insert at the end.
      this.entries.delete(key);
      this.entries.set(key, hit);
      this.count('hit');
      return hit.value;
    }
    const pending = this.inFlight.get(key);
    if (pending) {
      this.count('coalesced');
      return pending;
    }
    this.count('miss');
    const startedAt = this.generation;
    const promise = load().then(
      (value) => {
        this.inFlight.delete(key);
        if (startedAt === this.generation) this.store(key, value, freshness.version ?? 0n);
        return value;
      },
      (err: unknown) => {
        this.inFlight.delete(key);
        throw err;
      },
    );
    this.inFlight.set(key, promise);
    return promise;
  }

  private store(key: string, value: T, version: bigint): void {
    const { ttlMs, jitter, maxEntries } = this.options;
    const spread = ttlMs * jitter * (Math.random() * 2 - 1);
    this.entries.delete(key);
    this.entries.set(key, { value, expiresAtMs: Date.now() + ttlMs + spread, version });
    while (this.entries.size > maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }

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

const CHANNEL = 'meridian_cache';
const NOTIFY_PAYLOAD_MAX_BYTES = 7_000; // PostgreSQL's limit is 8,000 bytes

/** Fans cache invalidations out to every API process through PostgreSQL LISTEN/NOTIFY. */
export class CacheBus {
  private readonly caches = new Map<string, Cache<unknown>>();
  private unlisten: (() => Promise<void>) | undefined;

  constructor(private readonly pool: Pool) {}

  register(name: string, cache: Cache<unknown>): void {
    this.caches.set(name, cache);
  }

  async start(): Promise<void> {
    const handle = await this.pool.listen(CHANNEL, (payload) => this.apply(payload));
    this.unlisten = () => handle.unlisten();
  }

  async stop(): Promise<void> {
    await this.unlisten?.();
    this.unlisten = undefined;
  }

  /** Evict locally at once, and everywhere else through NOTIFY. */
  async publish(invalidations: readonly { cache: string; key: string }[]): Promise<void> {
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
