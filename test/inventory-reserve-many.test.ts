// The set-based inventory_reserve_many() against its definition: the same answers as calling
// inventory_try_reserve() once per request, in request order (greedy, all or nothing per
// request, repeats of an id are replays). Random batches over SKUs stocked at several locations;
// each batch runs on one set of SKUs and the one-by-one reference on a mirror set stocked alike.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { assertInventoryInvariants, createTestPlatform, type TestPlatform } from './helpers.ts';

const LOCATIONS = ['east', 'main', 'west'];
const TTL_MS = 60_000;

interface Request {
  /** Index of an earlier request whose id (and lines) this one repeats, or -1. */
  repeatOf: number;
  lines: { sku: number; quantity: number }[];
}

const requestArb = fc.record({
  repeatOf: fc.oneof({ weight: 9, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.nat(20) }),
  lines: fc.uniqueArray(fc.record({ sku: fc.nat(2), quantity: fc.integer({ min: 1, max: 4 }) }), { minLength: 1, maxLength: 3, selector: (l) => l.sku }),
});

const scenarioArb = fc.record({
  stock: fc.array(fc.array(fc.nat(6), { minLength: 3, maxLength: 3 }), { minLength: 3, maxLength: 3 }),
  alreadyReserved: fc.boolean(),
  requests: fc.array(requestArb, { minLength: 1, maxLength: 30 }),
});

let idSeq = BigInt(Date.now()) << 20n;
const nextId = (): string => String(++idSeq);

