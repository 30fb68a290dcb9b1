// The order life cycle: the transition table against the documented one, pair by pair, and the
// admin API/saga against the table — a move not listed answers 409 illegal_transition and
// leaves the order (status, history, payment, stock) exactly as it was.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { canTransition, ORDER_STATUSES, ORDER_TRANSITIONS, SYSTEM_ONLY_TARGETS, type OrderStatus } from '../src/modules/orders/state-machine.ts';
import { TestPaymentProvider, type AuthorizeResult } from '../src/modules/payments/provider.ts';
import type { Money } from '../src/platform/money.ts';
import { assertError } from './assertions.ts';
import { assertInvariants, auth, cartWith, checkout, createProduct, createTestPlatform, createUser, type TestPlatform } from './helpers.ts';

/** The life cycle as documented (ARCHITECTURE.md, the admin route's summary), written out independently. */
const DOCUMENTED: readonly (readonly [OrderStatus, OrderStatus])[] = [
  ['pending_payment', 'paid'],
  ['pending_payment', 'cancelled'],
  ['paid', 'fulfilled'],
  ['paid', 'refunded'],
  ['fulfilled', 'shipped'],
  ['fulfilled', 'refunded'],
  ['shipped', 'delivered'],
  ['delivered', 'refunded'],
];
const TERMINAL: readonly OrderStatus[] = ['cancelled', 'refunded'];

const isDocumented = (from: OrderStatus, to: OrderStatus): boolean => DOCUMENTED.some(([f, x]) => f === from && x === to);

describe('ORDER_TRANSITIONS table', () => {
  it('has a row for every status and names only known statuses, without repeats', () => {
    assert.deepEqual(Object.keys(ORDER_TRANSITIONS).sort(), [...ORDER_STATUSES].sort());
    for (const [from, targets] of Object.entries(ORDER_TRANSITIONS)) {
      assert.equal(new Set(targets).size, targets.length, `${from} lists a target twice`);
      for (const to of targets) assert.ok((ORDER_STATUSES as readonly string[]).includes(to), `${from} → unknown ${to}`);
    }
  });

  for (const from of ORDER_STATUSES) {
    for (const to of ORDER_STATUSES) {
      const allowed = isDocumented(from, to);
      it(`${from} → ${to}: ${allowed ? 'allowed' : 'rejected'}`, () => {
        assert.equal(canTransition(from, to), allowed);
        assert.equal(ORDER_TRANSITIONS[from].includes(to), allowed);
      });
    }
  }

  it('no self-loops; terminal states have no way out; every status is reachable from pending_payment', () => {
    for (const s of ORDER_STATUSES) assert.equal(canTransition(s, s), false, s);
    for (const s of TERMINAL) assert.deepEqual(ORDER_TRANSITIONS[s], [], s);
    const seen = new Set<OrderStatus>(['pending_payment']);
    const queue: OrderStatus[] = ['pending_payment'];
    while (queue.length > 0) {
      for (const next of ORDER_TRANSITIONS[queue.shift()!]) {
        if (!seen.has(next)) {
          seen.add(next);
          queue.push(next);
        }
      }
    }
    assert.deepEqual([...seen].sort(), [...ORDER_STATUSES].sort());
  });

  it('only the saga may mark an order paid', () => {
    assert.deepEqual([...SYSTEM_ONLY_TARGETS], ['paid']);
  });
});

/**
 * The test provider, plus `tok_hold`: approves like tok_visa, but only once the test lets it,
 * so the order stays pending_payment (stock reserved, no payment yet) for as long as needed.
 */
class HoldingProvider extends TestPaymentProvider {
  private readonly gates = new Map<string, () => void>();
  private readonly arrived = new Map<string, () => void>();
  private readonly arrivals = new Map<string, Promise<void>>();

  /** Resolves when the authorization of this order has started (the order then exists). */
  whenHeld(orderId: string): Promise<void> {
    return this.arrival(orderId);
  }

  release(orderId: string): void {
    this.gates.get(orderId)?.();
  }

  releaseAll(): void {
    for (const open of this.gates.values()) open();
  }

  private arrival(orderId: string): Promise<void> {
    let p = this.arrivals.get(orderId);
    if (!p) {
      p = new Promise<void>((resolve) => this.arrived.set(orderId, resolve));
      this.arrivals.set(orderId, p);
    }
    return p;
  }

