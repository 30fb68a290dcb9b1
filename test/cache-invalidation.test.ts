// Product caches across two API processes sharing one database: a change made through one is
// evicted from the other's cache through the outbox relay and PostgreSQL NOTIFY.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { buildApp, buildServices } from '../src/app.ts';
import { loadConfig } from '../src/platform/config.ts';
import { Databases } from '../src/platform/db.ts';
import type { FastifyInstance } from 'fastify';
import { auth, createProduct, createTestPlatform, createUser, type TestPlatform } from './helpers.ts';

describe('cache invalidation across processes', () => {
  let a: TestPlatform;
  let bApp: FastifyInstance;
  let bDbs: Databases;
  let stopB: () => Promise<void>;
  before(async () => {
    a = await createTestPlatform();
    bDbs = Databases.single(a.url, { max: 5 });
    const b = buildServices(loadConfig({}, { seedDemo: false }), bDbs, pino({ level: 'silent' }), { defaultMetrics: false });
    bApp = await buildApp(b);
    await b.cacheBus.start();
    stopB = async () => {
      await bApp.close();
      await b.cacheBus.stop();
      await bDbs.close();
    };
  });
  after(async () => {
    await stopB();
    await a.close();
  });

  it('serves repeated reads from the cache and evicts everywhere within a second of a change', async () => {
    const admin = await createUser(a, 'admin');
    const p = await createProduct(a, 5);
    const url = `/v1/products/${p.productId}`;
    const first = await bApp.inject({ method: 'GET', url });
    assert.equal(first.statusCode, 200);
    // Change the title behind the cache's back: B keeps serving its cached copy...
    await a.s.dbs.core('catalog')`UPDATE products SET title = 'Changed behind the cache' WHERE id = ${p.productId}`;
    assert.equal((await bApp.inject({ method: 'GET', url })).json().title, first.json().title);
    // ...until a real change goes through A: its event reaches B's cache through the relay.
    const patched = await a.app.inject({ method: 'PATCH', url: `/v1/admin/products/${p.productId}`, headers: auth(admin.token), payload: { title: 'Renamed' } });
    assert.equal(patched.json().title, 'Renamed', 'the writer reads its own write');
    const started = Date.now();
    await a.s.relay.drain();
    let seen = '';
    while (Date.now() - started < 1_000) {
      seen = (await bApp.inject({ method: 'GET', url })).json().title as string;
      if (seen === 'Renamed') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(seen, 'Renamed');
    assert.ok(Date.now() - started < 1_000, `evicted after ${Date.now() - started} ms`);
  });

  it('a stampede of concurrent misses makes one database query', async () => {
    const p = await createProduct(a, 5);
    let queries = 0;
    // Count the loads that reach the database (the private loader behind the cache).
    const svc = a.s.catalog as unknown as { productFrom: (...args: unknown[]) => Promise<unknown> };
    const original = svc.productFrom.bind(svc);
    svc.productFrom = async (...args) => {
      queries++;
      return original(...args);
    };
    try {
      const responses = await Promise.all(Array.from({ length: 50 }, () => a.app.inject({ method: 'GET', url: `/v1/products/${p.productId}` })));
      assert.ok(responses.every((r) => r.statusCode === 200));
      assert.equal(queries, 1);
    } finally {
      svc.productFrom = original;
    }
    const metrics = (await a.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /meridian_cache_requests_total\{cache="product",result="coalesced"\} \d+/);
  });
});
