// The short form of `npm run chaos`: a real topology (Patroni-managed PostgreSQL 15 clusters,
// own ports and data dir), a real API process under a steady checkout load, and SIGKILLs of a
// user-shard primary, the core primary and the API process. After them every acknowledged
// checkout is in its buyer's history, I1–I7 hold on every cluster (paid orders consumed exactly
// their lines, nothing oversold, one capture per paid order), no answer was a 5xx other than
// 503, and the API never crashed.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { freePort } from '../src/platform/ports.ts';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { runChaos, type ChaosReport } from '../src/chaos/harness.ts';
import { clusterDown, clusterUp } from '../src/cluster/pg-cluster.ts';
import type { Topology } from '../src/cluster/topology.ts';
import { PORT_SHIFT, shiftedLocalTopology } from './cluster-helpers.ts';

describe('chaos (short): kill a shard primary, the core primary and the API under checkout load', { timeout: 600_000 }, () => {
  let dataDir: string;
  let topology: Topology;
  let report: ChaosReport;

  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'meridian-chaos-'));
    topology = await shiftedLocalTopology(PORT_SHIFT.chaos, { asyncReplica: false });
    const topologyFile = path.join(dataDir, 'topology.yaml');
    await writeFile(topologyFile, stringify(topology));
    await clusterUp(topology, dataDir);
    report = await runChaos({
      topology, topologyFile, dataDir, apiPort: await freePort(),
      buyers: 24, workers: 6, hotStock: 10, settleMs: 3_000,
      progress: (m) => console.log(`# ${m}`),
    }, [{ fault: 'shard-primary' }, { fault: 'core-primary' }, { fault: 'api' }]);
    console.log(`# ${JSON.stringify({ kills: report.kills, totals: report.totals })}`);
  });

  after(async () => {
    await clusterDown(topology, dataDir, { purge: true }).catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('took writes again after every kill, and sold while it did', () => {
    assert.equal(report.kills.length, 3);
    for (const k of report.kills) assert.notEqual(k.recoveryMs, null, `no write acknowledged after killing ${k.target}`);
    for (const k of report.kills.slice(0, 2)) assert.notEqual(k.newPrimaryWritesMs, null, `${k.target}: no new primary took a write`);
    assert.ok(report.totals.acknowledged > 0);
    assert.ok(report.totals.outOfStock > 0, 'the hot SKU sold out with clean 409s');
  });

  it('answered nothing but 2xx, 4xx and 503, and the API never crashed', () => {
    assert.deepEqual(report.forbiddenSamples, [], `API errors: ${report.apiErrors.join('\n')}`);
    assert.equal(report.totals.forbidden, 0);
    assert.deepEqual(report.apiCrashes, []);
  });

  it('kept every promise: acknowledged orders in history, and I1–I7 on every cluster (meridian verify)', () => {
    assert.deepEqual(report.check.missingFromHistory, []);
    assert.deepEqual(report.check.verify.findings, []);
    for (const i of report.check.verify.invariants) assert.equal(i.findings, 0, `${i.id}: ${i.description}`);
    assert.equal(report.check.verify.ok, true);
  });
});
