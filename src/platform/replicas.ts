// Read replicas and read-your-writes. A ReplicaSet watches every member of one cluster (poll:
// is it a standby, how far has it replayed) and hands out a pool for a read: round robin over
// healthy standbys, or the primary. A read that carries a consistency token (the WAL position of
// the client's last write) only goes to a standby that has replayed past it. A standby lagging
// more than maxLagBytes is out of rotation until it catches up.
import type { Gauge } from 'prom-client';
import type { Logger } from 'pino';
import { openPool, type Pool, type PoolOptions } from './db.ts';

/** A WAL position as a number of bytes ('16/B374D848' → 0x16B374D848). */
export type Lsn = bigint;

/** The highest WAL position: a token no standby can satisfy, so the primary serves the read. */
export const PRIMARY_ONLY: Lsn = 0xffffffff_ffffffffn;

export function parseLsn(text: string): Lsn {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!m?.[1] || !m[2]) throw new RangeError(`not an LSN: ${text}`);
  return (BigInt('0x' + m[1]) << 32n) | BigInt('0x' + m[2]);
}

export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export interface Reader {
  pool: Pool;
  /** The data this reader serves is at least this fresh (a lower bound). */
  lsn: Lsn;
  /** 'primary' or the standby's name. */
  served: string;
}

interface Member {
  name: string;
  pool: Pool;
  standby: boolean;
  replayLsn: Lsn;
  healthy: boolean;
}

export interface ReplicaOptions {
  maxLagBytes: number;
  pollIntervalMs: number;
}

export class ReplicaSet {
  private readonly members: Member[];
  private primaryLsn: Lsn = 0n;
  private next = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly cluster: string,
    private readonly primary: Pool,
    members: readonly { name: string; url: string }[],
    poolOptions: PoolOptions,
    private readonly options: ReplicaOptions,
    private readonly log: Logger,
    private readonly lagGauge?: Gauge<'cluster' | 'member'>,
  ) {
    this.members = members.map((m) => ({
      name: m.name,
      pool: openPool(m.url, { ...poolOptions, applicationName: 'meridian-reader' }),
      standby: false,
      replayLsn: 0n,
      healthy: false,
    }));
  }

  async start(): Promise<void> {
    await this.poll();
    this.timer = setInterval(() => void this.poll(), this.options.pollIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.all(this.members.map((m) => m.pool.end({ timeout: 2 })));
  }

  /**
   * The primary's WAL position now: the token a write response carries. The insert position, not
   * pg_current_wal_lsn() (the write position), which can lie before the commit record of a
   * transaction committed with synchronous_commit = off: a standby at that position could still
   * miss the write.
   */
  async currentLsn(): Promise<Lsn> {
    const [row] = await this.primary<{ lsn: string }[]>`SELECT pg_current_wal_insert_lsn()::text AS lsn`;
    const lsn = parseLsn(row?.lsn ?? '0/0');
    if (lsn > this.primaryLsn) this.primaryLsn = lsn;
    return lsn;
  }

  /**
   * The token a write response carries. Bounded: if the primary's position cannot be read in
   * time (a failover of the catalog cluster under way), the token says "the primary only", which
   * keeps read-your-writes (no standby and no cached entry qualifies) at the cost of one primary read.
   */
  async writeToken(timeoutMs = 250): Promise<Lsn> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const lsn = this.currentLsn();
      lsn.catch(() => undefined); // if the timeout wins, a later failure is expected, not unhandled
      return await Promise.race([
        lsn,
        new Promise<Lsn>((resolve) => {
          timer = setTimeout(() => resolve(PRIMARY_ONLY), timeoutMs);
        }),
      ]);
    } catch {
      return PRIMARY_ONLY;
    } finally {
      clearTimeout(timer);
    }
  }

  reader(atLeast?: Lsn): Reader {
    const candidates = this.members.filter((m) => m.healthy && (atLeast === undefined || m.replayLsn >= atLeast));
    if (candidates.length === 0) return { pool: this.primary, lsn: this.primaryLsn, served: 'primary' };
    const m = candidates[this.next++ % candidates.length]!;
    return { pool: m.pool, lsn: m.replayLsn, served: m.name };
  }

  /** Members currently serving reads (for /metrics, tests and operators). */
  healthyStandbys(): string[] {
    return this.members.filter((m) => m.healthy).map((m) => m.name);
  }

  private async poll(): Promise<void> {
    try {
      await this.currentLsn();
    } catch (err) {
      this.log.warn({ cluster: this.cluster, err: String(err) }, 'cannot read the primary WAL position');
    }
    await Promise.all(
      this.members.map(async (m) => {
        try {
          const [row] = await m.pool<{ standby: boolean; replay: string | null }[]>`
            SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS replay`;
          m.standby = row?.standby === true;
          m.replayLsn = row?.replay ? parseLsn(row.replay) : 0n;
          const lag = m.standby ? Number(this.primaryLsn > m.replayLsn ? this.primaryLsn - m.replayLsn : 0n) : 0;
          m.healthy = m.standby && row?.replay !== null && lag <= this.options.maxLagBytes;
          if (m.standby) this.lagGauge?.set({ cluster: this.cluster, member: m.name }, lag);
        } catch {
          m.healthy = false;
        }
      }),
    );
  }
}
