// meridian verify on a sharded test platform (three databases standing in for the core and two
// user-shard clusters): it must pass a clean checkout, find what a cross-cluster restore can
// leave half-done — planted here as exactly the rows such a restore leaves — and repair it
// through the ledger and the saga.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { verifyInvariants, type VerifyReport } from '../src/cluster/verify.ts';
import { encodeId, shardOfId, type Id } from '../src/platform/ids.ts';
import { cartWith, checkout, createProduct, createShardedTestPlatform, createUser, type Fixture, type TestPlatform } from './helpers.ts';

const kinds = (r: VerifyReport): string[] => r.findings.map((f) => f.kind).sort();

describe('meridian verify: find and repair what a cross-cluster restore leaves behind', () => {
  let t: TestPlatform;
  let product: Fixture;

  before(async () => {
    t = await createShardedTestPlatform();
    product = await createProduct(t, 10, 1500);
  });
  after(async () => {
    await t?.close();
  });

  const target = (): { dbs: TestPlatform['s']['dbs']; inventory: TestPlatform['s']['inventory']; saga: TestPlatform['s']['saga'] } => ({ dbs: t.s.dbs, inventory: t.s.inventory, saga: t.s.saga });

  /** An order row as the saga writes it (step 4), on the user's shard. */
  async function plantOrder(userId: Id, status: 'pending_payment' | 'paid', quantity: number): Promise<Id> {
    const db = t.s.dbs.forId(userId);
    const [row] = await db<{ id: Id }[]>`SELECT meridian_id(${shardOfId(userId)})::text AS id`;
    const orderId = row!.id;
    await db`INSERT INTO orders (id, user_id, cart_id, status, currency, total_amount, paid_at)
             VALUES (${orderId}, ${userId}, ${orderId}, ${status}, 'USD', ${quantity * product.price}, ${status === 'paid' ? new Date() : null})`;
    await db`INSERT INTO order_lines (order_id, line_no, user_id, sku, title, quantity, unit_amount)
             VALUES (${orderId}, 1, ${userId}, ${product.sku}, 'planted', ${quantity}, ${product.price})`;
    return orderId;
  }

  it('passes a platform where every checkout finished', async () => {
    const buyer = await createUser(t);
    const cart = await cartWith(t, buyer.token, [{ sku: product.sku, quantity: 1 }]);
    const res = await checkout(t, buyer.token, cart, 'clean-1');
    assert.equal(res.statusCode, 201, res.body);
    const report = await verifyInvariants(target(), { graceMs: 0 });
    assert.equal(report.ok, true, JSON.stringify(report.findings));
    assert.equal(report.scanned.orders, 1);
    assert.deepEqual(report.clusters, ['core', 'users-a', 'users-b']);
    assert.ok(report.invariants.every((i) => i.ok));
  });

  it('finds an orphan reservation, a paid order without consumption and a consumption without a paid order, and repairs them', async () => {
    const buyer = await createUser(t);
    // 1. The core cluster at T had reserved stock for a checkout whose order the shard had not
    //    committed yet: a live reservation of an order that does not exist.
    const ghost = encodeId(Date.now() - 60_000, shardOfId(buyer.userId), 7);
    assert.equal((await t.s.inventory.reserve(ghost, [{ sku: product.sku, quantity: 1 }], 300_000)).ok, true);
    // 2. The shard at T had the order paid while the core cluster's consumption was not
    //    committed (clocks of two hosts disagreeing): the reservation is live, and expired.
    const paid = await plantOrder(buyer.userId, 'paid', 3);
    assert.equal((await t.s.inventory.reserve(paid, [{ sku: product.sku, quantity: 3 }], 1)).ok, true);
    await t.s.dbs.forId(paid)`INSERT INTO payments (order_id, user_id, provider, provider_ref, status, amount, currency)
                               VALUES (${paid}, ${buyer.userId}, 'test', ${`ref_${paid}`}, 'captured', ${3 * product.price}, 'USD')`;
    // 3. The core cluster at T had consumed the stock, the shard had not marked the order paid:
    //    a crash (or T) between the two commits of the saga's last step.
    const pending = await plantOrder(buyer.userId, 'pending_payment', 2);
    assert.equal((await t.s.inventory.reserve(pending, [{ sku: product.sku, quantity: 2 }], 300_000)).ok, true);
    const auth = await t.s.payments.authorize(buyer.userId, pending, { amount: 2 * product.price, currency: 'USD' }, 'tok_visa');
    assert.equal(auth.status, 'authorized');
    assert.equal((await t.s.inventory.consume(pending)).ok, true);

    const found = await verifyInvariants(target(), { graceMs: 0 });
    assert.equal(found.ok, false);
    assert.deepEqual(kinds(found), ['consumed_without_paid_order', 'paid_order_not_consumed', 'reservation_without_order']);
    assert.deepEqual(found.invariants.filter((i) => !i.ok).map((i) => i.id), ['I4', 'I5']);
    assert.ok(found.findings.every((f) => f.repair), 'each of these is repairable');
    const byKind = new Map(found.findings.map((f) => [f.kind, f.subject.orderId]));
    assert.equal(byKind.get('reservation_without_order'), ghost);
    assert.equal(byKind.get('paid_order_not_consumed'), paid);
    assert.equal(byKind.get('consumed_without_paid_order'), pending);
    assert.equal(found.repairs.length, 0, 'without --repair nothing changes');

    const repaired = await verifyInvariants(target(), { graceMs: 0, repair: true });
    assert.equal(repaired.ok, true, JSON.stringify({ findings: repaired.findings, repairs: repaired.repairs }));
    assert.equal(repaired.repairs.length, 3);
    assert.ok(repaired.repairs.every((r) => r.ok), JSON.stringify(repaired.repairs));

    // Through the ledger: released, consumed and consumed — never a counter edited directly.
    const core = t.s.dbs.core('inventory');
    const ledger = await core<{ reservation_id: string; kind: string }[]>`
      SELECT reservation_id::text, kind FROM stock_ledger WHERE reservation_id = ANY(${[ghost, paid, pending]}::bigint[]) ORDER BY id`;
    const trail = (id: Id): string[] => ledger.filter((l) => l.reservation_id === id).map((l) => l.kind);
    assert.deepEqual(trail(ghost), ['reserve', 'release']);
    assert.deepEqual(trail(paid), ['reserve', 'consume']);
    assert.deepEqual(trail(pending), ['reserve', 'consume']);
    const [order] = await t.s.dbs.forId(pending)<{ status: string }[]>`SELECT status FROM orders WHERE id = ${pending}`;
    assert.equal(order?.status, 'paid', 'the half-finished checkout was finished by the saga');
    // 10 received; 1 sold by the clean checkout, 3 and 2 by the repaired orders.
    assert.equal((await t.s.inventory.availability(product.sku)).available, 4);
  });

  it('reports what needs a person and exits unclean: stock consumed for an order that exists nowhere', async () => {
    const buyer = await createUser(t);
    const lost = encodeId(Date.now() - 60_000, shardOfId(buyer.userId), 9);
    assert.equal((await t.s.inventory.reserve(lost, [{ sku: product.sku, quantity: 1 }], 300_000)).ok, true);
    assert.equal((await t.s.inventory.consume(lost)).ok, true);
    const report = await verifyInvariants(target(), { graceMs: 0, repair: true });
    assert.equal(report.ok, false);
    assert.deepEqual(kinds(report), ['consumed_without_paid_order']);
    assert.equal(report.findings[0]!.repair, undefined);
    assert.equal(report.repairs.length, 0);
  });
});
