// The sweeper finishes or compensates checkouts that a crash left half-way, and releases
// reservations whose checkout never created an order. Crashes are simulated by making one saga
// step throw a non-business error, as a dying process would leave it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AppError } from '../src/platform/errors.ts';
import type { PaymentsService } from '../src/modules/payments/service.ts';
import { assertInvariants, auth, cartWith, checkout, createProduct, createTestPlatform, createUser, type TestPlatform } from './helpers.ts';
import { setTimeout as sleep } from 'node:timers/promises';

describe('saga recovery by the sweeper', () => {
  let t: TestPlatform;
  before(async () => {
    t = await createTestPlatform({ abandonedOrderMs: 1_000, reservationTtlMs: 60_000 });
  });
  after(async () => t.close());


  /** One checkout while a payment step throws `error` (as a dying process or a failover leaves it). */
  async function checkoutWhileFailing<S extends 'authorize' | 'capture'>(step: S, error: Error, token: string, cartId: string, key: string): ReturnType<typeof checkout> {
    const payments: PaymentsService = t.s.payments;
    const original = payments[step];
    payments[step] = (async () => {
      throw error;
    }) as PaymentsService[S];
    try {
      return await checkout(t, token, cartId, key);
    } finally {
      payments[step] = original;
    }
  }

  it('a reservation whose order was never written is released at expiry', async () => {
    const p = await createProduct(t, 10);
    const r = await t.s.inventory.reserve('123456789', [{ sku: p.sku, quantity: 4 }], 50);
    assert.equal(r.ok, true);
    assert.equal((await t.s.inventory.availability(p.sku)).available, 6);
    await sleep(80);
    await t.s.saga.sweep();
    assert.equal(await t.s.inventory.reservationStatus('123456789'), 'released');
    assert.equal((await t.s.inventory.availability(p.sku)).available, 10);
    await assertInvariants(t);
  });

  it('a crash before payment: the abandoned order is cancelled, stock released, cart reopened, key answered', async () => {
    const p = await createProduct(t, 10);
    const buyer = await createUser(t);
    const cartId = await cartWith(t, buyer.token, [{ sku: p.sku, quantity: 2 }]);
    const res = await checkoutWhileFailing('authorize', new Error('process died'), buyer.token, cartId, 'crash-before-payment');
    assert.equal(res.statusCode, 500);
    assert.equal((await t.s.inventory.availability(p.sku)).available, 8, 'stock is held by the half-done checkout');
    const inFlight = await checkout(t, buyer.token, cartId, 'crash-before-payment');
    assert.equal(inFlight.statusCode, 409);
    assert.equal(inFlight.json().error.code, 'idempotency_conflict');
    await sleep(1_100);
    await t.s.saga.sweep();
    assert.equal((await t.s.inventory.availability(p.sku)).available, 10);
    const orders = await t.app.inject({ method: 'GET', url: '/v1/orders', headers: auth(buyer.token) });
    assert.equal(orders.json().items[0].status, 'cancelled');
    const cart = await t.app.inject({ method: 'GET', url: `/v1/carts/${cartId}`, headers: auth(buyer.token) });
    assert.equal(cart.json().status, 'open');
    const replay = await checkout(t, buyer.token, cartId, 'crash-before-payment');
    assert.equal(replay.statusCode, 409);
    assert.equal(replay.json().error.code, 'reservation_expired');
    await assertInvariants(t);
  });

  it('a saga cut short by a transient failure gives its key back: the retry resumes it at once', async () => {
    const p = await createProduct(t, 10);
    const buyer = await createUser(t);
    const cartId = await cartWith(t, buyer.token, [{ sku: p.sku, quantity: 2 }]);
    const first = await checkoutWhileFailing('capture', new AppError('unavailable', 'the payment database is failing over'), buyer.token, cartId, 'transient-after-consume');
    assert.equal(first.statusCode, 503);
    // The lease is given back in the background, a write or two later.
    let retry = await checkout(t, buyer.token, cartId, 'transient-after-consume');
    for (let i = 0; i < 20 && retry.statusCode === 409; i++) {
      await sleep(50);
      retry = await checkout(t, buyer.token, cartId, 'transient-after-consume');
    }
    assert.equal(retry.statusCode, 201, `not resumed well within the 15 s lease: ${retry.body}`);
    assert.equal(retry.json().order.status, 'paid');
    const orders = await t.app.inject({ method: 'GET', url: '/v1/orders', headers: auth(buyer.token) });
    assert.deepEqual(orders.json().items.map((o: { id: string }) => o.id), [retry.json().order.id], 'the first attempt\'s order, finished: one order');
    assert.equal((await t.s.payments.find(retry.json().order.id))?.status, 'captured');
    assert.equal((await t.s.inventory.availability(p.sku)).locations[0]?.onHand, 8, 'consumed once');
    assert.deepEqual((await checkout(t, buyer.token, cartId, 'transient-after-consume')).json(), retry.json(), 'replayed');
    await assertInvariants(t);
  });

  it('a crash after the stock was consumed: the sweeper captures and marks the order paid', async () => {
    const p = await createProduct(t, 10);
    const buyer = await createUser(t);
    const cartId = await cartWith(t, buyer.token, [{ sku: p.sku, quantity: 3 }]);
    assert.equal((await checkoutWhileFailing('capture', new Error('process died'), buyer.token, cartId, 'crash-after-consume')).statusCode, 500);
    await sleep(1_100);
    await t.s.saga.sweep();
    const replay = await checkout(t, buyer.token, cartId, 'crash-after-consume');
    assert.equal(replay.statusCode, 201);
    assert.equal(replay.json().order.status, 'paid');
    assert.equal((await t.s.payments.find(replay.json().order.id))?.status, 'captured');
    const a = await t.s.inventory.availability(p.sku);
    assert.deepEqual([a.available, a.locations[0]?.onHand], [7, 7]);
    await assertInvariants(t);
  });

  it('catalog and stock changes reach search and the inStock flag through the outbox', async () => {
    const admin = await createUser(t, 'admin');
    const created = await t.app.inject({
      method: 'POST',
      url: '/v1/admin/products',
      headers: auth(admin.token),
      payload: { title: 'Quokka Thermos Flask', variants: [{ sku: 'QUOKKA-1', prices: [{ amount: 2500, currency: 'USD' }] }] },
    });
    assert.equal(created.statusCode, 201);
    const before = await t.app.inject({ method: 'GET', url: '/v1/search?q=quokka' });
    assert.equal(before.json().total, 0, 'not indexed until the event is relayed');
    await t.s.relay.drain();
    const found = await t.app.inject({ method: 'GET', url: '/v1/search?q=quokka' });
    assert.equal(found.json().total, 1);
    assert.equal(found.json().items[0].inStock, false);
    await t.s.inventory.upsertLocation('main', 'Main');
    await t.app.inject({ method: 'POST', url: '/v1/admin/inventory/receipts', headers: auth(admin.token), payload: { sku: 'QUOKKA-1', locationId: 'main', quantity: 5 } });
    await t.s.relay.drain();
    await t.s.relay.drain(); // stock_changed → variant flag → product.changed → search document
    const inStock = await t.app.inject({ method: 'GET', url: '/v1/search?q=quokka&inStock=true' });
    assert.equal(inStock.json().total, 1);
    const listed = await t.app.inject({ method: 'GET', url: '/v1/products?inStock=true&limit=100' });
    assert.ok(listed.json().items.some((p: { id: string }) => p.id === created.json().id));
    await t.app.inject({ method: 'PATCH', url: `/v1/admin/products/${created.json().id as string}`, headers: auth(admin.token), payload: { status: 'archived' } });
    await t.s.relay.drain();
    assert.equal((await t.app.inject({ method: 'GET', url: '/v1/search?q=quokka' })).json().total, 0);
  });
});
