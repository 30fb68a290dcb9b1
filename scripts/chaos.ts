// `npm run chaos -- <scenario>`: the fault tests of the failure-and-recovery promises, on a
// running topology (`meridian cluster up` first). Prints a table and writes
// bench/results/chaos.json. Scenarios:
//   shard-primary   SIGKILL the primary of a user-shard cluster, --kills times (default 5)
//   core-primary    the same for the core cluster (directory, catalog, inventory)
//   redis-master    SIGKILL a Redis Cluster master
//   api             SIGKILL the API process
//   all             each of the above in turn, under one load
//   pitr            full backup, orders A, time T, orders B, restore every cluster to T:
//                   A present, B absent, meridian verify clean
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadTopology } from '../src/cluster/topology.ts';
import { runChaos, runPitrDrill, type ChaosOptions, type FaultKind } from '../src/chaos/harness.ts';

const SCENARIOS = ['shard-primary', 'core-primary', 'redis-master', 'api', 'all', 'pitr'] as const;

async function record(scenario: string, report: object): Promise<void> {
  const file = path.resolve('bench/results/chaos.json');
  await mkdir(path.dirname(file), { recursive: true });
  const previous = JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as Record<string, unknown>;
  previous[scenario] = {
    measuredAt: new Date().toISOString(),
    hardware: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`,
    ...report,
  };
  await writeFile(file, `${JSON.stringify(previous, null, 2)}\n`);
  console.log(`wrote ${file}`);
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      topology: { type: 'string', default: process.env.MERIDIAN_TOPOLOGY ?? 'topologies/local.yaml' },
      kills: { type: 'string', default: '5' },
      buyers: { type: 'string', default: '200' },
      workers: { type: 'string', default: '24' },
      'hot-stock': { type: 'string', default: '300' },
      'settle-ms': { type: 'string', default: '5000' },
      port: { type: 'string', default: '18090' },
    },
  });
  const scenario = positionals[0] as (typeof SCENARIOS)[number] | undefined;
  if (!scenario || !SCENARIOS.includes(scenario)) {
    console.error(`usage: npm run chaos -- <${SCENARIOS.join('|')}> [--kills N] [--topology FILE] [--buyers N] [--workers N] [--port N]\n(start the topology first: npx meridian cluster up --topology FILE)`);
    return 2;
  }
  const topologyFile = path.resolve(values.topology);
  const started = Date.now();
  const stamp = (): string => `[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s]`;
  const options: ChaosOptions = {
    topology: await loadTopology(topologyFile),
    topologyFile,
    dataDir: path.resolve(process.env.MERIDIAN_DATA_DIR ?? '.meridian'),
    apiPort: Number(values.port),
    buyers: Number(values.buyers),
    workers: Number(values.workers),
    hotStock: Number(values['hot-stock']),
    settleMs: Number(values['settle-ms']),
    progress: (m) => console.error(`${stamp()} ${m}`),
  };

  if (scenario === 'pitr') {
    const pitr = await runPitrDrill(options);
    console.log('\n| full backup | orders before T | orders after T | restore to T | before-T orders missing | after-T orders present | verify |');
    console.log('|---|---|---|---|---|---|---|');
    console.log(`| ${pitr.backupSeconds.toFixed(1)} s | ${pitr.ordersBefore} | ${pitr.ordersAfter} | ${pitr.restoreSeconds.toFixed(1)} s | ${pitr.missingBefore.length} | ${pitr.presentAfter.length} | ${pitr.verify.ok ? 'clean' : 'FINDINGS'} |`);
    await record(scenario, pitr);
    return pitr.ok ? 0 : 1;
  }

  const kills = Number(values.kills);
  const repeat = (fault: FaultKind, n: number): { fault: FaultKind }[] => Array.from({ length: n }, () => ({ fault }));
  const schedule = scenario === 'all'
    ? [...repeat('shard-primary', kills), ...repeat('core-primary', kills), ...repeat('redis-master', 1), ...repeat('api', 1)]
    : repeat(scenario, scenario === 'redis-master' || scenario === 'api' ? Math.min(kills, 3) : kills);
  const report = await runChaos(options, schedule);

  const seconds = (ms: number | null): string => (ms === null ? '–' : `${(ms / 1000).toFixed(2)} s`);
  console.log('\n| # | fault | target | kill → new primary commits (SQL) | kill → API writes back | 503s | retries |');
  console.log('|---|---|---|---|---|---|---|');
  report.kills.forEach((k, i) => console.log(`| ${i + 1} | ${k.fault} | ${k.target} | ${seconds(k.newPrimaryWritesMs)} | ${seconds(k.recoveryMs)} | ${k.unavailable} | ${k.retries} |`));
  console.log(`\nacknowledged orders ${report.totals.acknowledged}, clean out_of_stock ${report.totals.outOfStock}, statuses ${JSON.stringify(report.totals.statuses)}, forbidden answers (5xx other than 503, hangs) ${report.totals.forbidden}, API crashes ${report.apiCrashes.length}`);
  console.log(`checks: ${report.check.ok ? 'all hold' : 'VIOLATED'} ${JSON.stringify(report.check)}`);
  if (report.forbiddenSamples.length) console.log(`forbidden samples: ${JSON.stringify(report.forbiddenSamples)}\nAPI errors: ${report.apiErrors.join('\n')}`);
  await record(scenario, report);
  return report.ok ? 0 : 1;
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error(err);
  process.exit(1);
});
