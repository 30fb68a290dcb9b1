// `meridian backup create|list|drill|schedule` and `meridian restore --to-time`: pgBackRest over
// every cluster of a topology. Backups are per cluster (one stanza each); a restore brings every
// cluster back to the same instant T through Patroni's custom bootstrap, so what a cross-cluster
// restore can leave half-done is only what was half-done at T across clusters — which
// `meridian verify` finds and repairs (verify.ts).
import { copyFile, mkdir, readFile, rename, rm, stat, writeFile, chown, chmod } from 'node:fs/promises';
import { freePortRange } from '../platform/ports.ts';
import path from 'node:path';
import postgres from 'postgres';
import { parse, stringify } from 'yaml';
import {
  clusterCredentials, clusterDown, clusterSpecs, memberUrl, pathsFor, postgresIds, primaryOf, startEtcd, startMember, stopMembers,
  waitForCluster, writeMemberConfig, type ClusterCredentials,
} from './pg-cluster.ts';
import { backrestConfigFile, backrestPaths, backupSettings, pgbackrest, prepareBackrestDirs, restoreCommand, stanzaOf, type PostgresIds } from './pgbackrest.ts';
import { parseTopology, type Topology, type TopologyCluster, type TopologyMember } from './topology.ts';
import { Databases } from '../platform/db.ts';
import { verifyInvariants, type VerifyReport } from './verify.ts';

type Progress = (msg: string) => void;

export type BackupType = 'full' | 'incr';

export interface BackupInfo {
  label: string;
  type: 'full' | 'diff' | 'incr';
  startedAt: string;
  stoppedAt: string;
  /** Size of the database at backup time, and what the backup added to the repository. */
  sizeBytes: number;
  repoSizeBytes: number;
  walStart: string;
  walStop: string;
  /** The backups an incremental one depends on. */
  references: string[];
}

export interface ClusterBackups {
  cluster: string;
  stanza: string;
  status: string;
  /** WAL segments in the archive: everything between min and max can be replayed. */
  walArchive: { min: string | null; max: string | null };
  backups: BackupInfo[];
}

interface InfoJson {
  name: string;
  status: { code: number; message: string };
  archive: { id: string; min: string | null; max: string | null }[];
  backup: {
    label: string;
    type: 'full' | 'diff' | 'incr';
    timestamp: { start: number; stop: number };
    info: { size: number; repository: { delta: number; size: number } };
    archive: { start: string; stop: string };
    reference: string[] | null;
  }[];
}

/** A console line of pgbackrest without its timestamp and process prefix; undefined for noise. */
function tidy(line: string): string | undefined {
  if (/command (begin|end)/.test(line)) return undefined;
  return line.replace(/^\S+ \S+ P\d+ +/, '').replace(/^INFO: /, '');
}

async function memberConfigOf(t: Topology, dataDir: string, m: TopologyMember): Promise<string> {
  const file = backrestConfigFile(pathsFor(dataDir).member(m));
  await stat(file).catch(() => {
    throw new Error(`${file} is missing: run \`meridian cluster up\` first (it configures pgBackRest)`);
  });
  return file;
}

async function primaryConfig(t: Topology, dataDir: string, c: TopologyCluster): Promise<string> {
  const primary = await primaryOf(c);
  if (!primary) throw new Error(`${c.name} has no primary now: start it with \`meridian cluster up\``);
  return memberConfigOf(t, dataDir, primary);
}

/** A backup of every cluster, in parallel, from each cluster's primary. */
export async function createBackups(t: Topology, dataDir: string, type: BackupType, progress: Progress = () => undefined): Promise<{ cluster: string; label: string; seconds: number }[]> {
  const ids = await postgresIds();
  return Promise.all(
    t.clusters.map(async (c) => {
      const started = Date.now();
      const config = await primaryConfig(t, dataDir, c);
      progress(`${c.name}: ${type} backup started`);
      let label = '';
      await pgbackrest(config, [`--stanza=${stanzaOf(c)}`, `--type=${type}`, '--log-level-console=info', 'backup'], ids, {
        onLine: (line) => {
          label = /new backup label = (\S+)/.exec(line)?.[1] ?? label;
          const shown = tidy(line);
          if (shown) progress(`${c.name}: ${shown}`);
        },
      });
      const seconds = (Date.now() - started) / 1000;
      progress(`${c.name}: backup ${label} done in ${seconds.toFixed(1)} s`);
      return { cluster: c.name, label, seconds };
    }),
  );
}

