// Flash sales through failures (issue: flash-sale-grade inventory §4), on real servers:
// a Redis Cluster master SIGKILLed mid-sale, and an API process that dies mid-sale and is
// replaced. After each: nothing oversold, every reservation ended once or is live with an
// expiry, Redis counters equal PostgreSQL after reconciliation (I1–I7).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { buildApp, buildServices } from '../src/app.ts';
import { defaultRedisClusterSpec, redisClusterDown, redisClusterUp, type RedisClusterSpec } from '../src/cluster/redis-cluster.ts';
import { freePortRange } from '../src/platform/ports.ts';
import { loadConfig } from '../src/platform/config.ts';
import { Databases } from '../src/platform/db.ts';
import { connectRedis, createRedis } from '../src/platform/redis.ts';
import { TestPaymentProvider } from '../src/modules/payments/provider.ts';
import type { RedisGate } from '../src/modules/inventory/redis-gate.ts';
import { assertInvariants, cartWith, checkout, createProduct, createTestPlatform, createUser, type TestPlatform } from './helpers.ts';

/**
 * This file kills a master, so it runs on a Redis Cluster of its own: the shared test cluster
 * serves other test files at the same time, and a master vanishing under them made their
 * counters disagree with PostgreSQL. Ports 22100–22705, bus ports +10000 (32100–32705): clear of
 * the shared cluster's (scripts/test.ts) and below the kernel's ephemeral range (from 32768).
 */
const OWN_CLUSTER_PORTS = { from: 22_100, span: 600, companionOffsets: [10_000] } as const;

function clusterClient(spec: RedisClusterSpec): ReturnType<typeof createRedis> & object {
  return createRedis({ clusterNodes: spec.ports.map((p) => `127.0.0.1:${p}`), commandTimeoutMs: 500 })!;
}

