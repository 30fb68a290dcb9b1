// pgBackRest plumbing shared by `meridian cluster up` (configuration, WAL archiving, stanzas)
// and `meridian backup|restore` (backup.ts). One repository per topology, one stanza per
// cluster (named after the cluster); every member has its own pgbackrest.conf whose pg1 is that
// member, because members of a local topology share one host but not one data directory.
// Every pgbackrest command runs as `postgres` (ENGINES.md): it reads the data directories and
// owns the repository, log and lock directories.
import { spawn } from 'node:child_process';
import { chmod, chown, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_BACKUP, type Topology, type TopologyBackup, type TopologyCluster, type TopologyMember } from './topology.ts';

export interface BackrestPaths {
  repo: string;
  log: string;
  lock: string;
}

export interface PostgresIds {
  uid: number;
  gid: number;
}

export function backupSettings(t: Topology): TopologyBackup {
  return t.backup ?? DEFAULT_BACKUP;
}

/** The repository (topology's `backup.repository`, else <dataDir>/cluster/backup) and pgBackRest's own state. */
export function backrestPaths(t: Topology, dataDir: string): BackrestPaths {
  const root = path.join(path.resolve(dataDir), 'cluster');
  const configured = t.backup?.repository;
  return {
    repo: configured ? path.resolve(path.resolve(dataDir), configured) : path.join(root, 'backup'),
    log: path.join(root, 'pgbackrest', 'log'),
    lock: path.join(root, 'pgbackrest', 'lock'),
  };
}

export const backrestConfigFile = (memberDir: string): string => path.join(memberDir, 'pgbackrest.conf');

/** The stanza of a cluster: its name (unique within a topology, and so within its repository). */
export const stanzaOf = (c: TopologyCluster): string => c.name;

export function archiveCommand(memberDir: string, c: TopologyCluster): string {
  return `pgbackrest --config=${backrestConfigFile(memberDir)} --stanza=${stanzaOf(c)} archive-push %p`;
}

export function restoreCommand(memberDir: string, c: TopologyCluster): string {
  return `pgbackrest --config=${backrestConfigFile(memberDir)} --stanza=${stanzaOf(c)} archive-get %f "%p"`;
}

export function backrestConfig(t: Topology, c: TopologyCluster, m: TopologyMember, memberDir: string, paths: BackrestPaths, superuser: string): string {
  const b = backupSettings(t);
  return [
    '# Written by `meridian cluster up`; rewritten on every run.',
    '[global]',
    `repo1-path=${paths.repo}`,
    // Count-based retention: the oldest full backup (and the WAL it needs) expires once this
    // many newer fulls exist; incrementals expire with the full they depend on.
    `repo1-retention-full-type=count`,
    `repo1-retention-full=${b.retention.fullBackups}`,
    `log-path=${paths.log}`,
    `lock-path=${paths.lock}`,
    'log-level-file=info',
    `compress-type=${b.compression ?? 'lz4'}`,
    // An immediate checkpoint: a backup starts now, not at the next scheduled checkpoint.
    'start-fast=y',
    'process-max=2',
    '',
    `[${stanzaOf(c)}]`,
    `pg1-path=${path.join(memberDir, 'data')}`,
    `pg1-port=${m.port}`,
    `pg1-socket-path=${memberDir}`,
    `pg1-user=${superuser}`,
    '',
  ].join('\n');
}

/** Repository, log and lock directories, owned by postgres. */
export async function prepareBackrestDirs(paths: BackrestPaths, ids: PostgresIds): Promise<void> {
  for (const dir of [paths.repo, paths.log, paths.lock]) {
    await mkdir(dir, { recursive: true });
    await chown(dir, ids.uid, ids.gid);
    await chmod(dir, 0o750);
  }
  await chmod(path.dirname(paths.log), 0o711);
}

export class PgBackRestError extends Error {}

/**
 * Runs pgbackrest as postgres. Each console line goes to onLine as it comes (progress for long
 * backups and restores); the whole output is returned. Bounded by timeoutMs.
 */
export function pgbackrest(
  configFile: string,
  args: string[],
  ids: PostgresIds,
  options: { onLine?: (line: string) => void; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('pgbackrest', [`--config=${configFile}`, ...args], {
      uid: ids.uid,
      gid: ids.gid,
      cwd: '/', // postgres may not enter the caller's working directory
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/var/lib/postgresql' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let partial = '';
    const onData = (chunk: Buffer): void => {
      const text = chunk.toString('utf8');
      out += text;
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) options.onLine?.(line);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => child.kill('SIGTERM'), options.timeoutMs ?? 30 * 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (partial.trim()) options.onLine?.(partial);
      if (code === 0) resolve(out);
      else reject(new PgBackRestError(`pgbackrest ${args.filter((a) => !a.startsWith('--log')).join(' ')} failed (${signal ?? `exit ${code}`}): ${out.trim().split('\n').slice(-5).join(' | ')}`));
    });
  });
}
