// The built-in test payment provider remembers its payments in its ledger file across restarts
// of the API, as a real provider (outside the process) would: a restarted API's sweeper must be
// able to capture or void what the previous process authorized, and never charge twice.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PaymentProviderError, TestPaymentProvider } from '../src/modules/payments/provider.ts';

const USD_10 = { amount: 1000, currency: 'USD' };

describe('test payment provider with a ledger file', () => {
  let dir: string;
  let file: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'meridian-payments-'));
    file = path.join(dir, 'ledger.jsonl');
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('a new process finds every authorization and state change, and repeats none', async () => {
    const first = new TestPaymentProvider(0, file);
    const approved = await first.authorize({ idempotencyKey: 'order-1', amount: USD_10, token: 'tok_visa' });
    assert.ok(approved.ok);
    await first.capture(approved.ref);
    const declined = await first.authorize({ idempotencyKey: 'order-2', amount: USD_10, token: 'tok_decline' });
    assert.deepEqual(declined, { ok: false, reason: 'card_declined' });
    const pending = await first.authorize({ idempotencyKey: 'order-3', amount: USD_10, token: 'tok_visa' });
    assert.ok(pending.ok);
    assert.equal(first.captures.get(approved.ref), 1);
    first.close();

    const lines = (await readFile(file, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines, [
      { key: 'order-1', result: approved },
      { ref: approved.ref, state: 'authorized' },
      { ref: approved.ref, state: 'captured' },
      { key: 'order-2', result: declined },
      { key: 'order-3', result: pending },
      { ref: pending.ref, state: 'authorized' },
    ]);

    const restarted = new TestPaymentProvider(0, file);
    // The first answer per idempotency key stands, whatever the token now.
    assert.deepEqual(await restarted.authorize({ idempotencyKey: 'order-1', amount: USD_10, token: 'tok_decline' }), approved);
    assert.deepEqual(await restarted.authorize({ idempotencyKey: 'order-2', amount: USD_10, token: 'tok_visa' }), declined);
    await restarted.capture(approved.ref);
    assert.equal(restarted.captures.get(approved.ref), undefined, 'a capture repeated after a restart charges nothing');
    await assert.rejects(restarted.void(approved.ref), PaymentProviderError, 'a captured payment cannot be voided');
    await restarted.void(pending.ref);
    await restarted.refund(approved.ref);
    restarted.close();

    const third = new TestPaymentProvider(0, file);
    await assert.rejects(third.capture(pending.ref), PaymentProviderError, 'the void was remembered');
    await third.refund(approved.ref); // already refunded: nothing to do, no error
    third.close();
    assert.equal((await readFile(file, 'utf8')).split('\n').filter(Boolean).length, lines.length + 2);
  });
});
