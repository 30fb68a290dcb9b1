// One contract, every engine of the inventory gate: PostgreSQL direct, PostgreSQL batched (group
// commit), Redis (one server) and Redis Cluster — all against real servers. Each case ends with
// the inventory invariants and, for Redis, counters equal to PostgreSQL's availability.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Config } from '../src/platform/config.ts';
import { connectRedis, createRedis, type RedisClient } from '../src/platform/redis.ts';
import type { RedisGate } from '../src/modules/inventory/redis-gate.ts';
import { assertInventoryInvariants, createProduct, createTestPlatform, type TestPlatform } from './helpers.ts';

interface EngineCase {
  name: string;
  config: Partial<Config>;
  redis?: () => RedisClient;
}

function redisFromEnv(kind: 'url' | 'cluster'): RedisClient {
  const url = process.env.TEST_REDIS_URL;
  const nodes = process.env.TEST_REDIS_CLUSTER_NODES?.split(',');
  if (kind === 'url' && !url) throw new Error('TEST_REDIS_URL is not set: run the tests with `npm test`');
  if (kind === 'cluster' && !nodes) throw new Error('TEST_REDIS_CLUSTER_NODES is not set: run the tests with `npm test`');
  const client = createRedis(kind === 'url' ? { url, commandTimeoutMs: 1_000 } : { clusterNodes: nodes, commandTimeoutMs: 1_000 });
  if (!client) throw new Error('no redis client');
  return client;
}

export const ENGINES: EngineCase[] = [
  { name: 'postgres', config: { inventoryGate: 'postgres' } },
  { name: 'postgres-batched', config: { inventoryGate: 'postgres-batched' } },
  { name: 'redis', config: { inventoryGate: 'redis' }, redis: () => redisFromEnv('url') },
  { name: 'redis-cluster', config: { inventoryGate: 'redis' }, redis: () => redisFromEnv('cluster') },
];

const id = (): string => String(BigInt('0x' + randomBytes(7).toString('hex')) + 1n);

