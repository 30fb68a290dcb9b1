// The boundary to a payment service. Every call carries an idempotency key (the order id), so a
// retried call after a crash or time-out never charges twice. Calls are never made inside a
// database transaction.
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import type { Money } from '../../platform/money.ts';

export type AuthorizeResult = { ok: true; ref: string } | { ok: false; reason: string };

export interface PaymentProvider {
  readonly name: string;
  authorize(input: { idempotencyKey: string; amount: Money; token: string }): Promise<AuthorizeResult>;
  capture(ref: string, idempotencyKey: string): Promise<void>;
  void(ref: string, idempotencyKey: string): Promise<void>;
  refund(ref: string, amount: Money, idempotencyKey: string): Promise<void>;
}

export class PaymentProviderError extends Error {}

type PaymentState = 'authorized' | 'captured' | 'voided' | 'refunded';
/** One line of the test provider's ledger file. */
type LedgerEntry = { key: string; result: AuthorizeResult } | { ref: string; state: PaymentState };

/**
 * A built-in provider for development and tests, with card tokens in the style of Stripe's test
 * mode: `tok_visa` approves, `tok_decline` declines, `tok_error` fails as if the provider were
 * down. It keeps its ledger keyed by idempotency key, as a real provider would: in memory, and
 * with `ledgerFile` also in an append-only file, so that — like a real provider, which lives
 * outside the API process — it remembers its payments across API restarts (the sweeper of a
 * restarted API captures or voids what the previous process authorized).
 */
export class TestPaymentProvider implements PaymentProvider {
  readonly name = 'test';
  private readonly authorizations = new Map<string, AuthorizeResult>();
  private readonly state = new Map<string, PaymentState>();
  /** Counts real state changes, so tests can assert that retries did not repeat them. */
  readonly captures = new Map<string, number>();
  private ledgerFd: number | undefined;

  constructor(private readonly latencyMs = 0, private readonly ledgerFile?: string) {
    if (!ledgerFile || !existsSync(ledgerFile)) return;
    for (const line of readFileSync(ledgerFile, 'utf8').split('\n')) {
      if (!line) continue;
      this.apply(JSON.parse(line) as LedgerEntry);
    }
  }

  private apply(entry: LedgerEntry): void {
    if ('key' in entry) this.authorizations.set(entry.key, entry.result);
    else this.state.set(entry.ref, entry.state);
  }

  private record(...entries: LedgerEntry[]): void {
    if (this.ledgerFile) {
      // Synchronous on purpose, and before the change is applied in memory: it is in the file
      // (the page cache, which outlives this process) before anyone hears of it, and a failed
      // write changes nothing. One descriptor for the process's life (O_APPEND) and one write
      // per change; writeFileSync on a descriptor writes the whole string, as appendFileSync did.
      this.ledgerFd ??= openSync(this.ledgerFile, 'a');
      writeFileSync(this.ledgerFd, entries.map((e) => `${JSON.stringify(e)}\n`).join(''));
    }
    for (const entry of entries) this.apply(entry);
  }

  /** Close the ledger file (a later change opens it again). */
  close(): void {
    if (this.ledgerFd === undefined) return;
    closeSync(this.ledgerFd);
    this.ledgerFd = undefined;
  }

  private async delay(): Promise<void> {
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
  }

  async authorize(input: { idempotencyKey: string; amount: Money; token: string }): Promise<AuthorizeResult> {
    await this.delay();
    const previous = this.authorizations.get(input.idempotencyKey);
    if (previous) return previous;
    let result: AuthorizeResult;
    if (input.token === 'tok_visa') result = { ok: true, ref: `pi_${input.idempotencyKey}` };
    else if (input.token === 'tok_decline') result = { ok: false, reason: 'card_declined' };
    else if (input.token === 'tok_error') throw new PaymentProviderError('payment provider unavailable');
    else result = { ok: false, reason: 'invalid_token' };
    if (result.ok) this.record({ key: input.idempotencyKey, result }, { ref: result.ref, state: 'authorized' });
    else this.record({ key: input.idempotencyKey, result });
    return result;
  }

  async capture(ref: string): Promise<void> {
    await this.delay();
    const s = this.state.get(ref);
    if (s === 'captured') return;
    if (s !== 'authorized') throw new PaymentProviderError(`cannot capture ${ref} in state ${s ?? 'unknown'}`);
    this.record({ ref, state: 'captured' });
    this.captures.set(ref, (this.captures.get(ref) ?? 0) + 1);
  }

  async void(ref: string): Promise<void> {
    await this.delay();
    const s = this.state.get(ref);
    if (s === 'voided' || s === undefined) return;
    if (s !== 'authorized') throw new PaymentProviderError(`cannot void ${ref} in state ${s}`);
    this.record({ ref, state: 'voided' });
  }

  async refund(ref: string): Promise<void> {
    await this.delay();
    const s = this.state.get(ref);
    if (s === 'refunded') return;
    if (s !== 'captured') throw new PaymentProviderError(`cannot refund ${ref} in state ${s ?? 'unknown'}`);
    this.record({ ref, state: 'refunded' });
  }
}
