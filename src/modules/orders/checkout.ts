// The checkout saga (ARCHITECTURE.md): the one orchestrator that spans modules.
//   1 idempotency key  2 price the cart  3 reserve stock  4 order + outbox (one shard tx)
//   5 authorize payment (no transaction open)  6 consume the reservation, capture, mark paid
// Every step is idempotent (keyed by the order id), so the sweeper can finish or compensate a
// saga that a crash left half-way by running the same steps again.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Databases } from '../../platform/db.ts';
import { transaction } from '../../platform/db.ts';
import { AppError, ERROR_STATUS, type ErrorCode } from '../../platform/errors.ts';
import type { Id } from '../../platform/ids.ts';
import { LIMITS } from '../../platform/limits.ts';
import { sum, multiply, type Money } from '../../platform/money.ts';
import { emit } from '../../events/outbox.ts';
import type { CartLineRow, CartRow } from '../carts/repository.ts';
import type { CartsService } from '../carts/service.ts';
import type { CatalogService } from '../catalog/service.ts';
import type { InventoryService } from '../inventory/service.ts';
import { PaymentProviderError } from '../payments/provider.ts';
import type { PaymentRecord, PaymentsService } from '../payments/service.ts';
import * as repo from './repository.ts';
import { canTransition, type OrderStatus } from './state-machine.ts';
import type { Order, OrdersService } from './service.ts';

export interface CheckoutRequest {
  cartId: Id;
  payment: { token: string };
}

/** What the HTTP layer sends: stored with the idempotency key and replayed verbatim. */
export interface CheckoutResponse {
  status: number;
  body: { order: Order } | { error: { code: string; message: string; details?: Record<string, unknown> } };
  replayed: boolean;
}

export interface SagaDeps {
  dbs: Databases;
  carts: CartsService;
  catalog: CatalogService;
  inventory: InventoryService;
  payments: PaymentsService;
  orders: OrdersService;
  log: Logger;
  reservationTtlMs: number;
  abandonedOrderMs: number;
  /** No request lives longer: the lease of an in-progress idempotency key. */
  requestTimeoutMs: number;
}

/** Between attempts to give back a key's lease while its shard cannot take the write. */
const LEASE_RELEASE_RETRY_MS = 100;

function errorBody(code: ErrorCode, message: string, details?: Record<string, unknown>): CheckoutResponse['body'] {
  return details ? { error: { code, message, details } } : { error: { code, message } };
}

function requestHash(req: CheckoutRequest): string {
  return createHash('sha256').update(JSON.stringify([req.cartId, req.payment.token])).digest('hex');
}

export class CheckoutSaga {
  constructor(private readonly d: SagaDeps) {}

  async checkout(userId: Id, key: string, req: CheckoutRequest): Promise<CheckoutResponse> {
    const db = this.d.dbs.forId(userId);
    const hash = requestHash(req);
    const claim = await repo.claimIdempotencyKey(db, userId, key, hash, this.d.requestTimeoutMs, req.cartId);
    if (!claim.claimed) {
      const previous = claim.row;
      if (previous.request_hash !== hash) {
        throw new AppError('idempotency_key_reused', 'this Idempotency-Key was used with a different request body');
      }
      if (previous.state === 'in_progress') throw new AppError('idempotency_conflict', 'a request with this Idempotency-Key is in progress');
      return { status: previous.response_status ?? 500, body: previous.response_body as CheckoutResponse['body'], replayed: true };
    }
    try {
      if (claim.resumeOrderId) return await this.resume(claim.resumeOrderId, req.payment.token);
      if (!claim.cart) throw new NothingHappened(new AppError('not_found', 'cart not found'));
      return await this.run(userId, key, claim.newOrderId, req, claim.cart);
    } catch (err) {
      // Failures before any side effect free the key for a retry; later ones were recorded.
      if (err instanceof NothingHappened) {
        await repo.dropIdempotencyKey(db, userId, key);
        throw err.cause;
      }
      // The saga stopped part-way on a transient failure (503: a failover, a shard-move fence)
      // and this request is over: give the key's lease back so that a retry resumes the saga
      // now, not a request timeout later with 409s meanwhile. A defect (500) keeps the lease, as
      // a crash would: the sweeper settles the saga, or a retry resumes it after the lease.
      if (err instanceof AppError && err.code === 'unavailable') this.releaseLease(userId, key, claim.leaseToken);
      throw err;
    }
  }