for (const engine of ENGINES) {
  describe(`inventory gate contract: ${engine.name}`, () => {
    let t: TestPlatform;
    before(async () => {
      t = await createTestPlatform({ dbPoolMax: 30, ...engine.config }, engine.redis ? { redis: engine.redis() } : {});
      assert.equal(t.s.inventory.gate.engine, engine.config.inventoryGate);
    });
    after(async () => t.close());

    async function assertCountersMatch(skus: string[]): Promise<void> {
      if (t.s.inventory.gate.engine !== 'redis') return;
      const gate = t.s.inventory.gate as RedisGate;
      await gate.drain();
      for (const sku of skus) {
        assert.equal(await gate.counter(sku), (await t.s.inventory.availability(sku)).available, `redis counter of ${sku}`);
      }
    }

    it('reserves within stock, idempotently by reservation id', async () => {
      const p = await createProduct(t, 10);
      const rid = id();
      assert.deepEqual(await t.s.inventory.reserve(rid, [{ sku: p.sku, quantity: 4 }], 60_000), { ok: true });
      assert.deepEqual(await t.s.inventory.reserve(rid, [{ sku: p.sku, quantity: 4 }], 60_000), { ok: true });
      await t.s.inventory.gate.written?.(rid); // a write-behind engine has answered before PostgreSQL recorded
      assert.equal((await t.s.inventory.availability(p.sku)).available, 6, 'the repeat did not reserve twice');
      await assertCountersMatch([p.sku]);
      await assertInventoryInvariants(t);
    });

    it('is all or nothing across SKUs (in different hash slots)', async () => {
      const skus = await Promise.all([createProduct(t, 5), createProduct(t, 2), createProduct(t, 5)]);
      const lines = skus.map((p) => ({ sku: p.sku, quantity: 3 }));
      const r = await t.s.inventory.reserve(id(), lines, 60_000);
      assert.equal(r.ok, false);
      if (!r.ok) assert.deepEqual([r.sku, r.requested, r.available], [skus[1]!.sku, 3, 2]);
      for (const p of skus) assert.equal((await t.s.inventory.availability(p.sku)).locations[0]?.reserved, 0);
      await assertCountersMatch(skus.map((p) => p.sku));
      await assertInventoryInvariants(t);
    });

    it('200 concurrent reservations for 50 units: exactly 50 succeed', async () => {
      const p = await createProduct(t, 50);
      const ids = Array.from({ length: 200 }, id);
      const results = await Promise.all(ids.map((rid) => t.s.inventory.reserve(rid, [{ sku: p.sku, quantity: 1 }], 60_000)));
      assert.equal(results.filter((r) => r.ok).length, 50);
      const early = await t.s.inventory.refusesAtOnce([{ sku: p.sku, quantity: 1 }]);
      // Only a gate with counters can refuse before reserving; the answer is reserve()'s refusal.
      if (t.s.inventory.gate.refusesAtOnce) assert.deepEqual(early, { ok: false, code: 'out_of_stock', sku: p.sku, requested: 1, available: 0 });
      else assert.equal(early, undefined);
      // A write-behind engine has answered before PostgreSQL recorded: wait for it, as consume() does.
      await Promise.all(ids.map((rid) => t.s.inventory.gate.written?.(rid)));
      assert.equal((await t.s.inventory.availability(p.sku)).available, 0);
      await assertCountersMatch([p.sku]);
      await assertInventoryInvariants(t);
    });

    it('release gives units back, consume sells them, receipts add to the gate too', async () => {
      const p = await createProduct(t, 10);
      const a = id();
      const b = id();
      await t.s.inventory.reserve(a, [{ sku: p.sku, quantity: 3 }], 60_000);
      await t.s.inventory.reserve(b, [{ sku: p.sku, quantity: 2 }], 60_000);
      assert.deepEqual(await t.s.inventory.release(a), { ok: true, already: false });
      assert.deepEqual(await t.s.inventory.release(a), { ok: true, already: true });
      assert.deepEqual(await t.s.inventory.consume(b), { ok: true, already: false });
      await t.s.inventory.changeStock('receipt', p.sku, 'main', 5);
      const av = await t.s.inventory.availability(p.sku);
      assert.deepEqual([av.available, av.locations[0]?.onHand, av.locations[0]?.reserved], [13, 13, 0]);
      await assertCountersMatch([p.sku]);
      await assertInventoryInvariants(t);
    });

    if (engine.redis) {
      it('a drifted counter cannot oversell: PostgreSQL refuses at the write, consume() fails, reconciliation corrects it', async () => {
        const gate = t.s.inventory.gate as RedisGate;
        const p = await createProduct(t, 3);
        const redis = engine.redis!();
        await connectRedis(redis, 5_000);
        try {
          await redis.set(`mrd:inv:{${p.sku}}:avail`, '1000'); // simulate lost writes / a stale replica
        } finally {
          redis.disconnect();
        }
        const ids = Array.from({ length: 20 }, id);
        const admitted = await Promise.all(ids.map((rid) => t.s.inventory.reserve(rid, [{ sku: p.sku, quantity: 1 }], 60_000)));
        assert.equal(admitted.filter((r) => r.ok).length, 20, 'the drifted counter admits everyone');
        // The arbiter: only what PostgreSQL recorded can be sold; the rest fails before any confirmation.
        const consumed = await Promise.all(ids.map((rid) => t.s.inventory.consume(rid)));
        assert.equal(consumed.filter((r) => r.ok).length, 3);
        for (const r of consumed) if (!r.ok) assert.equal(r.code, 'reservation_not_found');
        const av = await t.s.inventory.availability(p.sku);
        assert.deepEqual([av.available, av.locations[0]?.onHand, av.locations[0]?.reserved], [0, 0, 0]);
        await gate.reconcileAll();
        assert.equal(await gate.counter(p.sku), 0);
        const metrics = await t.s.metrics.registry.getSingleMetricAsString('meridian_inventory_gate_drift_corrected_units_total');
        assert.match(metrics, /meridian_inventory_gate_drift_corrected_units_total [1-9]/);
        const refused = await t.s.metrics.registry.getSingleMetricAsString('meridian_inventory_reservations_total');
        assert.match(refused, /result="arbiter_refused"[^\n]* 17/);
        await assertInventoryInvariants(t);
      });
    }
  });
}

describe('inventory gate: Redis unreachable', () => {
  let t: TestPlatform;
  before(async () => {
    const dead = createRedis({ url: 'redis://127.0.0.1:1', commandTimeoutMs: 100 });
    t = await createTestPlatform({ inventoryGate: 'redis' }, { redis: dead! });
  });
  after(async () => t.close());

  it('falls back to PostgreSQL alone: correct answers, counted fallbacks, no oversell', async () => {
    const p = await createProduct(t, 5);
    const results = await Promise.all(Array.from({ length: 12 }, () => t.s.inventory.reserve(id(), [{ sku: p.sku, quantity: 1 }], 60_000)));
    assert.equal(results.filter((r) => r.ok).length, 5);
    const metrics = await t.s.metrics.registry.getSingleMetricAsString('meridian_inventory_gate_fallbacks_total');
    assert.match(metrics, /meridian_inventory_gate_fallbacks_total 12/);
    await assertInventoryInvariants(t);
  });
});
