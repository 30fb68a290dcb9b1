import type { Sql } from '../../platform/db.ts';
import type { Id } from '../../platform/ids.ts';

export interface CartRow {
  id: Id;
  user_id: Id;
  currency: string;
  status: 'open' | 'checked_out';
  order_id: Id | null;
  created_at: Date;
  updated_at: Date;
}

export interface CartLineRow {
  id: Id;
  sku: string;
  quantity: number;
}

export async function insertCart(sql: Sql, shard: number, userId: Id, currency: string): Promise<CartRow> {
  const [row] = await sql<CartRow[]>`
    INSERT INTO carts (id, user_id, currency) VALUES (meridian_id(${shard}), ${userId}, ${currency})
    RETURNING id::text, user_id::text, currency, status, order_id::text, created_at, updated_at`;
  if (!row) throw new Error('insert returned nothing');
  return row;
}

export async function findCart(sql: Sql, userId: Id, cartId: Id, forUpdate = false): Promise<CartRow | undefined> {
  const [row] = await sql<CartRow[]>`
    SELECT id::text, user_id::text, currency, status, order_id::text, created_at, updated_at
    FROM carts WHERE id = ${cartId} AND user_id = ${userId} ${forUpdate ? sql`FOR UPDATE` : sql``}`;
  return row;
}

export async function findLines(sql: Sql, userId: Id, cartId: Id): Promise<CartLineRow[]> {
  return sql<CartLineRow[]>`
    SELECT id::text, sku, quantity FROM cart_lines WHERE cart_id = ${cartId} AND user_id = ${userId} ORDER BY id`;
}

/**
 * A cart and its lines as one JSON value (NULL when the user has no such cart), for any statement
 * that needs the cart in its own round trip: findCartWithLines here, and the checkout's claim of
 * its idempotency key (orders/repository.ts). Read it back with cartFromJson.
 */
export function cartWithLinesJson(sql: Sql, userId: Id, cartId: Id): ReturnType<Sql> {
  return sql`(
    SELECT json_build_object(
             'id', c.id::text, 'user_id', c.user_id::text, 'currency', c.currency, 'status', c.status,
             'order_id', c.order_id::text, 'created_at', c.created_at, 'updated_at', c.updated_at,
             'lines', COALESCE((SELECT json_agg(json_build_object('id', l.id::text, 'sku', l.sku, 'quantity', l.quantity) ORDER BY l.id)
                                FROM cart_lines l WHERE l.cart_id = c.id AND l.user_id = c.user_id), '[]'::json))
    FROM carts c WHERE c.id = ${cartId} AND c.user_id = ${userId})`;
}

export interface CartJson extends Omit<CartRow, 'created_at' | 'updated_at'> {
  created_at: string;
  updated_at: string;
  lines: CartLineRow[];
}

export function cartFromJson(json: CartJson | null): { cart: CartRow; lines: CartLineRow[] } | undefined {
  if (!json) return undefined;
  const { lines, created_at, updated_at, ...rest } = json;
  return { cart: { ...rest, created_at: new Date(created_at), updated_at: new Date(updated_at) }, lines };
}

/** A cart and its lines in one round trip (the lines in id order). */
export async function findCartWithLines(sql: Sql, userId: Id, cartId: Id): Promise<{ cart: CartRow; lines: CartLineRow[] } | undefined> {
  const [row] = await sql<{ cart: CartJson | null }[]>`SELECT ${cartWithLinesJson(sql, userId, cartId)} AS cart`;
  return cartFromJson(row?.cart ?? null);
}

export async function insertLine(sql: Sql, shard: number, userId: Id, cartId: Id, sku: string, quantity: number): Promise<Id> {
  const [row] = await sql<{ id: Id }[]>`
    INSERT INTO cart_lines (id, cart_id, user_id, sku, quantity)
    VALUES (meridian_id(${shard}), ${cartId}, ${userId}, ${sku}, ${quantity}) RETURNING id::text`;
  if (!row) throw new Error('insert returned nothing');
  return row.id;
}

export async function updateLine(sql: Sql, userId: Id, cartId: Id, lineId: Id, quantity: number): Promise<boolean> {
  const rows = await sql`
    UPDATE cart_lines SET quantity = ${quantity} WHERE id = ${lineId} AND cart_id = ${cartId} AND user_id = ${userId} RETURNING id`;
  return rows.length === 1;
}

export async function deleteLine(sql: Sql, userId: Id, cartId: Id, lineId: Id): Promise<boolean> {
  const rows = await sql`DELETE FROM cart_lines WHERE id = ${lineId} AND cart_id = ${cartId} AND user_id = ${userId} RETURNING id`;
  return rows.length === 1;
}

export async function touchCart(sql: Sql, cartId: Id): Promise<void> {
  await sql`UPDATE carts SET updated_at = now() WHERE id = ${cartId}`;
}

export async function reopenCart(sql: Sql, userId: Id, cartId: Id, orderId: Id): Promise<void> {
  await sql`
    UPDATE carts SET status = 'open', order_id = NULL, updated_at = now()
    WHERE id = ${cartId} AND user_id = ${userId} AND order_id = ${orderId}`;
}
