// Test platform: a fresh, migrated database per suite on the real PostgreSQL server named by
// TEST_DATABASE_URL (npm test starts one), and the app built in-process around it.
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import pino from 'pino';
import postgres from 'postgres';
import { buildApp, buildServices, type ServiceOptions, type Services } from '../src/app.ts';
import { loadConfig, type Config } from '../src/platform/config.ts';
import { ALL_ROLES, Databases } from '../src/platform/db.ts';
import { migrate } from '../src/platform/migrate.ts';
import { checkInventoryInvariants, consumedByReservation } from '../src/modules/inventory/invariants.ts';

export interface TestPlatform {
  app: FastifyInstance;
  s: Services;
  url: string;
  close(): Promise<void>;
}

function adminUrl(): string {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) throw new Error('TEST_DATABASE_URL is not set: run the tests with `npm test`');
  return url;
}

export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = postgres(adminUrl(), { max: 1, onnotice: () => undefined });
  const name = `meridian_t_${randomBytes(6).toString('hex')}`;
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(adminUrl());
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    async drop() {
      const a = postgres(adminUrl(), { max: 1, onnotice: () => undefined });
      await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

export async function createTestPlatform(overrides: Partial<Config> = {}, options: ServiceOptions = {}): Promise<TestPlatform> {
  const db = await createTestDatabase();
  const config = loadConfig({}, { seedDemo: false, dbPoolMax: 20, ...overrides });
  const dbs = Databases.single(db.url, { max: config.dbPoolMax });
  await migrate(dbs.clusters[0]!.pool, ALL_ROLES);
  const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const s = buildServices(config, dbs, log, { defaultMetrics: false, ...options });
  const { app, stop } = await startApp(s);
  return {
    app,
    s,
    url: db.url,
    async close() {
      await stop();
      await db.drop();
    },
  };
}

/** The app and the workers a test needs (the relay and sweeper run only when a test calls them). */
async function startApp(s: Services): Promise<{ app: FastifyInstance; stop(): Promise<void> }> {
  const app = await buildApp(s);
  await s.cacheBus.start();
  await s.inventory.gate.start();
  await s.catalogReplicas.start();
  return {
    app,
    async stop() {
      await app.close();
      await s.relay.stop();
      await s.cacheBus.stop();
      await s.inventory.gate.stop();
      await s.catalogReplicas.stop();
      await s.primaries.stop();
      await s.dbs.close();
    },
  };
}

let hashPromise: Promise<string> | undefined;

/** Users without paying argon2 for each: one real hash of "password123", reused. */
export async function createUser(t: TestPlatform, role: 'customer' | 'admin' = 'customer'): Promise<{ userId: string; token: string; email: string }> {
  hashPromise ??= t.s.users.hashPassword('password123');
  const email = `${role}-${randomBytes(6).toString('hex')}@example.com`;
  const { user, token } = await t.s.users.registerWithHash(email, await hashPromise, role);
  return { userId: user.id, token, email };
}

export function auth(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

export interface Fixture {
  sku: string;
  productId: string;
  price: number;
}

let skuCounter = 0;

/** A product with one variant priced in USD and `units` on hand in one location. */
export async function createProduct(t: TestPlatform, units: number, price = 1000, locationId = 'main'): Promise<Fixture> {
  await t.s.inventory.upsertLocation(locationId, locationId);
  const sku = `T-${randomBytes(3).toString('hex')}-${++skuCounter}`;
  const p = await t.s.catalog.createProduct({ title: `Test product ${sku}`, variants: [{ sku, prices: [{ amount: price, currency: 'USD' }] }] });
  if (units > 0) await t.s.inventory.changeStock('receipt', sku, locationId, units);
  return { sku, productId: p.id, price };
}

export async function cartWith(t: TestPlatform, token: string, lines: { sku: string; quantity: number }[]): Promise<string> {
  const res = await t.app.inject({ method: 'POST', url: '/v1/carts', headers: auth(token), payload: {} });
  if (res.statusCode !== 201) throw new Error(`cart create failed: ${res.body}`);
  const cartId = res.json<{ id: string }>().id;
  for (const line of lines) {
    const r = await t.app.inject({ method: 'POST', url: `/v1/carts/${cartId}/lines`, headers: auth(token), payload: line });
    if (r.statusCode !== 201) throw new Error(`add line failed: ${r.body}`);
  }
  return cartId;
}

export function checkout(t: TestPlatform, token: string, cartId: string, key: string, paymentToken = 'tok_visa'): Promise<LightMyRequestResponse> {
  return t.app.inject({
    method: 'POST',
    url: '/v1/checkout',
    headers: { ...auth(token), 'idempotency-key': key },
    payload: { cartId, payment: { token: paymentToken } },
  });
}

/** I1–I4, within the inventory tables alone (for engine-level tests that place no orders). */
export async function assertInventoryInvariants(t: TestPlatform): Promise<void> {
  const inv = await checkInventoryInvariants(t.s.dbs.core('inventory'));
  for (const [name, rows] of Object.entries(inv)) {
    if (rows.length > 0) throw new Error(`invariant ${name.toUpperCase()} violated: ${JSON.stringify(rows.slice(0, 5))}`);
  }
}

/**
 * I1–I6 over the whole platform: inventory invariants from the inventory tables, plus the
 * cross-module ones — every paid order consumed exactly its lines (I5), nothing consumed without
 * a paid order, units sold never exceed units received, and one capture per order (I6).
 */
export async function assertInvariants(t: TestPlatform): Promise<void> {
  await assertInventoryInvariants(t);
  const consumed = await consumedByReservation(t.s.dbs.core('inventory'));
  const shard = t.s.dbs.shardPools()[0]!;
  const paid = await shard<{ id: string; sku: string; quantity: number }[]>`
    SELECT o.id::text, l.sku, sum(l.quantity)::int AS quantity
    FROM orders o JOIN order_lines l ON l.order_id = o.id
    WHERE o.status IN ('paid', 'fulfilled', 'shipped', 'delivered', 'refunded') GROUP BY 1, 2`;
  const paidByOrder = new Map<string, Map<string, number>>();
  for (const r of paid) {
    const m = paidByOrder.get(r.id) ?? new Map<string, number>();
    m.set(r.sku, r.quantity);
    paidByOrder.set(r.id, m);
  }
  for (const [orderId, lines] of paidByOrder) {
    const c = consumed.get(orderId);
    for (const [sku, q] of lines) {
      if (c?.get(sku) !== q) throw new Error(`I5 violated: paid order ${orderId} ${sku} x${q} consumed ${c?.get(sku) ?? 0}`);
    }
  }
  for (const orderId of consumed.keys()) {
    if (!paidByOrder.has(orderId)) throw new Error(`I5 violated: reservation ${orderId} consumed without a paid order`);
  }
  const oversold = await t.s.dbs.core('inventory')`
    SELECT sku, sum(on_hand_delta) FILTER (WHERE kind IN ('receipt', 'return')) AS received,
           -sum(on_hand_delta) FILTER (WHERE kind = 'consume') AS sold
    FROM stock_ledger GROUP BY sku
    HAVING COALESCE(-sum(on_hand_delta) FILTER (WHERE kind = 'consume'), 0) > COALESCE(sum(on_hand_delta) FILTER (WHERE kind IN ('receipt', 'return')), 0)`;
  if (oversold.length > 0) throw new Error(`I5 violated: sold more than received: ${JSON.stringify([...oversold])}`);
  const captures = await shard`SELECT order_id FROM payments WHERE status IN ('captured', 'refunded')`;
  const paidOrders = await shard`SELECT id FROM orders WHERE paid_at IS NOT NULL`;
  if (captures.length !== paidOrders.length) throw new Error(`I6 violated: ${captures.length} captures for ${paidOrders.length} paid orders`);
  const keys = await shard`SELECT order_id, count(*) FROM idempotency_keys WHERE order_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1`;
  if (keys.length > 0) throw new Error(`I6 violated: an order is attached to several idempotency keys`);
}

/**
 * Three databases on the test server standing in for three clusters: core (directory, catalog,
 * inventory) and two user-shard clusters splitting the 4,096 logical shards. Same code paths
 * as a topology, without the processes.
 */
/**
 * A core cluster and two user-shard clusters, each its own database. `route` may put something
 * between the app and a cluster (e.g. a TCP proxy that a fault test stops).
 */
export async function createShardedTestPlatform(
  overrides: Partial<Config> = {},
  route: (cluster: string, url: string) => string = (_cluster, url) => url,
): Promise<TestPlatform & { shardUrls: string[] }> {
  const core = await createTestDatabase();
  const a = await createTestDatabase();
  const b = await createTestDatabase();
  const config = loadConfig({}, { seedDemo: false, dbPoolMax: 10, ...overrides });
  const dbs = new Databases(
    [
      { name: 'core', url: route('core', core.url), roles: ['directory', 'catalog', 'inventory'], shards: [] },
      { name: 'users-a', url: route('users-a', a.url), roles: ['shard'], shards: [[0, 2047]] },
      { name: 'users-b', url: route('users-b', b.url), roles: ['shard'], shards: [[2048, 4095]] },
    ],
    { max: config.dbPoolMax },
  );
  for (const c of dbs.clusters) await migrate(c.pool, c.spec.roles);
  const s = buildServices(config, dbs, pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }), { defaultMetrics: false });
  const { app, stop } = await startApp(s);
  return {
    app,
    s,
    url: core.url,
    shardUrls: [a.url, b.url],
    async close() {
      await stop();
      await Promise.all([core.drop(), a.drop(), b.drop()]);
    },
  };
}
