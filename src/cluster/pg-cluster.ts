// `meridian cluster up|down|status`: the PostgreSQL clusters of a topology as real processes on
// loopback — Debian's PostgreSQL 15 managed by Patroni (failover, synchronous replication) with
// one local etcd as its consensus store. Never home-made replication or consensus.
// PostgreSQL and Patroni run as the unprivileged `postgres` user; state lives under
// <dataDir>/cluster. Every step is idempotent, so `up` is safe to run twice.
// Every cluster archives its WAL continuously into the topology's pgBackRest repository
// (pgbackrest.ts), and its stanza is created right after bootstrap: backups and point-in-time
// restore (backup.ts) need nothing else.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { stringify } from 'yaml';
import { migrate } from '../platform/migrate.ts';
import type { ClusterSpec, Role } from '../platform/db.ts';
import type { Topology, TopologyCluster, TopologyMember } from './topology.ts';
import { archiveCommand, backrestConfig, backrestConfigFile, backrestPaths, pgbackrest, prepareBackrestDirs, stanzaOf } from './pgbackrest.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const run = promisify(execFile);

export interface ClusterCredentials {
  superuser: string;
  superuserPassword: string;
  replicationPassword: string;
}

export interface MemberStatus {
  name: string;
  host: string;
  port: number;
  pid: number | null;
  role: 'primary' | 'sync_standby' | 'replica' | 'down';
  lagBytes: number | null;
  url: string;
}

export interface ClusterStatus {
  name: string;
  roles: string[];
  shards: [number, number][];
  members: MemberStatus[];
}

export interface Paths {
  root: string;
  etcd: string;
  member(m: TopologyMember): string;
}

export function pathsFor(dataDir: string): Paths {
  const root = path.join(path.resolve(dataDir), 'cluster');
  return { root, etcd: path.join(root, 'etcd'), member: (m) => path.join(root, 'members', m.name) };
}

export const hostOf = (m: TopologyMember): string => m.host ?? '127.0.0.1';

export async function clusterCredentials(dataDir: string): Promise<ClusterCredentials> {
  const { root } = pathsFor(dataDir);
  const file = path.join(root, 'credentials.json');
  if (existsSync(file)) return JSON.parse(await readFile(file, 'utf8')) as ClusterCredentials;
  await mkdir(root, { recursive: true });
  const creds = { superuser: 'postgres', superuserPassword: randomBytes(18).toString('base64url'), replicationPassword: randomBytes(18).toString('base64url') };
  await writeFile(file, JSON.stringify(creds), { mode: 0o600 });
  return creds;
}

export function memberUrl(creds: ClusterCredentials, m: TopologyMember, database: string): string {
  return `postgres://${creds.superuser}:${encodeURIComponent(creds.superuserPassword)}@${hostOf(m)}:${m.port}/${database}`;
}

/**
 * One URL for the whole cluster: the client finds the primary. `primary`, not `read-write`: postgres.js
 * judges read-write by default_transaction_read_only, which is off on a hot standby too.
 */
export function clusterUrl(creds: ClusterCredentials, c: TopologyCluster, database: string): string {
  const hosts = c.members.map((m) => `${hostOf(m)}:${m.port}`).join(',');
  return `postgres://${creds.superuser}:${encodeURIComponent(creds.superuserPassword)}@${hosts}/${database}?target_session_attrs=primary`;
}

/** What the application connects to: one primary-finding URL per cluster, plus each member. */
export function clusterSpecs(t: Topology, creds: ClusterCredentials): ClusterSpec[] {
  return t.clusters.map((c) => ({
    name: c.name,
    url: clusterUrl(creds, c, t.postgres.database),
    roles: c.roles,
    shards: c.shards ?? [],
    members: c.members.map((m) => ({ name: m.name, url: memberUrl(creds, m, t.postgres.database) })),
  }));
}

async function requireBinaries(t: Topology): Promise<void> {
  const missing: string[] = [];
  for (const bin of ['patroni', 'etcd', 'pgbackrest']) {
    try {
      await run('sh', ['-c', `command -v ${bin}`]);
    } catch {
      missing.push(bin);
    }
  }
  if (!existsSync(path.join(t.postgres.binDir, 'postgres'))) missing.push(`${t.postgres.binDir}/postgres`);
  if (missing.length) throw new Error(`missing: ${missing.join(', ')} — run scripts/bootstrap.sh --cluster (installs postgresql, patroni, etcd-server, pgbackrest)`);
}

