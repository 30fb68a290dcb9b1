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
  private sql: postgres.Sql;

  constructor(private readonly url: string, private readonly intervalMs = 50) {
    this.sql = this.open();
  }

  private open(): postgres.Sql {
    return postgres(this.url, { max: 1, connect_timeout: 1, idle_timeout: 0, backoff: reconnectBackoffS, onnotice: () => undefined, connection: { application_name: 'meridian-chaos-probe', statement_timeout: 1_000, synchronous_commit: 'local' } });
  }

  start(): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        // While there is no primary the query waits for one (postgres.js cycles through the
        // hosts), and its answer marks the moment writes came back. One waiting far longer than
        // a failover takes is stuck on a connection that will never answer: drop that client.
        const query = this.sql<{ port: number }[]>`SELECT txid_current(), inet_server_port() AS port`;
        let timer: NodeJS.Timeout | undefined;
        const outcome = await Promise.race([
          query.then((rows) => rows[0]?.port, () => undefined),
          new Promise<'stuck'>((resolve) => {
            timer = setTimeout(() => resolve('stuck'), 6_000);
          }),
        ]);
        clearTimeout(timer);
        if (outcome === 'stuck') {
          const stale = this.sql;
          this.sql = this.open();
          void stale.end({ timeout: 0 }).catch(() => undefined);
        } else if (outcome !== undefined) {
          this.acks.push({ at: Date.now(), port: outcome });
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
