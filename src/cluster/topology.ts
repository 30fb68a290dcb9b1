// The topology file: regions, PostgreSQL clusters (members, roles, owned logical shards), etcd
// and the Redis Cluster. Validated at load; an error names the field (e.g. /clusters/1/shards).
import { readFile } from 'node:fs/promises';
import { Type, type Static } from 'typebox';
import Value from 'typebox/value';
import { parse } from 'yaml';
import { LOGICAL_SHARDS } from '../platform/ids.ts';

const Port = Type.Integer({ minimum: 1024, maximum: 65535 });
const Name = Type.String({ pattern: '^[a-z][a-z0-9-]{0,30}$' });
const Role = Type.Union([Type.Literal('directory'), Type.Literal('catalog'), Type.Literal('inventory'), Type.Literal('shard')]);

const MemberSchema = Type.Object(
  { name: Name, host: Type.Optional(Type.String({ minLength: 1 })), port: Port, restPort: Port, nosync: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);

const ClusterSchema = Type.Object(
  {
    name: Name,
    region: Type.Optional(Name),
    roles: Type.Array(Role, { minItems: 1, uniqueItems: true }),
    shards: Type.Optional(Type.Array(Type.Tuple([Type.Integer({ minimum: 0 }), Type.Integer({ minimum: 0 })]))),
    synchronous: Type.Optional(Type.Boolean()),
    members: Type.Array(MemberSchema, { minItems: 1, maxItems: 9 }),
  },
  { additionalProperties: false },
);

const Clock = Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$' });
const Weekday = Type.Union(['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'].map((d) => Type.Literal(d)));

/**
 * pgBackRest for every cluster. The schedule is what `meridian backup schedule` turns into
 * crontab lines (a full backup weekly, an incremental one on the other days); WAL is archived
 * continuously by PostgreSQL's archive_command, so any moment since the oldest kept full backup
 * can be restored.
 */
const BackupSchema = Type.Object(
  {
    /** The repository; default <dataDir>/cluster/backup. A relative path is relative to the data dir. */
    repository: Type.Optional(Type.String({ minLength: 1 })),
    schedule: Type.Object(
      {
        full: Type.Object({ day: Weekday, at: Clock }, { additionalProperties: false }),
        incremental: Type.Object({ at: Clock }, { additionalProperties: false }),
        wal: Type.Literal('continuous'),
      },
      { additionalProperties: false },
    ),
    retention: Type.Object(
      {
        /** Full backups kept (pgBackRest repo1-retention-full); WAL older than the oldest one expires with it. */
        fullBackups: Type.Integer({ minimum: 1, maximum: 52 }),
      },
      { additionalProperties: false },
    ),
    compression: Type.Optional(Type.Union([Type.Literal('none'), Type.Literal('gz'), Type.Literal('lz4'), Type.Literal('zst')])),
  },
  { additionalProperties: false },
);

export const TopologySchema = Type.Object(
  {
    version: Type.Literal(1),
    logicalShards: Type.Literal(LOGICAL_SHARDS),
    regions: Type.Array(Type.Object({ name: Name }, { additionalProperties: false }), { minItems: 1 }),
    etcd: Type.Object({ clientPort: Port, peerPort: Port }, { additionalProperties: false }),
    postgres: Type.Object(
      { binDir: Type.String({ minLength: 1 }), database: Type.String({ pattern: '^[a-z_][a-z0-9_]{0,62}$' }) },
      { additionalProperties: false },
    ),
    clusters: Type.Array(ClusterSchema, { minItems: 1 }),
    backup: Type.Optional(BackupSchema),
    redis: Type.Optional(
      Type.Object(
        { nodes: Type.Array(Type.String({ pattern: '^[A-Za-z0-9.-]+:[0-9]{1,5}$' }), { minItems: 3 }), replicasPerMaster: Type.Integer({ minimum: 0, maximum: 2 }) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type Topology = Static<typeof TopologySchema>;
export type TopologyCluster = Static<typeof ClusterSchema>;
export type TopologyMember = Static<typeof MemberSchema>;
export type TopologyBackup = Static<typeof BackupSchema>;

/** What a topology without a backup section gets: the documented default schedule. */
export const DEFAULT_BACKUP: TopologyBackup = Object.freeze({
  schedule: { full: { day: 'sunday', at: '01:00' }, incremental: { at: '01:00' }, wal: 'continuous' },
  retention: { fullBackups: 2 },
  compression: 'lz4',
}) as TopologyBackup;

export class TopologyError extends Error {}

/** Checks the rules a schema cannot say: every shard owned exactly once, each core role once. */
function checkSemantics(t: Topology): void {
  const owner = new Array<string | undefined>(LOGICAL_SHARDS);
  const names = new Set<string>();
  const ports = new Set<number>();
  const regions = new Set(t.regions.map((r) => r.name));
  t.clusters.forEach((c, ci) => {
    if (names.has(c.name)) throw new TopologyError(`/clusters/${ci}/name: "${c.name}" is used twice`);
    names.add(c.name);
    if (c.region && !regions.has(c.region)) throw new TopologyError(`/clusters/${ci}/region: no region named "${c.region}"`);
    const holdsShards = c.roles.includes('shard');
    if (holdsShards !== Boolean(c.shards?.length)) {
      throw new TopologyError(`/clusters/${ci}/shards: a cluster has shard ranges if and only if it has the "shard" role`);
    }
    (c.shards ?? []).forEach(([from, to], si) => {
      if (from > to || to >= LOGICAL_SHARDS) throw new TopologyError(`/clusters/${ci}/shards/${si}: [${from}, ${to}] is not a range within 0..${LOGICAL_SHARDS - 1}`);
      for (let s = from; s <= to; s++) {
        if (owner[s]) throw new TopologyError(`/clusters/${ci}/shards/${si}: shard ${s} is already owned by ${owner[s]}`);
        owner[s] = c.name;
      }
    });
    c.members.forEach((m, mi) => {
      for (const p of [m.port, m.restPort]) {
        if (ports.has(p)) throw new TopologyError(`/clusters/${ci}/members/${mi}: port ${p} is used twice`);
        ports.add(p);
      }
    });
  });
  // One full backup kept means that, while the next full runs, the only restorable past is the
  // new backup's own: the window of "any moment of the last days" needs two.
  if (t.backup && t.backup.retention.fullBackups < 2) {
    throw new TopologyError(`/backup/retention/fullBackups: must be at least 2 (with 1, a new full backup expires every earlier restore point)`);
  }
  const missing = owner.findIndex((o) => o === undefined);
  if (missing >= 0) throw new TopologyError(`/clusters: logical shard ${missing} has no owning cluster`);
  for (const role of ['directory', 'catalog', 'inventory'] as const) {
    const holders = t.clusters.filter((c) => c.roles.includes(role));
    if (holders.length !== 1) throw new TopologyError(`/clusters: exactly one cluster must hold the ${role} role (found ${holders.length})`);
  }
}

export function parseTopology(text: string, source = 'topology'): Topology {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    throw new TopologyError(`${source}: not valid YAML: ${(err as Error).message}`);
  }
  const errors = [...Value.Errors(TopologySchema, raw)].filter((e) => e.keyword !== 'boolean');
  const first = errors[0];
  if (first) throw new TopologyError(`${source}: ${first.instancePath || '/'}: ${first.message}`);
  const topology = raw as Topology;
  try {
    checkSemantics(topology);
  } catch (err) {
    if (err instanceof TopologyError) throw new TopologyError(`${source}: ${err.message}`);
    throw err;
  }
  return topology;
}

export async function loadTopology(file: string): Promise<Topology> {
  return parseTopology(await readFile(file, 'utf8'), file);
}
