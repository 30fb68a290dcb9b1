// `meridian verify [--repair]`: invariants I1–I7 of ARCHITECTURE.md across every cluster of a
// topology (or the one database of a single node), as a structured report.
//
// Within one cluster the invariants are kept by transactions; across clusters they are kept by
// the checkout saga, whose steps commit one after another on the user's shard and on the core
// cluster. A restore of every cluster to the same instant T therefore keeps everything that had
// finished at T, and can leave behind only sagas that were half-way at T: a reservation whose
// order was not yet created, a consumption whose order was not yet marked paid (or, if clocks
// disagree, a paid order whose consumption is missing). verify finds those, and --repair
// finishes or undoes them through the services (the inventory ledger, the saga), never by
// editing counters.
//
// The scans page through orders and reservations by id (keyset), so memory stays bounded
// whatever the data size.
import type { Databases, Pool } from '../platform/db.ts';
import { shardOfId } from '../platform/ids.ts';
import { checkInventoryInvariants } from '../modules/inventory/invariants.ts';
import type { InventoryService } from '../modules/inventory/service.ts';
import type { RedisGate } from '../modules/inventory/redis-gate.ts';
import type { CheckoutSaga } from '../modules/orders/checkout.ts';

export type InvariantId = 'I1' | 'I2' | 'I3' | 'I4' | 'I5' | 'I6' | 'I7';

export const INVARIANTS: Record<InvariantId, string> = {
  I1: '0 <= reserved <= on_hand for every (SKU, location)',
  I2: 'reserved = sum of live reservations',
  I3: 'on_hand = sum of ledger movements',
  I4: 'every reservation is consumed or released exactly once, or is live with an expiry (and belongs to an order)',
  I5: 'units sold <= units received; each paid order line consumed exactly one reservation',
  I6: 'at most one order per (user, idempotency key); one capture per paid order, none for others',
  I7: 'Redis gate counters equal PostgreSQL availability (rebuilt from PostgreSQL)',
};

export type FindingKind =
  | 'inventory_row' // I1–I4 within the inventory tables
  | 'reservation_without_order'
  | 'reservation_of_cancelled_order'
  | 'paid_order_not_consumed'
  | 'consumed_without_paid_order'
  | 'oversold'
  | 'idempotency_key_shared'
  | 'paid_order_without_capture'
  | 'capture_without_paid_order'
  | 'gate_counter_drift';

export interface Finding {
  invariant: InvariantId;
  kind: FindingKind;
  cluster: string;
  message: string;
  subject: Record<string, unknown>;
  /** What --repair does about it; absent when it needs a person (refund, restock, investigation). */
  repair?: string;
}

export interface RepairAction {
  invariant: InvariantId;
  kind: FindingKind;
  subject: Record<string, unknown>;
  action: string;
  ok: boolean;
  error?: string;
}

export interface VerifyReport {
  ok: boolean;
  checkedAt: string;
  clusters: string[];
  scanned: { orders: number; reservations: number; skus: number };
  invariants: { id: InvariantId; description: string; ok: boolean; findings: number; note?: string }[];
  /** What is wrong now (after the repairs, with --repair). */
  findings: Finding[];
  /** Findings beyond findingsMax are counted in `invariants` but not listed. */
  truncated: boolean;
  repairs: RepairAction[];
}

export interface VerifyTarget {
  dbs: Databases;
  /** Needed for --repair (the ledger) and for I7 (the gate). */
  inventory?: InventoryService;
  /** Needed for --repair (finishing half-done checkouts). */
  saga?: CheckoutSaga;
}

export interface VerifyOptions {
  repair?: boolean;
  /**
   * A live reservation younger than this without an order is a checkout in flight (the saga
   * reserves before it creates the order), not a leftover. 0 right after a restore.
   */
  graceMs?: number;
  pageSize?: number;
  findingsMax?: number;
}

const PAID = ['paid', 'fulfilled', 'shipped', 'delivered', 'refunded'];
const CAPTURED = ['captured', 'refunded'];

interface OrderRow {
  id: string;
  status: string;
  payment_status: string | null;
  lines: Record<string, number>;
}

interface ReservationPart {
  id: string;
  sku: string;
  status: 'live' | 'consumed' | 'released';
  quantity: number;
}

type Lines = Map<string, number>;

