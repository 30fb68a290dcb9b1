import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { parseTopology, TopologyError } from './topology.ts';

const local = await readFile(new URL('../../topologies/local.yaml', import.meta.url), 'utf8');

// The mutations reach into arbitrary places of the parsed YAML on purpose.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

function mutate(change: (t: Loose) => void): string {
  const t = parse(local) as Loose;
  change(t);
  return stringify(t);
}

describe('topology files', () => {
  it('accepts the checked-in local topology', () => {
    const t = parseTopology(local);
    assert.deepEqual(t.clusters.map((c) => c.name), ['core', 'users-a', 'users-b']);
    assert.deepEqual(t.backup?.schedule, { full: { day: 'sunday', at: '01:00' }, incremental: { at: '01:00' }, wal: 'continuous' });
  });

  const bad: [string, (t: Loose) => void, RegExp][] = [
    ['a shard owned twice', (t) => (t.clusters[2].shards = [[2000, 4095]]), /\/clusters\/2\/shards\/0: shard 2000 is already owned by users-a/],
    ['a shard owned by nobody', (t) => (t.clusters[2].shards = [[2048, 4000]]), /logical shard 4001 has no owning cluster/],
    ['a bad port', (t) => (t.clusters[0].members[0].port = 'x'), /\/clusters\/0\/members\/0\/port/],
    ['an unknown field', (t) => (t.clusters[0].replicas = 3), /\/clusters\/0: must not have additional properties/],
    ['two catalog clusters', (t) => t.clusters[1].roles.push('catalog'), /exactly one cluster must hold the catalog role/],
    ['a port used twice', (t) => (t.clusters[1].members[1].port = 15401), /port 15401 is used twice/],
    ['a backup retention of one full backup', (t) => (t.backup.retention.fullBackups = 1), /\/backup\/retention\/fullBackups: must be at least 2/],
    ['a backup time that is no time', (t) => (t.backup.schedule.full.at = '25:00'), /\/backup\/schedule\/full\/at/],
    ['a backup day that is no weekday', (t) => (t.backup.schedule.full.day = 'someday'), /\/backup\/schedule\/full\/day/],
    ['WAL archiving that is not continuous', (t) => (t.backup.schedule.wal = 'hourly'), /\/backup\/schedule\/wal/],
    ['an unknown compression', (t) => (t.backup.compression = 'rar'), /\/backup\/compression/],
  ];
  for (const [what, change, message] of bad) {
    it(`rejects ${what}, naming the field`, () => {
      assert.throws(() => parseTopology(mutate(change), 'local.yaml'), (err: unknown) => err instanceof TopologyError && message.test(err.message));
    });
  }
});
