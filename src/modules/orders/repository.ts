import type { Sql } from '../../platform/db.ts';
import { randomBytes } from 'node:crypto';
import { shardOfId, type Id } from '../../platform/ids.ts';
// The cart's SQL stays in its module; the checkout's key claim embeds it to save a round trip.
import { cartFromJson, cartWithLinesJson, type CartJson, type CartLineRow, type CartRow } from '../carts/repository.ts';
import type { OrderStatus } from './state-machine.ts';
import type { Order } from './service.ts';

/** An order's row: the columns the saga works with, and the order as the API shows it. */
export interface OrderRow {
  id: Id;
  user_id: Id;
  cart_id: Id;
  status: OrderStatus;
  cancel_reason: string | null;
  /** The order_documents view (migrations/005): the one definition of the API's order shape. */
  document: Order;
}

export interface NewOrderLine {
  sku: string;
  title: string;
  quantity: number;
  unitAmount: number;
}

/** The columns of OrderRow, from the order_documents view (migrations/005). */
const orderSelect = (sql: Sql): ReturnType<typeof sql> => sql`
  SELECT o.id::text, o.user_id::text, o.cart_id::text, o.status, o.cancel_reason, o.document FROM order_documents o`;

export type CreateOutcome = 'created' | 'not_open' | 'changed';

/**
 * Step 4 of the saga in one statement (order_create, migrations/003): close the cart if its lines
 * are still `cartLines`, write the order, its lines and history, attach the order to the key and
 * write the event. Writes nothing unless the answer is 'created'.
 */
export async function createOrder(
  sql: Sql,
  o: {
    id: Id;
    userId: Id;
    cartId: Id;
    key: string;
    currency: string;
    totalAmount: number;
    cartLines: readonly { id: Id; sku: string; quantity: number }[];
    lines: readonly NewOrderLine[];
    event: Record<string, unknown>;
  },
): Promise<CreateOutcome> {
  const [row] = await sql<{ outcome: CreateOutcome }[]>`
    SELECT order_create(${o.id}, ${o.userId}, ${o.cartId}, ${o.key}, ${o.currency}, ${o.totalAmount},
                        ${o.cartLines.map((l) => l.id)}::bigint[], ${o.lines.map((l) => l.sku)}::text[], ${o.lines.map((l) => l.title)}::text[],
                        ${o.lines.map((l) => l.quantity)}::int[], ${o.lines.map((l) => l.unitAmount)}::bigint[],
                        ${sql.json(o.event as never)}) AS outcome`;
  if (!row) throw new Error('order_create returned nothing');
  return row.outcome;
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

/** Conditional move (order_transition, migrations/003): only from the expected status, so concurrent movers cannot both win. */
export async function transition(
  sql: Sql,
  orderId: Id,
  from: OrderStatus,
  to: OrderStatus,
  actor: string,
  cancelReason?: string,
): Promise<boolean> {
  const [row] = await sql<{ moved: boolean }[]>`SELECT order_transition(${orderId}, ${from}, ${to}, ${actor}, ${cancelReason ?? null}) AS moved`;
  return row?.moved === true;
}

/**
 * Record the capture, mark the order paid, write the event and record the answer on the order's
 * key, in one statement (order_pay, migrations/005). Idempotent. Returns the answer the key holds;
 * undefined for an unknown order or one without a key.
 */
export async function payOrder(sql: Sql, orderId: Id): Promise<KeyAnswer | undefined> {
  const [row] = await sql<{ answer: KeyAnswer | null }[]>`SELECT order_pay(${orderId}) AS answer`;
  return row?.answer ?? undefined;
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

export type KeyClaim =
  | { claimed: true; resumeOrderId: Id | null; newOrderId: Id; leaseToken: string; cart: { cart: CartRow; lines: CartLineRow[] } | undefined }
  | { claimed: false; row: IdempotencyRow };

/**
 * Claims a key, and draws the id the saga's order will have and reads the cart to check out, in
 * the same round trip. A key left in progress by a request older than leaseMs is taken over by a
 * retry with the same body: no request lives longer than the request timeout, so its first holder
 * is gone (its process died, or it failed where it could not even record the outcome). If that
 * holder had created the order, the retry resumes the saga from there.
 */
export async function claimIdempotencyKey(sql: Sql, userId: Id, key: string, requestHash: string, leaseMs: number, cartId: Id): Promise<KeyClaim> {
  const leaseToken = randomLeaseToken();
  // The cart is read from the statement's snapshot, taken before the claim: a cart changed by a
  // request racing this one is caught by createOrder, which checks the lines it was given.
  const [claimed] = await sql<{ order_id: Id | null; new_order_id: Id; cart: CartJson | null }[]>`
    WITH claim AS (
      INSERT INTO idempotency_keys (user_id, key, request_hash, state, lease_token) VALUES (${userId}, ${key}, ${requestHash}, 'in_progress', ${leaseToken})
      ON CONFLICT (user_id, key) DO UPDATE SET updated_at = now(), lease_token = EXCLUDED.lease_token
        WHERE idempotency_keys.state = 'in_progress'
          AND idempotency_keys.request_hash = EXCLUDED.request_hash
          AND idempotency_keys.updated_at < now() - ${leaseMs} * interval '1 millisecond'
      RETURNING order_id)
    SELECT order_id::text, meridian_id(${shardOfId(userId)})::text AS new_order_id, ${cartWithLinesJson(sql, userId, cartId)} AS cart FROM claim`;
  if (claimed) return { claimed: true, resumeOrderId: claimed.order_id, newOrderId: claimed.new_order_id, leaseToken, cart: cartFromJson(claimed.cart) };
  const [row] = await sql<IdempotencyRow[]>`
    SELECT request_hash, state, order_id::text, response_status, response_body FROM idempotency_keys
    WHERE user_id = ${userId} AND key = ${key}`;
  if (!row) throw new Error('idempotency key vanished');
  return { claimed: false, row };
}

export interface KeyAnswer {
  status: number;
  body: unknown;
}

/**
 * Record the final answer of an order's checkout on its key, unless one is recorded already
 * (order_answer, migrations/003). Returns the answer the key holds, so the caller sends exactly
 * what a replay will; undefined when the order has no key.
 */
export async function answerKeyForOrder(sql: Sql, orderId: Id, status: number, body: unknown): Promise<KeyAnswer | undefined> {
  const [row] = await sql<{ answer: KeyAnswer | null }[]>`SELECT order_answer(${orderId}, ${status}, ${sql.json(body as never)}) AS answer`;
  return row?.answer ?? undefined;
}

/**
 * Give back the lease of a key this request claimed (its token) and no longer works on: a retry
 * may take it over at once. Returns whether the lease was still this request's to give back.
 */
export async function releaseKeyLease(sql: Sql, userId: Id, key: string, leaseToken: string): Promise<boolean> {
  const rows = await sql`
    UPDATE idempotency_keys SET updated_at = '-infinity', lease_token = NULL
    WHERE user_id = ${userId} AND key = ${key} AND state = 'in_progress' AND lease_token = ${leaseToken}
    RETURNING key`;
  return rows.length > 0;
}

function randomLeaseToken(): string {
  return randomBytes(8).readBigInt64BE().toString();
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
