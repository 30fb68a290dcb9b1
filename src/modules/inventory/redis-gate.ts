// The Redis gate. Each SKU has an available-units counter in Redis, next to a hash of "holds"
// (admitted reservations PostgreSQL has not recorded yet) and the time of the last
// reconciliation; the keys share the hash tag {sku}, so every script touches one slot and runs
// atomically on one Redis Cluster master.
//
// reserve(): admit each line in Redis, one script call per line (a cart whose SKUs live in
// different slots is admitted line by line, and the admitted lines are given back if a later one
// is refused). A refusal is answered there and then: one round trip, no PostgreSQL. An admission
// is answered at once too, and written behind: the reservation joins the batched engine's next
// group commit (inventory_reserve_many), many per statement. Redis counter = PostgreSQL's
// available units − units of holds not yet written.
//
// PostgreSQL stays the arbiter (ARCHITECTURE.md, I7). Stock only changes there, under its CHECK
// constraint, so nothing is oversold whatever Redis says. If PostgreSQL refuses a reservation
// Redis admitted (the counter had drifted), the hold's units go back and the SKU is reconciled;
// the reservation does not exist in PostgreSQL, so the checkout's consume() — which waits for
// the write (written()) and must find the reservation in the ledger before the order is
// confirmed — fails, and the saga voids the payment and cancels. Redis can therefore cost a buyer
// a late cancellation after a drift, never a unit that is not there.
//
// Crash and restart: a reservation whose write was pending when its process died never reaches
// PostgreSQL; its order finds no reservation and the sweeper cancels it, and its hold is dropped
// by the first reconciliation after holdStaleMs (the units come back once). Reservations already
// written live on in PostgreSQL with their expiry, and are consumed or released exactly once.
//
// Reconciliation (at start, after Redis reconnects, periodically, after stock changes outside a
// reservation) holds the SKUs' stock rows FOR SHARE — no reservation can be written or settled
// meanwhile — reads PostgreSQL's available units and which holds it has already recorded, then
// sets counter = available − units of the holds it has not. If Redis is unreachable,
// reservations fall back to PostgreSQL alone (counted).
import type { Logger } from 'pino';
import type { Counter, Gauge } from 'prom-client';
import { transaction, type Pool } from '../../platform/db.ts';
import { AppError } from '../../platform/errors.ts';
import type { Id } from '../../platform/ids.ts';
import { connectRedis, isCommandTimeout, redisDeadline, type RedisClient } from '../../platform/redis.ts';
import type { GateLine, GateMetrics, GateOutcome, InventoryGate, PostgresBatchedGate } from './gate.ts';

/** Answers of ADMIT. */
const REFUSED = 0;
const ADMITTED = 1;
const HELD = 2; // this reservation id already holds units of the SKU: a repeat
const NOT_LOADED = -1;

// KEYS: avail, holds. ARGV: reservation id, quantity, now (ms). Returns {answer, units available}.
const ADMIT = `
local avail = redis.call('GET', KEYS[1])
if not avail then return {-1, 0} end
avail = tonumber(avail)
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {2, avail} end
local qty = tonumber(ARGV[2])
if avail < qty then return {0, avail} end
redis.call('DECRBY', KEYS[1], qty)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
return {1, avail - qty}`;

// PostgreSQL did not take the hold's units (refused, or already had the reservation): give back.
const GIVE_BACK_HOLD = `
local h = redis.call('HGET', KEYS[2], ARGV[1])
if not h then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], tonumber(string.match(h, '^(%d+)')))
end
return 1`;

// KEYS: avail, synced. ARGV: units, settlement time (µs). Units a settlement released after the
// last reconciliation read PostgreSQL; an earlier one is already in the counter.
const UNITS_RELEASED = `
local synced = redis.call('GET', KEYS[2])
if synced and tonumber(synced) >= tonumber(ARGV[2]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
return 1`;