  override async authorize(input: { idempotencyKey: string; amount: Money; token: string }): Promise<AuthorizeResult> {
    if (input.token !== 'tok_hold') return super.authorize(input);
    const gate = new Promise<void>((resolve) => this.gates.set(input.idempotencyKey, resolve));
    void this.arrival(input.idempotencyKey);
    this.arrived.get(input.idempotencyKey)?.();
    await gate;
    return super.authorize({ ...input, token: 'tok_visa' });
  }
}

describe('transitions through the admin API and the saga', () => {
  let t: TestPlatform;
  let provider: HoldingProvider;
  let admin: { token: string };
  let buyer: { userId: string; token: string };
  let sku: string;

  before(async () => {
    provider = new HoldingProvider();
    t = await createTestPlatform({}, { paymentProvider: provider });
    admin = await createUser(t, 'admin');
    buyer = await createUser(t);
    sku = (await createProduct(t, 1_000)).sku;
  });
  after(async () => {
    provider.releaseAll();
    await t.close();
  });

  let keyCounter = 0;

  async function paidOrder(): Promise<string> {
    const cartId = await cartWith(t, buyer.token, [{ sku, quantity: 1 }]);
    const res = await checkout(t, buyer.token, cartId, `sm-${++keyCounter}`);
    assert.equal(res.statusCode, 201, res.body);
    return res.json<{ order: { id: string } }>().order.id;
  }

  async function cancelledOrder(): Promise<string> {
    const cartId = await cartWith(t, buyer.token, [{ sku, quantity: 1 }]);
    const res = await checkout(t, buyer.token, cartId, `sm-${++keyCounter}`, 'tok_decline');
    assertError(res, 402, 'payment_declined');
    return String(res.json().error.details.orderId);
  }

  /** A checkout held at the payment step: its order is pending_payment until released. */
  async function pendingOrder(): Promise<{ orderId: string; response: ReturnType<typeof checkout> }> {
    const cartId = await cartWith(t, buyer.token, [{ sku, quantity: 1 }]);
    const before = new Set((await t.s.orders.history(buyer.userId, undefined, 100)).items.map((o) => o.id));
    const response = checkout(t, buyer.token, cartId, `sm-${++keyCounter}`, 'tok_hold');
    for (let i = 0; i < 500; i++) {
      const fresh = (await t.s.orders.history(buyer.userId, undefined, 100)).items.find((o) => !before.has(o.id));
      if (fresh) {
        await provider.whenHeld(fresh.id);
        assert.equal(fresh.status, 'pending_payment');
        return { orderId: fresh.id, response };
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error('the held checkout never created its order');
  }

  /** Drive a paid order along the documented path to `status`. */
  async function orderIn(status: OrderStatus): Promise<string> {
    if (status === 'cancelled') return cancelledOrder();
    const id = await paidOrder();
    const path: Record<string, OrderStatus[]> = {
      paid: [],
      fulfilled: ['fulfilled'],
      shipped: ['fulfilled', 'shipped'],
      delivered: ['fulfilled', 'shipped', 'delivered'],
      refunded: ['refunded'],
    };
    for (const to of path[status]!) assert.equal((await move(id, to)).statusCode, 200);
    return id;
  }

  function move(orderId: string, to: OrderStatus): Promise<LightMyRequestResponse> {
    return t.app.inject({ method: 'POST', url: `/v1/admin/orders/${orderId}/transitions`, headers: auth(admin.token), payload: { to } });
  }

  /** Everything a transition could touch. */
  async function snapshot(orderId: string): Promise<unknown> {
    const order = await t.app.inject({ method: 'GET', url: `/v1/orders/${orderId}`, headers: auth(buyer.token) });
    const db = t.s.dbs.forId(orderId);
    const history = await db`SELECT from_status, to_status, actor FROM order_history WHERE order_id = ${orderId} ORDER BY at, to_status`;
    const events = await db`SELECT count(*)::int AS n FROM outbox WHERE aggregate_id = ${orderId}`;
    return {
      order: order.json(),
      history: [...history],
      events: events[0],
      payment: await t.s.payments.find(orderId),
      reservation: await t.s.inventory.reservationStatus(orderId),
      stock: await t.s.inventory.availability(sku),
    };
  }

  for (const from of ORDER_STATUSES.filter((s) => s !== 'pending_payment')) {
    it(`from ${from}: every move not in the table (and 'paid') → 409, order unchanged`, async () => {
      const id = await orderIn(from);
      const before = await snapshot(id);
      for (const to of ORDER_STATUSES) {
        if (canTransition(from, to) && !SYSTEM_ONLY_TARGETS.includes(to)) continue;
        const err = assertError(await move(id, to), 409, 'illegal_transition');
        assert.deepEqual(err.details, { from, to }, `${from} → ${to}`);
        assert.deepEqual(await snapshot(id), before, `${from} → ${to} changed something`);
      }
    });

    for (const to of ORDER_TRANSITIONS[from].filter((s) => !SYSTEM_ONLY_TARGETS.includes(s))) {
      it(`from ${from}: → ${to} is allowed, recorded in history, and then final for ${from} → ${to}`, async () => {
        const id = await orderIn(from);
        const res = await move(id, to);
        assert.equal(res.statusCode, 200, res.body);
        assert.equal(res.json().status, to);
        const history = await t.s.dbs.forId(id)<{ from_status: string; to_status: string; actor: string }[]>`
          SELECT from_status, to_status, actor FROM order_history WHERE order_id = ${id} ORDER BY at DESC, to_status LIMIT 1`;
        assert.deepEqual([history[0]?.from_status, history[0]?.to_status, history[0]?.actor], [from, to, 'admin']);
        if (to === 'refunded') assert.equal((await t.s.payments.find(id))?.status, 'refunded', 'a refund moves the money');
        // The same move again is no longer legal: the order has left `from`.
        assertError(await move(id, to), 409, 'illegal_transition');
      });
    }
  }

  it('from pending_payment: admin moves other than cancel → 409 and change nothing; the held checkout then completes', async () => {
    const { orderId, response } = await pendingOrder();
    const before = await snapshot(orderId);
    assert.equal((before as { reservation: string }).reservation, 'live');
    for (const to of ORDER_STATUSES) {
      if (to === 'cancelled') continue;
      const err = assertError(await move(orderId, to), 409, 'illegal_transition');
      assert.deepEqual(err.details, { from: 'pending_payment', to });
      assert.deepEqual(await snapshot(orderId), before, `pending_payment → ${to} changed something`);
    }
    provider.release(orderId);
    const res = await response;
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.json().order.status, 'paid');
    assert.equal(await t.s.inventory.reservationStatus(orderId), 'consumed');
    await assertInvariants(t);
  });

  it('from pending_payment: admin cancel compensates (stock released, cart reopened); the held payment is voided', async () => {
    const available = (await t.s.inventory.availability(sku)).available;
    const { orderId, response } = await pendingOrder();
    assert.equal((await t.s.inventory.availability(sku)).available, available - 1, 'reserved while pending');
    const res = await move(orderId, 'cancelled');
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().status, 'cancelled');
    assert.equal(res.json().cancelReason, 'cancelled_by_admin');
    assert.equal(await t.s.inventory.reservationStatus(orderId), 'released');
    assert.equal((await t.s.inventory.availability(sku)).available, available);
    assertError(await move(orderId, 'cancelled'), 409, 'illegal_transition');
    assertError(await move(orderId, 'paid'), 409, 'illegal_transition');

    // The payment answers after the cancellation: the saga must not revive the order.
    provider.release(orderId);
    const late = await response;
    assert.ok(late.statusCode >= 400 && late.statusCode < 500, `late checkout answer ${late.statusCode} ${late.body}`);
    const order = (await t.app.inject({ method: 'GET', url: `/v1/orders/${orderId}`, headers: auth(buyer.token) })).json();
    assert.equal(order.status, 'cancelled');
    assert.equal(order.paidAt, null);
    assert.notEqual((await t.s.payments.find(orderId))?.status, 'captured');
    assert.equal((await t.s.payments.find(orderId))?.status ?? 'voided', 'voided');
    assert.equal((await t.s.inventory.availability(sku)).available, available);
    const carts = await t.s.dbs.forId(buyer.userId)<{ status: string }[]>`SELECT status FROM carts WHERE order_id = ${orderId}`;
    assert.equal(carts.length, 0, 'the cart was reopened and detached from the cancelled order');
    await assertInvariants(t);
  });

  it('the saga itself moves only pending_payment orders: settle() and complete() leave final orders alone', async () => {
    const paid = await paidOrder();
    const cancelled = await cancelledOrder();
    const before = [await snapshot(paid), await snapshot(cancelled)];
    assert.equal(await t.s.saga.settle(paid), false);
    assert.equal(await t.s.saga.settle(cancelled), false);
    await t.s.saga.complete(paid); // idempotent repeat of step 6
    await t.s.saga.compensate(paid, 'late', 'reservation_expired', 'late compensation of a paid order');
    assert.deepEqual([await snapshot(paid), await snapshot(cancelled)], before);
    await assertInvariants(t);
  });
});
