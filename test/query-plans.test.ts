// Query plans on a bulk-seeded data set (issue 2 §5). The main API queries are run for real,
// through their repository functions, on a client that records the statement it sends (the
// postgres.js `debug` hook); the test then EXPLAINs exactly that statement with the same
// parameters and types. Each check names the index the query must use, so dropping it fails
// the test — or, where two indexes serve the same access equally well and the planner may take
// either, the pair, so the check fails when neither is there — and allows no Seq Scan on a big
// table. The test platform is one database holding every role, so the consistency checks join
// across roles freely.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import postgres from 'postgres';
import * as catalogRepo from '../src/modules/catalog/repository.ts';
import { checkInventoryInvariants } from '../src/modules/inventory/invariants.ts';
import * as ordersRepo from '../src/modules/orders/repository.ts';
import * as searchRepo from '../src/modules/search/repository.ts';
import * as usersRepo from '../src/modules/users/repository.ts';
import type { Sql } from '../src/platform/db.ts';
import { BULK_EMAIL_DOMAIN, BULK_PASSWORD, copyText, seedAtScale, type BulkSeedReport } from '../src/seed/bulk.ts';
import { createTestPlatform, type TestPlatform } from './helpers.ts';

// Big enough that the planner prefers indexes the way it does at full size (at 5,000 products a
// Seq Scan over variants or search_documents is legitimately cheaper), small enough for ~30 s.
const SIZES = { users: 20_000, products: 25_000, orders: 40_000 } as const;
const BIG_TABLES = new Set([
  'users', 'user_directory', 'products', 'variants', 'prices', 'stock', 'stock_ledger', 'search_documents', 'orders', 'order_lines', 'payments',
]);

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

interface Sent {
  text: string;
  params: unknown[];
  types: number[];
}

function flatten(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(flatten)];
}

function describePlan(nodes: readonly PlanNode[]): string {
  return nodes
    .map((n) => `${n['Node Type']}${n['Relation Name'] ? ` on ${n['Relation Name']}` : ''}${n['Index Name'] ? ` using ${n['Index Name']}` : ''}`)
    .join('; ');
}

