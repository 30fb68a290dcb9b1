// The steady checkout load of the fault tests: many buyers, each in a loop of
// create cart → add a line → checkout, over real HTTP against a running API process.
// It behaves as a well-written client: it retries a 503 after its Retry-After with the same
// Idempotency-Key, retries a refused connection (the API process is being restarted), and
// records every answer so that the checks can compare what was acknowledged with what the
// databases hold afterwards.
import { randomUUID } from 'node:crypto';
import { shardOfId } from '../platform/ids.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Buyer {
  readonly userId: string;
  readonly token: string;
}

export interface AcknowledgedOrder {
  readonly orderId: string;
  readonly userId: string;
  readonly sku: string;
  readonly quantity: number;
  readonly status: string;
}

/** A write the API acknowledged (2xx), with when its successful attempt started and ended. */
export interface WriteSuccess {
  readonly shard: number;
  readonly attemptStartedAt: number;
  readonly acknowledgedAt: number;
}

/** An attempt that got a 503 or no connection, by the buyer's shard. */
export interface WriteFailure {
  readonly shard: number;
  readonly at: number;
}

export interface LoadTally {
  /** HTTP status → count, over every attempt (including retried ones). */
  readonly statuses: Map<number, number>;
  /** Answers that a client must never see: 5xx other than 503, and 500s in particular. */
  readonly forbidden: { status: number; body: string; route: string }[];
  readonly acknowledged: AcknowledgedOrder[];
  /** Clean refusals of the hot SKU (409 out_of_stock). */
  outOfStock: number;
  /** Attempts retried after a 503 or a refused connection. */
  retries: number;
  /** Attempts that found no API process listening. */
  connectionErrors: number;
  readonly writes: WriteSuccess[];
  readonly failures: WriteFailure[];
}

export interface LoadOptions {
  readonly baseUrl: string;
  readonly buyers: readonly Buyer[];
  /** SKUs with stock to spare, and the hot SKU that sells out. */
  readonly plentySkus: readonly string[];
  readonly hotSku: string;
  /** One checkout in this many buys the hot SKU. */
  readonly hotEvery: number;
  readonly workers: number;
  /** Upper bound of one attempt (the API's own request timeout is shorter). */
  readonly attemptTimeoutMs: number;
  /** Give up a step after this long without an answer other than 503 / connection refused. */
  readonly stepDeadlineMs: number;
}

export class CheckoutLoad {
  readonly tally: LoadTally = {
    statuses: new Map(),
    forbidden: [],
    acknowledged: [],
    outOfStock: 0,
    retries: 0,
    connectionErrors: 0,
    writes: [],
    failures: [],
  };
  private running = false;
  private loops: Promise<void>[] = [];
  private iteration = 0;

  constructor(private readonly options: LoadOptions) {}

  start(): void {
    this.running = true;
    this.loops = Array.from({ length: this.options.workers }, (_, w) => this.worker(w));
  }

