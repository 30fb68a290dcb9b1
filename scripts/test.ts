// `npm test`: runs every test file with Node's test runner against a real PostgreSQL.
// Without TEST_DATABASE_URL it starts a throwaway server: embedded PostgreSQL 18 by default, or
// with TEST_POSTGRES=15 Debian's PostgreSQL 15 (the engine of `meridian cluster`), so that CI
// runs the schema and every query on both. Each test suite then creates its own database on that
// server (see test/helpers.ts).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres, type EmbeddedServer } from '../src/platform/embedded.ts';
import { freePort, freePortRange } from '../src/platform/ports.ts';
import { defaultRedisClusterSpec, redisClusterDown, redisClusterUp, type RedisClusterSpec } from '../src/cluster/redis-cluster.ts';

/**
 * The test Redis Cluster's ports: 21000–22005 and their bus ports 31000–32005, below the
 * kernel's ephemeral range (from 32768), and clear of the ports the cluster tests give their
 * members (16401–19922), etcd (24790–25300) and test/flash-sale-failures.test.ts (22100–22705).
 */
const TEST_REDIS_CLUSTER_PORTS = { from: 21_000, span: 1_000, companionOffsets: [10_000] } as const;

const PG15_BIN = '/usr/lib/postgresql/15/bin';
/** Test files that start PostgreSQL 15 clusters of their own: the PostgreSQL 15 pass skips them. */
const OWN_CLUSTER_TESTS = /(cluster-e2e|backup-pitr|chaos)\.test\.ts$/;

/** A throwaway Debian PostgreSQL 15 server (as the postgres user when run as root). */
async function startPostgres15(dir: string, port: number): Promise<{ url: string; stop(): Promise<void> }> {
  const run = promisify(execFile);
  let asPostgres: { uid?: number; gid?: number } = {};
  if (process.getuid?.() === 0) {
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    await chown(dir, uid, gid);
    asPostgres = { uid, gid };
  }
  const data = path.join(dir, 'data');
  await run(`${PG15_BIN}/initdb`, ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8'], asPostgres);
  const settings = { listen_addresses: '127.0.0.1', unix_socket_directories: dir, fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '500', wal_level: 'logical', max_replication_slots: '20', max_wal_senders: '20' };
  const opts = [`-p ${port}`, ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)].join(' ');
  await run(`${PG15_BIN}/pg_ctl`, ['-D', data, '-o', opts, '-l', path.join(dir, 'server.log'), '-w', 'start'], asPostgres);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      await run(`${PG15_BIN}/pg_ctl`, ['-D', data, '-m', 'immediate', 'stop'], asPostgres).catch(() => undefined);
    },
  };
}

async function findTests(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await findTests(full)));
    else if (entry.name.endsWith('.test.ts')) out.push(full);
  }
  return out.sort();
}

async function main(): Promise<number> {
  const filter = process.argv.slice(2);
  let files = [...(await findTests('src')), ...(await findTests('test'))];
  if (filter.length > 0) files = files.filter((f) => filter.some((x) => f.includes(x)));
  let embedded: EmbeddedServer | undefined;
  let postgres15: { stop(): Promise<void> } | undefined;
  let dataDir: string | undefined;
  const env = { ...process.env };
  if (!env.TEST_DATABASE_URL && env.TEST_POSTGRES === '15') {
    dataDir = await mkdtemp(path.join(tmpdir(), 'meridian-test-pg15-'));
    const server = await startPostgres15(dataDir, await freePort());
    postgres15 = server;
    env.TEST_DATABASE_URL = server.url;
    files = files.filter((f) => !OWN_CLUSTER_TESTS.test(f));
    console.log(`test database: Debian PostgreSQL 15 in ${dataDir} (tests that start their own PostgreSQL 15 clusters are skipped in this pass)`);
  } else if (!env.TEST_DATABASE_URL) {
    dataDir = await mkdtemp(path.join(tmpdir(), 'meridian-test-'));
    embedded = await startEmbeddedPostgres({
      dataDir,
      port: await freePort(),
      database: 'meridian_test',
      // A throwaway server: durability settings off for speed. Never in production.
      settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '500', wal_level: 'logical', max_replication_slots: '20', max_wal_senders: '20' },
    });
    env.TEST_DATABASE_URL = embedded.urlFor('postgres');
    console.log(`test database: embedded PostgreSQL in ${dataDir}`);
  } else {
    console.log('test database: TEST_DATABASE_URL');
  }
  // Real Redis for the inventory gate tests: one standalone server and a 3+3 Redis Cluster.
  let redisDir: string | undefined;
  let standalone: ChildProcess | undefined;
  let cluster: RedisClusterSpec | undefined;
  if (!env.TEST_REDIS_URL || !env.TEST_REDIS_CLUSTER_NODES) {
    redisDir = await mkdtemp(path.join(tmpdir(), 'meridian-test-redis-'));
    const port = await freePort();
    standalone = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    env.TEST_REDIS_URL = `redis://127.0.0.1:${port}`;
    cluster = { ...defaultRedisClusterSpec(redisDir, await freePortRange(6, TEST_REDIS_CLUSTER_PORTS)), dir: path.join(redisDir, 'cluster') };
    const nodes = await redisClusterUp(cluster);
    env.TEST_REDIS_CLUSTER_NODES = nodes.map((n) => `${n.host}:${n.port}`).join(',');
    env.TEST_REDIS_CLUSTER_DIR = cluster.dir;
    env.TEST_REDIS_CLUSTER_BASE_PORT = String(cluster.ports[0]);
    console.log(`test redis: standalone ${env.TEST_REDIS_URL}, cluster ${env.TEST_REDIS_CLUSTER_NODES}`);
  }
  try {
    return await new Promise<number>((resolve) => {
      // A test that hangs fails after 10 minutes instead of holding CI until its own limit.
      // --test-force-exit: a file whose tests have all finished exits even if a client library
      // left a handle open (once, in CI, a file sat finished but alive with an ioredis client to
      // an unreachable port still "reconnecting", until the 10 minutes ran out).
      const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=600000', '--test-force-exit', ...files], { stdio: 'inherit', env });
      child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
    });
  } finally {
    standalone?.kill('SIGTERM');
    if (cluster) await redisClusterDown(cluster, { purge: true });
    if (redisDir) await rm(redisDir, { recursive: true, force: true });
    await embedded?.stop();
    await postgres15?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