describe('query plans on a bulk-seeded data set', () => {
  let t: TestPlatform;
  let report: BulkSeedReport;
  let recorder: postgres.Sql;
  let sent: Sent | undefined;

  /** Runs a repository function for real, then returns the plan of the statement it sent. */
  async function planOf(run: (sql: Sql) => Promise<unknown>): Promise<PlanNode[]> {
    sent = undefined;
    await run(recorder);
    const q = sent as Sent | undefined;
    if (!q) throw new Error('the repository function sent no statement');
    const params = q.params.map((p, i) => (q.types[i] ? recorder.typed(p, q.types[i]!) : p));
    const [row] = await recorder.unsafe<{ 'QUERY PLAN': { Plan: PlanNode }[] }[]>(`EXPLAIN (FORMAT JSON) ${q.text}`, params as never[]);
    const plan = row?.['QUERY PLAN'][0]?.Plan;
    if (!plan) throw new Error('EXPLAIN returned no plan');
    return flatten(plan);
  }

  /**
   * The plan uses, for each entry, the named index (or one of the named alternatives, where
   * two indexes serve the same access equally well), and reads no big table with a Seq Scan.
   */
  async function assertIndexed(run: (sql: Sql) => Promise<unknown>, indexes: readonly (string | readonly string[])[]): Promise<void> {
    const nodes = await planOf(run);
    const plan = describePlan(nodes);
    const used = new Set(nodes.map((n) => n['Index Name']).filter((x): x is string => x !== undefined));
    for (const wanted of indexes) {
      const options = typeof wanted === 'string' ? [wanted] : wanted;
      assert.ok(options.some((i) => used.has(i)), `expected ${options.join(' or ')} in the plan: ${plan}`);
    }
    const seqScans = nodes.filter((n) => n['Node Type'] === 'Seq Scan' && BIG_TABLES.has(n['Relation Name'] ?? ''));
    assert.deepEqual(seqScans.map((n) => n['Relation Name']), [], `Seq Scan on a big table: ${plan}`);
  }

  async function one<T>(query: Promise<readonly T[]>): Promise<T> {
    const [row] = await query;
    if (!row) throw new Error('expected a row');
    return row;
  }

  before(async () => {
    t = await createTestPlatform();
    report = await seedAtScale(t.s.dbs, { ...SIZES, progress: null });
    recorder = postgres(t.url, {
      max: 1,
      onnotice: () => undefined,
      debug: (_connection, text, params, types) => {
        sent = { text, params: [...(params as unknown[])], types: [...(types as number[])] };
      },
    });
  });

  after(async () => {
    await recorder?.end();
    await t?.close();
  });

  const db = (): Sql => t.s.dbs.core('catalog');
  const rowsOf = (table: string): number => report.tables.find((x) => x.table === table)?.rows ?? -1;

  it('seeds the requested counts, routed and consistent', async () => {
    const count = async (table: string): Promise<number> => (await one(db().unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ${table}`))).n;
    assert.equal(await count('users'), SIZES.users);
    assert.equal(await count('user_directory'), SIZES.users);
    assert.equal(await count('products'), SIZES.products);
    assert.equal(await count('orders'), SIZES.orders);
    for (const table of ['variants', 'prices', 'stock', 'stock_ledger', 'order_lines', 'payments', 'search_documents']) {
      assert.equal(await count(table), rowsOf(table), table);
    }
    assert.equal(rowsOf('prices'), rowsOf('variants') * 2);
    assert.equal(rowsOf('stock'), rowsOf('stock_ledger'));
    assert.equal(await count('search_documents'), (await one(db()<{ n: number }[]>`SELECT count(*)::int AS n FROM products WHERE status = 'active'`)).n);

    // Every user-owned row carries its user's shard; orders come after sign-up; ids are in the past.
    const mismatched = await one(db()<{ n: number }[]>`
      SELECT count(*)::int AS n FROM orders o LEFT JOIN users u ON u.id = o.user_id
      WHERE u.id IS NULL OR ((o.id >> 10) & 4095) <> ((u.id >> 10) & 4095) OR o.created_at < u.created_at`);
    assert.equal(mismatched.n, 0);
    const badLines = await one(db()<{ n: number }[]>`
      SELECT count(*)::int AS n FROM order_lines l JOIN orders o ON o.id = l.order_id WHERE l.user_id <> o.user_id`);
    assert.equal(badLines.n, 0);
    const badTotals = await one(db()<{ n: number }[]>`
      SELECT count(*)::int AS n FROM orders o
      WHERE o.total_amount <> (SELECT sum(l.quantity * l.unit_amount) FROM order_lines l WHERE l.order_id = o.id)`);
    assert.equal(badTotals.n, 0);
    const { id: liveId } = await one(db()<{ id: string }[]>`SELECT meridian_id(0)::text AS id`);
    const future = await one(db()<{ n: number }[]>`
      SELECT (SELECT count(*) FROM users WHERE id >= ${liveId}) + (SELECT count(*) FROM orders WHERE id >= ${liveId})
           + (SELECT count(*) FROM products WHERE id >= ${liveId}) AS n`);
    assert.equal(Number(future.n), 0);
    // I6: one capture per paid order.
    const captures = await one(db()<{ n: number }[]>`SELECT count(*)::int AS n FROM payments WHERE status IN ('captured', 'refunded')`);
    const paid = await one(db()<{ n: number }[]>`SELECT count(*)::int AS n FROM orders WHERE paid_at IS NOT NULL`);
    assert.equal(captures.n, paid.n);
    // The in_stock flags say what the stock rows say.
    const wrongFlags = await one(db()<{ n: number }[]>`
      SELECT count(*)::int AS n FROM variants v
      WHERE v.in_stock <> EXISTS (SELECT 1 FROM stock s WHERE s.sku = v.sku AND s.on_hand - s.reserved > 0)`);
    assert.equal(wrongFlags.n, 0);
  });

  it('keeps the inventory invariants I1–I4', async () => {
    const report = await checkInventoryInvariants(t.s.dbs.core('inventory'));
    assert.deepEqual(report, { i1: [], i2: [], i3: [], i4: [] });
  });

  it('writes the search documents the indexer would write', async () => {
    const sample = await db()<{ id: string }[]>`SELECT product_id::text AS id FROM search_documents ORDER BY product_id LIMIT 25`;
    const read = (ids: string[]) =>
      db()`SELECT product_id::text, title, brand_id::text, brand_name, category_id::text, category_path, category_name,
                  min_prices, in_stock, popularity, document::text
           FROM search_documents WHERE product_id = ANY(${ids}::bigint[]) ORDER BY product_id`;
    const ids = sample.map((r) => r.id);
    const seeded = [...(await read(ids))];
    for (const id of ids) await t.s.search.reindexProduct(id);
    assert.deepEqual([...(await read(ids))], seeded);
  });

  it('lets a seeded user log in, routed by the shard in the id', async () => {
    const email = `user1-${report.tag}@${BULK_EMAIL_DOMAIN}`;
    const { user, token } = await t.s.users.login(email, BULK_PASSWORD);
    assert.equal(user.email, email);
    const principal = await t.s.users.authenticate(token);
    assert.equal(principal?.userId, user.id);
    const [row] = await t.s.dbs.forId(user.id)<{ n: number }[]>`SELECT count(*)::int AS n FROM users WHERE id = ${user.id}`;
    assert.equal(row?.n, 1);
  });

  it('escapes text for COPY', () => {
    assert.equal(copyText('plain'), 'plain');
    assert.equal(copyText('a\tb\nc\\d\re'), 'a\\tb\\nc\\\\d\\re');
  });

  it('user by email: the directory by its key, then the user by id', async () => {
    const email = `user${SIZES.users / 2}-${report.tag}@${BULK_EMAIL_DOMAIN}`;
    await assertIndexed((sql) => usersRepo.findDirectoryEntry(sql, email), ['user_directory_pkey']);
    const entry = await usersRepo.findDirectoryEntry(db(), email);
    assert.ok(entry);
    await assertIndexed((sql) => usersRepo.findUser(sql, entry.user_id), ['users_pkey']);
  });

  it('product by id, with variants and prices', async () => {
    const { id } = await one(db()<{ id: string }[]>`SELECT id::text FROM products ORDER BY id OFFSET ${SIZES.products / 2} LIMIT 1`);
    await assertIndexed((sql) => catalogRepo.findProduct(sql, id), ['products_pkey', 'variants_product', 'prices_pkey']);
  });

  const filter = (f: Partial<catalogRepo.ListFilter>): catalogRepo.ListFilter => ({
    afterId: undefined,
    limit: 21,
    categoryPath: undefined,
    brandId: undefined,
    currency: 'USD',
    minPrice: undefined,
    maxPrice: undefined,
    inStock: undefined,
    ...f,
  });

  // Newest first, products_pkey and products_active_id serve the order equally (almost every
  // product is active), so the planner may take either: the check fails when neither is there.
  const NEWEST_PRODUCTS = ['products_pkey', 'products_active_id'] as const;

  it('product list, newest first, and its next page', async () => {
    await assertIndexed((sql) => catalogRepo.listProducts(sql, filter({})), [NEWEST_PRODUCTS]);
    const page = await catalogRepo.listProducts(db(), filter({}));
    await assertIndexed((sql) => catalogRepo.listProducts(sql, filter({ afterId: page.at(-1)?.id })), [NEWEST_PRODUCTS]);
  });

  it('product list by brand: a small brand through its index, a big one newest first', async () => {
    const brands = await db()<{ id: string }[]>`
      SELECT brand_id::text AS id FROM products WHERE status = 'active' GROUP BY brand_id ORDER BY count(*), brand_id`;
    const smallest = brands[0];
    const biggest = brands.at(-1);
    assert.ok(smallest && biggest);
    await assertIndexed((sql) => catalogRepo.listProducts(sql, filter({ brandId: smallest.id })), ['products_brand_id']);
    await assertIndexed((sql) => catalogRepo.listProducts(sql, filter({ brandId: biggest.id })), [[...NEWEST_PRODUCTS, 'products_brand_id']]);
  });

  // `category_id IN (SELECT … WHERE path LIKE …)` hides the subtree's size from the planner, so
  // it walks products newest first for big and small categories alike.
  it('product list by category subtree: the biggest top level, a middle level, the smallest leaf', async () => {
    const categories = await db()<{ path: string; depth: number; products: number }[]>`
      SELECT c.path, length(c.path) - length(replace(c.path, '/', '')) - 1 AS depth,
             (SELECT count(*)::int FROM products p JOIN categories s ON s.id = p.category_id WHERE s.path LIKE c.path || '%') AS products
      FROM categories c ORDER BY products DESC, c.path`;
    const picks = [
      categories.find((c) => c.depth === 1),
      categories.find((c) => c.depth === 2),
      categories.filter((c) => c.depth === 3 && c.products > 0).at(-1),
    ];
    for (const c of picks) {
      assert.ok(c);
      await assertIndexed((sql) => catalogRepo.listProducts(sql, filter({ categoryPath: c.path })), [[...NEWEST_PRODUCTS, 'products_category_id']]);
    }
  });

  // A needle-thin range (say 50.00 to 51.00) is left out: at this size a hash join over all
  // variants costs about as much as the index plan, so the planner's choice would flip between
  // runs; with the variants of 100,000 products it no longer does.
  it('product list by price range', async () => {
    for (const [minPrice, maxPrice] of [
      [2_000, 5_000],
      [0, 15_000],
    ] as const) {
      await assertIndexed((sql) => catalogRepo.listProducts(sql, filter({ minPrice, maxPrice })), [
        NEWEST_PRODUCTS,
        'variants_product',
        ['prices_pkey', 'prices_currency_amount'],
      ]);
    }
  });

  it('product list in stock and out of stock', async () => {
    await assertIndexed((sql) => catalogRepo.listProducts(sql, filter({ inStock: true })), [NEWEST_PRODUCTS, 'variants_in_stock']);
    await assertIndexed((sql) => catalogRepo.listProducts(sql, filter({ inStock: false })), [NEWEST_PRODUCTS, 'variants_in_stock']);
  });

  it('order history of a user, and its next page', async () => {
    const { user_id: userId } = await one(db()<{ user_id: string }[]>`
      SELECT user_id::text FROM orders GROUP BY user_id ORDER BY count(*) DESC LIMIT 1`);
    await assertIndexed((sql) => ordersRepo.listUserOrders(sql, userId, undefined, 21), ['orders_user', 'order_lines_pkey']);
    const page = await ordersRepo.listUserOrders(db(), userId, undefined, 5);
    await assertIndexed((sql) => ordersRepo.listUserOrders(sql, userId, page.at(-1)?.id, 21), ['orders_user', 'order_lines_pkey']);
  });

  // A function's statements are invisible to EXPLAIN; auto_explain, sending its plans to the
  // client as notices, shows the plan the function really ran.
  it('prices of a cart (checkout, add to cart): unique-index lookups, in a generic plan made once per connection', async () => {
    const skus = (await db()<{ sku: string }[]>`
      SELECT v.sku FROM variants v JOIN products p ON p.id = v.product_id
      WHERE p.status = 'active' AND EXISTS (SELECT 1 FROM prices pr WHERE pr.variant_id = v.id AND pr.currency = 'USD')
      ORDER BY v.id OFFSET ${SIZES.products / 2} LIMIT 3`).map((r) => r.sku);
    const notices: string[] = [];
    const traced = postgres(t.url, { max: 1, onnotice: (n) => notices.push(String(n.message)) });
    try {
      for (const setting of [
        "LOAD 'auto_explain'",
        'SET auto_explain.log_min_duration = 0',
        'SET auto_explain.log_nested_statements = on',
        'SET auto_explain.log_format = json',
        'SET client_min_messages = log',
      ]) await traced.unsafe(setting);
      const prices = await catalogRepo.pricesForSkus(traced, skus, 'USD');
      assert.deepEqual(prices.map((p) => p.sku).sort(), [...skus].sort());
      assert.ok(prices.every((p) => p.amount !== null && p.active));
    } finally {
      await traced.end();
    }
    const plans = notices.flatMap((m) => {
      const at = m.indexOf('{');
      return at < 0 ? [] : [JSON.parse(m.slice(at)) as { 'Query Text': string; Plan: PlanNode & { 'Index Cond'?: string } }];
    });
    const inner = plans.find((p) => p['Query Text'].includes('unnest(p_skus)'));
    assert.ok(inner, `no plan of the function's statement among ${plans.length} plans`);
    const nodes = flatten(inner.Plan) as (PlanNode & { 'Index Cond'?: string })[];
    const plan = describePlan(nodes);
    for (const index of ['variants_sku_key', 'products_pkey', 'prices_pkey']) assert.ok(nodes.some((n) => n['Index Name'] === index), `expected ${index}: ${plan}`);
    assert.deepEqual(nodes.filter((n) => n['Node Type'] === 'Seq Scan' || n['Node Type'].startsWith('Hash')).map((n) => n['Node Type']), [], plan);
    // Generic: the currency is still a parameter, where a custom plan (made anew per call) holds 'USD'.
    const currencyCond = nodes.find((n) => n['Index Name'] === 'prices_pkey')?.['Index Cond'] ?? '';
    assert.match(currencyCond, /\$\d/, `a custom plan: ${currencyCond}`);
  });

  it('full-text search', async () => {
    await assertIndexed(
      (sql) =>
        searchRepo.search(sql, { q: 'cashmere sweater', categoryPath: undefined, brandId: undefined, currency: 'USD', minPrice: undefined, maxPrice: undefined, inStock: undefined }, 20, 0),
      ['search_documents_document'],
    );
  });

  // Last: it adds rows that the counts above do not expect.
  it('appends: a second run reuses brands, categories and locations and breaks no unique key', async () => {
    const count = async (table: string): Promise<number> => (await one(db().unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ${table}`))).n;
    const [brands, categories, locations] = [await count('brands'), await count('categories'), await count('locations')];
    await new Promise((resolve) => setTimeout(resolve, 5)); // the run tag is the start time in ms
    const second = await seedAtScale(t.s.dbs, { users: 300, products: 200, orders: 500, progress: null });
    assert.notEqual(second.tag, report.tag);
    assert.deepEqual([await count('brands'), await count('categories'), await count('locations')], [brands, categories, locations]);
    assert.equal(await count('users'), SIZES.users + 300);
    assert.equal(await count('products'), SIZES.products + 200);
    assert.equal(await count('orders'), SIZES.orders + 500);
    assert.deepEqual(await checkInventoryInvariants(t.s.dbs.core('inventory')), { i1: [], i2: [], i3: [], i4: [] });
  });
});
