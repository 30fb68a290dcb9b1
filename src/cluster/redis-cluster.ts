// `meridian redis-cluster up|down|status`: a Redis Cluster (3 masters, 3 replicas by default) of
// real redis-server processes on loopback, from Debian's redis-server package. State lives under
// <dataDir>/redis-cluster/<port>. Safe to run twice: running nodes are kept, a formed cluster is
// not formed again.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Topology } from './topology.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const run = promisify(execFile);

export interface RedisClusterSpec {
  readonly dir: string;
  readonly host: string;
  readonly ports: readonly number[];
  readonly replicasPerMaster: number;
  readonly nodeTimeoutMs: number;
}

export interface RedisNodeStatus {
  host: string;
  port: number;
  pid: number | null;
  role: 'master' | 'replica' | 'down';
}

export function defaultRedisClusterSpec(dataDir: string, basePort = 7100): RedisClusterSpec {
  return {
    dir: path.join(dataDir, 'redis-cluster'),
    host: '127.0.0.1',
    ports: Array.from({ length: 6 }, (_, i) => basePort + i),
    replicasPerMaster: 1,
    nodeTimeoutMs: 2_000,
  };
}

/** The Redis Cluster a topology file names, with its state under <dataDir>/redis-cluster. */
export function redisSpecOfTopology(t: Topology, dataDir: string): RedisClusterSpec {
  const nodes = t.redis?.nodes ?? [];
  return {
    ...defaultRedisClusterSpec(dataDir),
    host: nodes[0]?.split(':')[0] ?? '127.0.0.1',
    ports: nodes.map((n) => Number(n.split(':')[1])),
    replicasPerMaster: t.redis?.replicasPerMaster ?? 1,
  };
}

async function cli(host: string, port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', host, '-p', String(port), ...args], { timeout: 5_000 });
  return stdout.trim();
}

async function alive(host: string, port: number): Promise<boolean> {
  try {
    return (await cli(host, port, 'PING')) === 'PONG';
  } catch {
    return false;
  }
}

async function requireBinaries(): Promise<void> {
  for (const bin of ['redis-server', 'redis-cli']) {
    try {
      await run('sh', ['-c', `command -v ${bin}`]);
    } catch {
      throw new Error(`${bin} is not installed: run scripts/bootstrap.sh (installs Debian's redis-server)`);
    }
  }
}

export async function redisClusterUp(spec: RedisClusterSpec, progress: (msg: string) => void = () => undefined): Promise<RedisNodeStatus[]> {
  await requireBinaries();
  for (const port of spec.ports) {
    if (await alive(spec.host, port)) {
      progress(`redis ${port}: already running`);
      continue;
    }
    const dir = path.join(spec.dir, String(port));
    await mkdir(dir, { recursive: true });
    await run('redis-server', [
      '--port', String(port),
      '--bind', spec.host,
      '--cluster-enabled', 'yes',
      '--cluster-config-file', 'nodes.conf',
      '--cluster-node-timeout', String(spec.nodeTimeoutMs),
      // The gate is rebuilt from PostgreSQL, so Redis keeps nothing on disk.
      '--appendonly', 'no',
      '--save', '',
      '--dir', dir,
      '--daemonize', 'yes',
      '--pidfile', path.join(dir, 'redis.pid'),
      '--logfile', path.join(dir, 'redis.log'),
    ]);
    progress(`redis ${port}: started`);
  }
  for (const port of spec.ports) {
    for (let i = 0; !(await alive(spec.host, port)); i++) {
      if (i > 100) throw new Error(`redis ${port} did not answer PING`);
      await sleep(50);
    }
  }
  const info = await cli(spec.host, spec.ports[0]!, 'CLUSTER', 'INFO');
  if (!/cluster_state:ok/.test(info)) {
    progress('forming the cluster');
    await run(
      'redis-cli',
      ['--cluster', 'create', ...spec.ports.map((p) => `${spec.host}:${p}`), '--cluster-replicas', String(spec.replicasPerMaster), '--cluster-yes'],
      { timeout: 60_000 },
    );
  }
  for (let i = 0; ; i++) {
    const states = await Promise.all(spec.ports.map((p) => cli(spec.host, p, 'CLUSTER', 'INFO').catch(() => '')));
    if (states.every((s) => /cluster_state:ok/.test(s))) break;
    if (i > 300) throw new Error('the redis cluster did not reach cluster_state:ok in 30 s');
    await sleep(100);
  }
  // A replica that has not synced with its master yet cannot take over (its data counts as too
  // old), so a master lost in the first seconds would leave its slots down for good: wait.
  for (let i = 0; ; i++) {
    const infos = await Promise.all(spec.ports.map((p) => cli(spec.host, p, 'INFO', 'replication').catch(() => '')));
    const unsynced = spec.ports.filter((_, n) => /role:slave/.test(infos[n]!) && !/master_link_status:up/.test(infos[n]!));
    if (unsynced.length === 0 && infos.every((x) => x !== '')) break;
    if (i > 300) throw new Error(`redis replicas ${unsynced.join(', ')} did not sync with their masters in 30 s`);
    await sleep(100);
  }
  progress('redis cluster ok, every replica in sync');
  return redisClusterStatus(spec);
}

export async function redisClusterStatus(spec: RedisClusterSpec): Promise<RedisNodeStatus[]> {
  return Promise.all(
    spec.ports.map(async (port): Promise<RedisNodeStatus> => {
      const pidFile = path.join(spec.dir, String(port), 'redis.pid');
      const pid = existsSync(pidFile) ? Number((await readFile(pidFile, 'utf8')).trim()) || null : null;
      try {
        const role = (await cli(spec.host, port, 'ROLE')).split('\n')[0]?.trim();
        return { host: spec.host, port, pid, role: role === 'master' ? 'master' : role === 'slave' ? 'replica' : 'down' };
      } catch {
        return { host: spec.host, port, pid: null, role: 'down' };
      }
    }),
  );
}

export async function redisClusterDown(spec: RedisClusterSpec, options: { purge: boolean }): Promise<void> {
  await Promise.all(spec.ports.map((port) => cli(spec.host, port, 'SHUTDOWN', 'NOSAVE').catch(() => undefined)));
  for (const port of spec.ports) {
    for (let i = 0; (await alive(spec.host, port)) && i < 100; i++) await sleep(50);
  }
  if (options.purge) await rm(spec.dir, { recursive: true, force: true });
}