/** The cluster master that serves this SKU's gate keys. */
async function masterPortFor(spec: RedisClusterSpec, sku: string): Promise<number> {
  const redis = clusterClient(spec);
  await connectRedis(redis, 5_000);
  try {
    const slot = Number(await redis.call('CLUSTER', 'KEYSLOT', `{${sku}}`));
    const shards = (await redis.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const owner = shards.find(([from, to]) => slot >= from && slot <= to);
    if (!owner) throw new Error(`no owner for slot ${slot}`);
    return owner[2][1];
  } finally {
    redis.disconnect();
  }
}

function statusCounts(codes: number[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const c of codes) out[c] = (out[c] ?? 0) + 1;
  return out;
}

describe('flash sale: a Redis Cluster master is SIGKILLed mid-sale', () => {
  let t: TestPlatform;
  let cluster: RedisClusterSpec | undefined;
  before(async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'meridian-test-redis-kill-'));
    cluster = defaultRedisClusterSpec(dir, await freePortRange(6, OWN_CLUSTER_PORTS)); // set first: after() stops a half-started one
    await redisClusterUp(cluster);
    t = await createTestPlatform({ inventoryGate: 'redis', dbPoolMax: 30 }, { redis: clusterClient(cluster), paymentProvider: new TestPaymentProvider(5) });
  });
  after(async () => {
    await t?.close();
    if (cluster) {
      await redisClusterDown(cluster, { purge: true });
      await rm(path.dirname(cluster.dir), { recursive: true, force: true }); // the mkdtemp folder
    }
  });

  it('sells exactly the stock, answers only 201 or 409, and the counters match after reconciliation', async () => {
    const units = 60;
    const buyersCount = 400;
    const p = await createProduct(t, units);
    const gate = t.s.inventory.gate as RedisGate;
    await gate.reconcileSkus([p.sku]);
    const buyers = await Promise.all(Array.from({ length: buyersCount }, () => createUser(t)));
    const carts = await Promise.all(buyers.map((b) => cartWith(t, b.token, [{ sku: p.sku, quantity: 1 }])));
    if (!cluster) throw new Error('unreachable: before() started the cluster');
    const masterPort = await masterPortFor(cluster, p.sku);
    const pid = Number((await readFile(path.join(cluster.dir, String(masterPort), 'redis.pid'), 'utf8')).trim());

    const sale = Promise.all(
      buyers.map(async (b, i) => {
        await new Promise((r) => setTimeout(r, (i % 40) * 25)); // arrivals spread over ~1 s
        return checkout(t, b.token, carts[i]!, `sale-${i}`);
      }),
    );
    await new Promise((r) => setTimeout(r, 300));
    process.kill(pid, 'SIGKILL');
    const responses = await sale;

    const counts = statusCounts(responses.map((r) => r.statusCode));
    assert.equal(counts[201], units, `statuses ${JSON.stringify(counts)}`);
    assert.equal(counts[409], buyersCount - units, `statuses ${JSON.stringify(counts)}`);
    for (const r of responses) if (r.statusCode === 409) assert.equal(r.json().error.code, 'out_of_stock');
    assert.equal((await t.s.inventory.availability(p.sku)).available, 0);
    // I7: once the replica has taken over, reconciliation brings the counter back to PostgreSQL's.
    let last: unknown;
    for (let i = 0; ; i++) {
      try {
        await gate.reconcileAll();
        last = await gate.counter(p.sku);
        if (last === 0) break;
      } catch (err) {
        last = err; // the cluster is still electing
      }
      if (i > 100) assert.fail(`the redis counter never matched PostgreSQL after the failover: last ${String(last)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await assertInvariants(t);
  });
});

describe('flash sale: the API process dies mid-sale and another takes over', () => {
  let t: TestPlatform;
  before(async () => {
    t = await createTestPlatform({ inventoryGate: 'postgres-batched', abandonedOrderMs: 500 });
  });
  after(async () => t.close());

  it('every reservation the dead process left is consumed or released exactly once', async () => {
    const units = 30;
    const p = await createProduct(t, units);
    // Process A: a separate set of pools and services on the same database, with a slow
    // payment provider so that checkouts are mid-saga when it dies.
    const dbsA = Databases.single(t.url, { max: 10 });
    const a = buildServices(loadConfig({}, { seedDemo: false, inventoryGate: 'postgres-batched', reservationTtlMs: 500 }), dbsA, pino({ level: 'silent' }), {
      defaultMetrics: false,
      paymentProvider: new TestPaymentProvider(300),
    });
    const appA = await buildApp(a);
    const buyers = await Promise.all(Array.from({ length: 60 }, () => createUser(t)));
    const carts = await Promise.all(buyers.map((b) => cartWith(t, b.token, [{ sku: p.sku, quantity: 1 }])));
    const inFlight = buyers.map((b, i) =>
      appA.inject({
        method: 'POST',
        url: '/v1/checkout',
        headers: { authorization: `Bearer ${b.token}`, 'idempotency-key': `crash-${i}` },
        payload: { cartId: carts[i], payment: { token: 'tok_visa' } },
      }),
    );
    await new Promise((r) => setTimeout(r, 150));
    // The crash: every connection of process A is cut at once.
    await dbsA.close().catch(() => undefined);
    const answered = await Promise.allSettled(inFlight);
    await appA.close().catch(() => undefined);
    assert.ok(answered.length === 60);

    // Process B (the test platform) sweeps after the abandonment delay.
    await new Promise((r) => setTimeout(r, 600));
    await t.s.saga.sweep();
    // A's reservations expire 500 ms after they were made; by now every one has ended.
    const live = await t.s.dbs.core('inventory')`SELECT count(*)::int AS n FROM reservations WHERE status = 'live'`;
    assert.equal(live[0]?.n, 0, 'no reservation was left live past its expiry');
    const pending = await t.s.dbs.shardPools()[0]!`SELECT count(*)::int AS n FROM orders WHERE status = 'pending_payment'`;
    assert.equal(pending[0]?.n, 0, 'no order was left pending');
    // Buyers retrying with their key get a final answer, and the stock is whole.
    const retried = await Promise.all(buyers.map((b, i) => checkout(t, b.token, carts[i]!, `crash-${i}`)));
    for (const r of retried) assert.ok([201, 402, 409].includes(r.statusCode), `retry answered ${r.statusCode}: ${r.body}`);
    const paid = await t.s.dbs.shardPools()[0]!`SELECT count(*)::int AS n FROM orders WHERE status = 'paid'`;
    const av = await t.s.inventory.availability(p.sku);
    assert.equal(av.locations[0]?.onHand, units - (paid[0]?.n ?? 0));
    assert.equal(av.locations[0]?.reserved, 0);
    await assertInvariants(t);
  });
});
