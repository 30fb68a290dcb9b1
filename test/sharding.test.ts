// User shards across clusters (three databases standing in for three clusters): routing by id,
// the cross-database checkout, scatter-gather pagination, and a shard cluster that is down.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import postgres from 'postgres';
import { shardOfId } from '../src/platform/ids.ts';
import { assertInventoryInvariants, auth, cartWith, checkout, createProduct, createShardedTestPlatform, createUser, type TestPlatform } from './helpers.ts';

describe('user shards across clusters', () => {
  let t: TestPlatform & { shardUrls: string[] };
  const buyers: { userId: string; token: string; email: string; cluster: 'users-a' | 'users-b' }[] = [];
  before(async () => {
    t = await createShardedTestPlatform();
    const p = await createProduct(t, 1_000);
    while (buyers.filter((b) => b.cluster === 'users-a').length < 4 || buyers.filter((b) => b.cluster === 'users-b').length < 4) {
      const u = await createUser(t);
      const cluster = shardOfId(u.userId) < 2048 ? 'users-a' : 'users-b';
      buyers.push({ ...u, cluster });
      for (let i = 0; i < 2; i++) {
        const cartId = await cartWith(t, u.token, [{ sku: p.sku, quantity: 1 }]);
        const res = await checkout(t, u.token, cartId, `k-${i}`);
        assert.equal(res.statusCode, 201, res.body);
      }
    }
  });
  after(async () => t.close());

  it('keeps every row a user owns on the cluster that owns the user shard', async () => {
    const [a, b] = t.shardUrls.map((u) => postgres(u, { max: 1, onnotice: () => undefined }));
    try {
      for (const buyer of buyers) {
        const [home, other] = buyer.cluster === 'users-a' ? [a!, b!] : [b!, a!];
        for (const table of ['users', 'sessions', 'carts', 'orders', 'payments', 'idempotency_keys']) {
          const col = table === 'users' ? 'id' : 'user_id';
          const [h] = await home.unsafe(`SELECT count(*)::int AS n FROM ${table} WHERE ${col} = $1`, [buyer.userId]);
          const [o] = await other.unsafe(`SELECT count(*)::int AS n FROM ${table} WHERE ${col} = $1`, [buyer.userId]);
          assert.ok((h?.n as number) > 0, `${table} of ${buyer.userId} on its home cluster`);
          assert.equal(o?.n, 0, `${table} of ${buyer.userId} nowhere else`);
        }
      }
    } finally {
      await a!.end();
      await b!.end();
    }
    await assertInventoryInvariants(t);
  });

  it('pages the admin order list across shards with no duplicates and no gaps', async () => {
    const admin = await createUser(t, 'admin');
    const all: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/admin/orders?limit=3${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await t.app.inject({ method: 'GET', url, headers: auth(admin.token) });
      assert.equal(res.statusCode, 200, res.body);
      all.push(...(res.json().items as { id: string }[]).map((o) => o.id));
      cursor = res.json().nextCursor as string | null;
    } while (cursor);
    assert.equal(all.length, buyers.length * 2);
    assert.equal(new Set(all).size, all.length, 'no duplicates');
    const sorted = [...all].sort((x, y) => (BigInt(y) > BigInt(x) ? 1 : -1));
    assert.deepEqual(all, sorted, 'one stable order, newest first');
    const byEmail = await t.app.inject({ method: 'GET', url: `/v1/admin/orders?email=${encodeURIComponent(buyers[0]!.email)}`, headers: auth(admin.token) });
    assert.equal(byEmail.json().items.length, 2);
  });

  it('a shard cluster that is down makes the admin list a clean 503, while other users shop on', async () => {
    // The admin's own session lives on a shard too: pick one whose shard stays up.
    let admin = await createUser(t, 'admin');
    while (shardOfId(admin.userId) >= 2048) admin = await createUser(t, 'admin');
    const b = postgres(t.shardUrls[1]!, { max: 1, onnotice: () => undefined });
    const dbName = new URL(t.shardUrls[1]!).pathname.slice(1);
    const adminConn = postgres(process.env.TEST_DATABASE_URL!, { max: 1, onnotice: () => undefined });
    try {
      await adminConn.unsafe(`ALTER DATABASE ${dbName} ALLOW_CONNECTIONS false`);
      await adminConn`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${dbName} AND pid <> pg_backend_pid()`;
      const res = await t.app.inject({ method: 'GET', url: '/v1/admin/orders', headers: auth(admin.token) });
      assert.equal(res.statusCode, 503, res.body);
      assert.equal(res.json().error.code, 'unavailable');
      assert.deepEqual(res.json().error.details.clusters, ['users-b']);
      // Users whose shard lives on users-a are unaffected.
      const a = buyers.find((x) => x.cluster === 'users-a')!;
      const mine = await t.app.inject({ method: 'GET', url: '/v1/orders', headers: auth(a.token) });
      assert.equal(mine.statusCode, 200);
    } finally {
      await adminConn.unsafe(`ALTER DATABASE ${dbName} ALLOW_CONNECTIONS true`);
      await adminConn.end();
      await b.end();
    }
  });
});
