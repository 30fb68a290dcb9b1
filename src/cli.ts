// The `meridian` command: start, migrate, seed.
import { parseArgs } from 'node:util';
import { buildServices } from './app.ts';
import { ConfigError, loadConfig } from './platform/config.ts';
import { createLogger } from './platform/logging.ts';
import { openDatabases, startPlatform, stopOnSignals } from './server.ts';
import { catalogIsEmpty, seedDemo } from './seed/demo.ts';
import { defaultRedisClusterSpec, redisClusterDown, redisClusterStatus, redisClusterUp } from './cluster/redis-cluster.ts';

const USAGE = `Usage: meridian <command> [options]

Commands:
  start                     serve the HTTP API (embedded PostgreSQL unless DATABASE_URL is set)
  migrate                   apply database migrations and exit
  seed [--demo]             seed the demo catalog (if the catalog is empty)
  seed --users N --products N --orders N
                            bulk-generate a large data set with COPY, showing progress
  redis-cluster up|down|status
                            a local 3-master / 3-replica Redis Cluster (ports 7100-7105)

Configuration is read from the environment; see README.md.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const config = loadConfig();
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
