import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Cache } from './cache.ts';

describe('Cache', () => {
  it('single-flight: N concurrent misses run one load', async () => {
    const cache = new Cache<number>({ name: 't', maxEntries: 10, ttlMs: 10_000, jitter: 0 });
    let loads = 0;
    const load = async (): Promise<number> => {
      loads++;
      await new Promise((r) => setTimeout(r, 20));
      return 42;
    };
    const values = await Promise.all(Array.from({ length: 100 }, () => cache.getOrLoad('k', load)));
    assert.equal(loads, 1);
    assert.ok(values.every((v) => v === 42));
    await cache.getOrLoad('k', load);
    assert.equal(loads, 1, 'then served from the cache');
  });

  it('expires after its TTL and evicts the least recently used beyond maxEntries', async () => {
    const cache = new Cache<string>({ name: 't', maxEntries: 2, ttlMs: 30, jitter: 0 });
    let loads = 0;
    const load = (v: string) => async (): Promise<string> => {
      loads++;
      return v;
    };
    await cache.getOrLoad('a', load('a'));
    await cache.getOrLoad('b', load('b'));
    await cache.getOrLoad('a', load('a')); // a is now the most recent
    await cache.getOrLoad('c', load('c')); // evicts b
    assert.equal(cache.size, 2);
    assert.equal(loads, 3);
    await cache.getOrLoad('b', load('b'));
    assert.equal(loads, 4, 'b was evicted');
    await new Promise((r) => setTimeout(r, 40));
    await cache.getOrLoad('b', load('b'));
    assert.equal(loads, 5, 'expired');
  });

  it('a load that raced an invalidation does not store its stale value', async () => {
    const cache = new Cache<string>({ name: 't', maxEntries: 10, ttlMs: 10_000, jitter: 0 });
    let release!: () => void;
    const slow = cache.getOrLoad('k', () => new Promise<string>((r) => (release = () => r('old'))));
    cache.invalidate('k');
    release();
    assert.equal(await slow, 'old');
    assert.equal(await cache.getOrLoad('k', async () => 'new'), 'new');
  });

  it('invalidates by prefix', async () => {
    const cache = new Cache<number>({ name: 't', maxEntries: 10, ttlMs: 10_000, jitter: 0 });
    await cache.getOrLoad('p1:USD', async () => 1);
    await cache.getOrLoad('p1:EUR', async () => 2);
    await cache.getOrLoad('p2:USD', async () => 3);
    cache.invalidate('p1:*');
    assert.equal(cache.size, 1);
  });
});