function sameLines(a: Lines, b: Lines): boolean {
  if (a.size !== b.size) return false;
  for (const [sku, q] of a) if (b.get(sku) !== q) return false;
  return true;
}

class Collector {
  readonly findings: Finding[] = [];
  readonly counts = new Map<InvariantId, number>();
  truncated = false;
  constructor(private readonly max: number) {}
  add(f: Finding): void {
    this.counts.set(f.invariant, (this.counts.get(f.invariant) ?? 0) + 1);
    if (this.findings.length < this.max) this.findings.push(f);
    else this.truncated = true;
  }
}

interface Scan {
  collector: Collector;
  scanned: VerifyReport['scanned'];
  i7note: string;
}

async function scan(target: VerifyTarget, o: Required<Omit<VerifyOptions, 'repair'>>): Promise<Scan> {
  const { dbs } = target;
  const c = new Collector(o.findingsMax);
  const core = dbs.core('inventory');
  const coreName = dbs.clusters.find((x) => x.pool === core)?.spec.name ?? 'core';
  const scanned = { orders: 0, reservations: 0, skus: 0 };

  // I1–I4 inside the inventory tables.
  const inv = await checkInventoryInvariants(core);
  for (const [key, rows] of Object.entries(inv) as [string, Record<string, unknown>[]][]) {
    const invariant = key.toUpperCase() as InvariantId;
    for (const row of rows) c.add({ invariant, kind: 'inventory_row', cluster: coreName, message: `${invariant} does not hold for ${JSON.stringify(row)}`, subject: row });
  }

  // Orders, shard by shard → their reservations on the core cluster (I5, I6, I4 for cancelled).
  for (const cluster of dbs.shardClusters()) {
    let after = '0';
    for (;;) {
      const orders = await cluster.pool<OrderRow[]>`
        SELECT o.id::text, o.status, p.status AS payment_status,
               COALESCE((SELECT json_object_agg(x.sku, x.q) FROM (
                 SELECT l.sku, sum(l.quantity)::int AS q FROM order_lines l WHERE l.order_id = o.id GROUP BY l.sku) x), '{}') AS lines
        FROM orders o LEFT JOIN payments p ON p.order_id = o.id
        WHERE o.id > ${after}::bigint ORDER BY o.id LIMIT ${o.pageSize}`;
      if (orders.length === 0) break;
      after = orders[orders.length - 1]!.id;
      scanned.orders += orders.length;
      const parts = await core<ReservationPart[]>`
        SELECT id::text, sku, status, sum(quantity)::int AS quantity FROM reservations
        WHERE id = ANY(${orders.map((x) => x.id)}::bigint[]) GROUP BY 1, 2, 3`;
      const byId = new Map<string, ReservationPart[]>();
      for (const p of parts) byId.set(p.id, [...(byId.get(p.id) ?? []), p]);
      for (const order of orders) {
        const res = byId.get(order.id) ?? [];
        const paid = PAID.includes(order.status);
        const subject = { orderId: order.id, orderStatus: order.status, reservation: res.length ? [...new Set(res.map((r) => r.status))].join('+') : 'none' };
        if (paid) {
          const consumed = new Map(res.filter((r) => r.status === 'consumed').map((r) => [r.sku, r.quantity]));
          const lines = new Map(Object.entries(order.lines));
          if (!sameLines(consumed, lines) || res.some((r) => r.status !== 'consumed')) {
            const canRepair = res.length === 0 || res.every((r) => r.status === 'live');
            c.add({
              invariant: 'I5', kind: 'paid_order_not_consumed', cluster: coreName,
              message: `order ${order.id} is ${order.status} on ${cluster.spec.name} but its stock was not consumed (reservation: ${subject.reservation})`,
              subject: { ...subject, shardCluster: cluster.spec.name, lines: order.lines },
              ...(canRepair ? { repair: res.length === 0 ? 'reserve its lines and consume them through the ledger' : 'consume the live reservation through the ledger' } : {}),
            });
          }
          if (!order.payment_status || !CAPTURED.includes(order.payment_status)) {
            c.add({ invariant: 'I6', kind: 'paid_order_without_capture', cluster: cluster.spec.name, message: `order ${order.id} is ${order.status} without a captured payment (${order.payment_status ?? 'none'})`, subject });
          }
        } else {
          if (order.payment_status && CAPTURED.includes(order.payment_status) && !res.some((r) => r.status === 'consumed')) {
            c.add({ invariant: 'I6', kind: 'capture_without_paid_order', cluster: cluster.spec.name, message: `order ${order.id} is ${order.status} but its payment was ${order.payment_status}`, subject });
          }
          if (order.status === 'cancelled' && res.some((r) => r.status === 'live')) {
            c.add({
              invariant: 'I4', kind: 'reservation_of_cancelled_order', cluster: coreName,
              message: `order ${order.id} is cancelled but its reservation is still live`, subject, repair: 'release the reservation through the ledger',
            });
          }
        }
      }
      if (orders.length < o.pageSize) break;
    }
    const shared = await cluster.pool<{ order_id: string; n: number }[]>`
      SELECT order_id::text, count(*)::int AS n FROM idempotency_keys WHERE order_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1 LIMIT 1000`;
    for (const r of shared) {
      c.add({ invariant: 'I6', kind: 'idempotency_key_shared', cluster: cluster.spec.name, message: `order ${r.order_id} is attached to ${r.n} idempotency keys`, subject: { orderId: r.order_id, keys: r.n } });
    }
  }

  // Reservations on the core cluster → their orders on the shards (I4 orphans, I5 consumption
  // without a paid order). Orders are looked up on every shard cluster, so a shard map that
  // moved shards since the topology file was written changes nothing.
  let after = '0';
  for (;;) {
    const page = await core<{ id: string; live: boolean; consumed: boolean; created_at: Date }[]>`
      SELECT id::text, bool_or(status = 'live') AS live, bool_or(status = 'consumed') AS consumed, min(created_at) AS created_at
      FROM reservations WHERE id > ${after}::bigint GROUP BY id ORDER BY id LIMIT ${o.pageSize}`;
    if (page.length === 0) break;
    after = page[page.length - 1]!.id;
    scanned.reservations += page.length;
    const open = page.filter((r) => r.consumed || (r.live && Date.now() - r.created_at.getTime() >= o.graceMs));
    if (open.length > 0) {
      const ids = open.map((r) => r.id);
      const found = new Map<string, string>();
      for (const cluster of dbs.shardClusters()) {
        const rows = await cluster.pool<{ id: string; status: string }[]>`SELECT id::text, status FROM orders WHERE id = ANY(${ids}::bigint[])`;
        for (const r of rows) found.set(r.id, r.status);
      }
      for (const r of open) {
        const status = found.get(r.id);
        if (r.consumed && (!status || !PAID.includes(status))) {
          c.add({
            invariant: 'I5', kind: 'consumed_without_paid_order', cluster: coreName,
            message: status ? `reservation ${r.id} was consumed but its order is ${status}` : `reservation ${r.id} was consumed but no order ${r.id} exists on any shard`,
            subject: { orderId: r.id, orderStatus: status ?? 'none' },
            ...(status === 'pending_payment' ? { repair: 'finish the checkout (capture the payment, mark the order paid) through the saga' } : {}),
          });
        } else if (r.live && !r.consumed && !status) {
          c.add({
            invariant: 'I4', kind: 'reservation_without_order', cluster: coreName,
            message: `reservation ${r.id} is live but no order ${r.id} exists on any shard`,
            subject: { orderId: r.id, createdAt: r.created_at.toISOString() }, repair: 'release the reservation through the ledger',
          });
        }
      }
    }
    if (page.length < o.pageSize) break;
  }

  // I5: units sold never exceed units received.
  const oversold = await core<{ sku: string; received: number; sold: number }[]>`
    SELECT sku, COALESCE(sum(on_hand_delta) FILTER (WHERE kind IN ('receipt', 'return')), 0)::bigint AS received,
           COALESCE(-sum(on_hand_delta) FILTER (WHERE kind = 'consume'), 0)::bigint AS sold
    FROM stock_ledger GROUP BY sku
    HAVING COALESCE(-sum(on_hand_delta) FILTER (WHERE kind = 'consume'), 0) > COALESCE(sum(on_hand_delta) FILTER (WHERE kind IN ('receipt', 'return')), 0)`;
  for (const r of oversold) c.add({ invariant: 'I5', kind: 'oversold', cluster: coreName, message: `${r.sku}: sold ${r.sold} of ${r.received} received`, subject: { ...r } });

  // I7: the Redis gate's counters, if the gate is Redis.
  const [skuCount] = await core<{ n: number }[]>`SELECT count(DISTINCT sku)::int AS n FROM stock`;
  scanned.skus = skuCount?.n ?? 0;
  let i7note = 'no Redis gate: PostgreSQL is the only counter';
  const gate = target.inventory?.gate;
  if (gate?.engine === 'redis') {
    const redisGate = gate as RedisGate;
    const drift = await gateDrift(core, redisGate, o.pageSize);
    // A checkout in flight holds units in Redis for a few milliseconds before PostgreSQL has
    // them: only a difference that is still there a moment later is drift.
    if (drift.length > 0) await new Promise((r) => setTimeout(r, 1_000));
    const again = drift.length > 0 ? await gateDriftFor(core, redisGate, drift.map((d) => d.sku)) : [];
    for (const d of again) {
      c.add({
        invariant: 'I7', kind: 'gate_counter_drift', cluster: 'redis',
        message: `${d.sku}: Redis gate counter ${d.counter}, PostgreSQL available ${d.available}`, subject: { ...d }, repair: 'rebuild the gate counters from PostgreSQL',
      });
    }
    i7note = `Redis gate: ${scanned.skus} counters compared with PostgreSQL`;
  }
  return { collector: c, scanned, i7note };
}

