import type { Sql } from '../../platform/db.ts';
import type { Id } from '../../platform/ids.ts';
import type { OrderStatus } from './state-machine.ts';

export interface OrderRow {
  id: Id;
  user_id: Id;
  cart_id: Id;
  status: OrderStatus;
  currency: string;
  total_amount: string;
  cancel_reason: string | null;
  created_at: Date;
  updated_at: Date;
  paid_at: Date | null;
  lines: { lineNo: number; sku: string; title: string; quantity: number; unitAmount: number }[];
}

export interface NewOrderLine {
  sku: string;
  title: string;
  quantity: number;
  unitAmount: number;
}

const orderSelect = (sql: Sql): ReturnType<typeof sql> => sql`
  SELECT o.id::text, o.user_id::text, o.cart_id::text, o.status, o.currency, o.total_amount::text, o.cancel_reason,
         o.created_at, o.updated_at, o.paid_at,
         COALESCE((SELECT json_agg(json_build_object('lineNo', l.line_no, 'sku', l.sku, 'title', l.title,
                                                     'quantity', l.quantity, 'unitAmount', l.unit_amount) ORDER BY l.line_no)
                   FROM order_lines l WHERE l.order_id = o.id), '[]'::json) AS lines
  FROM orders o`;

export async function newOrderId(sql: Sql, shard: number): Promise<Id> {
  const [row] = await sql<{ id: Id }[]>`SELECT meridian_id(${shard})::text AS id`;
  if (!row) throw new Error('meridian_id() returned nothing');
  return row.id;
}

export async function insertOrder(
  sql: Sql,
  o: { id: Id; userId: Id; cartId: Id; currency: string; totalAmount: number; lines: readonly NewOrderLine[] },
): Promise<void> {
  await sql`
    INSERT INTO orders (id, user_id, cart_id, status, currency, total_amount)
    VALUES (${o.id}, ${o.userId}, ${o.cartId}, 'pending_payment', ${o.currency}, ${o.totalAmount})`;
  await sql`
    INSERT INTO order_lines (order_id, line_no, user_id, sku, title, quantity, unit_amount)
    SELECT ${o.id}, n, ${o.userId}, sku, title, quantity, unit_amount
    FROM unnest(${o.lines.map((l) => l.sku)}::text[], ${o.lines.map((l) => l.title)}::text[],
                ${o.lines.map((l) => l.quantity)}::int[], ${o.lines.map((l) => l.unitAmount)}::bigint[])
         WITH ORDINALITY AS t(sku, title, quantity, unit_amount, n)`;
  await sql`INSERT INTO order_history (order_id, user_id, from_status, to_status, actor) VALUES (${o.id}, ${o.userId}, NULL, 'pending_payment', 'checkout')`;
}

export async function findOrder(sql: Sql, orderId: Id, userId?: Id): Promise<OrderRow | undefined> {
  const [row] = await sql<OrderRow[]>`
    ${orderSelect(sql)} WHERE o.id = ${orderId} ${userId ? sql`AND o.user_id = ${userId}` : sql``}`;
  return row;
}

export async function listUserOrders(sql: Sql, userId: Id, beforeId: Id | undefined, limit: number, status?: OrderStatus): Promise<OrderRow[]> {
  return sql<OrderRow[]>`
    ${orderSelect(sql)} WHERE o.user_id = ${userId} ${beforeId ? sql`AND o.id < ${beforeId}` : sql``}
      ${status ? sql`AND o.status = ${status}` : sql``}
    ORDER BY o.id DESC LIMIT ${limit}`;
}

export async function listOrders(sql: Sql, status: OrderStatus | undefined, beforeId: Id | undefined, limit: number): Promise<OrderRow[]> {
  return sql<OrderRow[]>`
    ${orderSelect(sql)} WHERE TRUE ${status ? sql`AND o.status = ${status}` : sql``}
      ${beforeId ? sql`AND o.id < ${beforeId}` : sql``}
    ORDER BY o.id DESC LIMIT ${limit}`;
}

