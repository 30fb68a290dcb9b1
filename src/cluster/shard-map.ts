// The shard map in the database: versioned, read by every API process, changed only by shard
// moves. A process applies a newer version the moment it hears NOTIFY meridian_shard_map, and
// polls as a backstop, so a flip reaches running processes without a restart.
//
// Each process also says which version it follows (shard_map_followers) and holds a lease: it
// routes to shards only while it confirmed the map within MAP_LEASE_MS (a monotonic clock). Its
// row stays live for the lease plus its request timeout, the longest a request it let through
// can still run. A move waits for every live row (waitForFollowers) before it takes the source's
// locks and before it deletes the moved rows, so no process reads rows that are gone or writes
// by a stale map. The order of a confirmation closes the gap a late write would leave: the
// row is made live (at the version in force) before the map is read, then moved to the version
// read, and only then is the lease renewed; so a row a move ignored (absent or expired) belongs
// to a process whose next read comes after the move's check, and sees the move's map.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Databases, Pool } from '../platform/db.ts';

/**
 * A process routes to shards only while it confirmed the map this recently. Long enough to ride
 * out a failover of the core cluster (the map lives there) without refusing every request.
 */
export const MAP_LEASE_MS = 30_000;
/** How long a move waits for processes that do not follow its map before it gives up. */
export const FOLLOWERS_WAIT_MS = MAP_LEASE_MS + 60_000;
const FOLLOWERS_POLL_MS = 10;

export interface ShardMap {
  version: number;
  assignment: [number, number, string][];
  fenced: [number, number][];
}

const CHANNEL = 'meridian_shard_map';

export async function latestShardMap(db: Pool): Promise<ShardMap | undefined> {
  const [row] = await db<{ version: string; assignment: [number, number, string][]; fenced: [number, number][] }[]>`
    SELECT version, assignment, fenced FROM shard_map ORDER BY version DESC LIMIT 1`;
  return row ? { version: Number(row.version), assignment: row.assignment, fenced: row.fenced } : undefined;
}

/** Write the next version (fails if someone else wrote it first: moves are serialised). */
export async function publishShardMap(db: Pool, map: ShardMap, note: string): Promise<void> {
  await db`
    INSERT INTO shard_map (version, assignment, fenced, note)
    VALUES (${map.version}, ${db.json(map.assignment as never)}, ${db.json(map.fenced as never)}, ${note})`;
  await db.notify(CHANNEL, String(map.version));
}

/** Followers whose row is live and whose version is older than `version`. */
export async function laggingFollowers(db: Pool, version: number): Promise<{ follower: string; version: number }[]> {
  const rows = await db<{ follower: string; version: string }[]>`
    SELECT follower, version FROM shard_map_followers WHERE version < ${version} AND live_until > now()`;
  return rows.map((r) => ({ follower: r.follower, version: Number(r.version) }));
}

/**
 * Wait until every live follower follows `version`. A follower that is not following stops
 * routing at the end of its lease and its row expires a request timeout later; one that keeps
 * its row live without following (it cannot apply the map) is what the timeout is for.
 */
export async function waitForFollowers(db: Pool, version: number, timeoutMs = FOLLOWERS_WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lagging = await laggingFollowers(db, version);
    if (lagging.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`shard map v${version} not followed within ${timeoutMs} ms by ${lagging.map((l) => `${l.follower} (v${l.version})`).join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, FOLLOWERS_POLL_MS));
  }
}

export interface ShardMapWatcherOptions {
  /** The longest a request of this process runs: its row stays live this long past its lease. */
  readonly requestTimeoutMs: number;
  /** Backstop of NOTIFY. */
  readonly pollIntervalMs?: number;
}

export class ShardMapWatcher {
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  /** This process in shard_map_followers. */
  readonly follower = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  private readonly liveS: number;
  private readonly pollIntervalMs: number;

  constructor(
    private readonly dbs: Databases,
    private readonly log: Logger,
    options: ShardMapWatcherOptions,
  ) {
    this.liveS = (MAP_LEASE_MS + options.requestTimeoutMs) / 1000;
    this.pollIntervalMs = options.pollIntervalMs ?? 2_000;
  }

  private get db(): Pool {
    return this.dbs.core('directory');
  }

  /** Seed the map from the configuration if the database has none, then follow it. */
  async start(): Promise<void> {
    // Until the first confirmation, shard routes answer 503 rather than route by the configuration.
    this.dbs.confirmShardMap(Number.NEGATIVE_INFINITY, MAP_LEASE_MS);
    const current = await latestShardMap(this.db);
    if (!current) {
      await this.db`
        INSERT INTO shard_map (version, assignment, note) VALUES (1, ${this.db.json(this.dbs.assignment() as never)}, 'from the configuration')
        ON CONFLICT (version) DO NOTHING`;
    }
    // Listen first: a version published while the first refresh runs is heard, not left to the poll.
    const handle = await this.db.listen(CHANNEL, () => void this.refresh());
    this.unlisten = () => handle.unlisten();
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.pollIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.unlisten?.();
    // No longer routing: a move need not wait for this process.
    await this.db`DELETE FROM shard_map_followers WHERE follower = ${this.follower}`.catch(() => undefined);
  }

  /** Announce, read the newest map, apply it, announce its version; only then renew the lease. */
  async refresh(): Promise<void> {
    const startedAt = performance.now();
    try {
      await this.announce();
      const map = await latestShardMap(this.db);
      if (map && this.dbs.applyShardMap(map)) this.log.info({ version: map.version, fenced: map.fenced }, 'shard map applied');
      await this.announce();
      this.dbs.confirmShardMap(startedAt, MAP_LEASE_MS);
    } catch (err) {
      this.log.warn({ err: String(err) }, 'could not refresh the shard map');
    }
  }

  /** This process follows the map in force, and may route by it until live_until. */
  private async announce(): Promise<void> {
    await this.db`
      INSERT INTO shard_map_followers (follower, version, live_until)
      VALUES (${this.follower}, ${this.dbs.mapVersion}, now() + make_interval(secs => ${this.liveS}))
      ON CONFLICT (follower) DO UPDATE SET
        version = GREATEST(shard_map_followers.version, EXCLUDED.version),
        live_until = GREATEST(shard_map_followers.live_until, EXCLUDED.live_until)`;
  }
}
