// Inventory: the durable truth of stock. Every change runs under row locks taken in one global
// order (SKU, then location) inside one transaction, writes its ledger rows in that transaction,
// and is guarded by the stock CHECK constraint, so invariants I1–I4 hold under any concurrency.
import type { Databases, Pool } from '../../platform/db.ts';
import { pgCode, pgConstraint } from '../../platform/db.ts';
import { AppError } from '../../platform/errors.ts';
import type { Id } from '../../platform/ids.ts';
import { LIMITS } from '../../platform/limits.ts';
import { emit } from '../../events/outbox.ts';
import * as repo from './repository.ts';

export interface ReserveLine {
  sku: string;
  quantity: number;
}

export type ReserveResult =
  | { ok: true; expiresAt: Date; parts: { sku: string; locationId: string; quantity: number }[] }
  | { ok: false; code: 'out_of_stock'; sku: string; requested: number; available: number };

export type SettleResult = { ok: true; already: boolean } | { ok: false; code: 'reservation_expired' | 'reservation_not_found' };

export interface Availability {
  sku: string;
  available: number;
  locations: { locationId: string; onHand: number; reserved: number; available: number }[];
}

export type StockChangeKind = 'receipt' | 'adjustment' | 'return';

class OutOfStock extends Error {
  constructor(readonly sku: string, readonly requested: number, readonly available: number) {
    super(`out of stock: ${sku}`);
  }
}

/** Sum quantities per SKU (two cart lines of one SKU count together) in SKU order. */
export function aggregateLines(lines: readonly ReserveLine[]): ReserveLine[] {
  const totals = new Map<string, number>();
  for (const l of lines) totals.set(l.sku, (totals.get(l.sku) ?? 0) + l.quantity);
  return [...totals.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([sku, quantity]) => ({ sku, quantity }));
}

/** Take from the locations with the most available units first: fewest split shipments. */
function allocate(rows: readonly repo.StockRow[], quantity: number): { locationId: string; quantity: number }[] {
  const byAvailable = [...rows].sort((a, b) => b.on_hand - b.reserved - (a.on_hand - a.reserved) || (a.location_id < b.location_id ? -1 : 1));
  const out: { locationId: string; quantity: number }[] = [];
  let left = quantity;
  for (const r of byAvailable) {
    if (left === 0) break;
    const take = Math.min(left, r.on_hand - r.reserved);
    if (take > 0) {
      out.push({ locationId: r.location_id, quantity: take });
      left -= take;
    }
  }
  return out;
}

export class InventoryService {
  constructor(private readonly dbs: Databases) {}

  private get db(): Pool {
    return this.dbs.core('inventory');
  }

  async availability(sku: string): Promise<Availability> {
    const rows = await repo.stockForSku(this.db, sku);
    const locations = rows.map((r) => ({ locationId: r.location_id, onHand: r.on_hand, reserved: r.reserved, available: r.on_hand - r.reserved }));
    return { sku, available: locations.reduce((n, l) => n + l.available, 0), locations };
  }

  /**
   * All-or-nothing reservation of a cart's lines, idempotent by reservation id (the order id):
   * calling it again returns the reservation made the first time.
   */
  async reserve(reservationId: Id, lines: readonly ReserveLine[], ttlMs: number): Promise<ReserveResult> {
    const wanted = aggregateLines(lines);
    try {
      return await this.db.begin(async (tx) => {
        const existing = await repo.findReservation(tx, reservationId);
        if (existing.length > 0) {
          const first = existing[0];
          if (first?.status !== 'live') throw new AppError('reservation_expired', 'this reservation has already ended');
          return { ok: true as const, expiresAt: first.expires_at, parts: existing.map((r) => ({ sku: r.sku, locationId: r.location_id, quantity: r.quantity })) };
        }
        const parts: { sku: string; locationId: string; quantity: number }[] = [];
        for (const line of wanted) {
          const rows = await repo.lockStockForSku(tx, line.sku);
          const available = rows.reduce((n, r) => n + r.on_hand - r.reserved, 0);
          if (available < line.quantity) throw new OutOfStock(line.sku, line.quantity, available);
          for (const a of allocate(rows, line.quantity)) {
            await repo.addReserved(tx, line.sku, a.locationId, a.quantity);
            parts.push({ sku: line.sku, ...a });
          }
        }
        const expiresAt = await repo.insertReservations(tx, reservationId, parts, ttlMs);
        await repo.appendLedger(tx, parts.map((p) => ({ sku: p.sku, locationId: p.locationId, kind: 'reserve', onHandDelta: 0, reservedDelta: p.quantity, reservationId })));
        for (const line of wanted) await emit(tx, 'inventory.stock_changed', reservationId, { sku: line.sku });
        return { ok: true as const, expiresAt, parts };
      });
    } catch (err) {
      if (err instanceof OutOfStock) return { ok: false, code: 'out_of_stock', sku: err.sku, requested: err.requested, available: err.available };
      throw err;
    }
  }

