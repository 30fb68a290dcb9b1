// Composition root: builds the services from configuration and the HTTP app from the services.
// No listen() here, so tests drive the app in-process with app.inject() against a real database.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { Config } from './platform/config.ts';
import { setRetryListener, type Databases } from './platform/db.ts';
import { PrimaryWatcher } from './platform/primary-watch.ts';
import { installErrorHandling, type App } from './platform/http.ts';
import { createMetrics, type Metrics } from './platform/metrics.ts';
import { OutboxRelay } from './events/outbox.ts';
import { wireConsumers } from './events/consumers.ts';
import { UsersService } from './modules/users/service.ts';
import { authHooks } from './modules/users/auth.ts';
import { userRoutes } from './modules/users/routes.ts';
import { CatalogService, PRODUCT_CACHE, PRODUCT_LIST_CACHE, type Product, type ProductPage } from './modules/catalog/service.ts';
import { Cache, CacheBus, RedisCacheL2, type CacheL2 } from './platform/cache.ts';
import { Counter } from 'prom-client';
import { formatLsn, ReplicaSet } from './platform/replicas.ts';
import { catalogRoutes } from './modules/catalog/routes.ts';
import { SEARCH_RESULTS_CACHE, SEARCH_SUGGEST_CACHE, SearchService, type SearchResult, type Suggestions } from './modules/search/service.ts';
import { searchRoutes } from './modules/search/routes.ts';
import { InventoryService } from './modules/inventory/service.ts';
import { PostgresBatchedGate, PostgresGate, type InventoryGate } from './modules/inventory/gate.ts';
import { RedisGate } from './modules/inventory/redis-gate.ts';
import { createRedis, type RedisClient } from './platform/redis.ts';
import { inventoryRoutes } from './modules/inventory/routes.ts';
import { CartsService } from './modules/carts/service.ts';
import { cartRoutes } from './modules/carts/routes.ts';
import { PaymentsService } from './modules/payments/service.ts';
import { TestPaymentProvider, type PaymentProvider } from './modules/payments/provider.ts';
import { OrdersService } from './modules/orders/service.ts';
import { CheckoutSaga } from './modules/orders/checkout.ts';
import { orderRoutes } from './modules/orders/routes.ts';

export interface Services {
  config: Config;
  dbs: Databases;
  log: Logger;
  metrics: Metrics;
  users: UsersService;
  catalog: CatalogService;
  search: SearchService;
  inventory: InventoryService;
  carts: CartsService;
  payments: PaymentsService;
  orders: OrdersService;
  saga: CheckoutSaga;
  relay: OutboxRelay;
  cacheBus: CacheBus;
  /** Standbys of the catalog cluster (none on one node: reads go to the primary). */
  catalogReplicas: ReplicaSet;
  /** Which clusters have a reachable primary (started by the server; probed on demand otherwise). */
  primaries: PrimaryWatcher;
}

export interface ServiceOptions {
  /** A Redis client to use instead of one built from the configuration (tests). */
  redis?: RedisClient;
  /**
   * The Redis client of the shared cache level (L2); null for none. Default: one built from
   * REDIS_URL / REDIS_CLUSTER_NODES when set, else none (the in-process level alone).
   */
  cacheRedis?: RedisClient | null;
  /** Key prefix of the shared cache level in Redis (tests sharing one Redis keep apart). */
  cacheRedisPrefix?: string;
  paymentProvider?: PaymentProvider;
  /** Default process metrics (CPU, heap); off in tests that build many apps. */
  defaultMetrics?: boolean;
}

