// Search and catalog caches in two levels (in-process L1, Redis L2) across two API processes on
// one database and one Redis: a stampede makes one query, a product change evicts results
// everywhere within a second (outbox → NOTIFY for L1, counters in Redis for L2), an entry older
// than the client's consistency token is never served, and /metrics counts hits per level.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { buildApp, buildServices, type Services } from '../src/app.ts';
import { RedisCacheL2, Cache } from '../src/platform/cache.ts';
import { loadConfig } from '../src/platform/config.ts';
import { Databases } from '../src/platform/db.ts';
import { connectRedis, createRedis, type RedisClient } from '../src/platform/redis.ts';
import { drainOutbox } from './assertions.ts';
import { auth, createTestPlatform, createUser, type TestPlatform } from './helpers.ts';

function redisUrl(): string {
  const url = process.env.TEST_REDIS_URL;
  if (!url) throw new Error('TEST_REDIS_URL is not set: run the tests with `npm test`');
  return url;
}

async function redis(): Promise<RedisClient> {
  const client = createRedis({ url: redisUrl(), commandTimeoutMs: 1_000 })!;
  await connectRedis(client, 5_000);
  return client;
}

/** Waits until check() holds, for at most limitMs; returns how long it took. */
async function within(limitMs: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > limitMs) throw new Error(`not within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - started;
}

function metric(body: string, name: string, labels: string): number {
  const line = body.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('search and catalog caches across two processes, with Redis as L2', () => {
  const prefix = `meridian-test-${randomBytes(4).toString('hex')}`;
  let a: TestPlatform;
  let aRedis: RedisClient;
  let b: Services;
  let bApp: FastifyInstance;
  let bDbs: Databases;
  let bRedis: RedisClient;
  let admin: { token: string };
  const word = (): string => Array.from(randomBytes(8), (x) => String.fromCharCode(97 + (x % 26))).join('');

  before(async () => {
    aRedis = await redis();
    bRedis = await redis();
    a = await createTestPlatform({}, { cacheRedis: aRedis, cacheRedisPrefix: prefix });
    bDbs = Databases.single(a.url, { max: 5 });
    b = buildServices(loadConfig({}, { seedDemo: false }), bDbs, pino({ level: 'silent' }), { defaultMetrics: false, cacheRedis: bRedis, cacheRedisPrefix: prefix });
    bApp = await buildApp(b);
    await b.cacheBus.start();
    admin = await createUser(a, 'admin');
  });
  after(async () => {
    await bApp.close();
    await b.cacheBus.stop();
    await bDbs.close();
    await a.close();
    aRedis.disconnect();
    bRedis.disconnect();
  });

  async function product(title: string): Promise<string> {
    const sku = `CACHE-${randomBytes(4).toString('hex')}`;
    const p = await a.s.catalog.createProduct({ title, variants: [{ sku, prices: [{ amount: 1_000, currency: 'USD' }] }] });
    await drainOutbox(a);
    return p.id;
  }

  const titlesOf = async (app: FastifyInstance, q: string, headers: Record<string, string> = {}): Promise<string[]> => {
    const res = await app.inject({ method: 'GET', url: `/v1/search?q=${encodeURIComponent(q)}`, headers });
    assert.equal(res.statusCode, 200, res.body);
    return res.json<{ items: { title: string }[] }>().items.map((i) => i.title);
  };

  it('a stampede of concurrent identical searches makes one database query', async () => {
    const w = word();
    await product(`Stampede ${w}`);
    let queries = 0;
    const svc = a.s.search as unknown as { execute: (...args: unknown[]) => Promise<unknown> };
    const original = svc.execute.bind(svc);
    svc.execute = async (...args) => {
      queries++;
      return original(...args);
    };
    try {
      const responses = await Promise.all(Array.from({ length: 50 }, () => a.app.inject({ method: 'GET', url: `/v1/search?q=${w}` })));
      assert.ok(responses.every((r) => r.statusCode === 200 && r.json<{ total: number }>().total === 1));
      assert.equal(queries, 1);
    } finally {
      svc.execute = original;
    }
    const metrics = (await a.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.ok(metric(metrics, 'meridian_cache_requests_total', 'cache="search",result="coalesced"') >= 49, metrics);
  });

  it('the other process fills from Redis (L2) instead of the database, and counts it per level', async () => {
    const w = word();
    await product(`Shared ${w}`);
    assert.deepEqual(await titlesOf(a.app, w), [`Shared ${w}`]); // A: L1 miss, L2 miss, database; writes L2
    let queries = 0;
    const svc = b.search as unknown as { execute: (...args: unknown[]) => Promise<unknown> };
    const original = svc.execute.bind(svc);
    svc.execute = async (...args) => {
      queries++;
      return original(...args);
    };
    try {
      await within(1_000, async () => (await titlesOf(bApp, w)).length === 1); // L2 writes are fire and forget
      assert.equal(queries, 0, 'B answered from Redis');
    } finally {
      svc.execute = original;
    }
    const metrics = (await bApp.inject({ method: 'GET', url: '/metrics' })).body;
    assert.ok(metric(metrics, 'meridian_cache_l2_requests_total', 'cache="search",result="hit"') >= 1, metrics);
    assert.ok(metric(metrics, 'meridian_cache_requests_total', 'cache="search",result="miss"') >= 1, 'L1 counted apart');
    assert.match((await a.app.inject({ method: 'GET', url: '/metrics' })).body, /meridian_search_queries_total\{mode="exact"\} [1-9]/, 'A computed it');
  });

  it('a product change evicts search results and product pages in both processes, both levels, within a second', async () => {
    const before1 = word();
    const after1 = word();
    const id = await product(`Evict ${before1}`);
    // Both processes hold the result in L1, and Redis holds it too.
    assert.deepEqual(await titlesOf(a.app, before1), [`Evict ${before1}`]);
    assert.deepEqual(await titlesOf(bApp, before1), [`Evict ${before1}`]);
    assert.equal((await bApp.inject({ method: 'GET', url: `/v1/products/${id}` })).json().title, `Evict ${before1}`);
    assert.equal((await a.app.inject({ method: 'GET', url: `/v1/products/${id}` })).json().title, `Evict ${before1}`);

    const patched = await a.app.inject({ method: 'PATCH', url: `/v1/admin/products/${id}`, headers: auth(admin.token), payload: { title: `Evict ${after1}` } });
    assert.equal(patched.statusCode, 200, patched.body);
    const started = Date.now();
    await a.s.relay.drain(); // what the relay's poll does within its interval
    await within(1_000, async () => (await titlesOf(bApp, before1)).length === 0 && (await titlesOf(bApp, after1)).length === 1);
    await within(1_000, async () => (await bApp.inject({ method: 'GET', url: `/v1/products/${id}` })).json().title === `Evict ${after1}`);
    assert.deepEqual(await titlesOf(a.app, after1), [`Evict ${after1}`]);
    assert.ok(Date.now() - started < 1_000, `evicted everywhere after ${Date.now() - started} ms`);
  });

  it('never serves an entry older than the client\'s Meridian-Consistency token', async () => {
    const old = word();
    const fresh = word();
    const id = await product(`Consistent ${old}`);
    assert.deepEqual(await titlesOf(a.app, `${old} or ${fresh}`), [`Consistent ${old}`]);
    // Change the document without any invalidation: only the token can tell the entry is stale.
    await a.s.dbs.core('catalog')`UPDATE products SET title = ${`Consistent ${fresh}`} WHERE id = ${id}`;
    await a.s.search.reindexProduct(id);
    // The insert position: with synchronous_commit off (the test server) the write position that
    // write responses carry may not have passed a commit yet, and would equal the entry's.
    const [lsn] = await a.s.dbs.core('catalog')<{ lsn: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS lsn`;
    const token = lsn!.lsn;
    assert.deepEqual(await titlesOf(a.app, `${old} or ${fresh}`), [`Consistent ${old}`], 'without a token: the cached entry');
    assert.deepEqual(await titlesOf(a.app, `${old} or ${fresh}`, { 'meridian-consistency': token }), [`Consistent ${fresh}`]);
    assert.deepEqual(await titlesOf(bApp, `${old} or ${fresh}`, { 'meridian-consistency': token }), [`Consistent ${fresh}`], 'nor from Redis');
  });

  it('Redis L2: a load that raced an invalidation never plants its stale value', async () => {
    const l2 = new RedisCacheL2(aRedis, { prefix: `${prefix}-unit`, ownsClient: false, groupTtlMs: 60_000 });
    const cache = new Cache<string>({ name: 'race', maxEntries: 10, ttlMs: 60_000, jitter: 0, l2 });
    let release!: () => void;
    const slow = cache.getOrLoad('p1:USD', () => new Promise<string>((r) => (release = () => r('old'))));
    await new Promise((r) => setTimeout(r, 20)); // the lookup read the stamps before the load began
    await l2.invalidate([{ cache: 'race', key: 'p1:*' }]);
    release();
    assert.equal(await slow, 'old');
    await new Promise((r) => setTimeout(r, 50)); // its write to Redis has landed
    const other = new Cache<string>({ name: 'race', maxEntries: 10, ttlMs: 60_000, jitter: 0, l2 });
    assert.equal(await other.getOrLoad('p1:USD', async () => 'new'), 'new', 'the stale write is ignored');
    await new Promise((r) => setTimeout(r, 50));
    const third = new Cache<string>({ name: 'race', maxEntries: 10, ttlMs: 60_000, jitter: 0, l2 });
    assert.equal(await third.getOrLoad('p1:USD', async () => 'loaded again'), 'new', 'the fresh write is served');
    // Invalidating the whole cache retires every group.
    await l2.invalidate([{ cache: 'race', key: '*' }]);
    const fourth = new Cache<string>({ name: 'race', maxEntries: 10, ttlMs: 60_000, jitter: 0, l2 });
    assert.equal(await fourth.getOrLoad('p1:USD', async () => 'after epoch'), 'after epoch');
  });

  it('an unreachable Redis is a miss, not an error', async () => {
    const dead = createRedis({ url: 'redis://127.0.0.1:1', commandTimeoutMs: 100 })!;
    const l2 = new RedisCacheL2(dead, { ownsClient: true, groupTtlMs: 60_000 });
    const cache = new Cache<number>({ name: 'dead', maxEntries: 10, ttlMs: 60_000, jitter: 0, l2 });
    assert.equal(await cache.getOrLoad('k', async () => 7), 7);
    await assert.rejects(l2.invalidate([{ cache: 'dead', key: '*' }]));
    await l2.stop();
  });
});