/** What the repository holds, per cluster. */
export async function listBackups(t: Topology, dataDir: string): Promise<ClusterBackups[]> {
  const ids = await postgresIds();
  const first = t.clusters[0]!.members[0]!;
  const out = await pgbackrest(await memberConfigOf(t, dataDir, first), ['--output=json', 'info'], ids, { timeoutMs: 120_000 });
  const stanzas = JSON.parse(out) as InfoJson[];
  return t.clusters.map((c): ClusterBackups => {
    const s = stanzas.find((x) => x.name === stanzaOf(c));
    const archives = s?.archive ?? [];
    return {
      cluster: c.name,
      stanza: stanzaOf(c),
      status: s?.status.message ?? 'missing stanza',
      walArchive: { min: archives[0]?.min ?? null, max: archives[archives.length - 1]?.max ?? null },
      backups: (s?.backup ?? []).map((b) => ({
        label: b.label,
        type: b.type,
        startedAt: new Date(b.timestamp.start * 1000).toISOString(),
        stoppedAt: new Date(b.timestamp.stop * 1000).toISOString(),
        sizeBytes: b.info.size,
        repoSizeBytes: b.info.repository.delta,
        walStart: b.archive.start,
        walStop: b.archive.stop,
        references: b.reference ?? [],
      })),
    };
  });
}

/** `meridian backup schedule`: the topology's schedule as crontab lines (cron is the scheduler). */
export function backupSchedule(t: Topology, command: string): string[] {
  const b = backupSettings(t);
  const days = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];
  const fullDay = days.indexOf(b.schedule.full.day);
  const [fh, fm] = b.schedule.full.at.split(':').map(Number);
  const [ih, im] = b.schedule.incremental.at.split(':').map(Number);
  const otherDays = days.map((_, i) => i).filter((i) => i !== fullDay).join(',');
  return [
    `# Meridian backups (topology: full weekly on ${b.schedule.full.day} ${b.schedule.full.at}, incremental daily ${b.schedule.incremental.at}, WAL ${b.schedule.wal};`,
    `# keep ${b.retention.fullBackups} full backups: anything since the oldest one can be restored)`,
    `${fm} ${fh} * * ${fullDay} ${command} backup create --type full`,
    `${im} ${ih} * * ${otherDays} ${command} backup create --type incr`,
  ];
}

/** PostgreSQL's input form of a timestamp, in UTC (recovery_target_time). */
export function pgTime(d: Date): string {
  return d.toISOString().replace('T', ' ').replace('Z', '+00');
}

/**
 * Makes sure the archive holds WAL past `target` on every live cluster: one commit stamped after
 * T (recovery stops at the first commit after its target, and a cluster that committed nothing
 * since T would end recovery short of it, which PostgreSQL refuses), then `pgbackrest check`,
 * which switches the WAL segment and waits until it is archived.
 */
async function archivePast(t: Topology, dataDir: string, creds: ClusterCredentials, ids: PostgresIds, progress: Progress): Promise<void> {
  await Promise.all(
    t.clusters.map(async (c) => {
      const primary = await primaryOf(c);
      if (!primary) return progress(`${c.name}: no primary; restoring from what is archived already`);
      const sql = postgres(memberUrl(creds, primary, 'postgres'), { max: 1, onnotice: () => undefined, connect_timeout: 5 });
      try {
        await sql`SELECT txid_current()`;
      } finally {
        await sql.end();
      }
      await pgbackrest(await memberConfigOf(t, dataDir, primary), [`--stanza=${stanzaOf(c)}`, 'check'], ids, { timeoutMs: 120_000 });
      progress(`${c.name}: WAL archived up to now`);
    }),
  );
}

/** The newest backup of each cluster that had finished before `target` (a restore starts from it). */
function backupsBefore(list: ClusterBackups[], target: Date): Map<string, BackupInfo> {
  const out = new Map<string, BackupInfo>();
  for (const c of list) {
    // A second's margin: pgBackRest's stop time is whole seconds, the backup's end is not.
    const usable = c.backups.filter((b) => Date.parse(b.stoppedAt) + 1_000 < target.getTime());
    const chosen = usable[usable.length - 1];
    if (!chosen) {
      const oldest = c.backups[0];
      throw new Error(`${c.cluster}: no backup finished before ${target.toISOString()}${oldest ? ` (the oldest finished at ${oldest.stoppedAt})` : ' (none at all: run `meridian backup create --type full`)'}`);
    }
    out.set(c.cluster, chosen);
  }
  return out;
}

