// The inventory invariants of ARCHITECTURE.md (I1–I4), checked against the database. Used after
// every concurrency test, and by operators (`meridian verify`). Each returns the offending rows.
import type { Sql } from '../../platform/db.ts';

export interface InvariantReport {
  /** I1: 0 <= reserved <= on_hand */
  i1: unknown[];
  /** I2: reserved = sum of live reservations */
  i2: unknown[];
  /** I3: on_hand = sum of ledger movements (and reserved = sum of reserved deltas) */
  i3: unknown[];
  /** I4: every reservation part ended at most once, with a ledger trail matching its status */
  i4: unknown[];
}

export async function checkInventoryInvariants(sql: Sql): Promise<InvariantReport> {
  const i1 = await sql`SELECT sku, location_id, on_hand, reserved FROM stock WHERE reserved < 0 OR reserved > on_hand`;
  const i2 = await sql`
    SELECT s.sku, s.location_id, s.reserved, COALESCE(r.live, 0) AS live
    FROM stock s
    LEFT JOIN (SELECT sku, location_id, sum(quantity) AS live FROM reservations WHERE status = 'live' GROUP BY 1, 2) r
      USING (sku, location_id)
    WHERE s.reserved <> COALESCE(r.live, 0)`;
  const i3 = await sql`
    SELECT s.sku, s.location_id, s.on_hand, s.reserved, l.on_hand_sum, l.reserved_sum
    FROM stock s
    LEFT JOIN (SELECT sku, location_id, sum(on_hand_delta) AS on_hand_sum, sum(reserved_delta) AS reserved_sum
               FROM stock_ledger GROUP BY 1, 2) l USING (sku, location_id)
    WHERE s.on_hand <> COALESCE(l.on_hand_sum, 0) OR s.reserved <> COALESCE(l.reserved_sum, 0)`;
  const i4 = await sql`
    SELECT r.id::text, r.sku, r.location_id, r.status, l.reserves, l.ends, l.end_kind
    FROM reservations r
    LEFT JOIN (
      SELECT reservation_id, sku, location_id,
             count(*) FILTER (WHERE kind = 'reserve') AS reserves,
             count(*) FILTER (WHERE kind IN ('consume', 'release')) AS ends,
             max(kind) FILTER (WHERE kind IN ('consume', 'release')) AS end_kind
      FROM stock_ledger WHERE reservation_id IS NOT NULL GROUP BY 1, 2, 3
    ) l ON l.reservation_id = r.id AND l.sku = r.sku AND l.location_id = r.location_id
    WHERE COALESCE(l.reserves, 0) <> 1
       OR (r.status = 'live' AND COALESCE(l.ends, 0) <> 0)
       OR (r.status = 'consumed' AND (l.ends <> 1 OR l.end_kind <> 'consume'))
       OR (r.status = 'released' AND (l.ends <> 1 OR l.end_kind <> 'release'))`;
  return { i1: [...i1], i2: [...i2], i3: [...i3], i4: [...i4] };
}

/** Units consumed per reservation (= order id), for cross-module checks of I5. */
export async function consumedByReservation(sql: Sql): Promise<Map<string, Map<string, number>>> {
  const rows = await sql<{ id: string; sku: string; quantity: number }[]>`
    SELECT id::text, sku, sum(quantity)::int AS quantity FROM reservations WHERE status = 'consumed' GROUP BY 1, 2`;
  const out = new Map<string, Map<string, number>>();
  for (const r of rows) {
    const m = out.get(r.id) ?? new Map<string, number>();
    m.set(r.sku, r.quantity);
    out.set(r.id, m);
  }
  return out;
}
