// The inventory gate: the component that says yes or no to a reservation. Every engine ends in
// PostgreSQL, the arbiter (ARCHITECTURE.md, I7); they differ in how much load reaches it.
//   postgres          one statement per reservation (inventory_try_reserve)
//   postgres-batched  group commit: reservations waiting for the same partition go out together
//                     in one set-based statement and one commit (inventory_reserve_many)
//   redis             a Redis (Cluster) counter admits or refuses in microseconds; admitted
//                     reservations are written behind to PostgreSQL in batches through the
//                     batched engine, and PostgreSQL still decides (redis-gate.ts)
import type { Histogram, Counter } from 'prom-client';
import type { Pool } from '../../platform/db.ts';
import type { Id } from '../../platform/ids.ts';

export type GateEngine = 'postgres' | 'postgres-batched' | 'redis';

export interface GateLine {
  sku: string;
  quantity: number;
}

export type GateOutcome = { ok: true; replayed?: boolean } | { ok: false; sku: string; requested: number; available: number };

export interface InventoryGate {
  readonly engine: GateEngine;
  /** Whether stockChanged() does anything (callers skip the work of finding the SKUs if not). */
  readonly followsStock: boolean;
  /** All or nothing over lines (aggregated per SKU, sorted by SKU); idempotent by reservation id. */
  reserve(reservationId: Id, lines: readonly GateLine[], ttlMs: number): Promise<GateOutcome>;
  /** Units of these SKUs became available or unavailable outside reserve(): catch up. */
  stockChanged(skus: readonly string[]): Promise<void>;
  /**
   * For engines that answer before PostgreSQL has recorded the reservation (write-behind):
   * resolves once this process has no write of it pending, so that a settlement that follows
   * finds it in PostgreSQL (or finds that PostgreSQL refused it).
   */
  written?(reservationId: Id): Promise<void>;
  /**
   * A refusal the gate can give without reserving anything (a SKU whose counter is below the
   * quantity: sold out), in one round trip; undefined when only reserve() can tell.
   */
  refusesAtOnce?(lines: readonly GateLine[]): Promise<GateOutcome | undefined>;
  /**
   * These units of a reservation were just released in PostgreSQL, by a settlement whose clock
   * (µs, taken under the stock row locks) was atUs: give them back, exactly once.
   */
  unitsReleased?(units: readonly GateLine[], atUs: string): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface GateMetrics {
  reservations: Counter<'engine' | 'result'>;
  latency: Histogram<'engine'>;
}

interface TryResult {
  ok: boolean;
  replayed?: boolean;
  sku?: string;
  requested?: number;
  available?: number;
}

function toOutcome(r: TryResult): GateOutcome {
  return r.ok ? { ok: true, replayed: r.replayed === true } : { ok: false, sku: r.sku ?? '', requested: Number(r.requested), available: Number(r.available) };
}

async function measured(metrics: GateMetrics | undefined, engine: GateEngine, run: () => Promise<GateOutcome>): Promise<GateOutcome> {
  const end = metrics?.latency.startTimer({ engine });
  try {
    const outcome = await run();
    metrics?.reservations.inc({ engine, result: outcome.ok ? 'reserved' : 'out_of_stock' });
    return outcome;
  } catch (err) {
    metrics?.reservations.inc({ engine, result: 'error' });
    throw err;
  } finally {
    end?.();
  }
}

/** One statement per reservation. */
export class PostgresGate implements InventoryGate {
  readonly engine = 'postgres' as const;
  readonly followsStock = false;

  constructor(
    private readonly db: Pool,
    private readonly metrics?: GateMetrics,
  ) {}

  reserve(reservationId: Id, lines: readonly GateLine[], ttlMs: number): Promise<GateOutcome> {
    return measured(this.metrics, this.engine, () => tryReserve(this.db, reservationId, lines, ttlMs));
  }

