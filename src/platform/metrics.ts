// Prometheus metrics. One registry per app instance so tests can build several apps.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  checkouts: Counter<'outcome'>;
  cacheRequests: Counter<'cache' | 'result'>;
  gateReservations: Counter<'engine' | 'result'>;
  gateLatency: Histogram<'engine'>;
  gateFallbacks: Counter<string>;
  gateDrift: Gauge<string>;
  gateDriftCorrections: Counter<string>;
  replicaLag: Gauge<'cluster' | 'member'>;
  failoversSeen: Counter<'cluster'>;
  primaryUp: Gauge<'cluster'>;
  unavailableResponses: Counter<'route'>;
  dbRetries: Counter<string>;
}

export function createMetrics(defaultMetrics = true): Metrics {
  const registry = new Registry();
  if (defaultMetrics) collectDefaultMetrics({ register: registry });
  return {
    registry,
    httpDuration: new Histogram({
      name: 'meridian_http_request_duration_seconds',
      help: 'HTTP request duration by route and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    cacheRequests: new Counter({
      name: 'meridian_cache_requests_total',
      help: 'Cache lookups by cache and result (hit, miss, coalesced into an in-flight load)',
      labelNames: ['cache', 'result'],
      registers: [registry],
    }),
    gateReservations: new Counter({
      name: 'meridian_inventory_reservations_total',
      help: 'Reservation attempts at the inventory gate by engine and result (reserved, out_of_stock, error)',
      labelNames: ['engine', 'result'],
      registers: [registry],
    }),
    gateLatency: new Histogram({
      name: 'meridian_inventory_gate_duration_seconds',
      help: 'Time to answer a reservation, by gate engine',
      labelNames: ['engine'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    gateFallbacks: new Counter({
      name: 'meridian_inventory_gate_fallbacks_total',
      help: 'Reservations that bypassed an unreachable Redis and went to PostgreSQL alone',
      registers: [registry],
    }),
    gateDrift: new Gauge({
      name: 'meridian_inventory_gate_drift_units',
      help: 'Units by which the Redis counters differed from PostgreSQL at the last full reconciliation',
      registers: [registry],
    }),
    gateDriftCorrections: new Counter({
      name: 'meridian_inventory_gate_drift_corrected_units_total',
      help: 'Units of drift corrected by reconciliation since start',
      registers: [registry],
    }),
    replicaLag: new Gauge({
      name: 'meridian_replica_lag_bytes',
      help: 'How far each standby has replayed behind its primary, in bytes of WAL',
      labelNames: ['cluster', 'member'],
      registers: [registry],
    }),
    failoversSeen: new Counter({
      name: 'meridian_db_failovers_seen_total',
      help: 'Times a cluster answered from a different primary than before (a failover or a restart)',
      labelNames: ['cluster'],
      registers: [registry],
    }),
    primaryUp: new Gauge({
      name: 'meridian_db_primary_up',
      help: '1 while the cluster has a reachable primary, 0 while its requests answer 503',
      labelNames: ['cluster'],
      registers: [registry],
    }),
    unavailableResponses: new Counter({
      name: 'meridian_http_unavailable_total',
      help: '503 unavailable answers sent (with Retry-After), by route',
      labelNames: ['route'],
      registers: [registry],
    }),
    dbRetries: new Counter({
      name: 'meridian_db_retries_total',
      help: 'Transactions retried after their connection failed before anything ran',
      registers: [registry],
    }),
    checkouts: new Counter({ name: 'meridian_checkouts_total', help: 'Checkout outcomes by HTTP status class and code', labelNames: ['outcome'], registers: [registry] }),
  };
}