export async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const { stdout } = await run('id', ['-u', 'postgres']);
  const { stdout: g } = await run('id', ['-g', 'postgres']);
  return { uid: Number(stdout.trim()), gid: Number(g.trim()) };
}

async function httpJson(url: string, timeoutMs = 1_000): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok && res.status !== 503) throw new Error(`${url}: ${res.status}`);
  return res.json();
}

function spawnDetached(command: string, args: string[], logFile: string, uid?: number, gid?: number): number {
  const out = openSync(logFile, 'a');
  const child = spawn(command, args, { detached: true, stdio: ['ignore', out, out], ...(uid !== undefined ? { uid, gid } : {}) });
  child.unref();
  if (!child.pid) throw new Error(`could not start ${command}`);
  return child.pid;
}

export function processAlive(pid: number | null): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function readPid(file: string): Promise<number | null> {
  try {
    return Number((await readFile(file, 'utf8')).split('\n')[0]?.trim()) || null;
  } catch {
    return null;
  }
}

export async function startEtcd(t: Topology, p: Paths, progress: (m: string) => void): Promise<void> {
  const health = `http://127.0.0.1:${t.etcd.clientPort}/health`;
  if (await httpJson(health).then(() => true, () => false)) return progress('etcd: already running');
  await mkdir(p.etcd, { recursive: true });
  const peer = `http://127.0.0.1:${t.etcd.peerPort}`;
  const client = `http://127.0.0.1:${t.etcd.clientPort}`;
  const pid = spawnDetached('etcd', [
    '--name', 'meridian', '--data-dir', path.join(p.etcd, 'data'),
    '--listen-client-urls', client, '--advertise-client-urls', client,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `meridian=${peer}`, '--initial-cluster-state', 'new',
  ], path.join(p.etcd, 'etcd.log'));
  await writeFile(path.join(p.etcd, 'etcd.pid'), String(pid));
  for (let i = 0; !(await httpJson(health).then(() => true, () => false)); i++) {
    if (i > 100) throw new Error(`etcd did not become healthy; see ${path.join(p.etcd, 'etcd.log')}`);
    await sleep(100);
  }
  progress('etcd: started');
}

/** How a member is configured beyond the topology: archiving, and a restore instead of initdb. */
export interface MemberOptions {
  /**
   * Archive WAL into the repository. Off only for the scratch clusters of a restore drill: a
   * restored copy must never push its new timeline into the live stanza (ENGINES.md).
   */
  archive: boolean;
  /**
   * Bootstrap by restoring from pgBackRest (Patroni's custom bootstrap method) instead of initdb:
   * `script` restores the data directory; Patroni then recovers it to targetTime with
   * restoreCommand, promotes it, and the other members clone it.
   */
  restore?: { script: string; targetTime: string; restoreCommand: string };
}

function bootstrapMethod(o: MemberOptions): Record<string, unknown> {
  if (!o.restore) return {};
  return {
    method: 'pgbackrest',
    pgbackrest: {
      command: `/bin/sh ${o.restore.script}`,
      no_params: true,
      // Patroni writes these recovery settings itself and strips pgBackRest's copies from
      // postgresql.auto.conf, so nothing of the restore survives into the clones (a standby
      // inheriting recovery_target_time would stop replaying there).
      keep_existing_recovery_conf: false,
      recovery_conf: {
        restore_command: o.restore.restoreCommand,
        recovery_target_time: o.restore.targetTime,
        // "Committed before T": a commit stamped exactly T is not included.
        recovery_target_inclusive: 'false',
        recovery_target_action: 'promote',
        recovery_target_timeline: 'latest',
      },
    },
  };
}

