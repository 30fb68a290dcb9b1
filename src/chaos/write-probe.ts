// The engine-level view of a failover: a client of one cluster's primary-finding URL that
// commits a tiny write transaction (txid_current() assigns a transaction id, so the commit is a
// real write that synchronous replication must acknowledge) every intervalMs, recording which
// server acknowledged it. The first acknowledgement from a different server than the killed
// primary is the moment the cluster took writes again.
import postgres from 'postgres';
import { reconnectBackoffS } from '../platform/db.ts';

export interface ProbeAck {
  readonly at: number;
  readonly port: number;
}

export class WriteProbe {
  readonly acks: ProbeAck[] = [];
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly sql: postgres.Sql;

  constructor(url: string, private readonly intervalMs = 50) {
    this.sql = postgres(url, { max: 1, connect_timeout: 1, idle_timeout: 0, backoff: reconnectBackoffS, onnotice: () => undefined, connection: { application_name: 'meridian-chaos-probe', statement_timeout: 1_000, synchronous_commit: 'local' } });
  }

  start(): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        // No client-side timeout: while there is no primary the query waits for one (postgres.js
        // cycles through the hosts), and its answer marks the moment writes came back. The
        // commit does not wait for the standby (synchronous_commit local): an orphaned backend of
        // the killed primary would wait for it forever, and only the new primary's answers count.
        try {
          const [row] = await this.sql<{ port: number }[]>`SELECT txid_current(), inet_server_port() AS port`;
          this.acks.push({ at: Date.now(), port: row!.port });
        } catch {
          // The connection to the dying primary broke: the next query connects afresh.
        }
        await new Promise((r) => setTimeout(r, this.intervalMs));
      }
    })();
  }

  /** First write acknowledged after `since` by a server other than `oldPort`. */
  firstAckElsewhere(since: number, oldPort: number): number | undefined {
    return this.acks.find((a) => a.at >= since && a.port !== oldPort)?.at;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.race([this.loop, new Promise((r) => setTimeout(r, 2_000))]);
    await this.sql.end({ timeout: 1 }).catch(() => undefined);
  }
}
