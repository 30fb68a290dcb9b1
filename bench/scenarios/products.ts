// Catalog reads: the product list and product detail at 50 connections, side by side with a
// trivial route of the same server (GET /healthz), which measures what the machine, Node,
// Fastify and the load generator can do with no database work at all.
//
//   npm start                              # in another terminal
//   npm run bench -- products              # BENCH_URL=http://127.0.0.1:8080 by default
//
// Target (issue 2 §7): ≥ 5,000 req/s at 50 connections with p99 ≤ 20 ms. Printed next to the
// figures for comparison; nothing here fails on a timing.
import {
  api,
  fmtInt,
  fmtMs,
  fmtRatio,
  hardware,
  hardwareLine,
  loadAverage1m,
  mediansOf,
  phaseLine,
  progress,
  requireServer,
  runHttpLoad,
  sideBySideRatios,
  table,
  UsageError,
  writeResults,
  type BenchOptions,
  type PhaseResult,
  type Scenario,
} from '../lib.ts';

const DEFAULT_CONNECTIONS = 50;
const LIST_PATH = '/v1/products?limit=20';
/** Detail requests rotate over up to this many product ids, so no single row stays hot in every cache. */
const DETAIL_IDS_MAX = 1_000;
const WARMUP_S = 2;
const TARGET = { perSecondMin: 5_000, p99MsMax: 20, connections: 50 };

interface ProductPage {
  items: { id: string }[];
  nextCursor: string | null;
}

async function productIds(url: string): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const query: string = `/v1/products?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const page: ProductPage = (await api<ProductPage>(url, 'GET', query)).body;
    ids.push(...page.items.map((p) => p.id));
    cursor = page.nextCursor;
  } while (cursor && ids.length < DETAIL_IDS_MAX);
  return ids.slice(0, DETAIL_IDS_MAX);
}

async function run(o: BenchOptions): Promise<void> {
  await requireServer(o.url);
  const connections = o.connections ?? DEFAULT_CONNECTIONS;
  const ids = await productIds(o.url);
  if (ids.length === 0) throw new UsageError('the catalog has no active products: start the server with the demo seed (the default) or add products');
  // Shuffled so consecutive requests of a connection hit unrelated rows.
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  const detailPaths = ids.map((id) => `/v1/products/${id}`);

  const phases: Record<string, { path: string; paths?: string[] }> = {
    'healthz (baseline)': { path: '/healthz' },
    'product list': { path: LIST_PATH },
    'product detail': { path: detailPaths[0]!, paths: detailPaths },
  };
  const BASELINE = 'healthz (baseline)';
  const OURS = ['product list', 'product detail'];

  progress(`products: ${o.url}, ${connections} connections, ${o.durationS} s per phase, ${o.rounds} rounds, ${ids.length} product ids`);
  const loadAtStart = loadAverage1m();
  progress(`hardware: ${hardwareLine()}; load average ${loadAtStart}`);

  const load = (name: string, round: number, durationS: number): Promise<PhaseResult> => {
    const p = phases[name];
    if (!p) throw new Error(`unknown phase ${name}`);
    return runHttpLoad({ phase: name, round, url: `${o.url}${p.path}`, connections, durationS, ...(p.paths ? { paths: p.paths } : {}) });
  };

  // Warm-up: JIT, connection pools, PostgreSQL's buffer cache. Not recorded.
  for (const name of [BASELINE, ...OURS]) {
    const w = await load(name, 0, WARMUP_S);
    progress(`warm-up ${name}: ${fmtInt(w.perSecond)}/s`);
  }

  const results: PhaseResult[] = [];
  const total = o.rounds * (OURS.length + 1);
  for (let round = 1; round <= o.rounds; round++) {
    // Alternate which side goes first, so a drift of the machine does not favour one side.
    const order = round % 2 === 1 ? [BASELINE, ...OURS] : [...OURS, BASELINE];
    for (const name of order) {
      const r = await load(name, round, o.durationS);
      results.push(r);
      progress(phaseLine(r, results.length, total));
    }
  }

  const base = mediansOf(BASELINE, results);
  const rows = [BASELINE, ...OURS].map((name) => {
    const m = mediansOf(name, results);
    const ratio = name === BASELINE ? undefined : sideBySideRatios(results, name, BASELINE);
    return [
      name,
      fmtInt(m.perSecond),
      fmtMs(m.p50Ms),
      fmtMs(m.p99Ms),
      ratio ? fmtRatio(ratio.perSecond) : '1.00×',
      ratio ? fmtRatio(ratio.p99) : '1.00×',
      name === BASELINE ? '' : `${m.perSecond >= TARGET.perSecondMin ? 'meets' : 'below'} / ${m.p99Ms <= TARGET.p99MsMax ? 'meets' : 'above'}`,
      Object.entries(m.statuses).map(([k, v]) => `${k}:${v}`).join(' ') + (m.errors ? ` err:${m.errors}` : ''),
    ];
  });
  console.log('');
  console.log(`products — medians of ${o.rounds} rounds × ${o.durationS} s, ${connections} connections; ratios are ours/baseline within each round, median`);
  console.log(`hardware: ${hardwareLine()}`);
  console.log(
    table(['phase', 'req/s', 'p50 ms', 'p99 ms', 'req/s vs base', 'p99 vs base', 'target req/s / p99', 'statuses'], rows),
  );
  console.log(`target: ≥ ${fmtInt(TARGET.perSecondMin)} req/s at ${TARGET.connections} connections with p99 ≤ ${TARGET.p99MsMax} ms (for comparison; not asserted)`);
  console.log(`baseline GET /healthz: ${fmtInt(base.perSecond)} req/s — what this machine, Node, Fastify and the load generator do with no database work`);

  const file = await writeResults({
    scenario: 'products',
    date: new Date().toISOString(),
    hardware: hardware(),
    loadAverage1m: { start: loadAtStart, end: loadAverage1m() },
    parameters: {
      url: o.url,
      connections,
      durationS: o.durationS,
      rounds: o.rounds,
      warmupS: WARMUP_S,
      listPath: LIST_PATH,
      detailPath: '/v1/products/{id}',
      detailIds: ids.length,
      baselinePath: '/healthz',
      loadGenerator: 'autocannon (in the bench process, same machine)',
    },
    targets: TARGET,
    medians: [BASELINE, ...OURS].map((name) => mediansOf(name, results)),
    ratios: Object.fromEntries(OURS.map((name) => [name, sideBySideRatios(results, name, BASELINE)])),
    phases: results,
  });
  console.log(`results: ${file}`);
}

export const scenario: Scenario = {
  name: 'products',
  summary: 'GET /v1/products?limit=20 and GET /v1/products/{id} at 50 connections vs GET /healthz',
  run,
};