async function gateDriftFor(core: Pool, gate: RedisGate, skus: string[]): Promise<{ sku: string; counter: number; available: number }[]> {
  const rows = await core<{ sku: string; available: number }[]>`
    SELECT sku, sum(on_hand - reserved)::int AS available FROM stock WHERE sku = ANY(${skus}::text[]) GROUP BY sku`;
  const out: { sku: string; counter: number; available: number }[] = [];
  for (const r of rows) {
    const counter = await gate.counter(r.sku);
    // A counter not loaded yet is not drift: the gate asks PostgreSQL for that SKU.
    if (counter !== undefined && counter !== r.available) out.push({ sku: r.sku, counter, available: r.available });
  }
  return out;
}

async function gateDrift(core: Pool, gate: RedisGate, pageSize: number): Promise<{ sku: string; counter: number; available: number }[]> {
  const out: { sku: string; counter: number; available: number }[] = [];
  let after = '';
  for (;;) {
    const page = await core<{ sku: string }[]>`SELECT DISTINCT sku FROM stock WHERE sku > ${after} ORDER BY sku LIMIT ${pageSize}`;
    if (page.length === 0) break;
    out.push(...(await gateDriftFor(core, gate, page.map((p) => p.sku))));
    after = page[page.length - 1]!.sku;
    if (page.length < pageSize) break;
  }
  return out;
}

