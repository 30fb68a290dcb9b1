import type { Sql } from '../../platform/db.ts';
import type { Id } from '../../platform/ids.ts';

export type LedgerKind = 'receipt' | 'adjustment' | 'return' | 'reserve' | 'release' | 'consume';

export interface StockRow {
  sku: string;
  location_id: string;
  on_hand: number;
  reserved: number;
}

export interface ReservationRow {
  sku: string;
  location_id: string;
  quantity: number;
  status: 'live' | 'consumed' | 'released';
  expires_at: Date;
}

export async function stockForSku(sql: Sql, sku: string): Promise<StockRow[]> {
  return sql<StockRow[]>`
    SELECT sku, location_id, on_hand::int, reserved::int FROM stock WHERE sku = ${sku} ORDER BY location_id`;
}

/**
 * Receipts, adjustments and returns; the CHECK keeps reserved <= on_hand. Run it in a transaction.
 * Not one INSERT … ON CONFLICT DO UPDATE: PostgreSQL checks CHECK constraints on the proposed
 * insert row before it detects the conflict, so every negative adjustment would fail.
 */
export async function changeOnHand(sql: Sql, sku: string, locationId: string, delta: number): Promise<StockRow> {
  await sql`INSERT INTO stock (sku, location_id) VALUES (${sku}, ${locationId}) ON CONFLICT (sku, location_id) DO NOTHING`;
  const [row] = await sql<StockRow[]>`
    UPDATE stock SET on_hand = on_hand + ${delta}, updated_at = now() WHERE sku = ${sku} AND location_id = ${locationId}
    RETURNING sku, location_id, on_hand::int, reserved::int`;
  if (!row) throw new Error('upsert returned nothing');
  return row;
}

export interface LedgerEntry {
  sku: string;
  locationId: string;
  kind: LedgerKind;
  onHandDelta: number;
  reservedDelta: number;
  reservationId?: Id | undefined;
  note?: string | undefined;
}

export async function appendLedger(sql: Sql, entries: readonly LedgerEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await sql`
    INSERT INTO stock_ledger (sku, location_id, kind, on_hand_delta, reserved_delta, reservation_id, note)
    SELECT * FROM unnest(
      ${entries.map((e) => e.sku)}::text[], ${entries.map((e) => e.locationId)}::text[], ${entries.map((e) => e.kind)}::text[],
      ${entries.map((e) => e.onHandDelta)}::bigint[], ${entries.map((e) => e.reservedDelta)}::bigint[],
      ${entries.map((e) => e.reservationId ?? null) as (string | null)[]}::bigint[], ${entries.map((e) => e.note ?? null) as (string | null)[]}::text[])`;
}

export async function findReservation(sql: Sql, reservationId: Id): Promise<ReservationRow[]> {
  return sql<ReservationRow[]>`
    SELECT sku, location_id, quantity, status, expires_at FROM reservations WHERE id = ${reservationId} ORDER BY sku, location_id`;
}

export async function expiredReservationIds(sql: Sql, limit: number): Promise<Id[]> {
  const rows = await sql<{ id: Id }[]>`
    SELECT DISTINCT id::text FROM (
      SELECT id FROM reservations WHERE status = 'live' AND expires_at <= now() ORDER BY expires_at LIMIT ${limit}
    ) t`;
  return rows.map((r) => r.id);
}

export async function locationExists(sql: Sql, id: string): Promise<boolean> {
  return (await sql`SELECT 1 FROM locations WHERE id = ${id}`).length === 1;
}

export async function upsertLocation(sql: Sql, id: string, name: string): Promise<void> {
  await sql`INSERT INTO locations (id, name) VALUES (${id}, ${name}) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name`;
}

export async function listLocations(sql: Sql): Promise<{ id: string; name: string }[]> {
  return sql<{ id: string; name: string }[]>`SELECT id, name FROM locations ORDER BY id LIMIT 1000`;
}
