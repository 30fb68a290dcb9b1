// Online shard move under a running checkout load (three databases standing in for clusters,
// PostgreSQL logical replication between them). Every checkout answered 201 must be on the
// target afterwards, exactly once, and nowhere else; requests during the fence get 503 and are
// retried with the same Idempotency-Key.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import postgres from 'postgres';
import pino from 'pino';
import { laggingFollowers, MAP_LEASE_MS, ShardMapWatcher, waitForFollowers } from '../src/cluster/shard-map.ts';
import { Databases } from '../src/platform/db.ts';
import { moveShards } from '../src/cluster/shard-move.ts';
import { shardOfId } from '../src/platform/ids.ts';
import { assertInventoryInvariants, cartWith, checkout, createProduct, createShardedTestPlatform, createUser, type TestPlatform } from './helpers.ts';

describe('online shard move', () => {
  let t: TestPlatform & { shardUrls: string[] };
  let watcher: ShardMapWatcher;
  before(async () => {
    // A short request timeout: a key stranded by a 503 mid-saga is retaken after it.
    t = await createShardedTestPlatform({ requestTimeoutMs: 1_000 });
    watcher = new ShardMapWatcher(t.s.dbs, pino({ level: 'silent' }), { requestTimeoutMs: 1_000, pollIntervalMs: 200 });
    await watcher.start();
  });
  after(async () => {
    await watcher.stop();
    await t.close();
  });

  it('moves shards 0-1023 from users-a to users-b under load without losing or duplicating a 201', async () => {
    const p = await createProduct(t, 100_000);
    // Buyers in the moving range and outside it.
    const movers: Awaited<ReturnType<typeof createUser>>[] = [];
    const stayers: Awaited<ReturnType<typeof createUser>>[] = [];
    while (movers.length < 6 || stayers.length < 4) {
      const u = await createUser(t);
      const shard = shardOfId(u.userId);
      if (shard <= 1023 && movers.length < 6) movers.push(u);
      else if (shard > 1023 && stayers.length < 4) stayers.push(u);
    }
    const acknowledged: { orderId: string; userId: string }[] = [];
    let statuses503 = 0;
    let stop = false;
    const buyer = async (u: (typeof movers)[number], n: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        let cartId: string | undefined;
        const key = `load-${n}-${i}`;
        for (let attempt = 0; attempt < 500; attempt++) {
          try {
            cartId ??= await cartWith(t, u.token, [{ sku: p.sku, quantity: 1 }]);
          } catch {
            await new Promise((r) => setTimeout(r, 20)); // a 503 while fenced: try again
            continue;
          }
          const res = await checkout(t, u.token, cartId, key);
          if (res.statusCode === 201) {
            acknowledged.push({ orderId: res.json().order.id as string, userId: u.userId });
            break;
          }
          // 503 while fenced; 409 idempotency_conflict for a key a 503 stranded, until its lease ends.
          const retryable = res.statusCode === 503 || (res.statusCode === 409 && res.json().error.code === 'idempotency_conflict');
          assert.ok(retryable, `unexpected ${res.statusCode}: ${res.body}`);
          if (res.statusCode === 503) statuses503++;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    const load = [...movers, ...stayers].map((u, n) => buyer(u, n));
    await new Promise((r) => setTimeout(r, 500));
    const report = await moveShards(t.s.dbs, { from: 0, to: 1023, target: 'users-b', sourceConnInfo: t.shardUrls[0]! });
    assert.equal(report.sourceCleaned, true, 'every process followed the flip: the source copy is deleted');
    await new Promise((r) => setTimeout(r, 500)); // keep buying after the flip
    stop = true;
    await Promise.all(load);
    console.log(`# shard move: fenced ${report.fencedMs} ms (${JSON.stringify(report.fencePhasesMs)}), total ${report.totalMs} ms, ${acknowledged.length} orders acknowledged, ${statuses503} answered 503 meanwhile`);

    assert.equal(t.s.dbs.ownerOf(0).spec.name, 'users-b');
    assert.equal(t.s.dbs.ownerOf(1024).spec.name, 'users-a');
    const [a, b] = t.shardUrls.map((u) => postgres(u, { max: 1, onnotice: () => undefined }));
    try {
      for (const ack of acknowledged) {
        // After the move users-a keeps only 1024-2047; everything else is on users-b.
        const shard = shardOfId(ack.userId);
        const onAExpected = shard >= 1024 && shard <= 2047;
        const [onA] = await a!`SELECT count(*)::int AS n FROM orders WHERE id = ${ack.orderId}`;
        const [onB] = await b!`SELECT count(*)::int AS n FROM orders WHERE id = ${ack.orderId}`;
        assert.deepEqual([onA?.n, onB?.n], onAExpected ? [1, 0] : [0, 1], `order ${ack.orderId} (shard ${shard})`);
      }
      const [left] = await a!`SELECT count(*)::int AS n FROM users WHERE ((id >> 10) & 4095) <= 1023`;
      assert.equal(left?.n, 0, 'the source no longer holds the moved users');
    } finally {
      await a!.end();
      await b!.end();
    }
    // The moved buyers keep shopping on the target, and their history is whole.
    for (const u of movers) {
      const history = await t.app.inject({ method: 'GET', url: '/v1/orders?limit=100', headers: { authorization: `Bearer ${u.token}` } });
      assert.equal(history.statusCode, 200);
      const mine = acknowledged.filter((x) => x.userId === u.userId).length;
      assert.equal(history.json().items.length, mine);
    }
    const sold = acknowledged.length;
    assert.equal((await t.s.inventory.availability(p.sku)).locations[0]?.onHand, 100_000 - sold);
    await assertInventoryInvariants(t);
  });

  it('waits for every process that follows the map, and for none whose lease ran out', async () => {
    const db = t.s.dbs.core('directory');
    const version = t.s.dbs.mapVersion;
    assert.deepEqual(await laggingFollowers(db, version), [], 'the running watcher follows the map in force');
    assert.equal((await db<{ n: number }[]>`SELECT count(*)::int AS n FROM shard_map_followers WHERE follower = ${watcher.follower}`)[0]?.n, 1);
    // Another process, one version behind and alive: a move must wait for it.
    await db`INSERT INTO shard_map_followers (follower, version, live_until) VALUES ('other:1:abcd', ${version - 1}, now() + interval '1 minute')`;
    try {
      assert.deepEqual(await laggingFollowers(db, version), [{ follower: 'other:1:abcd', version: version - 1 }]);
      await assert.rejects(waitForFollowers(db, version, 100), /other:1:abcd \(v\d+\)/);
      // Its row expires (lease and request timeout over): it has stopped routing by that map (see
      // the next test), so no more waiting.
      await db`UPDATE shard_map_followers SET live_until = now() - interval '1 second' WHERE follower = 'other:1:abcd'`;
      await waitForFollowers(db, version, 100);
      // A live process that catches up ends the wait too.
      await db`UPDATE shard_map_followers SET live_until = now() + interval '1 minute', version = ${version} WHERE follower = 'other:1:abcd'`;
      await waitForFollowers(db, version, 100);
    } finally {
      await db`DELETE FROM shard_map_followers WHERE follower = 'other:1:abcd'`;
    }
  });

  it('a process that cannot confirm the map within its lease answers 503 for shard routes', async () => {
    const dbs = Databases.single(t.url, { max: 1 });
    try {
      assert.ok(dbs.shard(7), 'no watcher: routing as configured');
      const unavailable = (err: { code?: string }): boolean => err.code === 'unavailable';
      dbs.confirmShardMap(Number.NEGATIVE_INFINITY, MAP_LEASE_MS); // what a watcher's start() does first
      assert.throws(() => dbs.shard(7), unavailable, 'a watcher that has not confirmed the map yet');
      dbs.confirmShardMap(performance.now() - MAP_LEASE_MS - 1, MAP_LEASE_MS);
      assert.throws(() => dbs.shard(7), unavailable, 'a confirmation older than the lease');
      dbs.confirmShardMap(performance.now(), MAP_LEASE_MS);
      assert.ok(dbs.shard(7), 'a confirmation renews the lease');
    } finally {
      await dbs.close();
    }
  });
});