function buildGate(config: Config, dbs: Databases, log: Logger, metrics: Metrics, redisOverride: RedisClient | undefined): InventoryGate {
  const db = dbs.core('inventory');
  const gateMetrics = { reservations: metrics.gateReservations, latency: metrics.gateLatency };
  const batched = (m?: typeof gateMetrics): PostgresBatchedGate => new PostgresBatchedGate(db, { partitions: 8, maxBatch: 500 }, m);
  switch (config.inventoryGate) {
    case 'postgres':
      return new PostgresGate(db, gateMetrics);
    case 'postgres-batched':
      return batched(gateMetrics);
    case 'redis': {
      // The gate applies REDIS_COMMAND_TIMEOUT_MS itself, tolerating event-loop lag (redis-gate.ts); the client's is the backstop.
      const redis = redisOverride ?? createRedis({ url: config.redisUrl, clusterNodes: config.redisClusterNodes, commandTimeoutMs: Math.max(8 * config.redisCommandTimeoutMs, 2_000) });
      if (!redis) throw new Error('the redis gate needs REDIS_URL or REDIS_CLUSTER_NODES');
      // Write-behind batches may be larger than a waiting buyer's: nobody waits on them.
      const writeBehind = new PostgresBatchedGate(db, { partitions: 8, maxBatch: 2_000 });
      return new RedisGate(redis, db, writeBehind, { holdStaleMs: 30_000, reconcileIntervalMs: config.gateReconcileIntervalMs, commandTimeoutMs: config.redisCommandTimeoutMs }, log, {
        ...gateMetrics,
        fallbacks: metrics.gateFallbacks,
        drift: metrics.gateDrift,
        driftCorrections: metrics.gateDriftCorrections,
      });
    }
  }
}

/** Redis as the shared cache level when configured; its lookups are counted per cache and result. */
function buildCacheL2(config: Config, metrics: Metrics, override: RedisClient | null | undefined, prefix: string | undefined): CacheL2 | undefined {
  const redis = override === undefined
    ? createRedis({ url: config.redisUrl, clusterNodes: config.redisClusterNodes, commandTimeoutMs: config.redisCommandTimeoutMs })
    : override ?? undefined;
  if (!redis) return undefined;
  const requests = new Counter({
    name: 'meridian_cache_l2_requests_total',
    help: 'Redis cache level (L2) lookups after an in-process miss, by cache and result (hit, miss, stale: older than the client\'s last write, error); meridian_cache_requests_total counts the in-process level (L1)',
    labelNames: ['cache', 'result'],
    registers: [metrics.registry],
  });
  // Group counters must outlive every entry: twice the longest TTL above (60 s).
  return new RedisCacheL2(redis, { requests, ownsClient: override === undefined, groupTtlMs: 120_000, prefix });
}

export function buildServices(config: Config, dbs: Databases, log: Logger, options: ServiceOptions = {}): Services {
  const metrics = createMetrics(options.defaultMetrics ?? true);
  const users = new UsersService(dbs, config.sessionTtlMs);
  const l2 = buildCacheL2(config, metrics, options.cacheRedis, options.cacheRedisPrefix);
  const l2InvalidationErrors = new Counter({
    name: 'meridian_cache_l2_invalidation_errors_total',
    help: 'Invalidations that could not reach the Redis cache level (its entries then live until their TTL)',
    registers: [metrics.registry],
  });
  const cacheBus = new CacheBus(dbs.core('catalog'), l2, () => l2InvalidationErrors.inc());
  const caches = {
    product: new Cache<Product>({ name: PRODUCT_CACHE, maxEntries: 50_000, ttlMs: 60_000, jitter: 0.1, requests: metrics.cacheRequests, l2 }),
    list: new Cache<ProductPage>({ name: PRODUCT_LIST_CACHE, maxEntries: 5_000, ttlMs: 10_000, jitter: 0.1, requests: metrics.cacheRequests, l2 }),
  };
  cacheBus.register(PRODUCT_CACHE, caches.product as Cache<unknown>);
  cacheBus.register(PRODUCT_LIST_CACHE, caches.list as Cache<unknown>);
  const searchCaches = {
    // Any product change evicts every result (a changed product may enter or leave any query),
    // so the TTL only bounds how long a quiet catalog serves one computation.
    results: new Cache<SearchResult>({ name: SEARCH_RESULTS_CACHE, maxEntries: 10_000, ttlMs: 30_000, jitter: 0.1, requests: metrics.cacheRequests, l2 }),
    suggestions: new Cache<Suggestions>({ name: SEARCH_SUGGEST_CACHE, maxEntries: 10_000, ttlMs: 60_000, jitter: 0.1, requests: metrics.cacheRequests, l2 }),
  };
  const searchQueries = new Counter({
    name: 'meridian_search_queries_total',
    help: 'Searches computed (cache misses) by how they were answered: exact (every match ranked), window (the most popular matches ranked; total estimated), corrected (typos fixed), empty; refused (busy: no turn within the wait limit, or too many waiting)',
    labelNames: ['mode'],
    registers: [metrics.registry],
  });
  const catalogReplicas = new ReplicaSet(
    'catalog',
    dbs.core('catalog'),
    dbs.membersOf('catalog'),
    { max: Math.max(2, Math.floor(config.dbPoolMax / 2)) },
    { maxLagBytes: config.replicaMaxLagBytes, pollIntervalMs: 1_000 },
    log,
    metrics.replicaLag,
  );
  const catalog = new CatalogService(dbs, catalogReplicas, caches);
  const search = new SearchService(dbs, catalog, catalogReplicas, {
    caches: searchCaches,
    bus: cacheBus,
    queries: searchQueries,
    concurrencyMax: config.searchConcurrencyMax,
  });
  const inventory = new InventoryService(dbs, buildGate(config, dbs, log, metrics, options.redis));
  const carts = new CartsService(dbs, catalog);
  const payments = new PaymentsService(dbs, options.paymentProvider ?? new TestPaymentProvider());
  const orders = new OrdersService(dbs, payments);
  const saga = new CheckoutSaga({
    dbs, carts, catalog, inventory, payments, orders, log,
    reservationTtlMs: config.reservationTtlMs,
    abandonedOrderMs: config.abandonedOrderMs,
    requestTimeoutMs: config.requestTimeoutMs,
  });
  const relay = new OutboxRelay(dbs, log, config.outboxPollIntervalMs);
  wireConsumers(relay, { catalog, inventory, search, cacheBus });
  const primaries = new PrimaryWatcher(dbs, metrics, log);
  setRetryListener(() => metrics.dbRetries.inc());
  return { config, dbs, log, metrics, users, catalog, search, inventory, carts, payments, orders, saga, relay, cacheBus, catalogReplicas, primaries };
}

