// Start and stop the whole platform: the database (embedded unless DATABASE_URL is set),
// migrations, first-start seeding, the HTTP server and the background workers.
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp, buildServices, type Services } from './app.ts';
import type { Config } from './platform/config.ts';
import { ALL_ROLES, Databases, surviveDriverConnectRejections } from './platform/db.ts';
import { startEmbeddedPostgres, type EmbeddedServer } from './platform/embedded.ts';
import { LIMITS } from './platform/limits.ts';
import { migrate } from './platform/migrate.ts';
import { loadTopology } from './cluster/topology.ts';
import { ShardMapWatcher } from './cluster/shard-map.ts';
import { clusterCredentials, clusterSpecs } from './cluster/pg-cluster.ts';
import { catalogIsEmpty, seedDemo } from './seed/demo.ts';
import { TestPaymentProvider } from './modules/payments/provider.ts';

export const DEFAULT_ADMIN_EMAIL = 'admin@meridian.local';

export interface Platform {
  services: Services;
  stop(): Promise<void>;
}

/**
 * The database layer on its own, for the CLI's migrate and seed commands. Three shapes, one
 * code path: a topology file (clusters from `meridian cluster up`), DATABASE_URL, or an
 * embedded PostgreSQL under the data directory.
 */
export async function openDatabases(config: Config, log: Logger): Promise<{ dbs: Databases; close(): Promise<void> }> {
  let embedded: EmbeddedServer | undefined;
  let dbs: Databases;
  if (config.topologyFile) {
    const topology = await loadTopology(config.topologyFile);
    const creds = await clusterCredentials(config.dataDir);
    log.info({ topology: config.topologyFile, clusters: topology.clusters.length }, 'using the topology');
    dbs = new Databases(clusterSpecs(topology, creds), { max: config.dbPoolMax });
  } else {
    let url = config.databaseUrl;
    if (!url) {
      log.info({ dataDir: config.dataDir, port: config.embeddedPgPort }, 'starting embedded PostgreSQL');
      embedded = await startEmbeddedPostgres({
        dataDir: config.dataDir,
        port: config.embeddedPgPort,
        database: 'meridian',
        log: (m) => log.debug({ pg: m }),
      });
      url = embedded.url;
    }
    dbs = Databases.single(url, { max: config.dbPoolMax });
  }
  try {
    for (const c of dbs.clusters) {
      const n = await migrate(c.pool, c.spec.roles.length ? c.spec.roles : ALL_ROLES, (m) => log.info(m));
      if (n > 0) log.info({ cluster: c.spec.name, applied: n }, 'migrations applied');
    }
  } catch (err) {
    await dbs.close();
    await embedded?.stop();
    throw err;
  }
  return {
    dbs,
    async close() {
      await dbs.close();
      await embedded?.stop();
    },
  };
}

async function ensureAdmin(s: Services, config: Config): Promise<void> {
  const email = config.adminEmail ?? DEFAULT_ADMIN_EMAIL;
  if (await s.users.findByEmail(email)) return;
  const password = config.adminPassword ?? randomBytes(15).toString('base64url');
  await s.users.ensureAdmin(email, password);
  if (!config.adminPassword) {
    // Printed once, on the start that creates the account; never stored in clear.
    process.stdout.write(`\n  Admin account created: ${email}\n  Password (shown once): ${password}\n\n`);
  } else {
    s.log.info({ email }, 'admin account created');
  }
}

export async function startPlatform(config: Config, log: Logger): Promise<Platform & { app: FastifyInstance }> {
  const db = await openDatabases(config, log);
  // The built-in test payment provider keeps its ledger under the data dir, so that it outlives
  // this process the way a real provider does (see TestPaymentProvider).
  await mkdir(config.dataDir, { recursive: true });
  const services = buildServices(config, db.dbs, log, {
    paymentProvider: new TestPaymentProvider(0, path.join(config.dataDir, 'test-payment-provider.jsonl')),
  });
  await services.inventory.gate.start();
  await services.catalogReplicas.start();
  services.primaries.start();
  // Shard moves flip the map while we run; follow it (a no-op on one node).
  const shardMap = new ShardMapWatcher(db.dbs, log, { requestTimeoutMs: config.requestTimeoutMs });
  await shardMap.start();
  await ensureAdmin(services, config);
  if (config.seedDemo && (await catalogIsEmpty(services))) {
    log.info('first start: seeding the demo catalog');
    await seedDemo(services, 300, (m) => log.info(m));
  }
  const app = await buildApp(services);
  await app.listen({ port: config.port, host: config.host });
  services.relay.start();
  await services.cacheBus.start();
  let sweeping: Promise<unknown> = Promise.resolve();
  const sweeper = setInterval(() => {
    sweeping = services.saga.sweep().catch((err: unknown) => log.error({ err }, 'sweeper failed; will retry'));
  }, config.sweeperIntervalMs);
  log.info({ url: `http://${config.host}:${config.port}`, docs: `http://${config.host}:${config.port}/docs` }, 'Meridian is serving');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      clearInterval(sweeper);
      // Every step runs even if one before it fails: on Ctrl-C the embedded server may already
      // be going down, and the rest must still be stopped.
      const steps: [string, () => Promise<unknown>][] = [
        ['http', () => app.close()],
        ['outbox relay', () => services.relay.stop()],
        ['cache bus', () => services.cacheBus.stop()],
        ['inventory gate', () => services.inventory.gate.stop()],
        ['replicas', () => services.catalogReplicas.stop()],
        ['primary watch', () => services.primaries.stop()],
        ['shard map', () => shardMap.stop()],
        ['sweeper', () => sweeping],
        ['databases', () => db.close()],
      ];
      for (const [name, step] of steps) {
        await step().catch((err: unknown) => log.warn({ err: String(err) }, `stopping ${name} failed`));
      }
    })();
    return stopping;
  };
  return { app, services, stop };
}

/** Ctrl-C / SIGTERM: stop taking requests, finish workers, stop the embedded server, exit. */
export function stopOnSignals(platform: Platform, log: Logger): void {
  surviveDriverConnectRejections((err) => log.warn({ err }, 'a database connection dropped while connecting; it is retried'));
  const onSignal = (signal: NodeJS.Signals): void => {
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(1);
    }, LIMITS.shutdownTimeoutMs);
    force.unref();
    platform.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}