// KEYS: avail, holds, synced. ARGV: PostgreSQL available, PostgreSQL time (µs), now (ms),
// stale after (ms), then the ids of holds PostgreSQL has recorded. Returns {before (-1: not
// loaded), after}.
const RECONCILE = `
for i = 5, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
local pending = 0
local holds = redis.call('HGETALL', KEYS[2])
for i = 1, #holds, 2 do
  local qty, at = string.match(holds[i + 1], '^(%d+):(%d+)$')
  if tonumber(ARGV[3]) - tonumber(at) > tonumber(ARGV[4]) then
    redis.call('HDEL', KEYS[2], holds[i])
  else
    pending = pending + tonumber(qty)
  end
end
local target = tonumber(ARGV[1]) - pending
if target < 0 then target = 0 end
local before = tonumber(redis.call('GET', KEYS[1]) or '-1')
redis.call('SET', KEYS[1], target)
redis.call('SET', KEYS[3], ARGV[2])
return {before, target}`;

type GateRedis = RedisClient & {
  gateAdmit(avail: string, holds: string, id: string, qty: number, nowMs: number): Promise<[number, number]>;
  gateGiveBackHold(avail: string, holds: string, id: string): Promise<number>;
  gateUnitsReleased(avail: string, synced: string, units: number, atUs: string): Promise<number>;
  gateReconcile(avail: string, holds: string, synced: string, pgAvailable: number, pgAtUs: string, nowMs: number, staleMs: number, ...recorded: string[]): Promise<[number, number]>;
};

export interface RedisGateMetrics extends GateMetrics {
  fallbacks: Counter<string>;
  drift: Gauge<string>;
  driftCorrections: Counter<string>;
}

export interface RedisGateOptions {
  holdStaleMs: number;
  reconcileIntervalMs: number;
  /**
   * Deadline of every gate command (redisDeadline: a late reply is not mistaken for a missing
   * one). Reconciliation runs its commands inside a transaction that holds stock rows FOR SHARE,
   * so none may wait without bound. The client's own command timeout should be set well above
   * it, as the backstop. Default COMMAND_TIMEOUT_DEFAULT_MS.
   */
  commandTimeoutMs?: number;
  /**
   * Admitted reservations of this process not yet written to PostgreSQL. Beyond it, reserve()
   * waits for its own write: the backlog (and what a crash can cancel) stays bounded when
   * PostgreSQL falls behind.
   */
  writeBehindMaxReservations?: number;
}

const availKey = (sku: string): string => `mrd:inv:{${sku}}:avail`;
const holdsKey = (sku: string): string => `mrd:inv:{${sku}}:holds`;
const syncedKey = (sku: string): string => `mrd:inv:{${sku}}:synced`;
const RECONCILE_PAGE = 1_000;
const WRITE_BEHIND_MAX_RESERVATIONS = 10_000;
/** A write that fails (connection lost, failover) is tried again; it is idempotent by reservation id. */
const WRITE_ATTEMPTS_MAX = 3;
const WRITE_RETRY_DELAY_MS = 200;
const ADMIT_TIMEOUTS_BUDGET_MS = 1_000;
/** First retry of stale SKUs; each failure doubles it, up to STALE_RETRY_MAX_MS. */
const STALE_RETRY_MS = 250;
const STALE_RETRY_MAX_MS = 2_000;

/** Deadline of a gate command when the options name none. */
const COMMAND_TIMEOUT_DEFAULT_MS = 1_000;

interface PendingWrite {
  written: Promise<GateOutcome | undefined>;
}

export class RedisGate implements InventoryGate {
  readonly engine = 'redis' as const;
  readonly followsStock = true;
  private readonly redis: GateRedis;
  private timer: NodeJS.Timeout | undefined;
  private reconciling: Promise<void> | undefined;
  /** Admitted here, write to PostgreSQL not finished. */
  private readonly pending = new Map<Id, PendingWrite>();
  /** Holds PostgreSQL has recorded, to delete from Redis in one HDEL per SKU per event-loop turn. */
  private recordedHolds = new Map<string, Id[]>();
  private recordedFlush: Promise<void> | undefined;
  private readonly writeBehindMax: number;
  /**
   * SKUs whose reservations went to PostgreSQL alone while Redis failed: their counters are stale
   * (too high) until reconciled. Retried every STALE_RETRY_MS until Redis answers, so a counter
   * is corrected within a moment of a failover rather than at the next full reconciliation.
   */
  private readonly staleSkus = new Set<string>();
  private staleTimer: NodeJS.Timeout | undefined;
  private staleRetryMs = STALE_RETRY_MS;
  private stopped = false;