/** Patroni keeps a cluster's state under /meridian/meridian-<name>/ in etcd (leader, config, initialize key). */
async function forgetClusterState(t: Topology, c: TopologyCluster): Promise<void> {
  const prefix = `/meridian/meridian-${c.name}/`;
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
  const res = await fetch(`http://127.0.0.1:${t.etcd.clientPort}/v3/kv/deleterange`, {
    method: 'POST',
    body: JSON.stringify({ key: b64(prefix), range_end: b64(end) }),
    signal: AbortSignal.timeout(5_000),
  });
  if (!res.ok) throw new Error(`etcd refused to delete ${prefix}: ${res.status} ${await res.text()}`);
}

/** The script Patroni's custom bootstrap runs on the member that initializes the cluster. */
async function writeRestoreScript(dataDir: string, c: TopologyCluster, m: TopologyMember, set: string, target: Date, ids: PostgresIds, extra: string[] = []): Promise<string> {
  const dir = pathsFor(dataDir).member(m);
  const script = path.join(dir, 'bootstrap-restore.sh');
  await writeFile(
    script,
    [
      '#!/bin/sh',
      '# Written by meridian restore: Patroni runs it once, to bootstrap this cluster from pgBackRest.',
      'set -e',
      `mkdir -p -m 0700 '${path.join(dir, 'data')}'`,
      `exec pgbackrest --config='${backrestConfigFile(dir)}' --stanza=${stanzaOf(c)} --set=${set} --type=time '--target=${pgTime(target)}' --target-action=promote ${extra.join(' ')} --log-level-console=info restore`,
      '',
    ].join('\n'),
    { mode: 0o700 },
  );
  await chown(script, ids.uid, ids.gid);
  return script;
}

