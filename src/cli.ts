// The `meridian` command: start, migrate, seed.
import { parseArgs } from 'node:util';
import { buildServices } from './app.ts';
import type { ReindexProgress } from './modules/search/service.ts';
import { ConfigError, loadConfig } from './platform/config.ts';
import { createLogger } from './platform/logging.ts';
import { openDatabases, startPlatform, stopOnSignals } from './server.ts';
import { catalogIsEmpty, seedDemo } from './seed/demo.ts';
import { defaultRedisClusterSpec, redisClusterDown, redisClusterStatus, redisClusterUp, redisSpecOfTopology } from './cluster/redis-cluster.ts';
import { clusterDown, clusterStatus, clusterUp } from './cluster/pg-cluster.ts';
import { loadTopology } from './cluster/topology.ts';
import { ShardMapWatcher } from './cluster/shard-map.ts';
import { moveShards, type MoveReport } from './cluster/shard-move.ts';

const USAGE = `Usage: meridian <command> [options]

Commands:
  start                     serve the HTTP API (embedded PostgreSQL unless DATABASE_URL is set)
  migrate                   apply database migrations and exit
  seed [--demo]             seed the demo catalog (if the catalog is empty)
  seed --users N --products N --orders N
                            bulk-generate a large data set with COPY, showing progress
  search reindex [--bands-only]
                            rebuild the search index from the catalog (documents, vocabulary,
                            statistics, popularity-band indexes) online, showing progress;
                            --bands-only rebuilds the popularity bands alone
  cluster up|down|status [--topology FILE] [--json] [--purge]
                            PostgreSQL clusters under Patroni + etcd, and the Redis Cluster,
                            of a topology file (default topologies/local.yaml)
  shard move --shards FROM-TO --to CLUSTER --topology FILE
                            move logical shards to another cluster online
  backup create [--type full|incr] | list [--json] | drill [--to-time ISO] | schedule
                            pgBackRest backups of every cluster of the topology, their list,
                            a restore drill into scratch clusters, the crontab of the schedule
  restore --to-time ISO-8601 [--repair] [--force]
                            restore every cluster to that instant, then run verify
  verify [--repair] [--json]
                            check invariants I1–I7 across all clusters (or the single node);
                            --repair finishes or undoes what a cross-cluster restore left half-done
  redis-cluster up|down|status
                            a local 3-master / 3-replica Redis Cluster (ports 7100-7105)

Configuration is read from the environment; see README.md.`;

/** `--topology FILE` anywhere on the line is the same as MERIDIAN_TOPOLOGY=FILE. */
function topologyFlag(args: string[]): { args: string[]; env: NodeJS.ProcessEnv } {
  const i = args.indexOf('--topology');
  if (i < 0 || args[0] === 'cluster') return { args, env: process.env };
  const file = args[i + 1];
  if (!file) throw new ConfigError('--topology needs a file');
  return { args: [...args.slice(0, i), ...args.slice(i + 2)], env: { ...process.env, MERIDIAN_TOPOLOGY: file } };
}

