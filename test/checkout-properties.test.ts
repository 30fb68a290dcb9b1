// Property tests (fast-check) over cart and checkout inputs, against a model of the cart, the
// idempotency keys and the stock. Random sequences of cart operations and checkouts — unknown
// SKUs, out-of-range, fractional and string quantities, malformed ids, duplicate idempotency
// keys, declining and garbage payment tokens, junk bodies — must never answer 5xx, must answer
// every error as {error:{code,message}} with a 4xx, must answer what the model predicts, and
// must never leave a partial write: after each run I1–I6 hold, available units equal received
// minus sold, and no failed checkout left a pending order or a live reservation.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { assertErrorShape, assertOnUserShard } from './assertions.ts';
import { assertInvariants, auth, cartWith, createProduct, createTestPlatform, createUser, type Fixture, type TestPlatform } from './helpers.ts';

const NUM_RUNS = 40;
const OPS_MAX = 30;
const PAID_STATUSES = ['paid', 'fulfilled', 'shipped', 'delivered', 'refunded'];

// ---- Inputs ----------------------------------------------------------------------------------

/** A quantity as sent, and the quantity the API reads from it (null: it must answer 400). */
interface Qty {
  value: unknown;
  accepted: number | null;
}

const validQty: fc.Arbitrary<Qty> = fc
  .oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max: 3 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 100 }) })
  .map((n) => ({ value: n, accepted: n }));
const badQty: fc.Arbitrary<Qty> = fc.oneof(
  fc.constantFrom<Qty>(
    { value: 0, accepted: null },
    { value: -1, accepted: null },
    { value: 101, accepted: null },
    { value: 1_000_000, accepted: null },
    { value: 2.5, accepted: null },
    { value: 'abc', accepted: null },
    { value: '', accepted: null },
    { value: '1.5', accepted: null },
    { value: null, accepted: null },
    { value: false, accepted: null },
    { value: {}, accepted: null },
    { value: [[2]], accepted: null },
    { value: [1, 2], accepted: null },
    // Fastify's Ajv coerces scalars (coerceTypes: 'array'): these are read as numbers.
    { value: '3', accepted: 3 },
    { value: true, accepted: 1 },
    { value: [2], accepted: 2 },
    { value: '1e1', accepted: 10 },
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isInteger(d)).map((d) => ({ value: d, accepted: null })),
  fc.integer().filter((n) => n < 1 || n > 100).map((n) => ({ value: n, accepted: null })),
);
const qtyArb: fc.Arbitrary<Qty> = fc.oneof({ weight: 3, arbitrary: validQty }, { weight: 2, arbitrary: badQty });

type SkuRef = { kind: 'known'; index: number } | { kind: 'unknown'; value: string } | { kind: 'invalid'; value: unknown };
const skuArb: fc.Arbitrary<SkuRef> = fc.oneof(
  { weight: 6, arbitrary: fc.nat(1).map((index): SkuRef => ({ kind: 'known', index })) },
  { weight: 1, arbitrary: fc.constantFrom('NOPE-1', 'T-000000-0', 'zzz').map((value): SkuRef => ({ kind: 'unknown', value })) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>('', '-lead', 'has space', '../etc', 'x'.repeat(65), 'é', null, {}, [], 42).map((value): SkuRef => ({ kind: 'invalid', value })) },
);

/** A line of our cart (by position), a line that is not there, or a malformed line id. */
type LineRef = { kind: 'line'; index: number } | { kind: 'missing' } | { kind: 'malformed'; value: string };
const lineArb: fc.Arbitrary<LineRef> = fc.oneof(
  { weight: 6, arbitrary: fc.nat(30).map((index): LineRef => ({ kind: 'line', index })) },
  { weight: 1, arbitrary: fc.constant<LineRef>({ kind: 'missing' }) },
  { weight: 1, arbitrary: fc.constantFrom('abc', '0', '01', '9223372036854775808', '-5').map((value): LineRef => ({ kind: 'malformed', value })) },
);

type CartRef = 'own' | 'foreign' | 'unknown' | 'malformed' | 'huge';
const cartRefArb = fc.constantFrom<CartRef>('own', 'own', 'own', 'own', 'foreign', 'unknown', 'malformed', 'huge');
const CART_IDS: Record<Exclude<CartRef, 'own' | 'foreign'>, string> = { unknown: '123456789', malformed: 'cart-1', huge: '9223372036854775808' };

