// The checkout saga's shard-side steps are single statements (orders/migrations/003): order
// creation (cart close + order + lines + history + key link + event) and mark-paid (capture
// record + status + history + event). These tests pin what each statement must leave behind,
// that each is all or nothing, and that repeating one changes nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { shardOfId } from '../src/platform/ids.ts';
import * as ordersRepo from '../src/modules/orders/repository.ts';
import { assertInvariants, cartWith, checkout, createProduct, createTestPlatform, createUser, type TestPlatform } from './helpers.ts';

describe('checkout steps as single statements', () => {
  let t: TestPlatform;
  before(async () => {
    t = await createTestPlatform();
  });
  after(async () => t.close());

  const shard = (id: string): ReturnType<TestPlatform['s']['dbs']['forId']> => t.s.dbs.forId(id);

  async function eventsOf(orderId: string): Promise<{ topic: string; payload: Record<string, unknown> }[]> {
    return shard(orderId)<{ topic: string; payload: Record<string, unknown> }[]>`
      SELECT topic, payload FROM outbox WHERE aggregate_id = ${orderId} AND topic LIKE 'order.%' ORDER BY id`;
  }

  async function historyOf(orderId: string): Promise<[string | null, string][]> {
    const rows = await shard(orderId)<{ from_status: string | null; to_status: string }[]>`
      SELECT from_status, to_status FROM order_history WHERE order_id = ${orderId} ORDER BY at, to_status DESC`;
    return rows.map((r) => [r.from_status, r.to_status]);
  }

  it('a paid checkout leaves the cart closed, the order with its lines, history, capture, events and the answer on the key', async () => {
    const a = await createProduct(t, 10, 1250);
    const b = await createProduct(t, 10, 300);
    const buyer = await createUser(t);
    const cartId = await cartWith(t, buyer.token, [
      { sku: a.sku, quantity: 2 },
      { sku: b.sku, quantity: 1 },
      { sku: a.sku, quantity: 1 },
    ]);
    const res = await checkout(t, buyer.token, cartId, 'one-statement');
    assert.equal(res.statusCode, 201, res.body);
    const order = res.json().order;
    assert.equal(order.status, 'paid');
    assert.deepEqual(order.total, { amount: 3 * 1250 + 300, currency: 'USD' });
    assert.deepEqual(
      order.lines.map((l: { sku: string; quantity: number; unitPrice: { amount: number } }) => [l.sku, l.quantity, l.unitPrice.amount]),
      [[a.sku, 2, 1250], [b.sku, 1, 300], [a.sku, 1, 1250]],
      'one order line per cart line, in cart order',
    );

    const [cart] = await shard(buyer.userId)<{ status: string; order_id: string }[]>`SELECT status, order_id::text FROM carts WHERE id = ${cartId}`;
    assert.deepEqual(cart, { status: 'checked_out', order_id: order.id });
    assert.deepEqual(await historyOf(order.id), [[null, 'pending_payment'], ['pending_payment', 'paid']]);
    assert.equal((await t.s.payments.find(order.id))?.status, 'captured');
    const events = await eventsOf(order.id);
    assert.deepEqual(events.map((e) => e.topic), ['order.placed', 'order.paid']);
    assert.deepEqual(events[0]?.payload, { orderId: order.id, userId: buyer.userId, total: order.total });
    assert.deepEqual(events[1]?.payload, { orderId: order.id });

    // The answer sent is the one stored with the key, so a replay is identical.
    const [key] = await shard(buyer.userId)<{ state: string; order_id: string; response_status: number; response_body: unknown }[]>`
      SELECT state, order_id::text, response_status, response_body FROM idempotency_keys WHERE user_id = ${buyer.userId} AND key = 'one-statement'`;
    assert.deepEqual(key, { state: 'completed', order_id: order.id, response_status: 201, response_body: res.json() });
    const replay = await checkout(t, buyer.token, cartId, 'one-statement');
    assert.equal(replay.headers['idempotency-replayed'], 'true');
    assert.deepEqual(replay.json(), res.json());
    await assertInvariants(t);
  });

  it('repeating step 6 on a paid order changes nothing and returns the recorded answer', async () => {
    const p = await createProduct(t, 5);
    const buyer = await createUser(t);
    const cartId = await cartWith(t, buyer.token, [{ sku: p.sku, quantity: 1 }]);
    const res = await checkout(t, buyer.token, cartId, 'repeat-step-6');
    assert.equal(res.statusCode, 201, res.body);
    const orderId: string = res.json().order.id;

    const again = await t.s.saga.complete(orderId);
    assert.deepEqual(again, { status: 201, body: res.json() });
    const answer = await ordersRepo.payOrder(shard(orderId), orderId);
    assert.deepEqual(answer, { status: 201, body: res.json() }, 'paid once: the answer (and the time paid) do not move');
    const read = await t.app.inject({ method: 'GET', url: `/v1/orders/${orderId}`, headers: { authorization: `Bearer ${buyer.token}` } });
    assert.deepEqual(read.json(), res.json().order, 'the order reads as the checkout answered it');
    assert.deepEqual(await historyOf(orderId), [[null, 'pending_payment'], ['pending_payment', 'paid']]);
    assert.deepEqual((await eventsOf(orderId)).map((e) => e.topic), ['order.placed', 'order.paid']);
    assert.equal(await ordersRepo.payOrder(shard(orderId), '123456789'), undefined, 'an unknown order');
    await assertInvariants(t);
  });

  it('order creation writes nothing when the cart changed or is closed', async () => {
    const p = await createProduct(t, 5);
    const buyer = await createUser(t);
    const cartId = await cartWith(t, buyer.token, [{ sku: p.sku, quantity: 2 }]);
    const { lines } = await t.s.carts.linesOf(buyer.userId, cartId);
    const db = shard(buyer.userId);
    const [claimed] = await db<{ id: string }[]>`
      INSERT INTO idempotency_keys (user_id, key, request_hash, state) VALUES (${buyer.userId}, 'direct', 'h', 'in_progress')
      RETURNING meridian_id(${shardOfId(buyer.userId)})::text AS id`;
    const attempt = (orderId: string, cartLines: typeof lines): Promise<ordersRepo.CreateOutcome> =>
      ordersRepo.createOrder(db, {
        id: orderId, userId: buyer.userId, cartId, key: 'direct', currency: 'USD', totalAmount: 2000,
        cartLines, lines: cartLines.map((l) => ({ sku: l.sku, title: 'x', quantity: l.quantity, unitAmount: 1000 })),
        event: { orderId },
      });
    const nothingWritten = async (orderId: string, cartStatus: string): Promise<void> => {
      assert.equal((await db`SELECT 1 FROM orders WHERE id = ${orderId}`).length, 0);
      assert.equal((await db`SELECT 1 FROM order_lines WHERE order_id = ${orderId}`).length, 0);
      assert.equal((await db`SELECT 1 FROM outbox WHERE aggregate_id = ${orderId}`).length, 0);
      const [cart] = await db<{ status: string }[]>`SELECT status FROM carts WHERE id = ${cartId}`;
      assert.equal(cart?.status, cartStatus);
    };
    const orderId = claimed!.id;

    // A quantity, a SKU, a missing line and an extra line all count as a change.
    const line = lines[0]!;
    for (const changed of [[{ ...line, quantity: 3 }], [{ ...line, sku: 'OTHER' }], [], [line, { id: '1', sku: p.sku, quantity: 1 }]]) {
      assert.equal(await attempt(orderId, changed), 'changed');
      await nothingWritten(orderId, 'open');
    }
    const [key] = await db<{ order_id: string | null }[]>`SELECT order_id::text FROM idempotency_keys WHERE user_id = ${buyer.userId} AND key = 'direct'`;
    assert.equal(key?.order_id, null, 'the key is not linked to an order that was not created');

    assert.equal(await attempt(orderId, lines), 'created');
    const other = (await db<{ id: string }[]>`SELECT meridian_id(${shardOfId(buyer.userId)})::text AS id`)[0]!.id;
    assert.equal(await attempt(other, lines), 'not_open', 'the cart is closed for the first order');
    await nothingWritten(other, 'checked_out');
  });

  it('authorizing twice records one payment; the record is captured with the order, not before', async () => {
    const p = await createProduct(t, 5);
    const buyer = await createUser(t);
    const cartId = await cartWith(t, buyer.token, [{ sku: p.sku, quantity: 1 }]);
    const original = t.s.payments.capture.bind(t.s.payments);
    let recordAtCapture: string | undefined;
    t.s.payments.capture = async (orderId, known) => {
      await original(orderId, known);
      recordAtCapture = (await t.s.payments.find(orderId))?.status;
    };
    try {
      const res = await checkout(t, buyer.token, cartId, 'auth-twice');
      assert.equal(res.statusCode, 201, res.body);
      const orderId: string = res.json().order.id;
      assert.equal(recordAtCapture, 'authorized', 'the capture is recorded by the statement that marks the order paid');
      const first = await t.s.payments.find(orderId);
      const second = await t.s.payments.authorize(buyer.userId, orderId, { amount: 1000, currency: 'USD' }, 'tok_visa');
      assert.deepEqual(second, first, 'the recorded payment wins');
      assert.equal((await shard(orderId)`SELECT 1 FROM payments WHERE order_id = ${orderId}`).length, 1);
    } finally {
      t.s.payments.capture = original;
    }
  });
});
