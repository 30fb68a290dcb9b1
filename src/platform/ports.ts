// Free TCP ports on loopback, for the servers that tests, benchmarks and drills start of their
// own. A port found free can still be taken before it is bound; callers that start many servers
// pick ranges below the kernel's ephemeral range (32768–60999), where outgoing connections never
// take a port from under a server that is still starting.
import { createServer } from 'node:net';

/** Whether a port on 127.0.0.1 can be bound now. */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A port the kernel hands out as free now (from the ephemeral range). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no free port'))));
    });
  });
}

export interface PortRangeOptions {
  /** Lowest first port of the range. */
  readonly from: number;
  /** The n ports lie within from … from + span − 1. */
  readonly span: number;
  /** Ports that must be free too, at these offsets from each port (Redis Cluster's bus: +10000). */
  readonly companionOffsets?: readonly number[];
}

const RANGE_ATTEMPTS_MAX = 50;

/** The first of n consecutive free ports (and their companions), chosen at random in the span. */
export async function freePortRange(n: number, options: PortRangeOptions): Promise<number> {
  const offsets = [0, ...(options.companionOffsets ?? [])];
  for (let attempt = 0; attempt < RANGE_ATTEMPTS_MAX; attempt++) {
    const base = options.from + Math.floor(Math.random() * Math.max(1, options.span - n));
    const ports = Array.from({ length: n }, (_, i) => base + i).flatMap((p) => offsets.map((o) => p + o));
    if ((await Promise.all(ports.map(isPortFree))).every(Boolean)) return base;
  }
  throw new Error(`no ${n} consecutive free ports in ${options.from}–${options.from + options.span - 1}`);
}
