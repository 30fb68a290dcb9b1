// The Redis gate's write-behind on real PostgreSQL and Redis: a process that dies with admitted
// reservations not yet written, releases that give units back exactly once (also when they race
// a reconciliation), and command timeouts caused by this process's own event loop. Each case ends
// with the invariants and Redis counters equal to PostgreSQL's availability (I7).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { PostgresBatchedGate } from '../src/modules/inventory/gate.ts';
import { RedisGate } from '../src/modules/inventory/redis-gate.ts';
import { InventoryService } from '../src/modules/inventory/service.ts';
import { Databases } from '../src/platform/db.ts';
import { createMetrics } from '../src/platform/metrics.ts';
import { connectRedis, createRedis, type RedisClient } from '../src/platform/redis.ts';
import { assertInventoryInvariants, createProduct, createTestPlatform, type TestPlatform } from './helpers.ts';

const id = (): string => String(BigInt('0x' + randomBytes(7).toString('hex')) + 1n);
const silent = pino({ level: 'silent' });

function redisClient(commandTimeoutMs = 1_000): RedisClient {
  const url = process.env.TEST_REDIS_URL;
  if (!url) throw new Error('TEST_REDIS_URL is not set: run the tests with `npm test`');
  return createRedis({ url, commandTimeoutMs })!;
}

