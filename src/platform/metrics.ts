// Prometheus metrics. One registry per app instance so tests can build several apps.
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  checkouts: Counter<'outcome'>;
  cacheRequests: Counter<'cache' | 'result'>;
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
    checkouts: new Counter({ name: 'meridian_checkouts_total', help: 'Checkout outcomes by HTTP status class and code', labelNames: ['outcome'], registers: [registry] }),
  };
}