  constructor(
    redis: RedisClient,
    private readonly db: Pool,
    private readonly arbiter: PostgresBatchedGate,
    private readonly options: RedisGateOptions,
    private readonly log: Logger,
    private readonly metrics?: RedisGateMetrics,
  ) {
    redis.defineCommand('gateAdmit', { numberOfKeys: 2, lua: ADMIT });
    redis.defineCommand('gateGiveBackHold', { numberOfKeys: 2, lua: GIVE_BACK_HOLD });
    redis.defineCommand('gateUnitsReleased', { numberOfKeys: 2, lua: UNITS_RELEASED });
    redis.defineCommand('gateReconcile', { numberOfKeys: 3, lua: RECONCILE });
    this.redis = redis as GateRedis;
    this.writeBehindMax = options.writeBehindMaxReservations ?? WRITE_BEHIND_MAX_RESERVATIONS;
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
    this.stopped = true;
    if (this.staleTimer) clearTimeout(this.staleTimer);
    this.staleSkus.clear();
    await this.drain();
    await this.reconciling?.catch(() => undefined);
    this.redis.disconnect();
  }

  /** Resolves when every admission of this process so far has been written to PostgreSQL. */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending.values()].map((p) => p.written));
    await this.recordedFlush;
  }

  async refusesAtOnce(lines: readonly GateLine[]): Promise<GateOutcome | undefined> {
    try {
      const counters = await Promise.all(lines.map((l) => this.deadline(this.redis.get(availKey(l.sku)))));
      for (const [i, line] of lines.entries()) {
        const available = counters[i] === null || counters[i] === undefined ? undefined : Number(counters[i]);
        // The same answer ADMIT would give; a counter not loaded leaves the decision to reserve().
        if (available !== undefined && available < line.quantity) return { ok: false, sku: line.sku, requested: line.quantity, available };
      }
    } catch {
      // Redis unavailable: reserve() decides, falling back to PostgreSQL.
    }
    return undefined;
  }

  async written(reservationId: Id): Promise<void> {
    await this.pending.get(reservationId)?.written;
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
    if (this.pending.has(reservationId)) return { ok: true, replayed: true };
    const admitted: GateLine[] = [];
    let held = false;
    let notLoaded = false;
    try {
      for (const line of lines) {
        const [answer, available] = await this.admit(reservationId, line);
        if (answer === REFUSED) {
          await this.giveBackHolds(reservationId, admitted);
          return { ok: false, sku: line.sku, requested: line.quantity, available };
        }
        if (answer === ADMITTED) admitted.push(line);
        else if (answer === NOT_LOADED) notLoaded = true;
        else held = true;
      }
    } catch (err) {
      // Redis is down or failing over: PostgreSQL alone still guarantees no oversell.
      this.metrics?.fallbacks.inc();
      this.log.warn({ err: String(err) }, 'redis gate unavailable; reserving through PostgreSQL alone');
      try {
        return await this.reserveNow(reservationId, lines, ttlMs, admitted);
      } finally {
        this.markStale(lines.map((l) => l.sku)); // even on an error: it may have committed
      }
    }
    if (held) {
      // An earlier call under this id holds units (another process may still be writing it): the
      // reservation is taken; units admitted again by this call are extra.
      await this.giveBackHolds(reservationId, admitted).catch(() => undefined);
      return { ok: true, replayed: true };
    }
    if (notLoaded) {
      void this.reconcileSkus(lines.map((l) => l.sku)).catch(() => undefined);
      return this.reserveNow(reservationId, lines, ttlMs, admitted);
    }
    const write: PendingWrite = { written: this.writeBehind(reservationId, lines, ttlMs) };
    this.pending.set(reservationId, write);
    void write.written.then(() => this.pending.delete(reservationId));
    if (this.pending.size > this.writeBehindMax) {
      const outcome = await write.written;
      if (!outcome) throw new AppError('unavailable', 'the inventory database did not answer; retry shortly');
      return outcome;
    }
    return { ok: true };
  }

  /**
   * One line through ADMIT. A command timeout on a connection that is up is most often this
   * process's event loop running late (the reply sat unread past the timer), not Redis failing:
   * ask again, for up to ADMIT_TIMEOUTS_BUDGET_MS, rather than fall back (a lost connection
   * fails at once and does fall back). The script is idempotent by reservation id, so a repeat
   * finds the earlier attempt's hold (HELD), which is this call's own admission.
   */
  private async admit(reservationId: Id, line: GateLine): Promise<[number, number]> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        const [answer, available] = await this.deadline(this.redis.gateAdmit(availKey(line.sku), holdsKey(line.sku), reservationId, line.quantity, Date.now()));
        return [attempt > 1 && answer === HELD ? ADMITTED : answer, available];
      } catch (err) {
        if (isCommandTimeout(err) && this.redis.status === 'ready' && Date.now() - started < ADMIT_TIMEOUTS_BUDGET_MS) continue;
        throw err;
      }
    }
  }

  /** Every Redis command of the gate goes through here: none can wait past its deadline. */
  private deadline<T>(command: Promise<T>): Promise<T> {
    return redisDeadline(command, this.options.commandTimeoutMs ?? COMMAND_TIMEOUT_DEFAULT_MS);
  }

  /** PostgreSQL answers before the caller does: the counter is not loaded, or Redis failed. */
  private async reserveNow(reservationId: Id, lines: readonly GateLine[], ttlMs: number, admitted: readonly GateLine[]): Promise<GateOutcome> {
    // On an error, whether it committed is unknown: the holds stay, and reconciliation asks PostgreSQL.
    const outcome = await this.arbiter.enqueue(reservationId, lines, ttlMs);
    await this.settleHolds(reservationId, admitted, outcome, false);
    return outcome;
  }

  /** Write an admitted reservation through the batched engine; undefined if it could not be written. */
  private async writeBehind(reservationId: Id, lines: readonly GateLine[], ttlMs: number): Promise<GateOutcome | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        const outcome = await this.arbiter.enqueue(reservationId, lines, ttlMs);
        await this.settleHolds(reservationId, lines, outcome, attempt > 1);
        return outcome;
      } catch (err) {
        if (attempt >= WRITE_ATTEMPTS_MAX) {
          // Committed or not, nobody knows: the holds stay, and reconciliation asks PostgreSQL.
          this.metrics?.reservations.inc({ engine: this.engine, result: 'write_failed' });
          this.log.error({ err: String(err), reservationId }, 'could not write an admitted reservation to PostgreSQL; reconciliation will settle its holds');
          return undefined;
        }
        await new Promise((r) => setTimeout(r, WRITE_RETRY_DELAY_MS * attempt));
      }
    }
  }

  /**
   * After PostgreSQL's answer: holds it recorded are deleted (their units are now in its
   * figure); holds it did not take go back. A replay on a retried write is the earlier attempt's
   * own commit (its reply was lost); a replay on a first write is an earlier reservation under
   * this id, so this admission's units were extra.
   */
  private async settleHolds(reservationId: Id, lines: readonly GateLine[], outcome: GateOutcome, retried: boolean): Promise<void> {
    if (lines.length === 0) return;
    if (outcome.ok && (outcome.replayed !== true || retried)) {
      for (const line of lines) this.holdRecorded(line.sku, reservationId);
      return;
    }
    if (!outcome.ok) {
      // Redis admitted what PostgreSQL refused: the counter had drifted. Correct it now.
      this.metrics?.reservations.inc({ engine: this.engine, result: 'arbiter_refused' });
      void this.reconcileSkus([outcome.sku]).catch(() => undefined);
    }
    await this.giveBackHolds(reservationId, lines).catch((err: unknown) => {
      this.log.warn({ err: String(err) }, 'could not give redis holds back; reconciliation will');
    });
  }

  private async giveBackHolds(reservationId: Id, lines: readonly GateLine[]): Promise<void> {
    for (const line of lines) await this.deadline(this.redis.gateGiveBackHold(availKey(line.sku), holdsKey(line.sku), reservationId));
  }

  private holdRecorded(sku: string, reservationId: Id): void {
    const ids = this.recordedHolds.get(sku);
    if (ids) ids.push(reservationId);
    else this.recordedHolds.set(sku, [reservationId]);
    this.recordedFlush ??= new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      const batch = this.recordedHolds;
      this.recordedHolds = new Map();
      this.recordedFlush = undefined;
      await Promise.all(
        [...batch].map(([s, idsOfSku]) =>
          this.deadline(this.redis.hdel(holdsKey(s), ...idsOfSku)).catch((err: unknown) => {
            this.log.warn({ err: String(err) }, 'could not delete recorded redis holds; reconciliation will');
          }),
        ),
      );
    });
  }

  async unitsReleased(units: readonly GateLine[], atUs: string): Promise<void> {
    await Promise.all(units.map((u) => this.deadline(this.redis.gateUnitsReleased(availKey(u.sku), syncedKey(u.sku), u.quantity, atUs)))).catch((err: unknown) => {
      this.log.warn({ err: String(err) }, 'could not give released units back to the gate; reconciliation will');
    });
  }

  async stockChanged(skus: readonly string[]): Promise<void> {
    await this.reconcileSkus(skus).catch((err: unknown) => this.log.warn({ err: String(err) }, 'gate catch-up failed; reconciliation will'));
  }

  /** Rebuild counters from PostgreSQL for these SKUs; returns the total drift corrected. */
  async reconcileSkus(skus: readonly string[]): Promise<number> {
    const sorted = [...new Set(skus)].sort();
    if (sorted.length === 0) return 0;
    // The transaction below holds the SKUs' stock rows FOR SHARE (reservations wait) while it
    // talks to Redis: ask Redis first, so that a Redis that is down costs a failed probe, not a
    // command deadline with every reservation of these SKUs stuck behind the lock.
    await this.deadline(this.redis.exists(availKey(sorted[0]!)));
    const results = await transaction(this.db, async (tx) => {
      // No reservation of these SKUs is written or settled until the counters are set.
      await tx`SELECT count(*) FROM (SELECT 1 FROM stock WHERE sku = ANY(${sorted}::text[]) ORDER BY sku, location_id FOR SHARE) locked`;
      const rows = await tx<{ sku: string; available: number; at_us: string }[]>`
        SELECT s.sku, coalesce(sum(st.on_hand - st.reserved), 0)::int AS available,
               (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text AS at_us
        FROM unnest(${sorted}::text[]) AS s(sku) LEFT JOIN stock st ON st.sku = s.sku GROUP BY s.sku`;
      const holds = await Promise.all(rows.map((r) => this.deadline(this.redis.hkeys(holdsKey(r.sku)))));
      const all = holds.flat();
      const recorded = new Set<string>();
      if (all.length > 0) {
        for (const r of await tx<{ id: string }[]>`SELECT DISTINCT id::text FROM reservations WHERE id = ANY(${all}::bigint[])`) recorded.add(r.id);
      }
      const now = Date.now();
      return Promise.all(
        rows.map((r, i) =>
          this.deadline(
            this.redis.gateReconcile(availKey(r.sku), holdsKey(r.sku), syncedKey(r.sku), r.available, r.at_us, now, this.options.holdStaleMs,
              ...holds[i]!.filter((id) => recorded.has(id))),
          ),
        ),
      );
    });
    let drift = 0;
    for (const [before, after] of results) {
      if (before >= 0) drift += Math.abs(after - before); // a missing key is a first load, not drift
    }
    if (drift > 0) this.metrics?.driftCorrections.inc(drift);
    return drift;
  }

  private markStale(skus: readonly string[]): void {
    if (this.stopped) return;
    for (const sku of skus) this.staleSkus.add(sku);
    if (this.staleTimer) return;
    this.staleTimer = setTimeout(() => {
      this.staleTimer = undefined;
      const batch = [...this.staleSkus];
      this.staleSkus.clear();
      void this.reconcileSkus(batch).then(
        () => {
          this.staleRetryMs = STALE_RETRY_MS;
        },
        () => {
          this.staleRetryMs = Math.min(2 * this.staleRetryMs, STALE_RETRY_MAX_MS);
          this.markStale(batch);
        },
      );
    }, this.staleRetryMs);
    this.staleTimer.unref();
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
    const v = await this.deadline(this.redis.get(availKey(sku)));
    return v === null ? undefined : Number(v);
  }
}
