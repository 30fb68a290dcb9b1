// The shard map in the database: versioned, read by every API process, changed only by shard
// moves. A process applies a newer version the moment it hears NOTIFY meridian_shard_map, and
// polls as a backstop, so a flip reaches running processes without a restart.
import type { Logger } from 'pino';
import type { Databases, Pool } from '../platform/db.ts';

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

export class ShardMapWatcher {
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => Promise<void>) | undefined;

  constructor(
    private readonly dbs: Databases,
    private readonly log: Logger,
    private readonly pollIntervalMs = 2_000,
  ) {}

  private get db(): Pool {
    return this.dbs.core('directory');
  }

  /** Seed the map from the configuration if the database has none, then follow it. */
  async start(): Promise<void> {
    const current = await latestShardMap(this.db);
    if (!current) {
      await this.db`
        INSERT INTO shard_map (version, assignment, note) VALUES (1, ${this.db.json(this.dbs.assignment() as never)}, 'from the configuration')
        ON CONFLICT (version) DO NOTHING`;
    }
    await this.refresh();
    const handle = await this.db.listen(CHANNEL, () => void this.refresh());
    this.unlisten = () => handle.unlisten();
    this.timer = setInterval(() => void this.refresh(), this.pollIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.unlisten?.();
  }

  async refresh(): Promise<void> {
    try {
      const map = await latestShardMap(this.db);
      if (map && this.dbs.applyShardMap(map)) this.log.info({ version: map.version, fenced: map.fenced }, 'shard map applied');
    } catch (err) {
      this.log.warn({ err: String(err) }, 'could not refresh the shard map');
    }
  }
}