/** Carries out the repair a finding names, through the services. */
async function repairOne(target: VerifyTarget, f: Finding): Promise<RepairAction> {
  const { inventory, saga, dbs } = target;
  if (!inventory || !saga) throw new Error('repairs need the inventory service and the checkout saga');
  const orderId = String(f.subject.orderId ?? '');
  const done = (action: string, ok = true, error?: string): RepairAction => ({ invariant: f.invariant, kind: f.kind, subject: f.subject, action, ok, ...(error ? { error } : {}) });
  try {
    switch (f.kind) {
      case 'reservation_without_order':
      case 'reservation_of_cancelled_order': {
        const r = await inventory.release(orderId, f.kind === 'reservation_without_order' ? 'verify: no order (restore leftover)' : 'verify: order cancelled');
        return r.ok ? done(`released reservation ${orderId} (ledger 'release')`) : done(`release of reservation ${orderId}`, false, r.code);
      }
      case 'consumed_without_paid_order': {
        // The stock was sold (consumed) before the order was marked paid: finishing the saga
        // (capture, mark paid) is the one correct move, as the sweeper would do.
        await saga.settle(orderId);
        const [row] = await dbs.ownerOf(shardOfId(orderId)).pool<{ status: string }[]>`SELECT status FROM orders WHERE id = ${orderId}`;
        return PAID.includes(row?.status ?? '')
          ? done(`finished checkout ${orderId} through the saga: order ${row!.status}`)
          : done(`finish checkout ${orderId} through the saga`, false, `the order is ${row?.status ?? 'missing'}`);
      }
      case 'paid_order_not_consumed': {
        const core = dbs.core('inventory');
        if (f.subject.reservation === 'none') {
          const lines = Object.entries(f.subject.lines as Record<string, number>).map(([sku, quantity]) => ({ sku, quantity }));
          const reserved = await inventory.reserve(orderId, lines, 60_000);
          if (!reserved.ok) return done(`reserve the lines of paid order ${orderId}`, false, `out of stock: ${reserved.sku} (${reserved.available} of ${reserved.requested}); refund or restock`);
        } else {
          // The order was paid: the sale happened, so its reservation's expiry (measured from
          // before the restore) must not turn the consumption into a release.
          await core`UPDATE reservations SET expires_at = greatest(expires_at, now() + interval '1 minute') WHERE id = ${orderId} AND status = 'live'`;
        }
        const consumed = await inventory.consume(orderId);
        return consumed.ok ? done(`consumed the stock of paid order ${orderId} (ledger 'consume')`) : done(`consume the stock of paid order ${orderId}`, false, consumed.code);
      }
      case 'gate_counter_drift': {
        await (inventory.gate as RedisGate).reconcileAll();
        return done('rebuilt the Redis gate counters from PostgreSQL');
      }
      default:
        return done('none', false, 'needs a person');
    }
  } catch (err) {
    return done(`repair of ${f.kind}`, false, (err as Error).message);
  }
}