type KeyRef = { kind: 'pool'; key: string } | { kind: 'missing' } | { kind: 'invalid'; value: string };
const keyArb: fc.Arbitrary<KeyRef> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('k1', 'k2', 'k3', 'k4').map((key): KeyRef => ({ kind: 'pool', key })) },
  { weight: 1, arbitrary: fc.constant<KeyRef>({ kind: 'missing' }) },
  { weight: 1, arbitrary: fc.constantFrom('', 'has space', 'x'.repeat(256)).map((value): KeyRef => ({ kind: 'invalid', value })) },
);

const tokenArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constant('tok_visa') },
  { weight: 2, arbitrary: fc.constant('tok_decline') },
  { weight: 2, arbitrary: fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !s.startsWith('tok_')) },
  { weight: 1, arbitrary: fc.constantFrom('', 'x'.repeat(201)) },
);

type Op =
  | { op: 'add'; cart: 'own' | 'foreign'; sku: SkuRef; qty: Qty }
  | { op: 'patch'; cart: 'own' | 'foreign'; line: LineRef; qty: Qty }
  | { op: 'delete'; cart: 'own' | 'foreign'; line: LineRef }
  | { op: 'checkout'; key: KeyRef; cart: CartRef; token: string }
  | { op: 'junk'; route: 'lines' | 'patch' | 'checkout' | 'carts'; body: unknown; raw: boolean }
  | { op: 'race'; index: number; quantity: number; delayMs: number };

const cartSide = fc.constantFrom<'own' | 'foreign'>('own', 'own', 'own', 'own', 'own', 'foreign');
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('add' as const), cart: cartSide, sku: skuArb, qty: qtyArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('patch' as const), cart: cartSide, line: lineArb, qty: qtyArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), cart: cartSide, line: lineArb }) },
  // A line added while a checkout of the same cart runs.
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('race' as const), index: fc.nat(1), quantity: fc.integer({ min: 1, max: 2 }), delayMs: fc.integer({ min: 0, max: 15 }) }),
  },
  // Mostly well-formed checkouts of our own cart (so sales, declines and replays happen), plus anything.
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('checkout' as const),
      key: fc.constantFrom('k1', 'k2', 'k3', 'k4').map((key): KeyRef => ({ kind: 'pool', key })),
      cart: fc.constant<CartRef>('own'),
      token: fc.constantFrom('tok_visa', 'tok_visa', 'tok_decline'),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('checkout' as const), key: keyArb, cart: cartRefArb, token: tokenArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('junk' as const),
      route: fc.constantFrom<'lines' | 'patch' | 'checkout' | 'carts'>('lines', 'patch', 'checkout', 'carts'),
      body: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.string({ maxLength: 40 })),
      raw: fc.boolean(),
    }),
  },
);

const stockArb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 60 }));
const runArb = fc.record({
  stock: fc.tuple(stockArb, stockArb),
  initialLines: fc.array(fc.record({ index: fc.nat(1), quantity: fc.integer({ min: 1, max: 3 }) }), { maxLength: 3 }),
  ops: fc.array(opArb, { minLength: 1, maxLength: OPS_MAX, size: 'max' }),
});

type Run = typeof runArb extends fc.Arbitrary<infer R> ? R : never;
const checkoutOp = (key: string, token: string): Op => ({ op: 'checkout', key: { kind: 'pool', key }, cart: 'own', token });
/**
 * Runs that always reach each interesting outcome, whatever the random runs draw: a decline,
 * its replay, a sale, a reuse of a key with another body, and a sold-out SKU. Random runs reach
 * them too, but not every time: the coverage check below once failed on an unlucky draw.
 */
const COVERING_RUNS: Run[] = [
  {
    stock: [5, 5],
    initialLines: [{ index: 0, quantity: 1 }],
    ops: [checkoutOp('k1', 'tok_decline'), checkoutOp('k1', 'tok_decline'), checkoutOp('k1', 'tok_visa'), checkoutOp('k2', 'tok_visa'), checkoutOp('k2', 'tok_visa')],
  },
  { stock: [0, 3], initialLines: [{ index: 0, quantity: 1 }, { index: 1, quantity: 2 }], ops: [checkoutOp('k1', 'tok_visa')] },
];

// ---- The model -------------------------------------------------------------------------------