function patroniConfig(t: Topology, c: TopologyCluster, m: TopologyMember, dir: string, creds: ClusterCredentials, o: MemberOptions): string {
  return stringify({
    scope: `meridian-${c.name}`,
    namespace: '/meridian/',
    name: m.name,
    restapi: { listen: `${hostOf(m)}:${m.restPort}`, connect_address: `${hostOf(m)}:${m.restPort}` },
    etcd3: { hosts: `127.0.0.1:${t.etcd.clientPort}` },
    bootstrap: {
      dcs: {
        // Short, safe failover (ENGINES.md): loop_wait + 2 × retry_timeout <= ttl. A dead
        // postmaster is failed over at once (master_start_timeout 0), not restarted in place.
        ttl: 10,
        loop_wait: 2,
        retry_timeout: 3,
        master_start_timeout: 0,
        maximum_lag_on_failover: 1_048_576,
        // A commit acknowledged to a client is on two nodes: losing the primary loses nothing.
        synchronous_mode: c.synchronous ?? true,
        postgresql: {
          use_pg_rewind: true,
          parameters: {
            wal_level: 'logical', // online shard moves use logical replication
            wal_log_hints: 'on',
            max_wal_senders: 10,
            max_replication_slots: 10,
            hot_standby: 'on',
            max_connections: 200,
            shared_buffers: '128MB',
          },
        },
      },
      initdb: [{ encoding: 'UTF8' }, { locale: 'C.UTF-8' }, 'data-checksums'],
      ...bootstrapMethod(o),
      pg_hba: [
        'local all all trust',
        `host replication replicator 127.0.0.1/32 scram-sha-256`,
        `host all all 127.0.0.1/32 scram-sha-256`,
      ],
    },
    postgresql: {
      listen: `${hostOf(m)}:${m.port}`,
      connect_address: `${hostOf(m)}:${m.port}`,
      data_dir: path.join(dir, 'data'),
      bin_dir: t.postgres.binDir,
      pgpass: path.join(dir, 'pgpass'),
      authentication: {
        superuser: { username: creds.superuser, password: creds.superuserPassword },
        replication: { username: 'replicator', password: creds.replicationPassword },
        rewind: { username: creds.superuser, password: creds.superuserPassword },
      },
      // Per member, not in the DCS: each member's archive_command names its own pgbackrest.conf.
      parameters: {
        unix_socket_directories: dir,
        archive_mode: o.archive ? 'on' : 'off',
        archive_command: o.archive ? archiveCommand(dir, c) : '/bin/true',
        // A quiet cluster still closes a WAL segment every minute, so the newest restorable
        // moment is never more than a minute old (the RPO of a restore; failover loses nothing).
        archive_timeout: o.archive ? 60 : 0,
      },
    },
    // An asynchronous read replica may lack acknowledged commits: it must never lead (observed
    // otherwise: it won the bootstrap race, leaving the cluster's primary on the async member).
    tags: { nosync: m.nosync === true, nofailover: m.nosync === true, noloadbalance: false, clonefrom: false },
    watchdog: { mode: 'off' },
  });
}

/** Writes the member's patroni.yml and pgbackrest.conf; true if patroni.yml changed. */
export async function writeMemberConfig(t: Topology, c: TopologyCluster, m: TopologyMember, dataDir: string, creds: ClusterCredentials, ids: { uid: number; gid: number }, o: MemberOptions): Promise<boolean> {
  const dir = pathsFor(dataDir).member(m);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  await chown(dir, ids.uid, ids.gid);
  const backrest = backrestConfigFile(dir);
  await writeFile(backrest, backrestConfig(t, c, m, dir, backrestPaths(t, dataDir), creds.superuser), { mode: 0o600 });
  await chown(backrest, ids.uid, ids.gid);
  const config = path.join(dir, 'patroni.yml');
  const text = patroniConfig(t, c, m, dir, creds, o);
  const before = await readFile(config, 'utf8').catch(() => '');
  await writeFile(config, text, { mode: 0o600 });
  await chown(config, ids.uid, ids.gid);
  return before !== text;
}

export async function startMember(t: Topology, c: TopologyCluster, m: TopologyMember, dataDir: string, creds: ClusterCredentials, ids: { uid: number; gid: number }, o: MemberOptions, progress: (msg: string) => void): Promise<void> {
  const dir = pathsFor(dataDir).member(m);
  const pidFile = path.join(dir, 'patroni.pid');
  const changed = await writeMemberConfig(t, c, m, dataDir, creds, ids, o);
  const running = await readPid(pidFile);
  if (processAlive(running)) {
    // A member started by an earlier version of this file picks up what changed (archiving)
    // on a reload; settings that need a restart show as pending_restart in Patroni.
    if (changed) process.kill(running!, 'SIGHUP');
    return progress(`${m.name}: already running${changed ? ' (configuration reloaded)' : ''}`);
  }
  const config = path.join(dir, 'patroni.yml');
  const log = path.join(dir, 'patroni.log');
  await writeFile(log, '', { flag: 'a' });
  await chown(log, ids.uid, ids.gid);
  // Patroni runs under Debian's system python, which has its modules.
  const pid = spawnDetached('/usr/bin/python3', ['/usr/bin/patroni', config], log, ids.uid, ids.gid);
  await writeFile(pidFile, String(pid));
  progress(`${m.name}: patroni started (pid ${pid})`);
}