describe('redis gate write-behind', () => {
  let t: TestPlatform;
  let gate: RedisGate;
  before(async () => {
    t = await createTestPlatform({ inventoryGate: 'redis', dbPoolMax: 20 }, { redis: redisClient() });
    gate = t.s.inventory.gate as RedisGate;
  });
  after(async () => t.close());

  async function assertCounterMatches(sku: string): Promise<void> {
    await gate.drain();
    assert.equal(await gate.counter(sku), (await t.s.inventory.availability(sku)).available, `redis counter of ${sku}`);
  }

  it('a process dying with writes pending: written reservations survive, the rest come back once', async () => {
    const p = await createProduct(t, 100);
    // Process A: its own pools, Redis connection and gate over the same database and Redis.
    const dbsA = Databases.single(t.url, { max: 4 });
    const redisA = redisClient();
    const holdStaleMs = 300;
    const gateA = new RedisGate(redisA, dbsA.core('inventory'), new PostgresBatchedGate(dbsA.core('inventory'), { partitions: 8, maxBatch: 500 }), { holdStaleMs, reconcileIntervalMs: 3_600_000 }, silent);
    await gateA.start();
    const ids = Array.from({ length: 60 }, id);
    const answers = await Promise.all(ids.map((rid) => gateA.reserve(rid, [{ sku: p.sku, quantity: 1 }], 60_000)));
    assert.equal(answers.filter((a) => a.ok).length, 60);
    // The crash: A's connections are cut with writes queued or in flight; A never runs again.
    redisA.disconnect();
    await dbsA.close().catch(() => undefined);

    // Process B, configured like A, reconciles once A's holds are stale: every unit is in
    // PostgreSQL or back in Redis.
    const redisB = redisClient();
    const db = t.s.dbs.core('inventory');
    const gateB = new RedisGate(redisB, db, new PostgresBatchedGate(db, { partitions: 8, maxBatch: 500 }), { holdStaleMs, reconcileIntervalMs: 3_600_000 }, silent);
    await new Promise((r) => setTimeout(r, holdStaleMs + 100));
    await gateB.start();
    await gateB.stop();
    await assertCounterMatches(p.sku);
    const rows = await t.s.dbs.core('inventory')<{ status: string; n: number }[]>`
      SELECT status, count(*)::int AS n FROM reservations WHERE id = ANY(${ids}::bigint[]) GROUP BY status`;
    const live = rows.find((r) => r.status === 'live')?.n ?? 0;
    assert.equal(rows.length <= 1, true, `only live reservations: ${JSON.stringify(rows)}`);
    assert.equal((await t.s.inventory.availability(p.sku)).available, 100 - live);

    // The survivors are released exactly once, and their units reach the counter once.
    for (const rid of ids) {
      const r = await t.s.inventory.release(rid, 'cancelled');
      if (!r.ok) assert.equal(r.code, 'reservation_not_found');
      assert.notDeepEqual(await t.s.inventory.release(rid), { ok: true, already: false });
    }
    assert.equal((await t.s.inventory.availability(p.sku)).available, 100);
    await assertCounterMatches(p.sku);
    await assertInventoryInvariants(t);
  });

  it('a release gives its units back once, and not again if a reconciliation already counted them', async () => {
    const p = await createProduct(t, 10);
    const a = id();
    const b = id();
    assert.deepEqual(await t.s.inventory.reserve(a, [{ sku: p.sku, quantity: 3 }], 60_000), { ok: true });
    assert.deepEqual(await t.s.inventory.reserve(b, [{ sku: p.sku, quantity: 2 }], 60_000), { ok: true });
    assert.equal(await gate.counter(p.sku), 5);
    assert.deepEqual(await t.s.inventory.release(a), { ok: true, already: false });
    assert.equal(await gate.counter(p.sku), 8);
    assert.deepEqual(await t.s.inventory.release(a), { ok: true, already: true });
    assert.equal(await gate.counter(p.sku), 8);

    // b is released in PostgreSQL, and a reconciliation reads PostgreSQL before the gate hears of it:
    // the late give-back carries a settlement time older than the reconciliation, so it is skipped.
    await gate.written(b);
    const [settled] = await t.s.dbs.core('inventory')<{ at_us: string }[]>`
      SELECT r_at_us::text AS at_us FROM inventory_settle_units(${b}, 'released', 'test')`;
    await gate.reconcileSkus([p.sku]);
    assert.equal(await gate.counter(p.sku), 10);
    await gate.unitsReleased([{ sku: p.sku, quantity: 2 }], settled!.at_us);
    assert.equal(await gate.counter(p.sku), 10);
    await assertCounterMatches(p.sku);
    await assertInventoryInvariants(t);
  });

  // Both ways a timeout can be set: the gate's own deadline (as src/app.ts configures it), and the
  // client's command timeout alone (the gate asks again; the repeat finds its own hold).
  for (const timeouts of [{ gateMs: 50, clientMs: 5_000 }, { gateMs: undefined, clientMs: 50 }]) {
    it(`a command timeout from a blocked event loop is not a Redis outage (${timeouts.gateMs ? 'gate deadline' : 'client timeout'}): no fallback, one admission`, async () => {
      const p = await createProduct(t, 5);
      const metrics = createMetrics(false);
      const redis = redisClient(timeouts.clientMs);
      const db = t.s.dbs.core('inventory');
      const options = { holdStaleMs: 30_000, reconcileIntervalMs: 3_600_000, ...(timeouts.gateMs ? { commandTimeoutMs: timeouts.gateMs } : {}) };
      const lagged = new RedisGate(redis, db, new PostgresBatchedGate(db, { partitions: 8, maxBatch: 500 }), options, silent, {
        reservations: metrics.gateReservations,
        latency: metrics.gateLatency,
        fallbacks: metrics.gateFallbacks,
        drift: metrics.gateDrift,
        driftCorrections: metrics.gateDriftCorrections,
      });
      await connectRedis(redis, 5_000);
      await lagged.start();
      try {
        const rid = id();
        const answer = lagged.reserve(rid, [{ sku: p.sku, quantity: 2 }], 60_000);
        const until = Date.now() + 300;
        while (Date.now() < until); // the event loop is blocked past the 50 ms command timeout
        assert.deepEqual(await answer, { ok: true });
        await lagged.drain();
        assert.match(await metrics.registry.getSingleMetricAsString('meridian_inventory_gate_fallbacks_total'), /meridian_inventory_gate_fallbacks_total 0/);
        assert.equal((await t.s.inventory.availability(p.sku)).available, 3);
        assert.equal(await gate.counter(p.sku), 3);
        assert.deepEqual(await new InventoryService(t.s.dbs, lagged).consume(rid), { ok: true, already: false });
      } finally {
        await lagged.stop();
      }
      await assertCounterMatches(p.sku);
      await assertInventoryInvariants(t);
    });
  }
});