  /**
   * Give a key's lease back, in the background: while the user's shard is fenced or failing
   * over the write cannot land, so it is tried again (routing afresh each time, so after a
   * shard move it finds the key on its new cluster) until the lease would have ended anyway.
   */
  private releaseLease(userId: Id, key: string, leaseToken: string): void {
    const giveUpAt = Date.now() + this.d.requestTimeoutMs;
    const attempt = (): void => {
      Promise.resolve()
        .then(() => repo.releaseKeyLease(this.d.dbs.forId(userId), userId, key, leaseToken))
        .catch(() => {
          if (Date.now() < giveUpAt) setTimeout(attempt, LEASE_RELEASE_RETRY_MS).unref();
        });
    };
    attempt();
  }

  /** Steps 2 to 6 for a newly claimed key; `found`: the cart as read with the claim. */
  private async run(userId: Id, key: string, orderId: Id, req: CheckoutRequest, found: { cart: CartRow; lines: CartLineRow[] }): Promise<CheckoutResponse> {
    const { dbs, catalog, inventory } = this.d;
    const { cart, lines } = found;
    if (cart.status !== 'open') throw new NothingHappened(new AppError('cart_not_open', 'this cart has been checked out'));
    if (lines.length === 0) throw new NothingHappened(new AppError('cart_empty', 'the cart has no lines'));

    // 2. Server-side prices only.
    const prices = await catalog.priceSkus(lines.map((l) => l.sku), cart.currency);
    const missing = lines.find((l) => !prices.has(l.sku));
    if (missing) throw new NothingHappened(new AppError('price_unavailable', `SKU ${missing.sku} is not for sale in ${cart.currency}`));
    const orderLines = lines.map((l) => {
      const p = prices.get(l.sku);
      if (!p) throw new Error('unreachable: priced above');
      return { sku: l.sku, title: p.title, quantity: l.quantity, unitAmount: p.unitPrice.amount };
    });
    const total = sum(lines.map((l) => multiply(prices.get(l.sku)!.unitPrice, l.quantity)), cart.currency);

    // 3. Reserve, all or nothing, under the order's id (drawn with the key's claim).
    // A failure here changed nothing that lasts: the reservation statement is atomic, and one
    // that committed before its connection died simply expires.
    const reservation = await inventory.reserve(orderId, lines, this.d.reservationTtlMs).catch((e: unknown) => {
      throw new NothingHappened(e);
    });
    if (!reservation.ok) {
      throw new NothingHappened(
        new AppError('out_of_stock', `not enough stock for ${reservation.sku}`, { sku: reservation.sku, requested: reservation.requested, available: reservation.available }),
      );
    }

    // 4. Close the cart (if its lines are still the ones priced and reserved), the order, its
    // lines, the key's link to it and the event: one statement on the user's shard.
    const created = await repo.createOrder(dbs.forId(userId), {
      id: orderId, userId, cartId: req.cartId, key, currency: cart.currency, totalAmount: total.amount,
      cartLines: lines, lines: orderLines, event: { orderId, userId, total },
    }).catch(async (e: unknown) => {
      await inventory.release(orderId, 'order_not_created').catch(() => undefined); // else it expires
      throw new NothingHappened(e);
    });
    if (created !== 'created') {
      await inventory.release(orderId, created === 'changed' ? 'order_not_created' : 'cart_closed');
      throw new NothingHappened(
        created === 'changed'
          ? new AppError('cart_changed', 'the cart changed during checkout; review it and try again')
          : new AppError('cart_not_open', 'this cart has been checked out'),
      );
    }

    return this.pay(userId, orderId, total, req.payment.token);
  }