interface PatroniMember {
  name: string;
  role: string;
  state: string;
  host: string;
  port: number;
  lag?: number | string;
}

export async function patroniCluster(c: TopologyCluster): Promise<PatroniMember[] | undefined> {
  for (const m of c.members) {
    try {
      const body = (await httpJson(`http://${hostOf(m)}:${m.restPort}/cluster`)) as { members?: PatroniMember[] };
      if (body.members) return body.members;
    } catch {
      // try the next member
    }
  }
  return undefined;
}

export async function waitForCluster(c: TopologyCluster, timeoutMs: number, progress: (msg: string) => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const members = (await patroniCluster(c)) ?? [];
    const leader = members.find((x) => x.role === 'leader' && x.state === 'running');
    const standbys = members.filter((x) => x.role !== 'leader');
    const streaming = standbys.filter((x) => x.state === 'streaming' || (x.state === 'running' && typeof x.lag === 'number'));
    const sync = members.some((x) => x.role === 'sync_standby');
    const ready = leader && streaming.length === c.members.length - 1 && (!(c.synchronous ?? true) || c.members.length === 1 || sync);
    const line = `${c.name}: leader ${leader?.name ?? '-'}, ${streaming.length}/${c.members.length - 1} standbys streaming${sync ? ', sync standby ready' : ''}`;
    if (line !== last) progress(line);
    last = line;
    if (ready) return;
    if (Date.now() > deadline) throw new Error(`${c.name} not ready after ${timeoutMs / 1000} s (${line}); see ${c.members.map((m) => m.name).join(', ')} logs`);
    await sleep(500);
  }
}

async function prepareDatabase(t: Topology, c: TopologyCluster, creds: ClusterCredentials, progress: (msg: string) => void): Promise<void> {
  const admin = postgres(clusterUrl(creds, c, 'postgres'), { max: 1, onnotice: () => undefined, connect_timeout: 5 });
  try {
    const exists = await admin`SELECT 1 FROM pg_database WHERE datname = ${t.postgres.database}`;
    if (exists.length === 0) await admin.unsafe(`CREATE DATABASE "${t.postgres.database}"`);
  } finally {
    await admin.end();
  }
  // A standby listed before the primary refuses connections to the new database until it has
  // replayed its creation (FATAL 3D000, which ends the multi-host attempt): retry briefly.
  for (let attempt = 0; ; attempt++) {
    const db = postgres(clusterUrl(creds, c, t.postgres.database), { max: 1, onnotice: () => undefined, connect_timeout: 5 });
    try {
      const applied = await migrate(db, c.roles as Role[]);
      progress(`${c.name}: database ${t.postgres.database} ready (${applied} migrations applied)`);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '3D000' || attempt > 50) throw err;
      await sleep(200);
    } finally {
      await db.end();
    }
  }
}

export async function clusterUp(t: Topology, dataDir: string, progress: (msg: string) => void = () => undefined): Promise<ClusterStatus[]> {
  await requireBinaries(t);
  const p = pathsFor(dataDir);
  // The postgres user must traverse these (not list them); member directories are its own.
  await mkdir(path.join(p.root, 'members'), { recursive: true });
  const dataDirMode = (await stat(path.resolve(dataDir))).mode;
  if ((dataDirMode & 0o001) === 0) await chmod(path.resolve(dataDir), (dataDirMode & 0o777) | 0o011);
  await chmod(p.root, 0o711);
  await chmod(path.join(p.root, 'members'), 0o711);
  const creds = await clusterCredentials(dataDir);
  const ids = await postgresIds();
  await startEtcd(t, p, progress);
  await prepareBackrestDirs(backrestPaths(t, dataDir), ids);
  for (const c of t.clusters) for (const m of c.members) await startMember(t, c, m, dataDir, creds, ids, { archive: true }, progress);
  for (const c of t.clusters) await waitForCluster(c, 120_000, progress);
  // Right after bootstrap: until the stanza exists every archive-push fails and WAL piles up.
  for (const c of t.clusters) await createStanza(t, c, dataDir, progress);
  for (const c of t.clusters) await prepareDatabase(t, c, creds, progress);
  return clusterStatus(t, dataDir);
}