/** Connections of API processes (application_name meridian) on each primary. */
async function apiConnections(t: Topology, creds: ClusterCredentials): Promise<{ cluster: string; n: number }[]> {
  const out: { cluster: string; n: number }[] = [];
  for (const c of t.clusters) {
    const primary = await primaryOf(c);
    if (!primary) continue;
    const sql = postgres(memberUrl(creds, primary, 'postgres'), { max: 1, onnotice: () => undefined, connect_timeout: 5 });
    try {
      const [row] = await sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'meridian' AND pid <> pg_backend_pid()`;
      if (row && row.n > 0) out.push({ cluster: c.name, n: row.n });
    } finally {
      await sql.end();
    }
  }
  return out;
}

export interface RestoreReport {
  target: string;
  clusters: { cluster: string; backup: string; primary: string }[];
  seconds: number;
}

/**
 * Restores every cluster to `target` in place: archive WAL past T, stop every member, forget
 * Patroni's state in etcd, set the data directories aside (data.before-restore), and start the
 * members with a custom bootstrap that restores the chosen backup and recovers to T; the member
 * that wins the initialize key restores and promotes, the others clone it as standbys.
 */
export async function restoreToTime(t: Topology, dataDir: string, target: Date, progress: Progress = () => undefined, options: { force?: boolean } = {}): Promise<RestoreReport> {
  const started = Date.now();
  if (Number.isNaN(target.getTime())) throw new Error('the restore target is not a valid time');
  if (target.getTime() >= Date.now()) throw new Error(`the restore target ${target.toISOString()} is not in the past`);
  const creds = await clusterCredentials(dataDir);
  const ids = await postgresIds();
  const chosen = backupsBefore(await listBackups(t, dataDir), target);
  const busy = await apiConnections(t, creds);
  if (busy.length > 0 && !options.force) {
    throw new Error(`API processes are connected (${busy.map((b) => `${b.cluster}: ${b.n}`).join(', ')}): stop them before a restore (or pass --force)`);
  }
  for (const [cluster, b] of chosen) progress(`${cluster}: restoring from ${b.type} backup ${b.label} (finished ${b.stoppedAt}) to ${target.toISOString()}`);
  await archivePast(t, dataDir, creds, ids, progress);

  await stopMembers(t.clusters, dataDir, progress);
  for (const c of t.clusters) {
    await forgetClusterState(t, c);
    for (const m of c.members) {
      const dir = pathsFor(dataDir).member(m);
      const aside = path.join(dir, 'data.before-restore');
      await rm(aside, { recursive: true, force: true });
      await rename(path.join(dir, 'data'), aside).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
    progress(`${c.name}: stopped; Patroni state cleared; old data kept in data.before-restore`);
  }
  for (const c of t.clusters) {
    const set = chosen.get(c.name)!.label;
    for (const m of c.members) {
      const script = await writeRestoreScript(dataDir, c, m, set, target, ids);
      const restore = { script, targetTime: pgTime(target), restoreCommand: restoreCommand(pathsFor(dataDir).member(m), c) };
      await startMember(t, c, m, dataDir, creds, ids, { archive: true, restore }, progress);
    }
  }
  for (const c of t.clusters) await waitForCluster(c, 30 * 60_000, progress);
  // The bootstrap section is read only when a cluster initializes; drop it so a later loss of
  // the DCS state can never silently restore to T again.
  for (const c of t.clusters) for (const m of c.members) await writeMemberConfig(t, c, m, dataDir, creds, ids, { archive: true });
  // The promoted primaries archive a new timeline into the same stanzas: check it works.
  for (const c of t.clusters) {
    await pgbackrest(await primaryConfig(t, dataDir, c), [`--stanza=${stanzaOf(c)}`, 'check'], ids, { timeoutMs: 120_000 });
    progress(`${c.name}: WAL archiving on the new timeline checked`);
  }
  const clusters: RestoreReport['clusters'] = [];
  for (const c of t.clusters) clusters.push({ cluster: c.name, backup: chosen.get(c.name)!.label, primary: (await primaryOf(c))?.name ?? '-' });
  return { target: target.toISOString(), clusters, seconds: (Date.now() - started) / 1000 };
}

/** The drill's scratch topology: one member per cluster on free ports, reading the live repository. */
async function scratchTopology(t: Topology, dataDir: string): Promise<Topology> {
  const count = 2 + 2 * t.clusters.length;
  // 27000–29899: below the ephemeral range, clear of the local topology and its shifted copies
  // (15401–19922), etcd (24790–26300) and the test Redis Clusters (21000–22705, bus +10000).
  const first = await freePortRange(count, { from: 27_000, span: 2_900 });
  const ports = Array.from({ length: count }, (_, i) => first + i);
  const scratch = {
    ...structuredClone(t),
    etcd: { clientPort: ports[0]!, peerPort: ports[1]! },
    backup: { ...backupSettings(t), repository: backrestPaths(t, dataDir).repo },
    clusters: t.clusters.map((c, i) => ({
      ...structuredClone(c),
      synchronous: false,
      members: [{ name: `${c.name}-drill`, port: ports[2 + 2 * i]!, restPort: ports[3 + 2 * i]! }],
    })),
  };
  delete (scratch as Partial<Topology>).redis;
  return parseTopology(stringify(scratch), 'drill topology');
}

export interface DrillReport {
  target: string;
  clusters: { cluster: string; backup: string; port: number; rows: Record<string, number>; latestCommitAt: string | null }[];
  verify: VerifyReport;
  seconds: { restore: number; total: number };
}

const COUNTED: Record<string, string[]> = {
  shard: ['users', 'orders', 'order_lines', 'payments'],
  inventory: ['stock', 'stock_ledger', 'reservations'],
  catalog: ['products', 'variants'],
  directory: ['user_directory'],
};

/**
 * `meridian backup drill`: restores the latest backups to a moment (default: now) into scratch
 * clusters on free ports under <dataDir>/drill, checks them (row counts, nothing committed after
 * the target, invariants I1–I7), and removes them. The live clusters are only read, apart from
 * the one commit and WAL switch that put their WAL past the target into the archive.
 */
export async function backupDrill(t: Topology, dataDir: string, progress: Progress = () => undefined, options: { toTime?: Date } = {}): Promise<DrillReport> {
  const started = Date.now();
  const creds = await clusterCredentials(dataDir);
  const ids = await postgresIds();
  const drillDir = path.join(path.resolve(dataDir), 'drill');
  await cleanupDrill(drillDir, progress);
  // Default: now. archivePast's commit comes after it, so the archive holds WAL past the target.
  const target = options.toTime ?? new Date();
  if (!options.toTime) await archivePast(t, dataDir, creds, ids, progress);
  const chosen = backupsBefore(await listBackups(t, dataDir), target);
  const scratch = await scratchTopology(t, dataDir);
  await mkdir(path.join(drillDir, 'cluster', 'members'), { recursive: true });
  await chmod(drillDir, 0o711);
  await chmod(path.join(drillDir, 'cluster'), 0o711);
  await chmod(path.join(drillDir, 'cluster', 'members'), 0o711);
  await writeFile(path.join(drillDir, 'topology.yaml'), stringify(scratch));
  // The restored databases keep the live roles; Patroni sets the passwords it is given.
  await copyFile(path.join(pathsFor(dataDir).root, 'credentials.json'), path.join(drillDir, 'cluster', 'credentials.json'));
  try {
    await startEtcd(scratch, pathsFor(drillDir), progress);
    // Scratch log and lock directories: a drill never contends with the live stanzas' locks.
    await prepareBackrestDirs({ ...backrestPaths(scratch, drillDir), repo: backrestPaths(t, dataDir).repo }, ids);
    const restoreStarted = Date.now();
    for (const c of scratch.clusters) {
      const m = c.members[0]!;
      const set = chosen.get(c.name)!.label;
      await writeMemberConfig(scratch, c, m, drillDir, creds, ids, { archive: false });
      const script = await writeRestoreScript(drillDir, c, m, set, target, ids, ['--archive-mode=off']);
      const restore = { script, targetTime: pgTime(target), restoreCommand: restoreCommand(pathsFor(drillDir).member(m), c) };
      await startMember(scratch, c, m, drillDir, creds, ids, { archive: false, restore }, (msg) => progress(`drill ${msg}`));
      progress(`drill ${c.name}: restoring ${chosen.get(c.name)!.type} backup ${set} to ${target.toISOString()} on port ${m.port}`);
    }
    for (const c of scratch.clusters) await waitForCluster(c, 30 * 60_000, (msg) => progress(`drill ${msg}`));
    const restoreSeconds = (Date.now() - restoreStarted) / 1000;
    const clusters: DrillReport['clusters'] = [];
    for (const c of scratch.clusters) {
      const sql = postgres(memberUrl(creds, c.members[0]!, scratch.postgres.database), { max: 1, onnotice: () => undefined, connect_timeout: 5 });
      try {
        const rows: Record<string, number> = {};
        for (const role of c.roles) {
          for (const table of COUNTED[role] ?? []) {
            const [r] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ${sql(table)}`.catch(() => [{ n: -1 }]);
            rows[table] = r?.n ?? -1;
          }
        }
        // A row stamped at or after T was written by a transaction that began after T, so it
        // committed after T and must not be there.
        const [commit] = await sql<{ at: Date | null }[]>`
          SELECT greatest(
            ${c.roles.includes('shard') ? sql`(SELECT max(updated_at) FROM orders)` : sql`NULL::timestamptz`},
            ${c.roles.includes('inventory') ? sql`(SELECT max(created_at) FROM stock_ledger)` : sql`NULL::timestamptz`}) AS at`;
        const latestCommitAt = commit?.at ? commit.at.toISOString() : null;
        if (commit?.at && commit.at.getTime() >= target.getTime()) {
          throw new Error(`drill ${c.name}: holds a row written at ${latestCommitAt}, after the target ${target.toISOString()}`);
        }
        clusters.push({ cluster: c.name, backup: chosen.get(c.name)!.label, port: c.members[0]!.port, rows, latestCommitAt });
        progress(`drill ${c.name}: ${Object.entries(rows).map(([k, v]) => `${k} ${v}`).join(', ')}; newest write ${latestCommitAt ?? '-'}`);
      } finally {
        await sql.end();
      }
    }
    const dbs = new Databases(clusterSpecs(scratch, creds), { max: 4, applicationName: 'meridian-drill' });
    let verify: VerifyReport;
    try {
      verify = await verifyInvariants({ dbs }, { graceMs: 0 });
    } finally {
      await dbs.close();
    }
    return { target: target.toISOString(), clusters, verify, seconds: { restore: restoreSeconds, total: (Date.now() - started) / 1000 } };
  } finally {
    await cleanupDrill(drillDir, progress);
  }
}

/** Stops and removes the scratch clusters of a drill (also those a crashed drill left behind). */
async function cleanupDrill(drillDir: string, progress: Progress): Promise<void> {
  const file = path.join(drillDir, 'topology.yaml');
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text) {
    await clusterDown(parse(text) as Topology, drillDir, { purge: true }, (m) => progress(`drill ${m}`));
  }
  await rm(drillDir, { recursive: true, force: true });
}
