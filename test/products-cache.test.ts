// Product reads served from the in-process cache as pre-serialized bytes: the fast path must
// keep the response contract, the LRU order, and read-your-writes (Meridian-Consistency).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Registry, Counter } from 'prom-client';
import { Type } from 'typebox';
import { Cache } from '../src/platform/cache.ts';
import { memoizedSerializer } from '../src/platform/http.ts';
import { createProduct, createTestPlatform, type TestPlatform } from './helpers.ts';

describe('product reads from the cache', () => {
  let t: TestPlatform;
  before(async () => {
    t = await createTestPlatform();
  });
  after(async () => t.close());

  it('a cached detail and list are sent as the same JSON bytes, with type and length', async () => {
    const p = await createProduct(t, 3, 1999);
    for (const url of [`/v1/products/${p.productId}`, '/v1/products?limit=5']) {
      const first = await t.app.inject({ method: 'GET', url });
      const second = await t.app.inject({ method: 'GET', url });
      assert.equal(first.statusCode, 200, first.body);
      assert.equal(second.body, first.body);
      assert.equal(second.headers['content-type'], 'application/json; charset=utf-8');
      assert.equal(Number(second.headers['content-length']), Buffer.byteLength(second.body));
    }
    const detail = (await t.app.inject({ method: 'GET', url: `/v1/products/${p.productId}` })).json();
    assert.equal(detail.id, p.productId);
    assert.deepEqual(detail.variants[0].price, { amount: 1999, currency: 'USD' });
  });

  it('a cache hit never serves an entry older than the client\'s Meridian-Consistency token', async () => {
    const p = await createProduct(t, 3);
    const detailUrl = `/v1/products/${p.productId}`;
    const listUrl = '/v1/products?limit=100';
    const titleIn = (body: { items: { id: string; title: string }[] }): string | undefined => body.items.find((i) => i.id === p.productId)?.title;
    const before = (await t.app.inject({ method: 'GET', url: detailUrl })).json().title as string;
    assert.equal(titleIn((await t.app.inject({ method: 'GET', url: listUrl })).json()), before);
    // Change the row without any invalidation: only the token can tell the entries are stale.
    await t.s.dbs.core('catalog')`UPDATE products SET title = 'Read your writes', updated_at = now() WHERE id = ${p.productId}`;
    const [lsn] = await t.s.dbs.core('catalog')<{ lsn: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS lsn`;
    const token = { 'meridian-consistency': lsn!.lsn };
    assert.equal((await t.app.inject({ method: 'GET', url: detailUrl })).json().title, before, 'without a token: the cached entry');
    assert.equal((await t.app.inject({ method: 'GET', url: detailUrl, headers: token })).json().title, 'Read your writes');
    assert.equal(titleIn((await t.app.inject({ method: 'GET', url: listUrl, headers: token })).json()), 'Read your writes');
  });
});

describe('Cache.hit and the serializer memo', () => {
  function counted(): { registry: Registry; requests: Counter<'cache' | 'result'> } {
    const registry = new Registry();
    return { registry, requests: new Counter({ name: 'c', help: 'c', labelNames: ['cache', 'result'], registers: [registry] }) };
  }

  it('hit() serves only unexpired entries at least as fresh as asked, counts only what it serves, and refreshes recency', async () => {
    const { registry, requests } = counted();
    const cache = new Cache<{ v: string }>({ name: 'unit', maxEntries: 2, ttlMs: 60_000, jitter: 0, requests });
    assert.equal(cache.hit('a'), undefined);
    await cache.getOrLoad('a', async () => ({ v: 'a' }), { version: 10n });
    await cache.getOrLoad('b', async () => ({ v: 'b' }), { version: 10n });
    assert.deepEqual(cache.hit('a'), { v: 'a' });
    assert.deepEqual(cache.hit('a', 10n), { v: 'a' });
    assert.equal(cache.hit('a', 11n), undefined, 'older than the client has written');
    // 'a' was used last, so adding a third entry evicts 'b'.
    await cache.getOrLoad('c', async () => ({ v: 'c' }));
    assert.equal(cache.hit('b'), undefined);
    assert.deepEqual(cache.hit('a'), { v: 'a' });
    const values = (await registry.getMetricsAsJSON())[0]!.values;
    const of = (result: string): number => values.find((v) => v.labels.result === result)?.value ?? 0;
    assert.deepEqual([of('hit'), of('miss')], [3, 3], 'served three times; loaded a, b and c');

    const short = new Cache<{ v: string }>({ name: 'short', maxEntries: 2, ttlMs: 1, jitter: 0 });
    await short.getOrLoad('x', async () => ({ v: 'x' }));
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(short.hit('x'), undefined, 'expired');
  });

  it('the serializer encodes an object once and returns the same bytes for it', () => {
    const json = memoizedSerializer<{ a: number; b: string }>(Type.Object({ a: Type.Integer(), b: Type.String() }));
    const value = { a: 1, b: 'ü', secret: 'not in the schema' };
    const body = json(value);
    assert.ok(Buffer.isBuffer(body));
    assert.equal(body.toString('utf8'), '{"a":1,"b":"ü"}');
    assert.equal(json(value), body, 'the same Buffer');
    assert.notEqual(json({ ...value }), body, 'another object is serialized on its own');
  });
});
