// Concurrency tests of the checkout saga against real PostgreSQL. Each ends by asserting I1–I6.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestPaymentProvider } from '../src/modules/payments/provider.ts';
import { assertInvariants, auth, cartWith, checkout, createProduct, createTestPlatform, createUser, type TestPlatform } from './helpers.ts';

describe('checkout under concurrency', () => {
  let t: TestPlatform;
  before(async () => {
    t = await createTestPlatform({ dbPoolMax: 40 });
  });
  after(async () => t.close());

  it('(a) 100 units, 1,000 concurrent checkouts: exactly 100 paid, 900 clean out_of_stock', async () => {
    const product = await createProduct(t, 100);
    const buyers = await Promise.all(Array.from({ length: 1000 }, () => createUser(t)));
    const carts = await Promise.all(buyers.map((b) => cartWith(t, b.token, [{ sku: product.sku, quantity: 1 }])));
    const responses = await Promise.all(buyers.map((b, i) => checkout(t, b.token, carts[i]!, `flash-${i}`)));
    const byStatus = new Map<number, number>();
    for (const r of responses) byStatus.set(r.statusCode, (byStatus.get(r.statusCode) ?? 0) + 1);
    assert.equal(byStatus.get(201), 100, `statuses: ${JSON.stringify([...byStatus])}`);
    assert.equal(byStatus.get(409), 900);
    for (const r of responses.filter((x) => x.statusCode === 409)) assert.equal(r.json().error.code, 'out_of_stock');
    const availability = await t.s.inventory.availability(product.sku);
    assert.equal(availability.available, 0);
    assert.equal(availability.locations[0]?.onHand, 0);
    await assertInvariants(t);
  });

  it('(b) two lines of one SKU that together exceed stock are rejected, and nothing is held', async () => {
    const product = await createProduct(t, 5);
    const buyer = await createUser(t);
    const cartId = await cartWith(t, buyer.token, [
      { sku: product.sku, quantity: 3 },
      { sku: product.sku, quantity: 3 },
    ]);
    const res = await checkout(t, buyer.token, cartId, 'two-lines');
    assert.equal(res.statusCode, 409);
    assert.equal(res.json().error.code, 'out_of_stock');
    assert.equal(res.json().error.details.requested, 6);
    const a = await t.s.inventory.availability(product.sku);
    assert.deepEqual([a.available, a.locations[0]?.reserved], [5, 0]);
    // The key was freed (nothing happened), so the cart can be fixed and retried with it.
    const cart = await t.app.inject({ method: 'GET', url: `/v1/carts/${cartId}`, headers: auth(buyer.token) });
    const lineId = cart.json().lines[1].id as string;
    await t.app.inject({ method: 'DELETE', url: `/v1/carts/${cartId}/lines/${lineId}`, headers: auth(buyer.token) });
    const retry = await checkout(t, buyer.token, cartId, 'two-lines');
    assert.equal(retry.statusCode, 201);
    await assertInvariants(t);
  });

  it('(c) 50 concurrent requests with one Idempotency-Key make one order', async () => {
    const product = await createProduct(t, 100);
    const buyer = await createUser(t);
    const cartId = await cartWith(t, buyer.token, [{ sku: product.sku, quantity: 2 }]);
    const responses = await Promise.all(Array.from({ length: 50 }, () => checkout(t, buyer.token, cartId, 'same-key')));
    const created = responses.filter((r) => r.statusCode === 201);
    const conflicts = responses.filter((r) => r.statusCode === 409);
    assert.equal(created.length + conflicts.length, 50);
    assert.ok(created.length >= 1);
    for (const r of conflicts) assert.equal(r.json().error.code, 'idempotency_conflict');
    const orderIds = new Set(created.map((r) => r.json().order.id as string));
    assert.equal(orderIds.size, 1, 'every 201 names the same order');
    const history = await t.app.inject({ method: 'GET', url: '/v1/orders', headers: auth(buyer.token) });
    assert.equal(history.json().items.length, 1);
    // After it finished, the same key replays the stored response.
    const replay = await checkout(t, buyer.token, cartId, 'same-key');
    assert.equal(replay.statusCode, 201);
    assert.equal(replay.headers['idempotency-replayed'], 'true');
    assert.equal(replay.json().order.id, [...orderIds][0]);
    assert.equal((await t.s.inventory.availability(product.sku)).available, 98);
    await assertInvariants(t);
  });

  it('(d) reservation expiry racing a late payment: exactly one wins, every time', async () => {
    // A slow payment provider and a reservation that expires while it answers.
    const slow = await createTestPlatform({ reservationTtlMs: 1_000 }, { paymentProvider: new TestPaymentProvider(0) });
    try {
      const product = await createProduct(slow, 50);
      const rounds = 20;
      const buyers = await Promise.all(Array.from({ length: rounds }, () => createUser(slow)));
      const carts = await Promise.all(buyers.map((b) => cartWith(slow, b.token, [{ sku: product.sku, quantity: 1 }])));
      // Shorten each reservation to expire right around the payment step, then race the sweeper.
      const inventory = slow.s.inventory;
      const originalReserve = inventory.reserve.bind(inventory);
      let round = 0;
      inventory.reserve = (id, lines) => originalReserve(id, lines, 5 + (round++ % 10) * 3);
      const results = await Promise.all(
        buyers.map(async (b, i) => {
          const sweep = (async () => {
            await new Promise((r) => setTimeout(r, (i % 10) * 3));
            await slow.s.saga.sweep();
          })();
          const [res] = await Promise.all([checkout(slow, b.token, carts[i]!, `race-${i}`), sweep]);
          return res;
        }),
      );
      await slow.s.saga.sweep();
      for (const res of results) {
        assert.ok([201, 409].includes(res.statusCode), `unexpected ${res.statusCode} ${res.body}`);
        if (res.statusCode === 409) assert.equal(res.json().error.code, 'reservation_expired');
      }
      const orders = await slow.s.orders.adminList(undefined, undefined, 100);
      for (const o of orders.items) {
        const reservation = await inventory.reservationStatus(o.id);
        const payment = await slow.s.payments.find(o.id);
        if (o.status === 'paid') {
          assert.equal(reservation, 'consumed');
          assert.equal(payment?.status, 'captured');
        } else {
          assert.equal(o.status, 'cancelled');
          assert.equal(reservation, 'released');
          assert.equal(payment?.status ?? 'voided', 'voided');
        }
      }
      const paid = orders.items.filter((o) => o.status === 'paid').length;
      assert.equal((await inventory.availability(product.sku)).available, 50 - paid);
      await assertInvariants(slow);
    } finally {
      await slow.close();
    }
  });
});