interface StoredResponse {
  cartId: string;
  token: string;
  status: number;
  body: unknown;
}

interface Model {
  lines: { id: string; sku: string; quantity: number }[];
  status: 'open' | 'checked_out';
  keys: Map<string, StoredResponse>;
  available: Map<string, number>;
  /** Ids of lines that existed and were deleted: a reference to one must answer 404. */
  deletedLineIds: string[];
  paidOrders: string[];
  declinedOrders: string[];
}

interface CartBody {
  id: string;
  status: string;
  orderId: string | null;
  lines: { id: string; sku: string; quantity: number }[];
}

function expectStatus(res: LightMyRequestResponse, status: number, code: string | undefined, what: string): void {
  assert.ok(res.statusCode < 500, `${what}: 5xx ${res.statusCode} ${res.body}`);
  assert.equal(res.statusCode, status, `${what}: expected ${status} ${code ?? ''}, got ${res.statusCode} ${res.body}`);
  if (status >= 400) {
    const error = assertErrorShape(res);
    if (code) assert.equal(error.code, code, `${what}: ${res.body}`);
  }
}

function assertCartMatches(cart: CartBody, m: Model, what: string): void {
  assert.equal(cart.status, m.status, `${what}: cart status`);
  assert.deepEqual(
    cart.lines.map((l) => [l.id, l.sku, l.quantity]),
    m.lines.map((l) => [l.id, l.sku, l.quantity]),
    `${what}: cart lines`,
  );
}

