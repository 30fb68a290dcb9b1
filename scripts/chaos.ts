// `npm run chaos -- <scenario>`: the fault tests of the failure-and-recovery promises, on a
// running topology (`meridian cluster up` first). Prints a table per kill and writes
// bench/results/chaos.json. Scenarios:
//   shard-primary   SIGKILL the primary of a user-shard cluster, --kills times (default 5)
//   core-primary    the same for the core cluster (directory, catalog, inventory)
//   redis-master    SIGKILL a Redis Cluster master
//   api             SIGKILL the API process
//   all             each of the above in turn, under one load
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadTopology } from '../src/cluster/topology.ts';
import { runChaos, type FaultKind } from '../src/chaos/harness.ts';

const SCENARIOS = ['shard-primary', 'core-primary', 'redis-master', 'api', 'all'] as const;

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
    console.error(`usage: npm run chaos -- <${SCENARIOS.join('|')}> [--kills N] [--topology FILE] [--buyers N] [--workers N]\n(start the topology first: npx meridian cluster up --topology FILE)`);
    return 2;
  }
  const kills = Number(values.kills);
  const single = (fault: FaultKind, n: number): { fault: FaultKind }[] => Array.from({ length: n }, () => ({ fault }));
  const schedule = scenario === 'all'
    ? [...single('shard-primary', kills), ...single('core-primary', kills), ...single('redis-master', 1), ...single('api', 1)]
    : single(scenario, scenario === 'redis-master' || scenario === 'api' ? Math.min(kills, 3) : kills);
  const topologyFile = path.resolve(values.topology);
  const started = Date.now();
  const stamp = (): string => `[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s]`;
  const report = await runChaos({
    topology: await loadTopology(topologyFile),
    topologyFile,
    dataDir: path.resolve(process.env.MERIDIAN_DATA_DIR ?? '.meridian'),
    apiPort: Number(values.port),
    buyers: Number(values.buyers),
    workers: Number(values.workers),
    hotStock: Number(values['hot-stock']),
    settleMs: Number(values['settle-ms']),
    progress: (m) => console.error(`${stamp()} ${m}`),
  }, schedule);

  const seconds = (ms: number | null): string => (ms === null ? '–' : `${(ms / 1000).toFixed(2)} s`);
  console.log('\n| # | fault | target | kill → new primary commits (SQL) | kill → API writes back | 503s | retries |');
  console.log('|---|---|---|---|---|---|---|');
  report.kills.forEach((k, i) => console.log(`| ${i + 1} | ${k.fault} | ${k.target} | ${seconds(k.newPrimaryWritesMs)} | ${seconds(k.recoveryMs)} | ${k.unavailable} | ${k.retries} |`));
  console.log(`\nacknowledged orders ${report.totals.acknowledged}, clean out_of_stock ${report.totals.outOfStock}, statuses ${JSON.stringify(report.totals.statuses)}, forbidden answers (5xx other than 503, hangs) ${report.totals.forbidden}`);
  console.log(`checks: ${report.check.ok ? 'all hold' : 'VIOLATED'} ${JSON.stringify(report.check)}`);
  if (report.forbiddenSamples.length) console.log(`forbidden samples: ${JSON.stringify(report.forbiddenSamples)}`);

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
  return report.ok ? 0 : 1;
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error(err);
  process.exit(1);
});
