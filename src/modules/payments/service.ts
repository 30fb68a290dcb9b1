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
    const [row] = await this.dbs.forId(orderId)<PaymentRow[]>`
      SELECT status, provider_ref, amount::text, currency, decline_reason FROM payments WHERE order_id = ${orderId}`;
    return row ? toRecord(orderId, row) : undefined;
  }

  /**
   * Authorize once per order. The provider is idempotent by order id, so a repeat (a resumed
   * checkout) gets the provider's first answer, and the row it recorded wins over the new one.
   */
  async authorize(userId: Id, orderId: Id, amount: Money, token: string): Promise<PaymentRecord> {
    const result = await this.provider.authorize({ idempotencyKey: orderId, amount, token });
    const [inserted] = await this.dbs.forId(orderId)<PaymentRow[]>`
      INSERT INTO payments (order_id, user_id, provider, provider_ref, status, amount, currency, decline_reason)
      VALUES (${orderId}, ${userId}, ${this.provider.name}, ${result.ok ? result.ref : null},
              ${result.ok ? 'authorized' : 'declined'}, ${amount.amount}, ${amount.currency}, ${result.ok ? null : result.reason})
      ON CONFLICT (order_id) DO NOTHING
      RETURNING status, provider_ref, amount::text, currency, decline_reason`;
    if (inserted) return toRecord(orderId, inserted);
    const recorded = await this.find(orderId);
    if (!recorded) throw new Error(`payment for ${orderId} vanished`);
    return recorded;
  }

  /**
   * Capture at the provider (idempotent there). The record moves to 'captured' in the statement
   * that marks the order paid (payment_record_capture, called by order_mark_paid), so the money
   * and the order change in one commit; a crash in between is repaired by repeating both.
   * `known`: the record the caller already holds, to skip reading it again.
   */
  async capture(orderId: Id, known?: PaymentRecord): Promise<void> {
    const p = known ?? (await this.find(orderId));
    if (!p || p.status !== 'authorized' || !p.providerRef) return;
    await this.provider.capture(p.providerRef, `capture_${orderId}`);
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

interface PaymentRow {
  status: PaymentStatus;
  provider_ref: string | null;
  amount: string;
  currency: string;
  decline_reason: string | null;
}

function toRecord(orderId: Id, row: PaymentRow): PaymentRecord {
  return { orderId, status: row.status, providerRef: row.provider_ref, amount: Number(row.amount), currency: row.currency, declineReason: row.decline_reason };
}