describe('inventory_reserve_many (set-based) = inventory_try_reserve one request at a time', () => {
  let t: TestPlatform;
  before(async () => {
    t = await createTestPlatform({ inventoryGate: 'postgres-batched' });
    for (const l of LOCATIONS) await t.s.inventory.upsertLocation(l, l);
  });
  after(async () => t.close());

  /** inventory.stock_changed events a SKU's reservations and settlements wrote (receipts write '0'). */
  async function reservationEvents(sku: string): Promise<number> {
    const [row] = await t.s.dbs.core('inventory')<{ n: number }[]>`
      SELECT count(*)::int AS n FROM outbox WHERE topic = 'inventory.stock_changed' AND payload ->> 'sku' = ${sku} AND aggregate_id <> 0`;
    return row?.n ?? 0;
  }

  it('gives the same answers and reserves the same units per SKU', async () => {
    const db = t.s.dbs.core('inventory');
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (sc) => {
        const tag = randomBytes(4).toString('hex');
        const skuOf = (side: 'a' | 'b', i: number): string => `RM-${tag}-${side}-${i}`;
        for (const side of ['a', 'b'] as const) {
          for (let i = 0; i < 3; i++) {
            for (let l = 0; l < LOCATIONS.length; l++) {
              const units = sc.stock[i]![l]!;
              if (units > 0) await t.s.inventory.changeStock('receipt', skuOf(side, i), LOCATIONS[l]!, units);
            }
          }
        }
        const sorted = (r: Request): Request['lines'] => [...r.lines].sort((x, y) => x.sku - y.sku);
        // Resolve repeats to the id and lines of the request they repeat.
        const resolved: { ids: [string, string]; lines: Request['lines'] }[] = [];
        for (const r of sc.requests) {
          const earlier = r.repeatOf >= 0 && r.repeatOf < resolved.length ? resolved[r.repeatOf] : undefined;
          resolved.push(earlier ?? { ids: [nextId(), nextId()], lines: sorted(r) });
        }
        if (sc.alreadyReserved && resolved[0]) {
          // The first request's id exists before the batch: a replay, whatever its lines.
          for (const [side, i] of [['a', 0], ['b', 1]] as const) {
            await db`SELECT inventory_try_reserve(${resolved[0].ids[i]}, ${[skuOf(side, 0)]}::text[], ${[1]}::int[], now() + interval '1 minute')`;
          }
        }

        const request: number[] = [];
        const skus: string[] = [];
        const quantities: number[] = [];
        resolved.forEach((r, k) => {
          for (const l of r.lines) {
            request.push(k + 1);
            skus.push(skuOf('a', l.sku));
            quantities.push(l.quantity);
          }
        });
        const batch = await db<{ r_index: number; r_result: Record<string, unknown> }[]>`
          SELECT r_index, r_result FROM inventory_reserve_many(${resolved.map((r) => r.ids[0])}::bigint[], ${request}::int[], ${skus}::text[], ${quantities}::int[], ${TTL_MS})`;

        const reference: Record<string, unknown>[] = [];
        for (const r of resolved) {
          const [row] = await db<{ result: Record<string, unknown> }[]>`
            SELECT inventory_try_reserve(${r.ids[1]}, ${r.lines.map((l) => skuOf('b', l.sku))}::text[], ${r.lines.map((l) => l.quantity)}::int[],
                                         now() + ${TTL_MS} * interval '1 millisecond') AS result`;
          reference.push(row!.result);
        }

        assert.deepEqual(batch.map((r) => r.r_index), resolved.map((_, k) => k + 1));
        batch.forEach((row, k) => {
          const neutral = (o: Record<string, unknown>, side: string): Record<string, unknown> =>
            typeof o.sku === 'string' ? { ...o, sku: o.sku.replace(`-${side}-`, '-x-') } : o;
          const mine = neutral(row.r_result, 'a');
          const theirs = neutral(reference[k]!, 'b');
          const what = `request ${k + 1} of ${JSON.stringify(resolved.map((r) => r.lines))}`;
          const firstK = resolved.indexOf(resolved[k]!);
          if (firstK !== k && mine.ok === false) {
            // A repeat of a refused request is refused again; the batch reports the first refusal's figures.
            assert.equal(theirs.ok, false, what);
          } else {
            assert.deepEqual(mine, theirs, what);
          }
        });
        for (let i = 0; i < 3; i++) {
          const [a] = await db<{ reserved: number }[]>`
            SELECT coalesce(sum(reserved), 0)::int AS reserved FROM stock WHERE sku = ${skuOf('a', i)}`;
          const [b] = await db<{ reserved: number }[]>`SELECT coalesce(sum(reserved), 0)::int AS reserved FROM stock WHERE sku = ${skuOf('b', i)}`;
          assert.equal(a?.reserved, b?.reserved, `reserved units of SKU ${i}`);
        }
        // inventory.stock_changed (from reservations, not receipts) once per SKU whose last
        // available unit was taken, on both sides alike.
        for (let i = 0; i < 3; i++) {
          const stocked = sc.stock[i]!.reduce((x, y) => x + y, 0);
          const [left] = await db<{ n: number }[]>`SELECT coalesce(sum(on_hand - reserved), 0)::int AS n FROM stock WHERE sku = ${skuOf('a', i)}`;
          const expected = stocked > 0 && left?.n === 0 ? 1 : 0;
          for (const side of ['a', 'b'] as const) {
            assert.equal(await reservationEvents(skuOf(side, i)), expected, `stock_changed events of SKU ${i} (${side}), ${stocked} stocked`);
          }
        }
        // Every admitted request holds exactly its quantities, spread over locations within stock.
        const held = await db<{ id: string; sku: string; quantity: number }[]>`
          SELECT id::text, sku, sum(quantity)::int AS quantity FROM reservations WHERE sku LIKE ${`RM-${tag}-a-%`} GROUP BY 1, 2`;
        const heldBy = new Map(held.map((h) => [`${h.id}/${h.sku}`, h.quantity]));
        resolved.forEach((r, k) => {
          if (batch[k]!.r_result.ok !== true || batch[k]!.r_result.replayed === true) return;
          for (const l of r.lines) assert.equal(heldBy.get(`${r.ids[0]}/${skuOf('a', l.sku)}`), l.quantity);
        });
      }),
      { numRuns: 40 },
    );
    await assertInventoryInvariants(t);
  });

  it('announces a SKU (inventory.stock_changed) only when its availability reaches or leaves zero', async () => {
    const db = t.s.dbs.core('inventory');
    const sku = `RM-${randomBytes(4).toString('hex')}-zero`;
    await t.s.inventory.changeStock('receipt', sku, 'east', 2);
    await t.s.inventory.changeStock('receipt', sku, 'west', 3);
    const reserve = async (quantity: number): Promise<string> => {
      const id = nextId();
      const [row] = await db<{ result: { ok: boolean } }[]>`
        SELECT inventory_try_reserve(${id}, ${[sku]}::text[], ${[quantity]}::int[], now() + interval '1 minute') AS result`;
      assert.equal(row?.result.ok, true);
      return id;
    };
    const settle = async (id: string, to: 'consumed' | 'released'): Promise<void> => {
      const [row] = await db<{ outcome: string }[]>`SELECT inventory_settle(${id}, ${to}, 'test') AS outcome`;
      assert.equal(row?.outcome, 'settled');
    };
    const first = await reserve(2); // 3 left
    assert.equal(await reservationEvents(sku), 0, 'units left: in stock as before');
    await settle(first, 'consumed'); // on_hand and reserved drop together: still 3 available
    assert.equal(await reservationEvents(sku), 0, 'a consumption leaves availability as it was');
    const second = await reserve(1); // 2 left
    const last = await reserve(2); // 0 left: spans both locations
    assert.equal(await reservationEvents(sku), 1, 'the reservation that took the last units announces it');
    await settle(second, 'released'); // 1 available again
    assert.equal(await reservationEvents(sku), 2, 'a release to a SKU with nothing available announces it');
    await settle(last, 'released'); // 3 available
    assert.equal(await reservationEvents(sku), 2, 'a release to a SKU with units available does not');
    // The batched statement: two requests, the second takes the last units.
    const ids = [nextId(), nextId()];
    const batch = await db<{ r_result: { ok: boolean } }[]>`
      SELECT r_result FROM inventory_reserve_many(${ids}::bigint[], ${[1, 2]}::int[], ${[sku, sku]}::text[], ${[1, 2]}::int[], ${TTL_MS})`;
    assert.deepEqual(batch.map((r) => r.r_result.ok), [true, true]);
    const [announcer] = await db<{ id: string }[]>`
      SELECT aggregate_id::text AS id FROM outbox WHERE topic = 'inventory.stock_changed' AND payload ->> 'sku' = ${sku} ORDER BY id DESC LIMIT 1`;
    assert.equal(await reservationEvents(sku), 3);
    assert.equal(announcer?.id, ids[1], 'the request that took the last unit announces it');
    await assertInventoryInvariants(t);
  });
});
