// `npm run bench -- <scenario> [--duration S] [--rounds N] [--connections N]`
//
// Runs one benchmark scenario against a STARTED server (`npm start`; BENCH_URL, default
// http://127.0.0.1:8080). A scenario is a file bench/scenarios/<name>.ts exporting `scenario`
// (see Scenario in bench/lib.ts): adding a file adds a scenario, nothing here changes.
// Each scenario prints its figures side by side with a baseline measured in the same run and
// writes bench/results/<name>.json.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { BENCH_DIR, UsageError, type BenchOptions, type Scenario } from './lib.ts';

const SCENARIO_DIR = path.join(BENCH_DIR, 'scenarios');

function scenarioNames(): string[] {
  return readdirSync(SCENARIO_DIR)
    .filter((f) => f.endsWith('.ts') && !f.startsWith('_'))
    .map((f) => f.slice(0, -'.ts'.length))
    .sort();
}

async function loadScenario(name: string): Promise<Scenario> {
  const mod = (await import(pathToFileURL(path.join(SCENARIO_DIR, `${name}.ts`)).href)) as { scenario?: Scenario };
  if (!mod.scenario) throw new Error(`bench/scenarios/${name}.ts does not export \`scenario\``);
  return mod.scenario;
}

async function usage(): Promise<string> {
  const lines = [
    'Usage: npm run bench -- <scenario> [--duration S] [--rounds N] [--connections N]',
    '',
    'Runs against a started server (`npm start`). Environment:',
    '  BENCH_URL            server base URL (default http://127.0.0.1:8080)',
    '  BENCH_DURATION_S     seconds per measured phase (default 10; --duration)',
    '  BENCH_ROUNDS         rounds, alternating ours/baseline; medians reported (default 3; --rounds)',
    '',
    'Scenarios:',
  ];
  for (const name of scenarioNames()) {
    const s = await loadScenario(name);
    lines.push(`  ${name.padEnd(12)} ${s.summary}`);
    if (s.usage) lines.push(...s.usage.split('\n').map((l) => `  ${' '.repeat(12)} ${l}`));
  }
  return lines.join('\n');
}

function positiveInt(raw: string | undefined, name: string, fallback: number | undefined): number | undefined {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  // A scenario may take flags of its own (Scenario.flags): find it first, then parse with them.
  const named = argv.find((a) => !a.startsWith('-'));
  const own = named && scenarioNames().includes(named) ? ((await loadScenario(named)).flags ?? {}) : {};
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...own,
      duration: { type: 'string' },
      rounds: { type: 'string' },
      connections: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [name, ...extra] = positionals;
  if (values.help || name === undefined || name === 'help') {
    console.log(await usage());
    return name === undefined && !values.help ? 2 : 0;
  }
  if (extra.length > 0 || !scenarioNames().includes(name)) {
    console.error(`unknown scenario: ${[name, ...extra].join(' ')}\n\n${await usage()}`);
    return 2;
  }
  const scenario = await loadScenario(name);
  const options: BenchOptions = {
    url: (process.env.BENCH_URL || 'http://127.0.0.1:8080').replace(/\/+$/, ''),
    durationS: positiveInt(values.duration ?? process.env.BENCH_DURATION_S, '--duration', 10)!,
    rounds: positiveInt(values.rounds ?? process.env.BENCH_ROUNDS, '--rounds', 3)!,
    connections: positiveInt(values.connections, '--connections', undefined),
    flags: Object.fromEntries(Object.keys(own).map((k) => [k, (values as Record<string, string | boolean | undefined>)[k]])),
  };
  try {
    await scenario.run(options);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`bench ${name}: ${err.message}\n\n${await usage()}`);
      return 2;
    }
    throw err;
  }
  // A scenario reports figures that do not measure what they claim (a checkout that failed, an
  // oversold unit) by setting process.exitCode; main's return value must not hide it.
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
