// Topologies for the tests that start real clusters (cluster-e2e, backup-pitr, chaos): the
// checked-in local topology moved to ports of its own, so that each such test runs beside the
// others (npm test runs two files at a time) and beside a `meridian cluster up` of local.yaml.
import { readFile } from 'node:fs/promises';
import { parse, stringify } from 'yaml';
import { parseTopology, type Topology } from '../src/cluster/topology.ts';

/** Port offsets, one per test file: distinct, so concurrent files never share a port. */
export const PORT_SHIFT = { clusterE2e: 1000, backupPitr: 1100, chaos: 1200 } as const;

export async function shiftedLocalTopology(shift: number, options: { asyncReplica?: boolean; redis?: boolean } = {}): Promise<Topology> {
  const local = parse(await readFile(new URL('../topologies/local.yaml', import.meta.url), 'utf8')) as Topology;
  local.etcd = { clientPort: local.etcd.clientPort + shift, peerPort: local.etcd.peerPort + shift };
  for (const c of local.clusters) for (const m of c.members) Object.assign(m, { port: m.port + shift, restPort: m.restPort + shift });
  // The asynchronous read replica adds processes, not proof, to tests that do not read from it.
  if (options.asyncReplica === false) local.clusters[0]!.members = local.clusters[0]!.members.filter((m) => !m.nosync);
  if (options.redis && local.redis) local.redis.nodes = local.redis.nodes.map((n) => n.replace(/:(\d+)$/, (_, p: string) => `:${Number(p) + shift}`));
  else delete local.redis;
  return parseTopology(stringify(local));
}