  /** Stops starting new checkouts and waits for the ones in flight to get their final answer. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private async worker(w: number): Promise<void> {
    const { buyers } = this.options;
    for (let i = w; this.running; i += this.options.workers) {
      const buyer = buyers[i % buyers.length]!;
      await this.purchase(buyer).catch((err: unknown) => {
        this.tally.forbidden.push({ status: 0, body: String(err), route: 'client' });
      });
    }
  }

  private async purchase(buyer: Buyer): Promise<void> {
    const n = this.iteration++;
    const hot = n % this.options.hotEvery === 0;
    const sku = hot ? this.options.hotSku : this.options.plentySkus[n % this.options.plentySkus.length]!;
    const shard = shardOfId(buyer.userId);
    const cart = await this.call<{ id: string }>(buyer, 'POST', '/v1/carts', {}, shard);
    if (!cart.ok) return;
    const line = await this.call(buyer, 'POST', `/v1/carts/${cart.body.id}/lines`, { sku, quantity: 1 }, shard);
    if (!line.ok) return;
    const key = randomUUID();
    const res = await this.call<{ order: { id: string; status: string } }>(
      buyer, 'POST', '/v1/checkout', { cartId: cart.body.id, payment: { token: 'tok_visa' } }, shard, key,
    );
    if (res.ok) this.tally.acknowledged.push({ orderId: res.body.order.id, userId: buyer.userId, sku, quantity: 1, status: res.body.order.status });
    else if (res.status === 409 && res.code === 'out_of_stock') this.tally.outOfStock++;
  }

  /**
   * One API call with a client's retry policy: 503 → wait Retry-After and send the same
   * request again (same Idempotency-Key); connection refused → the API is restarting, wait.
   */
  private async call<T = unknown>(
    buyer: Buyer, method: string, route: string, body: unknown, shard: number, idempotencyKey?: string,
  ): Promise<{ ok: true; body: T; status: number } | { ok: false; status: number; code?: string }> {
    const deadline = Date.now() + this.options.stepDeadlineMs;
    for (;;) {
      const attemptStartedAt = Date.now();
      let status: number;
      let text: string;
      let retryAfterS = 0;
      try {
        const res = await fetch(`${this.options.baseUrl}${route}`, {
          method,
          headers: {
            authorization: `Bearer ${buyer.token}`,
            'content-type': 'application/json',
            ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
          },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(this.options.attemptTimeoutMs),
        });
        status = res.status;
        text = await res.text();
        retryAfterS = Number(res.headers.get('retry-after') ?? 1) || 1;
      } catch (err) {
        // Refused or reset: the API process is down or restarting. A timeout is an answer we
        // must not get (the API bounds every request), so it counts as forbidden.
        if ((err as Error).name === 'TimeoutError') {
          this.tally.forbidden.push({ status: 0, body: `no answer within ${this.options.attemptTimeoutMs} ms`, route });
          return { ok: false, status: 0 };
        }
        this.tally.connectionErrors++;
        this.tally.failures.push({ shard, at: Date.now() });
        if (Date.now() > deadline) return { ok: false, status: 0 };
        this.tally.retries++;
        await sleep(200);
        continue;
      }
      this.tally.statuses.set(status, (this.tally.statuses.get(status) ?? 0) + 1);
      if (status >= 200 && status < 300) {
        this.tally.writes.push({ shard, attemptStartedAt, acknowledgedAt: Date.now() });
        return { ok: true, status, body: JSON.parse(text) as T };
      }
      if (status === 503) this.tally.failures.push({ shard, at: Date.now() });
      if (status === 503 && Date.now() < deadline) {
        this.tally.retries++;
        await sleep(Math.min(retryAfterS, 2) * 1000 * (0.5 + Math.random() / 2));
        continue;
      }
      if (status >= 500 && status !== 503) this.tally.forbidden.push({ status, body: text.slice(0, 300), route });
      let code: string | undefined;
      try {
        code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
      } catch {
        code = undefined;
      }
      return { ok: false, status, ...(code ? { code } : {}) };
    }
  }
}

/**
 * How long writes on the affected shards were out after a fault: from the kill to the first
 * write acknowledged after the outage (an attempt that began after the last 503 or refused
 * connection seen on those shards before `until`). Writes that a dying primary's orphaned
 * backends still acknowledged right after the kill do not end the outage early.
 */
export function outageEnd(tally: LoadTally, killedAt: number, until: number, onShard: (shard: number) => boolean): number | undefined {
  let lastFailure = killedAt;
  for (const f of tally.failures) if (f.at >= killedAt && f.at <= until && onShard(f.shard) && f.at > lastFailure) lastFailure = f.at;
  let first: number | undefined;
  for (const w of tally.writes) {
    if (w.attemptStartedAt >= lastFailure && onShard(w.shard) && (first === undefined || w.acknowledgedAt < first)) first = w.acknowledgedAt;
  }
  return first;
}
