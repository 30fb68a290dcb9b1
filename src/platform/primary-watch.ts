// Which clusters have a primary right now. One small probe per cluster, every intervalMs, over
// the same primary-finding multi-host URL the request pools use (target_session_attrs=primary).
//
// Why a watcher and not only the pools: while a cluster has no primary (between a primary's
// death and Patroni promoting its synchronous standby, ~2–4 s here), postgres.js keeps cycling
// through the hosts waiting for one that is primary, so a query would wait, not fail. The watcher
// marks the cluster down at the first failed probe; requests for it then answer 503
// `unavailable` with Retry-After at once (Databases.core/shard), requests for other clusters go
// on, and /readyz turns unready. The first probe that reaches a primary marks it up again; a
// different primary than before (server port or postmaster start time changed) counts as a
// failover seen.
import postgres from 'postgres';
import type { Logger } from 'pino';
import { reconnectBackoffS, type Cluster, type Databases } from './db.ts';
import type { Metrics } from './metrics.ts';

export interface PrimaryWatchOptions {
  readonly intervalMs: number;
  /** A probe slower than this counts as "no primary" (a healthy one answers in milliseconds). */
  readonly probeTimeoutMs: number;
}

export const DEFAULT_PRIMARY_WATCH: PrimaryWatchOptions = { intervalMs: 500, probeTimeoutMs: 2_000 };

interface Probe {
  readonly cluster: Cluster;
  sql: postgres.Sql;
  inflight: Promise<{ rows: { port: number; started: string }[] } | { err: unknown }> | undefined;
  inflightSince: number;
  /** Port and postmaster start time of the primary last reached. */
  identity: string | undefined;
}

export interface PrimaryState {
  readonly cluster: string;
  readonly up: boolean;
  /** Milliseconds since the state last changed. */
  readonly sinceMs: number;
}

export class PrimaryWatcher {
  private readonly probes: Probe[];
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;

  constructor(
    private readonly dbs: Databases,
    private readonly metrics: Metrics | undefined,
    private readonly log: Logger,
    private readonly options: PrimaryWatchOptions = DEFAULT_PRIMARY_WATCH,
  ) {
    this.probes = dbs.clusters.map((cluster) => ({ cluster, sql: this.openProbe(cluster), identity: undefined, inflight: undefined, inflightSince: 0 }));
  }

  get running(): boolean {
    return this.timer !== undefined;
  }

  start(): void {
    if (this.timer) return;
    const tick = (): void => {
      this.round = this.probeAll().then(() => undefined, () => undefined);
      void this.round.finally(() => {
        if (this.timer) this.timer = setTimeout(tick, this.options.intervalMs);
      });
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.round;
    // A probe still waiting for a primary is abandoned after a second, not awaited.
    await Promise.all(this.probes.map((p) => p.sql.end({ timeout: 1 }).catch(() => undefined)));
  }

  /** Probes every cluster once, updates the routing state, and returns it. */
  async probeAll(): Promise<PrimaryState[]> {
    await Promise.all(this.probes.map((p) => this.probeOne(p)));
    return this.states();
  }

  states(): PrimaryState[] {
    const now = Date.now();
    return this.dbs.clusters.map((c) => ({ cluster: c.spec.name, up: c.primary.up, sinceMs: now - c.primary.changedAt }));
  }

  private openProbe(cluster: Cluster): postgres.Sql {
    return postgres(cluster.spec.url, {
      max: 1,
      connect_timeout: Math.ceil(this.options.probeTimeoutMs / 1000),
      idle_timeout: 0,
      backoff: reconnectBackoffS,
      onnotice: () => undefined,
      connection: { application_name: 'meridian-primary-watch', statement_timeout: this.options.probeTimeoutMs },
    });
  }

  private async probeOne(p: Probe): Promise<void> {
    // One probe query at a time per cluster. While there is no primary, postgres.js keeps the
    // query waiting for one (it cycles through the hosts); later rounds wait on the same query
    // rather than queue more. A query waiting far longer than a failover takes is stuck on a
    // connection that will never answer (seen after repeated kills: the watcher then kept the
    // cluster down for good): that client is dropped for a fresh one. Ending it can reject the
    // driver's internal connect-time queries unhandled; the server survives those (server.ts).
    if (p.inflight && Date.now() - p.inflightSince > 3 * this.options.probeTimeoutMs) {
      const stale = p.sql;
      p.sql = this.openProbe(p.cluster);
      p.inflight = undefined;
      void stale.end({ timeout: 0 }).catch(() => undefined);
    }
    if (!p.inflight) {
      p.inflightSince = Date.now();
      const probe = p.sql<{ port: number; started: string }[]>`SELECT inet_server_port() AS port, pg_postmaster_start_time()::text AS started`
        .then((rows) => ({ rows }), (err: unknown) => ({ err }));
      p.inflight = probe;
      // A dropped stale query settling late must not clear its successor.
      void probe.then(() => {
        if (p.inflight === probe) p.inflight = undefined;
      });
    }
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      p.inflight,
      new Promise<{ err: unknown }>((resolve) => {
        timer = setTimeout(() => resolve({ err: new Error(`no primary answered within ${this.options.probeTimeoutMs} ms`) }), this.options.probeTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if ('rows' in outcome) {
      const identity = `${outcome.rows[0]?.port}|${outcome.rows[0]?.started}`;
      if (p.identity !== undefined && p.identity !== identity) {
        this.metrics?.failoversSeen.inc({ cluster: p.cluster.spec.name });
        this.log.warn({ cluster: p.cluster.spec.name, from: p.identity, to: identity }, 'the cluster has a new primary');
      }
      p.identity = identity;
      this.mark(p.cluster, true);
    } else {
      if (p.cluster.primary.up) this.log.warn({ cluster: p.cluster.spec.name, err: String(outcome.err) }, 'no primary reachable; answering 503 for this cluster');
      this.mark(p.cluster, false);
    }
  }

  private mark(cluster: Cluster, up: boolean): void {
    if (cluster.primary.up !== up) {
      cluster.primary.up = up;
      cluster.primary.changedAt = Date.now();
    }
    this.metrics?.primaryUp.set({ cluster: cluster.spec.name }, up ? 1 : 0);
  }
}