/** Checks I1–I7; with repair, fixes what it can, then checks again. */
export async function verifyInvariants(target: VerifyTarget, options: VerifyOptions = {}): Promise<VerifyReport> {
  const o = { graceMs: options.graceMs ?? 60_000, pageSize: options.pageSize ?? 5_000, findingsMax: options.findingsMax ?? 1_000 };
  let result = await scan(target, o);
  const repairs: RepairAction[] = [];
  if (options.repair) {
    let gateRebuilt = false;
    for (const f of result.collector.findings) {
      if (!f.repair) continue;
      if (f.kind === 'gate_counter_drift') {
        if (gateRebuilt) continue;
        gateRebuilt = true;
      }
      repairs.push(await repairOne(target, f));
    }
    // Counters of the Redis gate follow PostgreSQL: after ledger repairs, rebuild them too.
    if (repairs.length > 0 && target.inventory?.gate.engine === 'redis' && !gateRebuilt) await (target.inventory.gate as RedisGate).reconcileAll();
    if (repairs.length > 0) result = await scan(target, o);
  }
  const { collector, scanned, i7note } = result;
  const invariants = (Object.keys(INVARIANTS) as InvariantId[]).map((id) => ({
    id,
    description: INVARIANTS[id],
    ok: (collector.counts.get(id) ?? 0) === 0,
    findings: collector.counts.get(id) ?? 0,
    ...(id === 'I7' ? { note: i7note } : {}),
  }));
  return {
    ok: collector.findings.length === 0,
    checkedAt: new Date().toISOString(),
    clusters: target.dbs.clusters.map((c) => c.spec.name),
    scanned,
    invariants,
    findings: collector.findings,
    truncated: collector.truncated,
    repairs,
  };
}

/** The report as an operator reads it. */
export function formatVerifyReport(r: VerifyReport): string {
  const lines = [`verify: ${r.clusters.length} cluster(s) [${r.clusters.join(', ')}]; ${r.scanned.orders} orders, ${r.scanned.reservations} reservations, ${r.scanned.skus} SKUs`];
  for (const i of r.invariants) lines.push(`  ${i.ok ? 'ok  ' : 'FAIL'} ${i.id} ${i.description}${i.findings ? ` — ${i.findings} finding(s)` : ''}${i.note ? ` (${i.note})` : ''}`);
  for (const a of r.repairs) lines.push(`  repaired ${a.invariant} ${a.kind}: ${a.action}${a.ok ? '' : ` — FAILED: ${a.error ?? ''}`}`);
  for (const f of r.findings) lines.push(`  ${f.invariant} ${f.kind} on ${f.cluster}: ${f.message}${f.repair ? ` (--repair would ${f.repair})` : ' (needs a person)'}`);
  if (r.truncated) lines.push('  … more findings not listed');
  lines.push(r.ok ? 'verify: all invariants hold' : `verify: ${r.findings.length} problem(s) remain`);
  return lines.join('\n');
}