  /** Steps 5 and 6, for a new order or one a failed earlier attempt left pending. */
  private async pay(userId: Id, orderId: Id, total: Money, token: string): Promise<CheckoutResponse> {
    // 5. Authorize, outside any transaction (idempotent by order id at the provider).
    let payment;
    try {
      payment = await this.d.payments.authorize(userId, orderId, total, token);
    } catch (err) {
      if (!(err instanceof PaymentProviderError)) throw err;
      return respond(await this.compensate(orderId, 'payment_unavailable', 'unavailable', 'the payment provider is unavailable; try again'));
    }
    if (payment.status === 'declined') {
      return respond(await this.compensate(orderId, 'payment_declined', 'payment_declined', `the payment was declined (${payment.declineReason ?? 'declined'})`));
    }

    // 6. Commit: the ledger first (PostgreSQL is the arbiter), then the money, then the order.
    return respond(await this.complete(orderId, payment));
  }

  /** A retry after the lease: finish the order the first attempt created, from where it stopped. */
  private async resume(orderId: Id, token: string): Promise<CheckoutResponse> {
    const order = await this.d.orders.find(orderId);
    if (!order) throw new AppError('unavailable', 'the first attempt of this checkout is still settling; retry shortly');
    if (order.status === 'pending_payment') return this.pay(order.userId, orderId, order.total, token);
    // Already final (the sweeper or another retry got there): make sure the answer is recorded.
    return respond(await this.settleKey(orderId));
  }

  /** Record the final answer of a finished order on its idempotency key. */
  private async settleKey(orderId: Id): Promise<repo.KeyAnswer | undefined> {
    const db = this.d.dbs.forId(orderId);
    const row = await repo.findOrder(db, orderId);
    if (!row) return undefined;
    const order = row.document;
    if (order.status === 'cancelled') {
      const code: ErrorCode = row.cancel_reason === 'payment_declined' ? 'payment_declined' : 'reservation_expired';
      return repo.answerKeyForOrder(db, orderId, ERROR_STATUS[code], errorBody(code, `the order was cancelled (${row.cancel_reason ?? 'cancelled'})`, { orderId }));
    }
    return repo.answerKeyForOrder(db, orderId, 201, { order });
  }

  /**
   * Step 6, idempotent: consume → capture → paid. Falls back to compensation if the stock is gone.
   * Returns the answer the order's key holds. `payment`: the record the caller already holds.
   */
  async complete(orderId: Id, payment?: PaymentRecord): Promise<repo.KeyAnswer | undefined> {
    const consumed = await this.d.inventory.consume(orderId);
    if (!consumed.ok && consumed.code === 'reservation_not_found') {
      // This saga reserved before it created the order, so "no reservation" for a young order
      // means the reservation is in doubt (its commit raced a failover of the inventory
      // cluster), not absent: cancelling now could leave a live reservation behind a cancelled
      // order. For a short while answer 503: a retry then finds it, or, past the window, cancels
      // (a reservation that PostgreSQL refused after Redis admitted it stays absent).
      const order = await this.d.orders.find(orderId);
      if (order && Date.now() - Date.parse(order.createdAt) < LIMITS.reservationInDoubtMs) {
        throw new AppError('unavailable', 'the stock reservation of this order cannot be confirmed right now; retry shortly');
      }
    }
    if (!consumed.ok) {
      return this.compensate(orderId, 'reservation_expired', 'reservation_expired', 'the stock reservation expired before payment completed');
    }
    await this.d.payments.capture(orderId, payment);
    return repo.payOrder(this.d.dbs.forId(orderId), orderId);
  }

