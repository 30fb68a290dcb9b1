// Inventory: the durable truth of stock. Every change runs under row locks taken in one global
// order (SKU, then location) inside one transaction, writes its ledger rows in that transaction,
// and is guarded by the stock CHECK constraint, so invariants I1–I4 hold under any concurrency.
import type { Databases, Pool } from '../../platform/db.ts';
import { pgCode, pgConstraint, transaction } from '../../platform/db.ts';
import type { InventoryGate } from './gate.ts';
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
  | { ok: true }
  | { ok: false; code: 'out_of_stock'; sku: string; requested: number; available: number };

export type SettleResult =
  | { ok: true; already: boolean }
  | { ok: false; code: 'reservation_expired' | 'reservation_consumed' | 'reservation_not_found' };

type SettleOutcome = 'settled' | 'already' | 'expired' | 'ended' | 'not_found';

/** A settlement, the units it ended, and when (PostgreSQL's clock, µs, under the stock locks). */
interface Settled {
  outcome: SettleOutcome;
  units: ReserveLine[];
  atUs: string;
}


export interface Availability {
  sku: string;
  available: number;
  locations: { locationId: string; onHand: number; reserved: number; available: number }[];
}

export type StockChangeKind = 'receipt' | 'adjustment' | 'return';

/** Sum quantities per SKU (two cart lines of one SKU count together) in SKU order. */
export function aggregateLines(lines: readonly ReserveLine[]): ReserveLine[] {
  const totals = new Map<string, number>();
  for (const l of lines) totals.set(l.sku, (totals.get(l.sku) ?? 0) + l.quantity);
  return [...totals.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([sku, quantity]) => ({ sku, quantity }));
}

export class InventoryService {
  constructor(
    private readonly dbs: Databases,
    readonly gate: InventoryGate,
  ) {}

  private get db(): Pool {
    return this.dbs.core('inventory');
  }

  async availability(sku: string): Promise<Availability> {
    const rows = await repo.stockForSku(this.db, sku);
    const locations = rows.map((r) => ({ locationId: r.location_id, onHand: r.on_hand, reserved: r.reserved, available: r.on_hand - r.reserved }));
    return { sku, available: locations.reduce((n, l) => n + l.available, 0), locations };
  }

  /** Available units (on hand − reserved, all locations) of many SKUs in one query. */
  async availableUnits(skus: readonly string[]): Promise<Map<string, number>> {
    const rows = await this.db<{ sku: string; available: number }[]>`
      SELECT sku, sum(on_hand - reserved)::int AS available FROM stock WHERE sku = ANY(${[...skus]}::text[]) GROUP BY sku`;
    return new Map(rows.map((r) => [r.sku, r.available]));
  }

  /**
   * All-or-nothing reservation of a cart's lines, idempotent by reservation id (the order id):
   * calling it again returns the first call's outcome. The gate (gate.ts) decides how the
   * request reaches PostgreSQL, which is always the arbiter.
   */
  async reserve(reservationId: Id, lines: readonly ReserveLine[], ttlMs: number): Promise<ReserveResult> {
    const outcome = await this.gate.reserve(reservationId, aggregateLines(lines), ttlMs);
    if (outcome.ok) return { ok: true };
    return { ok: false, code: 'out_of_stock', sku: outcome.sku, requested: outcome.requested, available: outcome.available };
  }

  /**
   * An out-of-stock answer the gate can give before any work toward a reservation (Redis: a
   * sold-out counter, one round trip); undefined when only reserve() can tell. For callers that
   * would otherwise do work (idempotency keys, prices, order ids) only to be refused — in a flash
   * sale, nearly everyone.
   */
  async refusesAtOnce(lines: readonly ReserveLine[]): Promise<ReserveResult | undefined> {
    const outcome = await this.gate.refusesAtOnce?.(aggregateLines(lines));
    if (!outcome || outcome.ok) return undefined;
    return { ok: false, code: 'out_of_stock', sku: outcome.sku, requested: outcome.requested, available: outcome.available };
  }

  /** Sell the reserved units (ledger `consume`). Fails once the reservation has expired or ended. */
  async consume(reservationId: Id): Promise<SettleResult> {
    const settled = await this.settle(reservationId, 'consumed', null);
    const { outcome } = settled;
    // An expired reservation was released instead: its units are available again.
    if (outcome === 'expired') await this.unitsCameBack(settled);
    if (outcome === 'settled' || outcome === 'already') return { ok: true, already: outcome === 'already' };
    return { ok: false, code: outcome === 'not_found' ? 'reservation_not_found' : 'reservation_expired' };
  }

  /** Give the units back (expiry, decline, cancellation). Idempotent: a second call is a no-op. */
  async release(reservationId: Id, note = 'released'): Promise<SettleResult> {
    const settled = await this.settle(reservationId, 'released', note);
    const { outcome } = settled;
    if (outcome === 'settled') await this.unitsCameBack(settled);
    if (outcome === 'settled' || outcome === 'already') return { ok: true, already: outcome === 'already' };
    return { ok: false, code: outcome === 'not_found' ? 'reservation_not_found' : 'reservation_consumed' };
  }

  private async unitsCameBack(settled: Settled): Promise<void> {
    if (!this.gate.followsStock || settled.units.length === 0) return;
    if (this.gate.unitsReleased) await this.gate.unitsReleased(settled.units, settled.atUs);
    else await this.gate.stockChanged(settled.units.map((u) => u.sku));
  }

  /** Ends the reservation in PostgreSQL, after any write of it the gate still has pending. */
  private async settle(reservationId: Id, to: 'consumed' | 'released', note: string | null): Promise<Settled> {
    await this.gate.written?.(reservationId);
    const [row] = await this.db<{ outcome: SettleOutcome; units: ReserveLine[]; at_us: string }[]>`
      SELECT r_outcome AS outcome, r_units AS units, r_at_us::text AS at_us FROM inventory_settle_units(${reservationId}, ${to}, ${note})`;
    if (!row) throw new Error('inventory_settle_units returned nothing');
    return { outcome: row.outcome, units: row.units, atUs: row.at_us };
  }

  async reservationStatus(reservationId: Id): Promise<'live' | 'consumed' | 'released' | 'none'> {
    await this.gate.written?.(reservationId);
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
      await transaction(this.db, async (tx) => {
        await repo.changeOnHand(tx, sku, locationId, quantity);
        await repo.appendLedger(tx, [{ sku, locationId, kind, onHandDelta: quantity, reservedDelta: 0, note }]);
        await emit(tx, 'inventory.stock_changed', '0', { sku });
      });
      await this.gate.stockChanged([sku]);
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
