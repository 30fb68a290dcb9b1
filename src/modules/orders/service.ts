// Orders: history for buyers, a cross-shard list for admins, and the state machine.
import type { Databases } from '../../platform/db.ts';
import { transaction } from '../../platform/db.ts';
import { withDeadline } from '../../platform/deadline.ts';
import { AppError } from '../../platform/errors.ts';
import { encodeCursor } from '../../platform/http.ts';
import { LIMITS } from '../../platform/limits.ts';
import type { Id } from '../../platform/ids.ts';
import type { Money } from '../../platform/money.ts';
import { emit } from '../../events/outbox.ts';
import type { PaymentsService } from '../payments/service.ts';
import * as repo from './repository.ts';
import { canTransition, SYSTEM_ONLY_TARGETS, type OrderStatus } from './state-machine.ts';

export interface OrderLine {
  sku: string;
  title: string;
  quantity: number;
  unitPrice: Money;
  lineTotal: Money;
}

export interface Order {
  id: Id;
  userId: Id;
  status: OrderStatus;
  total: Money;
  lines: OrderLine[];
  cancelReason: string | null;
  createdAt: string;
  updatedAt: string;
  paidAt: string | null;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export class OrdersService {
  constructor(
    private readonly dbs: Databases,
    private readonly payments: PaymentsService,
  ) {}

  async get(orderId: Id, userId?: Id): Promise<Order> {
    const row = await repo.findOrder(this.dbs.forId(orderId), orderId, userId);
    if (!row) throw new AppError('not_found', 'order not found');
    return row.document;
  }

  async find(orderId: Id): Promise<Order | undefined> {
    const row = await repo.findOrder(this.dbs.forId(orderId), orderId);
    return row?.document;
  }

  async history(userId: Id, beforeId: Id | undefined, limit: number, status?: OrderStatus): Promise<Page<Order>> {
    const rows = await repo.listUserOrders(this.dbs.forId(userId), userId, beforeId, limit + 1, status);
    return page(rows.map((r) => r.document), limit);
  }

  /**
   * Admin list across every shard database: each returns its next `limit + 1` rows below the
   * cursor, newest first; merging by id (time-ordered and unique) gives one stable order with no
   * duplicates or gaps between pages. Each shard has fanOutTimeoutMs to answer. If one cannot,
   * the whole request is 503 `unavailable` naming it — not a partial page: a page missing one
   * shard's rows would move the cursor past them, a gap the admin could never see.
   */
  async adminList(status: OrderStatus | undefined, beforeId: Id | undefined, limit: number): Promise<Page<Order>> {
    const clusters = this.dbs.shardClusters();
    const results = await Promise.allSettled(
      clusters.map((c) => withDeadline(repo.listOrders(c.pool, status, beforeId, limit + 1), LIMITS.fanOutTimeoutMs, () => new Error(`no answer in ${LIMITS.fanOutTimeoutMs} ms`))),
    );
    const failed = clusters.filter((_, i) => results[i]?.status === 'rejected').map((c) => c.spec.name);
    if (failed.length > 0) {
      throw new AppError('unavailable', `shard cluster(s) ${failed.join(', ')} did not answer; retry shortly`, { clusters: failed });
    }
    const merged = results
      .flatMap((r) => (r.status === 'fulfilled' ? r.value : []))
      .sort((a, b) => (BigInt(b.id) > BigInt(a.id) ? 1 : BigInt(b.id) < BigInt(a.id) ? -1 : 0));
    return page(merged.map((r) => r.document), limit);
  }

  /** Admin moves along the transition table; money moves with them (refund). */
  async adminTransition(orderId: Id, to: OrderStatus): Promise<Order> {
    const order = await this.get(orderId);
    if (SYSTEM_ONLY_TARGETS.includes(to) || !canTransition(order.status, to)) {
      throw new AppError('illegal_transition', `an order cannot move from ${order.status} to ${to}`, { from: order.status, to });
    }
    if (to === 'refunded') await this.payments.refund(orderId);
    if (to === 'cancelled') await this.payments.void(orderId);
    const moved = await transaction(this.dbs.forId(orderId), async (tx) => {
      if (!(await repo.transition(tx, orderId, order.status, to, 'admin', to === 'cancelled' ? 'cancelled_by_admin' : undefined))) return false;
      await emit(tx, to === 'cancelled' ? 'order.cancelled' : 'order.transitioned', orderId, { orderId, from: order.status, to });
      return true;
    });
    if (!moved) throw new AppError('illegal_transition', 'the order changed meanwhile; reload it and try again');
    return this.get(orderId);
  }
}

function page<T extends { id: Id }>(items: T[], limit: number): Page<T> {
  const slice = items.slice(0, limit);
  const last = slice[slice.length - 1];
  return { items: slice, nextCursor: items.length > limit && last ? encodeCursor([last.id]) : null };
}