  /** Sell the reserved units (ledger `consume`). Fails once the reservation has expired or ended. */
  async consume(reservationId: Id): Promise<SettleResult> {
    return this.settle(reservationId, 'consumed');
  }

  /** Give the units back (expiry, decline, cancellation). Idempotent: a second call is a no-op. */
  async release(reservationId: Id, note = 'released'): Promise<SettleResult> {
    return this.settle(reservationId, 'released', note);
  }

  private async settle(reservationId: Id, to: 'consumed' | 'released', note?: string): Promise<SettleResult> {
    return this.db.begin(async (tx) => {
      // Lock the stock rows first, in the global order, then end the reservation: the same
      // order as reserve(), so the two can never deadlock.
      const current = await repo.findReservation(tx, reservationId);
      if (current.length === 0) return { ok: false, code: 'reservation_not_found' } as const;
      for (const sku of [...new Set(current.map((r) => r.sku))]) await repo.lockStockForSku(tx, sku);
      let settled = await repo.settleReservation(tx, reservationId, to, to === 'consumed');
      if (settled.length === 0) {
        const now = await repo.findReservation(tx, reservationId);
        if (now.every((r) => r.status === to)) return { ok: true, already: true } as const;
        if (to === 'consumed' && now.every((r) => r.status === 'live')) {
          // Live but past its expiry: the sweeper has not come by yet. Expiry wins; release it now.
          settled = await repo.settleReservation(tx, reservationId, 'released', false);
          await this.applySettlement(tx, reservationId, settled, 'released', 'expired');
        }
        return { ok: false, code: 'reservation_expired' } as const;
      }
      await this.applySettlement(tx, reservationId, settled, to, note);
      return { ok: true, already: false } as const;
    });
  }

  private async applySettlement(
    tx: Parameters<typeof repo.consumeStock>[0],
    reservationId: Id,
    parts: readonly repo.ReservationRow[],
    to: 'consumed' | 'released',
    note: string | undefined,
  ): Promise<void> {
    for (const p of parts) {
      if (to === 'consumed') await repo.consumeStock(tx, p.sku, p.location_id, p.quantity);
      else await repo.addReserved(tx, p.sku, p.location_id, -p.quantity);
    }
    await repo.appendLedger(
      tx,
      parts.map((p) => ({
        sku: p.sku,
        locationId: p.location_id,
        kind: to === 'consumed' ? 'consume' : 'release',
        onHandDelta: to === 'consumed' ? -p.quantity : 0,
        reservedDelta: -p.quantity,
        reservationId,
        note,
      })),
    );
    for (const sku of new Set(parts.map((p) => p.sku))) await emit(tx, 'inventory.stock_changed', reservationId, { sku });
  }

  async reservationStatus(reservationId: Id): Promise<'live' | 'consumed' | 'released' | 'none'> {
    const rows = await repo.findReservation(this.db, reservationId);
    return rows[0]?.status ?? 'none';
  }

  /** Release reservations past their expiry; returns the ids released. */
  async releaseExpired(limit: number = LIMITS.sweeperBatchMax): Promise<Id[]> {
    const ids = await repo.expiredReservationIds(this.db, limit);
    const released: Id[] = [];
    for (const id of ids) {
      const r = await this.release(id, 'expired');
      if (r.ok && !r.already) released.push(id);
    }
    return released;
  }

  /** Receipts (+), adjustments (±) and returns (+) change on_hand; one ledger row each. */
  async changeStock(kind: StockChangeKind, sku: string, locationId: string, quantity: number, note?: string): Promise<Availability> {
    if (!Number.isInteger(quantity) || quantity === 0 || Math.abs(quantity) > LIMITS.stockMovementMax) {
      throw new AppError('validation_failed', `quantity must be a non-zero integer within ±${LIMITS.stockMovementMax}`);
    }
    if (kind !== 'adjustment' && quantity < 0) throw new AppError('validation_failed', `a ${kind} must have a positive quantity`);
    if (!(await repo.locationExists(this.db, locationId))) throw new AppError('validation_failed', `location ${locationId} does not exist`);
    try {
      await this.db.begin(async (tx) => {
        await repo.changeOnHand(tx, sku, locationId, quantity);
        await repo.appendLedger(tx, [{ sku, locationId, kind, onHandDelta: quantity, reservedDelta: 0, note }]);
        await emit(tx, 'inventory.stock_changed', '0', { sku });
      });
    } catch (err) {
      if (pgCode(err) === '23514' && pgConstraint(err) === 'stock_reserved_within_on_hand') {
        throw new AppError('insufficient_stock', 'the adjustment would leave fewer units on hand than are reserved or below zero');
      }
      throw err;
    }
    return this.availability(sku);
  }

  async upsertLocation(id: string, name: string): Promise<void> {
    await repo.upsertLocation(this.db, id, name);
  }

  listLocations(): Promise<{ id: string; name: string }[]> {
    return repo.listLocations(this.db);
  }
}
