// The Redis gate. Each SKU has an available-units counter in Redis, next to a hash of "holds"
// (admitted reservations not yet confirmed by PostgreSQL); both keys share the hash tag {sku},
// so every script touches one slot and runs atomically on one Redis Cluster master.
//
// reserve(): admit each line in Redis (a cart whose SKUs live in different slots is admitted
// line by line, and the admitted lines are given back if a later one is refused), then reserve
// in PostgreSQL through the batched engine. PostgreSQL is the arbiter: if it refuses what Redis
// admitted (the counter had drifted), PostgreSQL's answer stands. Redis can therefore only
// refuse too early (until the next reconciliation) or let a request through to PostgreSQL; it
// can never cause an oversell.
//
// Reconciliation sets counter = PostgreSQL available - units held by live holds, and drops holds
// older than holdStaleMs (a process died between admission and confirmation). It runs at start,
// after Redis reconnects (a failover), periodically, and for any SKU whose stock changed outside
// reserve(). If Redis is unreachable, reserve() falls back to PostgreSQL alone (counted).
import type { Logger } from 'pino';
import type { Counter, Gauge } from 'prom-client';
import type { Pool } from '../../platform/db.ts';
import type { Id } from '../../platform/ids.ts';
import { connectRedis, type RedisClient } from '../../platform/redis.ts';
import type { GateLine, GateMetrics, GateOutcome, InventoryGate, PostgresBatchedGate } from './gate.ts';

const ADMIT = `
local avail = redis.call('GET', KEYS[1])
if not avail then return -1 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 1 end
local qty = tonumber(ARGV[2])
if tonumber(avail) < qty then return 0 end
redis.call('DECRBY', KEYS[1], qty)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
return 1`;

// ARGV[2] = '1' gives the held units back (PostgreSQL refused); '0' keeps them taken (confirmed).
const SETTLE_HOLD = `
local h = redis.call('HGET', KEYS[2], ARGV[1])
if not h then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], tonumber(string.match(h, '^(%d+)')))
end
return 1`;

// Returns {counter before (-1: not loaded), counter after}.
const RECONCILE = `
local pending = 0
local holds = redis.call('HGETALL', KEYS[2])
for i = 1, #holds, 2 do
  local qty, at = string.match(holds[i + 1], '^(%d+):(%d+)$')
  if tonumber(ARGV[2]) - tonumber(at) > tonumber(ARGV[3]) then
    redis.call('HDEL', KEYS[2], holds[i])
  else
    pending = pending + tonumber(qty)
  end
end
local target = tonumber(ARGV[1]) - pending
if target < 0 then target = 0 end
local before = tonumber(redis.call('GET', KEYS[1]) or '-1')
redis.call('SET', KEYS[1], target)
return {before, target}`;

type GateRedis = RedisClient & {
  gateAdmit(avail: string, holds: string, id: string, qty: number, nowMs: number): Promise<number>;
  gateSettleHold(avail: string, holds: string, id: string, giveBack: '0' | '1'): Promise<number>;
  gateReconcile(avail: string, holds: string, pgAvailable: number, nowMs: number, staleMs: number): Promise<[number, number]>;
};

export interface RedisGateMetrics extends GateMetrics {
  fallbacks: Counter<string>;
  drift: Gauge<string>;
  driftCorrections: Counter<string>;
}

export interface RedisGateOptions {
  holdStaleMs: number;
  reconcileIntervalMs: number;
}

const availKey = (sku: string): string => `mrd:inv:{${sku}}:avail`;
const holdsKey = (sku: string): string => `mrd:inv:{${sku}}:holds`;
const RECONCILE_PAGE = 1_000;

export class RedisGate implements InventoryGate {
  readonly engine = 'redis' as const;
  readonly followsStock = true;
  private readonly redis: GateRedis;
  private timer: NodeJS.Timeout | undefined;
  private reconciling: Promise<void> | undefined;

  constructor(
    redis: RedisClient,
    private readonly db: Pool,
    private readonly arbiter: PostgresBatchedGate,
    private readonly options: RedisGateOptions,
    private readonly log: Logger,
    private readonly metrics?: RedisGateMetrics,
  ) {
    redis.defineCommand('gateAdmit', { numberOfKeys: 2, lua: ADMIT });
    redis.defineCommand('gateSettleHold', { numberOfKeys: 2, lua: SETTLE_HOLD });
    redis.defineCommand('gateReconcile', { numberOfKeys: 2, lua: RECONCILE });
    this.redis = redis as GateRedis;
  }

  async start(): Promise<void> {
    try {
      await connectRedis(this.redis, 5_000);
    } catch (err) {
      // Serve anyway: reservations fall back to PostgreSQL until Redis answers ('ready' below).
      this.log.warn({ err: String(err) }, 'redis unreachable at start; the inventory gate falls back to PostgreSQL');
    }
    // After a reconnect (Redis restarted, or a replica took over), counters may be stale or gone.
    this.redis.on('ready', () => void this.reconcileAll().catch((err: unknown) => this.log.warn({ err }, 'gate reconciliation failed')));
    await this.reconcileAll().catch((err: unknown) => this.log.warn({ err: String(err) }, 'initial gate reconciliation failed'));
    this.timer = setInterval(
      () => void this.reconcileAll().catch((err: unknown) => this.log.warn({ err }, 'gate reconciliation failed')),
      this.options.reconcileIntervalMs,
    );
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.reconciling?.catch(() => undefined);
    this.redis.disconnect();
  }

