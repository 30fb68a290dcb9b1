// Backup and point-in-time restore end to end, on real PostgreSQL 15 clusters under Patroni with
// pgBackRest: cluster up → full backup → orders A → time T → orders B → restore every cluster to
// T → A present and B absent on every member of every shard, verify clean → an order on the new
// timeline → backup drill into scratch clusters sees it. Own data directory and shifted ports.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import postgres from 'postgres';
import { buildApp, buildServices, type Services } from '../src/app.ts';
import { backupDrill, createBackups, listBackups, restoreToTime } from '../src/cluster/backup.ts';
import { clusterCredentials, clusterDown, clusterSpecs, clusterStatus, clusterUp } from '../src/cluster/pg-cluster.ts';
import type { Topology } from '../src/cluster/topology.ts';
import { verifyInvariants } from '../src/cluster/verify.ts';
import { loadConfig } from '../src/platform/config.ts';
import { Databases } from '../src/platform/db.ts';
import { shardOfId } from '../src/platform/ids.ts';
import { PORT_SHIFT, shiftedLocalTopology } from './cluster-helpers.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const SKU = 'PITR-LAMP';

describe('backup → orders A → T → orders B → restore to T → drill', { timeout: 900_000 }, () => {
  let dataDir: string;
  let topology: Topology;
  let platform: { dbs: Databases; s: Services; app: FastifyInstance } | undefined;
  const log: string[] = [];
  const progress = (m: string): void => void log.push(m);

  async function open(): Promise<{ dbs: Databases; s: Services; app: FastifyInstance }> {
    const dbs = new Databases(clusterSpecs(topology, await clusterCredentials(dataDir)), { max: 5 });
    const s = buildServices(loadConfig({}, { seedDemo: false, inventoryGate: 'postgres' }), dbs, pino({ level: 'silent' }), { defaultMetrics: false, cacheRedis: null });
    const app = await buildApp(s);
    return { dbs, s, app };
  }
  async function close(): Promise<void> {
    await platform?.app.close();
    await platform?.dbs.close();
    platform = undefined;
  }
  const ownerOf = (id: string): string => topology.clusters.find((c) => (c.shards ?? []).some(([a, b]) => shardOfId(id) >= a && shardOfId(id) <= b))!.name;

  /** Registers a shopper and checks out one lamp through the HTTP API; returns the order id. */
  async function order(tag: string): Promise<{ orderId: string; userId: string }> {
    const { app } = platform!;
    const reg = await app.inject({ method: 'POST', url: '/v1/auth/register', payload: { email: `${tag}@pitr.test`, password: 'password123' } });
    assert.equal(reg.statusCode, 201, reg.body);
    const { user, token } = reg.json() as { user: { id: string }; token: string };
    const auth = { authorization: `Bearer ${token}` };
    const cart = await app.inject({ method: 'POST', url: '/v1/carts', headers: auth, payload: {} });
    await app.inject({ method: 'POST', url: `/v1/carts/${cart.json().id as string}/lines`, headers: auth, payload: { sku: SKU, quantity: 1 } });
    const res = await app.inject({ method: 'POST', url: '/v1/checkout', headers: { ...auth, 'idempotency-key': tag }, payload: { cartId: cart.json().id, payment: { token: 'tok_visa' } } });
    assert.equal(res.statusCode, 201, res.body);
    return { orderId: res.json().order.id as string, userId: user.id };
  }

  /** Order ids (of these) present on every member of every shard cluster, by member. */
  async function presentOnMembers(ids: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const c of await clusterStatus(topology, dataDir)) {
      if (!c.roles.includes('shard')) continue;
      for (const m of c.members) {
        const sql = postgres(m.url, { max: 1, onnotice: () => undefined });
        try {
          const rows = await sql<{ id: string }[]>`SELECT id::text FROM orders WHERE id = ANY(${ids}::bigint[]) ORDER BY id`;
          out.set(`${c.name}/${m.name}`, rows.map((r) => r.id));
        } finally {
          await sql.end();
        }
      }
    }
    return out;
  }

  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'meridian-backup-'));
    topology = await shiftedLocalTopology(PORT_SHIFT.backupPitr, { asyncReplica: false });
    const started = Date.now();
    await clusterUp(topology, dataDir, progress);
    console.log(`# cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    platform = await open();
    const { s } = platform;
    const admin = await s.users.register('admin@pitr.test', 'admin-password-1', 'admin');
    await s.inventory.upsertLocation('main', 'Main');
    const created = await platform.app.inject({
      method: 'POST', url: '/v1/admin/products', headers: { authorization: `Bearer ${admin.token}` },
      payload: { title: 'PITR Lamp', variants: [{ sku: SKU, prices: [{ amount: 2500, currency: 'USD' }] }] },
    });
    assert.equal(created.statusCode, 201, created.body);
    await s.inventory.changeStock('receipt', SKU, 'main', 100);
  });

  after(async () => {
    await close();
    if (topology && dataDir) await clusterDown(topology, dataDir, { purge: true });
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const A: { orderId: string; userId: string }[] = [];
  const B: { orderId: string; userId: string }[] = [];
  let T: Date;

  it('takes a full backup of every cluster and lists it', async () => {
    const started = Date.now();
    const done = await createBackups(topology, dataDir, 'full', progress);
    console.log(`# full backup of ${done.length} clusters in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    assert.deepEqual(done.map((d) => d.cluster), ['core', 'users-a', 'users-b']);
    const list = await listBackups(topology, dataDir);
    for (const c of list) {
      assert.equal(c.status, 'ok', `${c.cluster} stanza`);
      assert.equal(c.backups.length, 1);
      assert.equal(c.backups[0]!.type, 'full');
      assert.equal(c.backups[0]!.label, done.find((d) => d.cluster === c.cluster)!.label);
      assert.ok(c.backups[0]!.sizeBytes > 0 && c.walArchive.max !== null);
    }
  });

  it('restores every cluster to T: orders A on every member of every shard, orders B nowhere, verify clean', async () => {
    // Orders A until both shard clusters hold some (user shards are chosen at random).
    for (let i = 0; i < 40 && (A.length < 4 || new Set(A.map((a) => ownerOf(a.orderId))).size < 2); i++) A.push(await order(`a${i}`));
    assert.equal(new Set(A.map((a) => ownerOf(a.orderId))).size, 2, 'orders A span both shard clusters');
    await sleep(1_000);
    T = new Date();
    await sleep(1_000);
    for (let i = 0; i < 40 && (B.length < 4 || new Set(B.map((b) => ownerOf(b.orderId))).size < 2); i++) B.push(await order(`b${i}`));
    assert.equal((await platform!.s.inventory.availability(SKU)).available, 100 - A.length - B.length);

    await assert.rejects(restoreToTime(topology, dataDir, T, progress), /API processes are connected/, 'a restore refuses while the API is connected');
    await close();
    const started = Date.now();
    const report = await restoreToTime(topology, dataDir, T, progress);
    console.log(`# restore of ${report.clusters.length} clusters to T in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const ids = [...A, ...B].map((o) => o.orderId);
    const present = await presentOnMembers(ids);
    assert.equal(present.size, 4, 'two members in each of two shard clusters');
    for (const [member, found] of present) {
      const cluster = member.split('/')[0]!;
      assert.deepEqual(found, A.filter((a) => ownerOf(a.orderId) === cluster).map((a) => a.orderId).sort(), `${member} holds exactly its orders A`);
    }
    for (const c of await clusterStatus(topology, dataDir)) {
      assert.equal(c.members.filter((m) => m.role === 'primary').length, 1, `${c.name} has a primary`);
      assert.ok(c.members.some((m) => m.role === 'sync_standby'), `${c.name} has a streaming synchronous standby`);
    }

    platform = await open();
    const { s } = platform;
    assert.equal((await s.inventory.availability(SKU)).available, 100 - A.length, 'the stock of orders B is back');
    for (const a of A) assert.equal((await s.orders.get(a.orderId)).status, 'paid');
    for (const b of B) {
      await assert.rejects(s.orders.get(b.orderId), `order B ${b.orderId} is gone`);
      await assert.rejects(s.users.get(b.userId), `the user who placed order B ${b.orderId} signed up after T`);
    }
    const verify = await verifyInvariants({ dbs: s.dbs, inventory: s.inventory, saga: s.saga }, { graceMs: 0 });
    assert.equal(verify.ok, true, JSON.stringify(verify.findings));
    assert.equal(verify.scanned.orders, A.length);
  });

  it('keeps archiving on the new timeline: a drill restores an order placed after the restore', async () => {
    const C = await order('c0');
    await close();
    const started = Date.now();
    const drill = await backupDrill(topology, dataDir, progress);
    console.log(`# backup drill in ${((Date.now() - started) / 1000).toFixed(1)} s (restore ${drill.seconds.restore.toFixed(1)} s)`);
    assert.equal(drill.verify.ok, true, JSON.stringify(drill.verify.findings));
    const orders = drill.clusters.filter((c) => c.cluster !== 'core').reduce((n, c) => n + (c.rows.orders ?? 0), 0);
    assert.equal(orders, A.length + 1, 'orders A and the order placed on the new timeline');
    assert.equal(drill.verify.scanned.orders, A.length + 1);
    assert.ok(drill.clusters.find((c) => c.cluster === ownerOf(C.orderId))!.rows.orders! >= 1);
    // The scratch clusters are gone; the live ones still serve.
    const status = await clusterStatus(topology, dataDir);
    assert.ok(status.every((c) => c.members.some((m) => m.role === 'primary')));
  });
});