export async function buildApp(s: Services): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: s.log,
    // Per-request access logs would dominate the CPU under load; /metrics has the figures.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: s.config.bodyLimitBytes,
    requestTimeout: s.config.requestTimeoutMs,
    connectionTimeout: s.config.requestTimeoutMs,
    keepAliveTimeout: 5_000,
    // Reject unknown fields instead of silently dropping them; coerce query strings.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as App;

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Meridian API',
        version: '1.0.0',
        description: 'E-commerce backend: catalog, search, real-time inventory, carts, checkout, orders. Errors: {"error":{"code","message"}}.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  installErrorHandling(app);

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    s.metrics.httpDuration.observe({ method: req.method, route, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    if (reply.statusCode === 503) s.metrics.unavailableResponses.inc({ route });
  });

  // Read-your-writes: every successful admin write answers with the catalog cluster's WAL
  // position; reads that send it back (Meridian-Consistency) see at least that write. Only admin
  // routes change what those reads serve directly (products, prices, brands, categories). A
  // buyer's writes (auth, carts, checkout) change it only later, through the outbox relay (a
  // SKU's last unit sold flips its in-stock flag), which no token covers, an admin's included;
  // asking the primary for its position would cost each of them a round trip for nothing.
  app.addHook('onSend', async (req, reply, payload) => {
    if (req.method !== 'GET' && req.method !== 'HEAD' && reply.statusCode < 400 && req.url.startsWith('/v1/admin/')) {
      void reply.header('meridian-consistency', formatLsn(await s.catalogReplicas.writeToken()));
    }
    return payload;
  });

  app.get('/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  // Ready while every cluster has a reachable primary: the watcher's view when it runs (the
  // server), else one probe round now.
  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    const states = s.primaries.running ? s.primaries.states() : await s.primaries.probeAll();
    const ready = states.every((c) => c.up);
    return reply.status(ready ? 200 : 503).send({
      status: ready ? 'ready' : 'unready',
      checks: states.map((c) => ({ cluster: c.cluster, ok: c.up, sinceMs: c.sinceMs })),
    });
  });
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) =>
    reply.header('content-type', s.metrics.registry.contentType).send(await s.metrics.registry.metrics()),
  );

  const auth = authHooks(s.users);
  userRoutes(app, s.users, auth);
  catalogRoutes(app, s.catalog, auth);
  searchRoutes(app, s.search, auth);
  inventoryRoutes(app, s.inventory, s.catalog, auth);
  cartRoutes(app, s.carts, auth);
  orderRoutes(app, s.orders, s.saga, auth, s.metrics, s.users);
  await app.ready();
  return app as unknown as FastifyInstance;
}