/** The member Patroni reports as leader now. */
export async function primaryOf(c: TopologyCluster): Promise<TopologyMember | undefined> {
  const leader = (await patroniCluster(c))?.find((x) => x.role === 'leader' && x.state === 'running');
  return leader ? c.members.find((m) => m.name === leader.name) : undefined;
}

/** stanza-create on the primary; idempotent (an existing, matching stanza is left as it is). */
export async function createStanza(t: Topology, c: TopologyCluster, dataDir: string, progress: (msg: string) => void): Promise<void> {
  const primary = await primaryOf(c);
  if (!primary) throw new Error(`${c.name}: no primary to create the pgBackRest stanza on`);
  const ids = await postgresIds();
  const out = await pgbackrest(backrestConfigFile(pathsFor(dataDir).member(primary)), [`--stanza=${stanzaOf(c)}`, '--log-level-console=info', 'stanza-create'], ids, { timeoutMs: 120_000 });
  progress(`${c.name}: pgBackRest stanza ${/already exists/.test(out) ? 'already exists' : 'created'} (WAL archiving on)`);
}

export async function clusterStatus(t: Topology, dataDir: string): Promise<ClusterStatus[]> {
  const p = pathsFor(dataDir);
  const creds = await clusterCredentials(dataDir);
  return Promise.all(
    t.clusters.map(async (c): Promise<ClusterStatus> => {
      const live = (await patroniCluster(c)) ?? [];
      const members = await Promise.all(
        c.members.map(async (m): Promise<MemberStatus> => {
          const x = live.find((l) => l.name === m.name);
          const role: MemberStatus['role'] = !x || !['running', 'streaming'].includes(x.state)
            ? 'down'
            : x.role === 'leader' ? 'primary' : x.role === 'sync_standby' ? 'sync_standby' : 'replica';
          return {
            name: m.name,
            host: hostOf(m),
            port: m.port,
            pid: role === 'down' ? null : await readPid(path.join(p.member(m), 'data', 'postmaster.pid')),
            role,
            lagBytes: role === 'primary' ? 0 : typeof x?.lag === 'number' ? x.lag : null,
            url: memberUrl(creds, m, t.postgres.database),
          };
        }),
      );
      return { name: c.name, roles: [...c.roles], shards: (c.shards ?? []).map(([a, b]) => [a, b] as [number, number]), members };
    }),
  );
}

/** Stops the Patroni members (and with them PostgreSQL) of these clusters, in parallel. */
export async function stopMembers(clusters: readonly TopologyCluster[], dataDir: string, progress: (msg: string) => void = () => undefined): Promise<void> {
  const p = pathsFor(dataDir);
  const stopping: Promise<void>[] = [];
  for (const c of clusters) {
    for (const m of c.members) {
      const pid = await readPid(path.join(p.member(m), 'patroni.pid'));
      if (!processAlive(pid)) continue;
      process.kill(pid!, 'SIGTERM'); // Patroni stops its PostgreSQL cleanly, then exits
      stopping.push((async () => {
        for (let i = 0; processAlive(pid) && i < 300; i++) await sleep(100);
        if (processAlive(pid)) process.kill(pid!, 'SIGKILL');
        progress(`${m.name}: stopped`);
      })());
    }
  }
  await Promise.all(stopping);
}

export async function clusterDown(t: Topology, dataDir: string, options: { purge: boolean }, progress: (msg: string) => void = () => undefined): Promise<void> {
  const p = pathsFor(dataDir);
  await stopMembers(t.clusters, dataDir, progress);
  const etcdPid = await readPid(path.join(p.etcd, 'etcd.pid'));
  if (processAlive(etcdPid)) {
    process.kill(etcdPid!, 'SIGTERM');
    for (let i = 0; processAlive(etcdPid) && i < 100; i++) await sleep(100);
    progress('etcd: stopped');
  }
  if (options.purge) await rm(p.root, { recursive: true, force: true });
}