/** Conditional move: only succeeds from the expected status, so concurrent movers cannot both win. */
export async function transition(
  sql: Sql,
  orderId: Id,
  from: OrderStatus,
  to: OrderStatus,
  actor: string,
  cancelReason?: string,
): Promise<boolean> {
  const rows = await sql<{ user_id: Id }[]>`
    UPDATE orders SET status = ${to}, updated_at = now(),
      paid_at = CASE WHEN ${to} = 'paid' THEN now() ELSE paid_at END,
      cancel_reason = COALESCE(${cancelReason ?? null}, cancel_reason)
    WHERE id = ${orderId} AND status = ${from} RETURNING user_id::text`;
  const row = rows[0];
  if (!row) return false;
  await sql`INSERT INTO order_history (order_id, user_id, from_status, to_status, actor) VALUES (${orderId}, ${row.user_id}, ${from}, ${to}, ${actor})`;
  return true;
}

export async function stalePendingOrderIds(sql: Sql, olderThanMs: number, limit: number): Promise<Id[]> {
  const rows = await sql<{ id: Id }[]>`
    SELECT id::text FROM orders
    WHERE status = 'pending_payment' AND created_at < now() - ${olderThanMs} * interval '1 millisecond'
    ORDER BY created_at LIMIT ${limit}`;
  return rows.map((r) => r.id);
}

export interface IdempotencyRow {
  request_hash: string;
  state: 'in_progress' | 'completed';
  order_id: Id | null;
  response_status: number | null;
  response_body: unknown;
}

export type KeyClaim = { claimed: true; resumeOrderId: Id | null } | { claimed: false; row: IdempotencyRow };

/**
 * Claims a key. A key left in progress by a request older than leaseMs is taken over by a retry
 * with the same body: no request lives longer than the request timeout, so its first holder is
 * gone (its process died, or it failed where it could not even record the outcome). If that
 * holder had created the order, the retry resumes the saga from there.
 */
export async function claimIdempotencyKey(sql: Sql, userId: Id, key: string, requestHash: string, leaseMs: number): Promise<KeyClaim> {
  const [claimed] = await sql<{ order_id: Id | null }[]>`
    INSERT INTO idempotency_keys (user_id, key, request_hash, state) VALUES (${userId}, ${key}, ${requestHash}, 'in_progress')
    ON CONFLICT (user_id, key) DO UPDATE SET updated_at = now()
      WHERE idempotency_keys.state = 'in_progress'
        AND idempotency_keys.request_hash = EXCLUDED.request_hash
        AND idempotency_keys.updated_at < now() - ${leaseMs} * interval '1 millisecond'
    RETURNING order_id::text`;
  if (claimed) return { claimed: true, resumeOrderId: claimed.order_id };
  const [row] = await sql<IdempotencyRow[]>`
    SELECT request_hash, state, order_id::text, response_status, response_body FROM idempotency_keys
    WHERE user_id = ${userId} AND key = ${key}`;
  if (!row) throw new Error('idempotency key vanished');
  return { claimed: false, row };
}

export async function attachOrderToKey(sql: Sql, userId: Id, key: string, orderId: Id): Promise<void> {
  await sql`UPDATE idempotency_keys SET order_id = ${orderId}, updated_at = now() WHERE user_id = ${userId} AND key = ${key}`;
}

export async function completeIdempotencyKey(sql: Sql, userId: Id, key: string, status: number, body: unknown): Promise<void> {
  await sql`
    UPDATE idempotency_keys SET state = 'completed', response_status = ${status}, response_body = ${sql.json(body as never)}, updated_at = now()
    WHERE user_id = ${userId} AND key = ${key}`;
}

export async function completeKeyForOrder(sql: Sql, orderId: Id, status: number, body: unknown): Promise<void> {
  await sql`
    UPDATE idempotency_keys SET state = 'completed', response_status = ${status}, response_body = ${sql.json(body as never)}, updated_at = now()
    WHERE order_id = ${orderId} AND state = 'in_progress'`;
}

/** Forget a key whose request failed before any side effect, so the client may retry with it. */
export async function dropIdempotencyKey(sql: Sql, userId: Id, key: string): Promise<void> {
  await sql`DELETE FROM idempotency_keys WHERE user_id = ${userId} AND key = ${key} AND state = 'in_progress'`;
}

/** Keys of checkouts that died before creating their order: free them for a retry. */
export async function dropStaleKeys(sql: Sql, olderThanMs: number): Promise<number> {
  const rows = await sql`
    DELETE FROM idempotency_keys
    WHERE state = 'in_progress' AND order_id IS NULL AND created_at < now() - ${olderThanMs} * interval '1 millisecond'
    RETURNING key`;
  return rows.length;
}