  async reserve(reservationId: Id, lines: readonly GateLine[], ttlMs: number): Promise<GateOutcome> {
    const end = this.metrics?.latency.startTimer({ engine: this.engine });
    try {
      const outcome = await this.reserveThroughRedis(reservationId, lines, ttlMs);
      this.metrics?.reservations.inc({ engine: this.engine, result: outcome.ok ? 'reserved' : 'out_of_stock' });
      return outcome;
    } catch (err) {
      this.metrics?.reservations.inc({ engine: this.engine, result: 'error' });
      throw err;
    } finally {
      end?.();
    }
  }

  private async reserveThroughRedis(reservationId: Id, lines: readonly GateLine[], ttlMs: number): Promise<GateOutcome> {
    const admitted: GateLine[] = [];
    try {
      for (const line of lines) {
        const r = await this.redis.gateAdmit(availKey(line.sku), holdsKey(line.sku), reservationId, line.quantity, Date.now());
        if (r === 0) {
          await this.settleHolds(reservationId, admitted, true);
          const available = Number((await this.redis.get(availKey(line.sku))) ?? 0);
          return { ok: false, sku: line.sku, requested: line.quantity, available };
        }
        if (r === -1) void this.reconcileSkus([line.sku]).catch(() => undefined); // not loaded yet: PostgreSQL decides
        else admitted.push(line);
      }
    } catch (err) {
      // Redis is down or failing over: PostgreSQL alone still guarantees no oversell.
      this.metrics?.fallbacks.inc();
      this.log.warn({ err: String(err) }, 'redis gate unavailable; reserving through PostgreSQL alone');
      void this.settleHolds(reservationId, admitted, true).catch(() => undefined);
      return this.arbiter.enqueue(reservationId, lines, ttlMs);
    }
    let outcome: GateOutcome;
    try {
      outcome = await this.arbiter.enqueue(reservationId, lines, ttlMs);
    } catch (err) {
      void this.settleHolds(reservationId, admitted, true).catch(() => undefined);
      throw err;
    }
    if (!outcome.ok && admitted.length > 0) {
      // Redis admitted what PostgreSQL refused: the counter had drifted. Correct it now.
      void this.reconcileSkus([outcome.sku]).catch(() => undefined);
    }
    // A replay (the reservation already existed) must not keep a second decrement either.
    const giveBack = !outcome.ok || outcome.replayed === true;
    await this.settleHolds(reservationId, admitted, giveBack).catch((err: unknown) => {
      this.log.warn({ err: String(err) }, 'could not settle redis holds; reconciliation will');
    });
    return outcome;
  }

  private async settleHolds(reservationId: Id, lines: readonly GateLine[], giveBack: boolean): Promise<void> {
    for (const line of lines) {
      await this.redis.gateSettleHold(availKey(line.sku), holdsKey(line.sku), reservationId, giveBack ? '1' : '0');
    }
  }

  async stockChanged(skus: readonly string[]): Promise<void> {
    await this.reconcileSkus(skus).catch((err: unknown) => this.log.warn({ err: String(err) }, 'gate catch-up failed; reconciliation will'));
  }

  /** Rebuild counters from PostgreSQL for these SKUs; returns the total drift corrected. */
  async reconcileSkus(skus: readonly string[]): Promise<number> {
    if (skus.length === 0) return 0;
    const rows = await this.db<{ sku: string; available: number }[]>`
      SELECT s.sku, coalesce(sum(st.on_hand - st.reserved), 0)::int AS available
      FROM unnest(${[...skus]}::text[]) AS s(sku) LEFT JOIN stock st ON st.sku = s.sku GROUP BY s.sku`;
    const now = Date.now();
    const results = await Promise.all(
      rows.map((r) => this.redis.gateReconcile(availKey(r.sku), holdsKey(r.sku), r.available, now, this.options.holdStaleMs)),
    );
    let drift = 0;
    for (const [before, after] of results) {
      if (before >= 0) drift += Math.abs(after - before); // a missing key is a first load, not drift
    }
    if (drift > 0) this.metrics?.driftCorrections.inc(drift);
    return drift;
  }

  /** Every SKU with stock, page by page. Exports the drift found as a gauge. */
  reconcileAll(): Promise<void> {
    this.reconciling ??= (async () => {
      try {
        let after = '';
        let drift = 0;
        for (;;) {
          const page = await this.db<{ sku: string }[]>`
            SELECT DISTINCT sku FROM stock WHERE sku > ${after} ORDER BY sku LIMIT ${RECONCILE_PAGE}`;
          if (page.length === 0) break;
          drift += await this.reconcileSkus(page.map((r) => r.sku));
          after = page[page.length - 1]!.sku;
          if (page.length < RECONCILE_PAGE) break;
        }
        this.metrics?.drift.set(drift);
      } finally {
        this.reconciling = undefined;
      }
    })();
    return this.reconciling;
  }

  /** For tests and operators: the gate's current counter for a SKU (undefined if not loaded). */
  async counter(sku: string): Promise<number | undefined> {
    const v = await this.redis.get(availKey(sku));
    return v === null ? undefined : Number(v);
  }
}
