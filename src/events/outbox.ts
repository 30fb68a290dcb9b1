// Transactional outbox. A module writes its event with emit() inside the transaction that makes
// the change, so an event exists if and only if the change committed. The relay reads every
// database's rows in id order, hands each to the in-process subscribers of its topic and deletes
// it. Delivery is at least once (a crash between a handler and the delete repeats it), so every
// subscriber must be idempotent.
import type { Logger } from 'pino';
import type { Databases, Pool, Sql } from '../platform/db.ts';
import { transaction } from '../platform/db.ts';
import { LIMITS } from '../platform/limits.ts';

export type Topic =
  | 'product.changed'
  | 'inventory.stock_changed'
  | 'order.placed'
  | 'order.paid'
  | 'order.cancelled'
  | 'order.transitioned';

export interface OutboxEvent {
  id: string;
  topic: Topic;
  aggregateId: string;
  payload: Record<string, unknown>;
}

/** Receives every pending event of its topic from one batch, in id order (dedupe freely). */
export type Subscriber = (events: OutboxEvent[]) => Promise<void>;

export async function emit(sql: Sql, topic: Topic, aggregateId: string, payload: Record<string, unknown>): Promise<void> {
  await sql`INSERT INTO outbox (topic, aggregate_id, payload) VALUES (${topic}, ${aggregateId}, ${sql.json(payload as never)})`;
}

interface OutboxRow {
  id: string;
  topic: Topic;
  aggregate_id: string;
  payload: Record<string, unknown>;
}

export class OutboxRelay {
  private readonly subscribers = new Map<Topic, Subscriber[]>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly dbs: Databases,
    private readonly log: Logger,
    private readonly pollIntervalMs: number,
  ) {}

  subscribe(topic: Topic, subscriber: Subscriber): void {
    const list = this.subscribers.get(topic) ?? [];
    list.push(subscriber);
    this.subscribers.set(topic, list);
  }

  start(): void {
    this.stopped = false;
    const tick = (): void => {
      if (this.stopped) return;
      this.running = this.drain()
        .then(() => undefined)
        .catch((err: unknown) => this.log.error({ err }, 'outbox relay failed; will retry'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.pollIntervalMs);
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** Publish everything pending on every database; returns how many events were delivered. */
  async drain(): Promise<number> {
    let total = 0;
    for (const cluster of this.dbs.clusters) {
      for (;;) {
        const n = await this.publishBatch(cluster.pool);
        total += n;
        if (n < LIMITS.outboxBatchMax) break;
      }
    }
    return total;
  }

  private async publishBatch(pool: Pool): Promise<number> {
    // SKIP LOCKED lets several API processes relay the same database without double work.
    return transaction(pool, async (tx) => {
      const rows = await tx<OutboxRow[]>`
        SELECT id::text, topic, aggregate_id::text, payload FROM outbox
        ORDER BY id LIMIT ${LIMITS.outboxBatchMax}
        FOR UPDATE SKIP LOCKED`;
      // Grouped by topic, so a consumer does one set-based step per batch instead of one per
      // event (a flash sale writes several stock events per order).
      const byTopic = new Map<Topic, OutboxEvent[]>();
      for (const row of rows) {
        const list = byTopic.get(row.topic) ?? [];
        list.push({ id: row.id, topic: row.topic, aggregateId: row.aggregate_id, payload: row.payload });
        byTopic.set(row.topic, list);
      }
      for (const [topic, events] of byTopic) {
        for (const subscriber of this.subscribers.get(topic) ?? []) await subscriber(events);
      }
      if (rows.length > 0) {
        await tx`DELETE FROM outbox WHERE id = ANY(${rows.map((r) => r.id)}::bigint[])`;
      }
      return rows.length;
    });
  }
}