async function main(argvIn: string[]): Promise<number> {
  const { args: argv, env } = topologyFlag(argvIn);
  const [command, ...rest] = argv;
  if (env.MERIDIAN_TOPOLOGY && command !== 'cluster' && !env.REDIS_URL && !env.REDIS_CLUSTER_NODES) {
    // The topology's Redis Cluster is the inventory gate unless the environment names another.
    const nodes = (await loadTopology(env.MERIDIAN_TOPOLOGY)).redis?.nodes;
    if (nodes?.length) env.REDIS_CLUSTER_NODES = nodes.join(',');
  }
  const config = loadConfig(env);
  const log = createLogger(config.logLevel);
  switch (command) {
    case 'start': {
      const platform = await startPlatform(config, log);
      stopOnSignals(platform, log);
      return -1; // keep running
    }
    case 'migrate': {
      const db = await openDatabases(config, log);
      await db.close();
      return 0;
    }
    case 'seed': {
      const { values } = parseArgs({
        args: rest,
        options: { demo: { type: 'boolean' }, users: { type: 'string' }, products: { type: 'string' }, orders: { type: 'string' } },
      });
      const db = await openDatabases(config, log);
      try {
        if (values.users || values.products || values.orders) {
          const { seedAtScale } = await import('./seed/bulk.ts');
          await seedAtScale(db.dbs, {
            users: Number(values.users ?? 0),
            products: Number(values.products ?? 0),
            orders: Number(values.orders ?? 0),
          });
        } else {
          const services = buildServices(config, db.dbs, log, { defaultMetrics: false });
          if (await catalogIsEmpty(services)) await seedDemo(services, 300, (m) => console.log(m));
          else console.log('the catalog is not empty; demo seed skipped');
          await services.relay.drain();
        }
      } finally {
        await db.close();
      }
      return 0;
    }
    case 'search': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { 'bands-only': { type: 'boolean' } } });
      if (positionals[0] !== 'reindex' || positionals.length > 1) {
        console.error('usage: meridian search reindex [--bands-only]');
        return 2;
      }
      const db = await openDatabases(config, log);
      const services = buildServices(config, db.dbs, log, { defaultMetrics: false });
      const started = Date.now();
      const stamp = (): string => `[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s]`;
      const tty = process.stderr.isTTY;
      let lastLine = 0;
      const show = (p: ReindexProgress): void => {
        const counted = p.done !== undefined && p.total ? ` ${p.done.toLocaleString('en-US')}/${p.total.toLocaleString('en-US')} (${Math.floor((100 * p.done) / p.total)}%)` : '';
        const line = `${stamp()} ${p.phase.padEnd(10)} ${p.message}${counted}`;
        // Documents report every page: rewrite one line on a terminal, print every few seconds otherwise.
        if (p.phase === 'documents' && p.done !== p.total) {
          if (tty) process.stderr.write(`\r\x1b[2K${line}`);
          else if (Date.now() - lastLine >= 5_000) process.stderr.write(`${line}\n`);
          lastLine = Date.now();
          return;
        }
        process.stderr.write(`${tty ? '\r\x1b[2K' : ''}${line}\n`);
      };
      try {
        await services.cacheBus.start();
        if (values['bands-only']) {
          const bands = await services.search.rebuildBands(show);
          console.log(JSON.stringify({ bands }, null, 2));
        } else {
          const report = await services.search.reindexAll(show);
          console.log(JSON.stringify(report, null, 2));
        }
      } finally {
        await services.cacheBus.stop();
        await db.close();
      }
      return 0;
    }
    case 'cluster': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: { topology: { type: 'string' }, json: { type: 'boolean' }, purge: { type: 'boolean' } },
      });
      const topology = await loadTopology(values.topology ?? process.env.MERIDIAN_TOPOLOGY ?? 'topologies/local.yaml');
      const redisSpec = topology.redis ? redisSpecOfTopology(topology, config.dataDir) : undefined;
      const action = positionals[0];
      const started = Date.now();
      if (action === 'up') {
        await clusterUp(topology, config.dataDir, (m) => console.error(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${m}`));
        if (redisSpec) await redisClusterUp(redisSpec, (m) => console.error(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${m}`));
        console.error(`cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      } else if (action === 'down') {
        if (redisSpec) await redisClusterDown(redisSpec, { purge: values.purge === true });
        await clusterDown(topology, config.dataDir, { purge: values.purge === true }, (m) => console.error(m));
        return 0;
      } else if (action !== 'status') {
        console.error('usage: meridian cluster up|down [--purge]|status [--json] [--topology FILE]');
        return 2;
      }
      const clusters = await clusterStatus(topology, config.dataDir);
      const redis = redisSpec ? { nodes: await redisClusterStatus(redisSpec) } : { nodes: [] };
      if (values.json || action === 'up') console.log(JSON.stringify({ clusters, redis }, null, values.json ? 0 : 2));
      else {
        for (const c of clusters) {
          console.log(`${c.name} [${c.roles.join(', ')}]${c.shards.length ? ` shards ${c.shards.map(([a, b]) => `${a}-${b}`).join(',')}` : ''}`);
          for (const m of c.members) console.log(`  ${m.name.padEnd(12)} ${m.role.padEnd(13)} ${m.host}:${m.port}  pid ${m.pid ?? '-'}  lag ${m.lagBytes ?? '-'}`);
        }
        for (const n of redis.nodes) console.log(`redis ${n.host}:${n.port} ${n.role} pid ${n.pid ?? '-'}`);
      }
      return 0;
    }
    case 'shard': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: { shards: { type: 'string' }, to: { type: 'string' } },
      });
      const range = /^(\d+)-(\d+)$/.exec(values.shards ?? '');
      if (positionals[0] !== 'move' || !range || !values.to) {
        console.error('usage: meridian shard move --shards FROM-TO --to CLUSTER --topology FILE');
        return 2;
      }
      if (!config.topologyFile) throw new ConfigError('shard move needs --topology FILE (or MERIDIAN_TOPOLOGY)');
      const topology = await loadTopology(config.topologyFile);
      const db = await openDatabases(config, log);
      const shardMap = new ShardMapWatcher(db.dbs, log, { requestTimeoutMs: config.requestTimeoutMs });
      let report: MoveReport;
      try {
        await shardMap.start();
        const from = Number(range[1]);
        const source = (await clusterStatus(topology, config.dataDir)).find((c) => c.name === db.dbs.ownerOf(from).spec.name);
        const primary = source?.members.find((m) => m.role === 'primary');
        if (!primary) throw new Error(`the cluster owning shard ${from} has no primary now`);
        report = await moveShards(
          db.dbs,
          { from, to: Number(range[2]), target: values.to, sourceConnInfo: primary.url },
          (m) => console.error(m),
        );
        console.log(JSON.stringify(report));
      } finally {
        await shardMap.stop();
        await db.close();
      }
      // Moved, but the source still holds the rows: an operator has to finish (see the log).
      return report.sourceCleaned ? 0 : 1;
    }
    case 'redis-cluster': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: { purge: { type: 'boolean' }, json: { type: 'boolean' }, 'base-port': { type: 'string' } },
      });
      const spec = defaultRedisClusterSpec(config.dataDir, Number(values['base-port'] ?? process.env.REDIS_CLUSTER_BASE_PORT ?? 7100));
      const action = positionals[0];
      if (action === 'up') {
        const nodes = await redisClusterUp(spec, (m) => console.error(m));
        console.log(`REDIS_CLUSTER_NODES=${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`);
      } else if (action === 'down') {
        await redisClusterDown(spec, { purge: values.purge === true });
      } else if (action === 'status') {
        const nodes = await redisClusterStatus(spec);
        if (values.json) console.log(JSON.stringify({ nodes }));
        else for (const n of nodes) console.log(`${n.host}:${n.port}\t${n.role}\tpid ${n.pid ?? '-'}`);
      } else {
        console.error('usage: meridian redis-cluster up|down [--purge]|status [--json] [--base-port N]');
        return 2;
      }
      return 0;
    }
    case 'backup':
    case 'restore':
    case 'verify': {
      const { runBackupCommand } = await import('./cluster/backup-cli.ts');
      return runBackupCommand(command, rest, config, log);
    }
    case undefined:
    case 'help':
    case '--help':
      console.log(USAGE);
      return 0;
    default:
      console.error(`unknown command: ${command}\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof ConfigError) console.error(`configuration error: ${err.message}`);
    else console.error(err);
    process.exit(1);
  },
);
