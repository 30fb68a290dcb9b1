// A cluster without a primary: its requests answer 503 `unavailable` with Retry-After at once,
// requests for users on other clusters go on, /readyz turns unready and /metrics says which
// cluster; once a primary answers again, so does the API. The "dead primary" is a TCP proxy in
// front of a real database that drops every connection and refuses new ones.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { shardOfId } from '../src/platform/ids.ts';
import { assertError } from './assertions.ts';
import { openPool, transaction } from '../src/platform/db.ts';
import { createShardedTestPlatform, createTestDatabase, createUser, type TestPlatform } from './helpers.ts';
import { TcpProxy } from './tcp-proxy.ts';

describe('failover: a cluster with no primary', () => {
  let t: TestPlatform;
  let proxy: TcpProxy;
  let onA: { token: string };
  let onB: { token: string };

  before(async () => {
    const server = new URL(process.env.TEST_DATABASE_URL!);
    proxy = new TcpProxy({ host: server.hostname, port: Number(server.port) });
    const proxyPort = await proxy.start();
    t = await createShardedTestPlatform({}, (cluster, url) => {
      if (cluster !== 'users-b') return url;
      const u = new URL(url);
      u.port = String(proxyPort);
      return u.toString();
    });
    while (!onA || !onB) {
      const u = await createUser(t);
      if (shardOfId(u.userId) < 2048) onA ??= u;
      else onB ??= u;
    }
  });

  after(async () => {
    await t?.close();
    await proxy?.stop();
  });

  const orders = (token: string): Promise<LightMyRequestResponse> =>
    t.app.inject({ method: 'GET', url: '/v1/orders', headers: { authorization: `Bearer ${token}` } });

  it('serves both shards and is ready while every primary answers', async () => {
    assert.equal((await orders(onA.token)).statusCode, 200);
    assert.equal((await orders(onB.token)).statusCode, 200);
    const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 200, ready.body);
  });

  it('answers 503 unavailable with Retry-After for the dead cluster only, and turns unready', async () => {
    await proxy.stop();
    const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 503);
    const checks = ready.json<{ checks: { cluster: string; ok: boolean }[] }>().checks;
    assert.deepEqual(checks.map((c) => [c.cluster, c.ok]), [['core', true], ['users-a', true], ['users-b', false]]);

    const res = await orders(onB.token);
    assertError(res, 503, 'unavailable');
    assert.equal(res.headers['retry-after'], '1');
    assert.match(res.json<{ error: { message: string } }>().error.message, /users-b/);
    assert.equal((await orders(onA.token)).statusCode, 200, 'users on the other shard cluster are served');

    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /meridian_db_primary_up\{cluster="users-b"\} 0/);
    assert.match(metrics, /meridian_http_unavailable_total\{route="\/v1\/orders"\} [1-9]/);
  });

  it('serves the cluster again once a primary answers', async () => {
    await proxy.start();
    const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 200, ready.body);
    const res = await orders(onB.token);
    assert.equal(res.statusCode, 200, res.body);
  });
});

describe('failover: a transaction whose connection dies mid-way', () => {
  it('fails as a whole: later statements never run outside it on a new session', async () => {
    const server = new URL(process.env.TEST_DATABASE_URL!);
    const proxy = new TcpProxy({ host: server.hostname, port: Number(server.port) });
    const db = await createTestDatabase();
    const url = new URL(db.url);
    url.port = String(await proxy.start());
    // One connection: the pool can only give it back to the reservation's holder or to others.
    const pool = openPool(url.toString(), { max: 1 });
    try {
      await pool`CREATE TABLE tx_probe (id int)`;
      await assert.rejects(
        transaction(pool, async (tx) => {
          await tx`INSERT INTO tx_probe VALUES (1)`;
          await proxy.stop(); // the primary dies: the session and its transaction are gone
          await proxy.start();
          const other = pool`SELECT 1`; // another request wants a connection meanwhile
          await new Promise((r) => setTimeout(r, 200));
          await tx`INSERT INTO tx_probe VALUES (2)`;
          await other;
        }),
        (err: { code?: string }) => err.code === 'CONNECTION_CLOSED',
      );
      const [row] = await pool<{ n: number }[]>`SELECT count(*)::int AS n FROM tx_probe`;
      assert.equal(row?.n, 0, 'no statement of the broken transaction committed on its own');
    } finally {
      await pool.end({ timeout: 1 });
      await proxy.stop();
      await db.drop();
    }
  });
});