describe('cart and checkout properties', () => {
  let t: TestPlatform;
  let junk: { userId: string; token: string; cartId: string };
  let junkSku: Fixture;

  before(async () => {
    t = await createTestPlatform();
    const u = await createUser(t);
    junkSku = await createProduct(t, 3);
    const cartId = await cartWith(t, u.token, [{ sku: junkSku.sku, quantity: 1 }]);
    junk = { ...u, cartId };
  });
  after(async () => t.close());

  it(`${NUM_RUNS} random runs of up to ${OPS_MAX} operations: no 5xx, uniform errors, model-exact answers, no partial writes`, async () => {
    // Outcomes seen over all runs: the generators must reach the interesting paths.
    const seen = new Set<string>();
    await fc.assert(
      fc.asyncProperty(runArb, async ({ stock, initialLines, ops }) => {
        const owner = await createUser(t);
        const other = await createUser(t);
        const products = [await createProduct(t, stock[0], 1_000), await createProduct(t, stock[1], 2_500)];
        const received = new Map(products.map((p, i) => [p.sku, stock[i]!]));
        const cartId = await cartWith(t, owner.token, initialLines.map((l) => ({ sku: products[l.index]!.sku, quantity: l.quantity })));
        const foreignCartId = await cartWith(t, other.token, [{ sku: products[0]!.sku, quantity: 1 }]);
        const foreignLineId = (await t.s.carts.get(other.userId, foreignCartId)).lines[0]!.id;
        const m: Model = {
          lines: (await t.s.carts.get(owner.userId, cartId)).lines.map((l) => ({ id: l.id, sku: l.sku, quantity: l.quantity })),
          status: 'open',
          keys: new Map(),
          available: new Map(received),
          deletedLineIds: [],
          paidOrders: [],
          declinedOrders: [],
        };
        const inject = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown, headers: Record<string, string> = {}, token = owner.token) =>
          t.app.inject({ method, url, headers: { ...auth(token), ...headers }, ...(payload === undefined ? {} : { payload: payload as string }) });

        const lineIdFor = (ref: LineRef, cart: 'own' | 'foreign'): { id: string; exists: boolean; wellFormed: boolean } => {
          if (ref.kind === 'malformed') return { id: ref.value, exists: false, wellFormed: false };
          if (cart === 'foreign') return { id: foreignLineId, exists: false, wellFormed: true };
          if (ref.kind === 'line' && m.lines.length > 0) return { id: m.lines[ref.index % m.lines.length]!.id, exists: true, wellFormed: true };
          const gone = m.deletedLineIds[0] ?? foreignLineId;
          return { id: gone, exists: false, wellFormed: true };
        };

        for (const [step, o] of ops.entries()) {
          const what = `step ${step} ${JSON.stringify(o)}`;
          if (o.op === 'add') {
            const target = o.cart === 'own' ? cartId : foreignCartId;
            const skuValue = o.sku.kind === 'known' ? products[o.sku.index]!.sku : o.sku.value;
            const res = await inject('POST', `/v1/carts/${target}/lines`, { sku: skuValue, quantity: o.qty.value });
            if (o.sku.kind === 'invalid' && !(typeof o.sku.value === 'number')) expectStatus(res, 400, 'validation_failed', what);
            else if (o.qty.accepted === null) expectStatus(res, 400, 'validation_failed', what);
            else if (o.cart === 'foreign') expectStatus(res, 404, 'not_found', what);
            else if (o.sku.kind !== 'known') expectStatus(res, 400, 'validation_failed', what);
            else if (m.status !== 'open') expectStatus(res, 409, 'cart_not_open', what);
            else {
              expectStatus(res, 201, undefined, what);
              const cart = res.json<CartBody>();
              const added = cart.lines[cart.lines.length - 1]!;
              assertOnUserShard(added.id, owner.userId, 'cart line id');
              m.lines.push({ id: added.id, sku: skuValue as string, quantity: o.qty.accepted });
              assertCartMatches(cart, m, what);
            }
          } else if (o.op === 'patch' || o.op === 'delete') {
            const target = o.cart === 'own' ? cartId : foreignCartId;
            const line = lineIdFor(o.line, o.cart);
            const res =
              o.op === 'patch'
                ? await inject('PATCH', `/v1/carts/${target}/lines/${line.id}`, { quantity: o.qty.value })
                : await inject('DELETE', `/v1/carts/${target}/lines/${line.id}`);
            if (!line.wellFormed || (o.op === 'patch' && o.qty.accepted === null)) expectStatus(res, 400, 'validation_failed', what);
            else if (o.cart === 'foreign') expectStatus(res, 404, 'not_found', what);
            else if (m.status !== 'open') expectStatus(res, 409, 'cart_not_open', what);
            else if (!line.exists) expectStatus(res, 404, 'not_found', what);
            else {
              expectStatus(res, 200, undefined, what);
              const i = m.lines.findIndex((l) => l.id === line.id);
              if (o.op === 'patch') m.lines[i]!.quantity = (o as { qty: Qty }).qty.accepted!;
              else m.deletedLineIds.push(...m.lines.splice(i, 1).map((l) => l.id));
              assertCartMatches(res.json<CartBody>(), m, what);
            }
          } else if (o.op === 'checkout') {
            const target = o.cart === 'own' ? cartId : o.cart === 'foreign' ? foreignCartId : CART_IDS[o.cart];
            const headers = o.key.kind === 'pool' ? { 'idempotency-key': o.key.key } : o.key.kind === 'invalid' ? { 'idempotency-key': o.key.value } : undefined;
            const res = await inject('POST', '/v1/checkout', { cartId: target, payment: { token: o.token } }, headers);
            const bodyInvalid = o.cart === 'malformed' || o.cart === 'huge' || o.token.length === 0 || o.token.length > 200;
            if (bodyInvalid || o.key.kind !== 'pool') {
              expectStatus(res, 400, 'validation_failed', what);
              continue;
            }
            const stored = m.keys.get(o.key.key);
            if (stored) {
              seen.add('key reused or replayed');
              if (stored.cartId !== target || stored.token !== o.token) {
                expectStatus(res, 422, 'idempotency_key_reused', what);
              } else {
                expectStatus(res, stored.status, undefined, what);
                assert.equal(res.headers['idempotency-replayed'], 'true', what);
                assert.deepEqual(res.json(), stored.body, `${what}: the replay is the first answer`);
              }
              continue;
            }
            assert.equal(res.headers['idempotency-replayed'], undefined, what);
            if (o.cart !== 'own') {
              expectStatus(res, 404, 'not_found', what);
              continue;
            }
            if (m.status !== 'open') {
              expectStatus(res, 409, 'cart_not_open', what);
              continue;
            }
            if (m.lines.length === 0) {
              expectStatus(res, 422, 'cart_empty', what);
              continue;
            }
            const wanted = new Map<string, number>();
            for (const l of m.lines) wanted.set(l.sku, (wanted.get(l.sku) ?? 0) + l.quantity);
            const short = [...wanted].filter(([s, q]) => q > (m.available.get(s) ?? 0));
            if (short.length > 0) {
              expectStatus(res, 409, 'out_of_stock', what);
              seen.add('out_of_stock');
              const details = res.json().error.details as { sku: string; requested: number; available: number };
              const hit = short.find(([s]) => s === details.sku);
              assert.ok(hit, `${what}: out_of_stock names a short SKU: ${res.body}`);
              assert.deepEqual(details, { sku: hit[0], requested: hit[1], available: m.available.get(hit[0]) }, what);
              continue;
            }
            if (o.token === 'tok_visa') {
              expectStatus(res, 201, undefined, what);
              const order = res.json<{ order: { id: string; status: string; total: { amount: number }; lines: { sku: string; quantity: number }[] } }>().order;
              assertOnUserShard(order.id, owner.userId, 'order id');
              assert.equal(order.status, 'paid', what);
              const prices = new Map(products.map((p) => [p.sku, p.price]));
              assert.equal(order.total.amount, m.lines.reduce((n, l) => n + prices.get(l.sku)! * l.quantity, 0), `${what}: total`);
              assert.deepEqual(order.lines.map((l) => [l.sku, l.quantity]), m.lines.map((l) => [l.sku, l.quantity]), what);
              for (const [s, q] of wanted) m.available.set(s, m.available.get(s)! - q);
              m.status = 'checked_out';
              m.paidOrders.push(order.id);
              seen.add('paid');
            } else {
              expectStatus(res, 402, 'payment_declined', what);
              const orderId = String(res.json().error.details?.orderId);
              assertOnUserShard(orderId, owner.userId, 'declined order id');
              m.declinedOrders.push(orderId);
              seen.add('declined');
            }
            m.keys.set(o.key.key, { cartId: target, token: o.token, status: res.statusCode, body: res.json() });
          } else if (o.op === 'race') {
            const key = `race-${step}`;
            const skuValue = products[o.index]!.sku;
            const [co, add] = await Promise.all([
              inject('POST', '/v1/checkout', { cartId, payment: { token: 'tok_visa' } }, { 'idempotency-key': key }),
              (async () => {
                await new Promise((r) => setTimeout(r, o.delayMs));
                return inject('POST', `/v1/carts/${cartId}/lines`, { sku: skuValue, quantity: o.quantity });
              })(),
            ]);
            for (const r of [co, add]) {
              assert.ok(r.statusCode < 500, `${what}: 5xx ${r.statusCode} ${r.body}`);
              if (r.statusCode >= 400) assertErrorShape(r);
            }
            // Either may win, but the cart and the order must agree: no line closed unsold.
            const cart = (await inject('GET', `/v1/carts/${cartId}`)).json<CartBody>();
            if (add.statusCode === 201) m.lines = cart.lines.map((l) => ({ id: l.id, sku: l.sku, quantity: l.quantity }));
            else expectStatus(add, 409, 'cart_not_open', `${what} (add)`);
            assertCartMatches(cart, { ...m, status: co.statusCode === 201 ? 'checked_out' : m.status }, what);
            if (co.statusCode === 201) {
              const order = co.json<{ order: { id: string; lines: { sku: string; quantity: number }[] } }>().order;
              assert.deepEqual(order.lines.map((l) => [l.sku, l.quantity]), cart.lines.map((l) => [l.sku, l.quantity]), `${what}: the order holds exactly the closed cart's lines`);
              for (const l of order.lines) m.available.set(l.sku, m.available.get(l.sku)! - l.quantity);
              m.status = 'checked_out';
              m.paidOrders.push(order.id);
              m.keys.set(key, { cartId, token: 'tok_visa', status: 201, body: co.json() });
              seen.add('paid');
            } else {
              const code = assertErrorShape(co).code;
              assert.ok(['cart_changed', 'cart_not_open', 'cart_empty', 'out_of_stock'].includes(code), `${what}: ${co.body}`);
              if (code === 'cart_changed') {
                assert.equal(add.statusCode, 201, `${what}: cart_changed without a change`);
                seen.add('cart_changed');
              }
              if (code === 'cart_not_open') assert.equal(m.status, 'checked_out', what);
            }
          } else {
            // Junk goes to a bystander's cart, which no valid body can reach by chance.
            // The PATCH names a line that does not exist, so even a valid body changes nothing.
            const url = { lines: `/v1/carts/${junk.cartId}/lines`, patch: `/v1/carts/${junk.cartId}/lines/123456789`, checkout: '/v1/checkout', carts: '/v1/carts' }[o.route];
            const method = o.route === 'patch' ? 'PATCH' : 'POST';
            // raw: a string goes out as it is (mostly malformed JSON); otherwise as a JSON value.
            const payload = o.raw && typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
            const res = await inject(method, url, payload, { 'content-type': 'application/json', 'idempotency-key': 'junk' }, junk.token);
            assert.ok(res.statusCode < 500, `${what}: 5xx ${res.statusCode} ${res.body}`);
            if (res.statusCode >= 400) assertErrorShape(res);
            else assert.equal(o.route, 'carts', `${what}: junk accepted ${res.statusCode} ${res.body}`);
          }
        }

        // ---- After the run: the stores agree with the model and with each other ----
        const cart = await inject('GET', `/v1/carts/${cartId}`);
        assertCartMatches(cart.json<CartBody>(), m, 'final cart');
        const foreign = await t.s.carts.get(other.userId, foreignCartId);
        assert.deepEqual([foreign.status, foreign.lines.map((l) => [l.id, l.quantity])], ['open', [[foreignLineId, 1]]], "another user's cart is untouched");

        await assertInvariants(t);
        const shard = t.s.dbs.forId(owner.userId);
        for (const p of products) {
          const a = await t.s.inventory.availability(p.sku);
          const [sold] = await shard<{ n: number }[]>`
            SELECT COALESCE(sum(l.quantity), 0)::int AS n FROM order_lines l JOIN orders o ON o.id = l.order_id
            WHERE l.sku = ${p.sku} AND o.status = ANY(${PAID_STATUSES})`;
          assert.equal(a.available, received.get(p.sku)! - sold!.n, `${p.sku}: available = received − sold`);
          assert.equal(a.available, m.available.get(p.sku), `${p.sku}: available as the model says`);
          assert.equal(a.locations.reduce((n, l) => n + l.reserved, 0), 0, `${p.sku}: nothing left reserved`);
        }
        const orders = await shard<{ id: string; status: string; paid_at: Date | null }[]>`
          SELECT id::text, status, paid_at FROM orders WHERE user_id = ${owner.userId} ORDER BY id`;
        assert.deepEqual(orders.map((o) => o.id).sort(), [...m.paidOrders, ...m.declinedOrders].sort(), 'an order exists only for checkouts that reached payment');
        for (const o of orders) {
          const reservation = await t.s.inventory.reservationStatus(o.id);
          const payment = await t.s.payments.find(o.id);
          if (m.paidOrders.includes(o.id)) {
            assert.deepEqual([o.status, reservation, payment?.status], ['paid', 'consumed', 'captured'], `paid order ${o.id}`);
          } else {
            assert.deepEqual([o.status, reservation, payment?.status, o.paid_at], ['cancelled', 'released', 'declined', null], `declined order ${o.id}`);
          }
        }
        const [pending] = await shard<{ n: number }[]>`SELECT count(*)::int AS n FROM orders WHERE status = 'pending_payment'`;
        assert.equal(pending!.n, 0, 'no pending order is left behind');
        const [live] = await t.s.dbs.core('inventory')<{ n: number }[]>`SELECT count(*)::int AS n FROM reservations WHERE status = 'live'`;
        assert.equal(live!.n, 0, 'no live reservation is left behind');
        const keys = await shard<{ key: string; state: string; response_status: number | null }[]>`
          SELECT key, state, response_status FROM idempotency_keys WHERE user_id = ${owner.userId} ORDER BY key`;
        assert.deepEqual(
          keys.map((k) => [k.key, k.state, k.response_status]),
          [...m.keys].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, 'completed', v.status]),
          'keys are kept exactly for checkouts that had an effect, with their answer',
        );
      }),
      { numRuns: NUM_RUNS, endOnFailure: false, examples: COVERING_RUNS.map((run) => [run]) },
    );
    for (const outcome of ['declined', 'key reused or replayed', 'out_of_stock', 'paid']) assert.ok(seen.has(outcome), `no run reached: ${outcome}`);
    // The bystander's cart took only junk: it is still as it was made.
    const bystander = await t.s.carts.get(junk.userId, junk.cartId);
    assert.deepEqual(bystander.lines.map((l) => [l.sku, l.quantity]), [[junkSku.sku, 1]]);
  });
});
