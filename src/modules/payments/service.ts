// Payments: records what the provider did, per order, on the user's shard. Provider first (it is
// idempotent by order id), then a conditional status update, so a crash between the two is
// repaired by simply repeating the step.
import type { Databases } from '../../platform/db.ts';
import type { Id } from '../../platform/ids.ts';
import type { Money } from '../../platform/money.ts';
import type { PaymentProvider } from './provider.ts';

export type PaymentStatus = 'authorized' | 'declined' | 'captured' | 'voided' | 'refunded';

export interface PaymentRecord {
  orderId: Id;
  status: PaymentStatus;
  providerRef: string | null;
  amount: number;
  currency: string;
  declineReason: string | null;
}

export class PaymentsService {
  constructor(
    private readonly dbs: Databases,
    readonly provider: PaymentProvider,
  ) {}

  async find(orderId: Id): Promise<PaymentRecord | undefined> {
    const [row] = await this.dbs.forId(orderId)<
      { status: PaymentStatus; provider_ref: string | null; amount: string; currency: string; decline_reason: string | null }[]
    >`SELECT status, provider_ref, amount, currency, decline_reason FROM payments WHERE order_id = ${orderId}`;
    return row
      ? { orderId, status: row.status, providerRef: row.provider_ref, amount: Number(row.amount), currency: row.currency, declineReason: row.decline_reason }
      : undefined;
  }

  /** Authorize once per order; a repeat returns the recorded outcome. */
  async authorize(userId: Id, orderId: Id, amount: Money, token: string): Promise<PaymentRecord> {
    const existing = await this.find(orderId);
    if (existing) return existing;
    const result = await this.provider.authorize({ idempotencyKey: orderId, amount, token });
    await this.dbs.forId(orderId)`
      INSERT INTO payments (order_id, user_id, provider, provider_ref, status, amount, currency, decline_reason)
      VALUES (${orderId}, ${userId}, ${this.provider.name}, ${result.ok ? result.ref : null},
              ${result.ok ? 'authorized' : 'declined'}, ${amount.amount}, ${amount.currency}, ${result.ok ? null : result.reason})
      ON CONFLICT (order_id) DO NOTHING`;
    const recorded = await this.find(orderId);
    if (!recorded) throw new Error(`payment for ${orderId} vanished`);
    return recorded;
  }

  async capture(orderId: Id): Promise<void> {
    await this.move(orderId, 'authorized', 'captured', (ref) => this.provider.capture(ref, `capture_${orderId}`));
  }

  async void(orderId: Id): Promise<void> {
    await this.move(orderId, 'authorized', 'voided', (ref) => this.provider.void(ref, `void_${orderId}`));
  }

  async refund(orderId: Id): Promise<void> {
    await this.move(orderId, 'captured', 'refunded', (ref, p) => this.provider.refund(ref, { amount: p.amount, currency: p.currency }, `refund_${orderId}`));
  }

  private async move(orderId: Id, from: PaymentStatus, to: PaymentStatus, call: (ref: string, p: PaymentRecord) => Promise<void>): Promise<void> {
    const p = await this.find(orderId);
    if (!p || p.status === to || p.status !== from || !p.providerRef) return;
    await call(p.providerRef, p);
    await this.dbs.forId(orderId)`
      UPDATE payments SET status = ${to}, updated_at = now() WHERE order_id = ${orderId} AND status = ${from}`;
  }
}