  /**
   * Undo a pending order: release stock, void money, cancel, reopen the cart, record the answer.
   * Returns the answer the order's key holds.
   */
  async compensate(orderId: Id, reason: string, code: ErrorCode, message: string): Promise<repo.KeyAnswer | undefined> {
    const released = await this.d.inventory.release(orderId, reason);
    if (!released.ok && released.code === 'reservation_consumed') {
      // The reservation was consumed: the sale happened; finishing is the only correct move.
      return this.complete(orderId);
    }
    await this.d.payments.void(orderId);
    const db = this.d.dbs.forId(orderId);
    return transaction(db, async (tx) => {
      const row = await repo.findOrder(tx, orderId);
      if (!row) return undefined;
      if (await repo.transition(tx, orderId, 'pending_payment', 'cancelled', 'checkout', reason)) {
        await this.d.carts.reopen(tx, row.user_id, row.cart_id, orderId);
        await emit(tx, 'order.cancelled', orderId, { orderId, reason });
      }
      return repo.answerKeyForOrder(tx, orderId, ERROR_STATUS[code], errorBody(code, message, { orderId }));
    });
  }

  /**
   * The sweeper: release expired reservations and settle their orders, then finish or
   * compensate pending orders older than abandonedOrderMs (a crashed checkout).
   */
  async sweep(): Promise<{ released: number; settled: number; failed: number }> {
    let settled = 0;
    let failed = 0;
    // One order (or one shard cluster in failover) that cannot be settled now must not stop the
    // others: each is tried on its own, and the next sweep tries the failures again.
    const settleEach = async (orderIds: readonly Id[]): Promise<void> => {
      for (const orderId of orderIds) {
        try {
          if (await this.settle(orderId)) settled++;
        } catch (err) {
          failed++;
          this.d.log.warn({ orderId, err: String(err) }, 'sweeper could not settle an order now; next sweep retries');
        }
      }
    };
    const released = await this.d.inventory.releaseExpired();
    await settleEach(released);
    for (const cluster of this.d.dbs.shardClusters()) {
      try {
        await settleEach(await repo.stalePendingOrderIds(cluster.pool, this.d.abandonedOrderMs, LIMITS.sweeperBatchMax));
        await repo.dropStaleKeys(cluster.pool, this.d.abandonedOrderMs);
      } catch (err) {
        this.d.log.warn({ cluster: cluster.spec.name, err: String(err) }, 'sweeper could not read a shard cluster now; next sweep retries');
      }
    }
    return { released: released.length, settled, failed };
  }

  /** Drive one pending order to a final state from what the stores say happened. */
  async settle(orderId: Id): Promise<boolean> {
    const order = await this.d.orders.find(orderId);
    if (order?.status !== 'pending_payment') return false;
    const reservation = await this.d.inventory.reservationStatus(orderId);
    const payment = await this.d.payments.find(orderId);
    if (reservation === 'consumed') {
      await this.complete(orderId);
    } else if (reservation === 'live' && payment?.status === 'authorized') {
      await this.complete(orderId); // consume() itself refuses an expired reservation
    } else {
      const why = payment?.status === 'declined' ? 'payment_declined' : 'abandoned';
      await this.compensate(orderId, why, why === 'payment_declined' ? 'payment_declined' : 'reservation_expired', 'the checkout was abandoned and has been cancelled');
    }
    return true;
  }

  /** Admin cancellation of a pending order goes through compensation; other moves are plain. */
  async adminTransition(orderId: Id, to: OrderStatus): Promise<Order> {
    const order = await this.d.orders.get(orderId);
    if (to === 'cancelled' && order.status === 'pending_payment' && canTransition(order.status, to)) {
      await this.compensate(orderId, 'cancelled_by_admin', 'reservation_expired', 'the order was cancelled by an admin');
      return this.d.orders.get(orderId);
    }
    return this.d.orders.adminTransition(orderId, to);
  }
}

/** The answer recorded on the key, as the HTTP layer sends it (a replay sends the same). */
function respond(answer: repo.KeyAnswer | undefined): CheckoutResponse {
  if (!answer) throw new AppError('unavailable', 'the checkout did not finish; retry with the same Idempotency-Key');
  return { status: answer.status, body: answer.body as CheckoutResponse['body'], replayed: false };
}

/** A failure before the saga changed anything: the idempotency key is released. */
class NothingHappened extends Error {
  constructor(override readonly cause: unknown) {
    super('checkout failed before any side effect');
  }
}