  async stockChanged(): Promise<void> {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}

/** One reservation in one statement (inventory_try_reserve): the core every engine ends in. */
async function tryReserve(db: Pool, reservationId: Id, lines: readonly GateLine[], ttlMs: number): Promise<GateOutcome> {
  const [row] = await db<{ result: TryResult }[]>`
    SELECT inventory_try_reserve(${reservationId}, ${lines.map((l) => l.sku)}::text[], ${lines.map((l) => l.quantity)}::int[],
                                 now() + ${ttlMs} * interval '1 millisecond') AS result`;
  if (!row) throw new Error('inventory_try_reserve returned nothing');
  return toOutcome(row.result);
}

interface Waiting {
  reservationId: Id;
  lines: readonly GateLine[];
  resolve: (o: GateOutcome) => void;
  reject: (e: unknown) => void;
}

/**
 * Group commit. Requests are queued by partition (the hash of their first SKU, so a hot SKU's
 * requests meet in one queue); each partition has at most one statement in flight, and
 * everything that queued meanwhile goes out in the next one. An idle partition sends at once,
 * so light load pays no added latency; under a flash sale one commit carries hundreds of
 * reservations and the hot rows are locked once per batch instead of once per buyer.
 */
export class PostgresBatchedGate implements InventoryGate {
  readonly engine = 'postgres-batched' as const;
  readonly followsStock = false;
  private readonly queues = new Map<string, Waiting[]>();
  private readonly busy = new Set<string>();

  constructor(
    private readonly db: Pool,
    private readonly options: { partitions: number; maxBatch: number },
    private readonly metrics?: GateMetrics,
  ) {}

  reserve(reservationId: Id, lines: readonly GateLine[], ttlMs: number): Promise<GateOutcome> {
    return measured(this.metrics, this.engine, () => this.enqueue(reservationId, lines, ttlMs));
  }

  /** Without metrics: for engines (Redis) that put this one behind their own gate. */
  enqueue(reservationId: Id, lines: readonly GateLine[], ttlMs: number): Promise<GateOutcome> {
    const key = `${partitionOf(lines[0]?.sku ?? '', this.options.partitions)}:${ttlMs}`;
    return new Promise<GateOutcome>((resolve, reject) => {
      const queue = this.queues.get(key) ?? [];
      queue.push({ reservationId, lines, resolve, reject });
      this.queues.set(key, queue);
      this.flush(key, ttlMs);
    });
  }

  private flush(key: string, ttlMs: number): void {
    if (this.busy.has(key)) return;
    const queue = this.queues.get(key);
    if (!queue || queue.length === 0) return;
    const batch = queue.splice(0, this.options.maxBatch);
    this.busy.add(key);
    this.send(batch, ttlMs)
      .then(
        (outcomes) => batch.forEach((w, i) => w.resolve(outcomes[i] ?? { ok: false, sku: '', requested: 0, available: 0 })),
        (err: unknown) => batch.forEach((w) => w.reject(err)),
      )
      .finally(() => {
        // The next batch goes out on the next turn of the event loop, not now: the callers just
        // answered send their next requests from microtasks, and they all belong in that batch
        // (sending at once would carry one request and leave the rest waiting a whole commit).
        setImmediate(() => {
          this.busy.delete(key);
          this.flush(key, ttlMs);
        });
      });
  }

  private async send(batch: readonly Waiting[], ttlMs: number): Promise<GateOutcome[]> {
    // A batch of one (any load without a hot SKU) takes the single-reservation statement: the
    // set-based one pays for its generality (more relations locked, a bigger plan to run), and
    // costs about three times as much for one request.
    const [only] = batch;
    if (batch.length === 1 && only) return [await tryReserve(this.db, only.reservationId, only.lines, ttlMs)];
    const ids: string[] = [];
    const request: number[] = [];
    const skus: string[] = [];
    const quantities: number[] = [];
    batch.forEach((w, i) => {
      ids.push(w.reservationId);
      for (const l of w.lines) {
        request.push(i + 1);
        skus.push(l.sku);
        quantities.push(l.quantity);
      }
    });
    const rows = await this.db<{ r_index: number; r_result: TryResult }[]>`
      SELECT r_index, r_result FROM inventory_reserve_many(${ids}::bigint[], ${request}::int[], ${skus}::text[], ${quantities}::int[], ${ttlMs})`;
    const out: GateOutcome[] = new Array<GateOutcome>(batch.length);
    for (const r of rows) out[r.r_index - 1] = toOutcome(r.r_result);
    return out;
  }

  async stockChanged(): Promise<void> {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}

/** FNV-1a: a stable, cheap string hash for partitioning. */
export function partitionOf(sku: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < sku.length; i++) {
    h ^= sku.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitions;
}
