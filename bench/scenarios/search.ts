// Product search at catalog scale: Meridian's SearchService (capped, popularity-banded window)
// side by side with the naive PostgreSQL full-text search it replaced (rank every match with
// ts_rank_cd, exact COUNT, two exact GROUP BY facets: four statements per search), in one run,
// on one database, in this process (no HTTP: the figures are the search engine's own).
//
//   npm run bench -- search --products 100000
//   npm run bench -- search --products 1000000 [--duration S] [--rounds N] [--connections 8]
//
// Steps, each with progress on standard error:
//   1. a scratch database: an embedded PostgreSQL under .meridian/bench-search (kept, so the next
//      run at the same size reuses the catalog), or a database meridian_bench_search_<N> on the
//      server of BENCH_DATABASE_URL;
//   2. a deterministic catalog of N products (src/seed/bulk.ts seedAtScale; no users or orders),
//      unless the database already holds it (--fresh seeds again);
//   3. Meridian's index build, timed: `meridian search reindex` (documents from the catalog,
//      vocabulary, ANALYZE, popularity-band indexes); then table and index sizes;
//   4. a fixed query mix drawn from the catalog's vocabulary with a fixed seed: one-word, broad
//      (words in ≥ 8% of documents), multi-word, typos, filtered, deep pages;
//   5. phases at the concurrency (default 8; closed loop), rounds alternating the order:
//      baseline, meridian cold (result caches off), meridian warm (in-process result cache,
//      every query of the mix already cached once); each phase that reads the database starts
//      with 3 s of the same side, untimed, so that no side pays for the pages the other evicted;
//   6. relevance: the share of the top-20 results holding every query word (after correction),
//      over the first distinct queries of each kind, for both sides.
//
// Targets (issue 4 §3), printed next to the figures, not asserted: cold p95 ≤ 30 ms and cold
// queries/s ≥ 5× the baseline's at concurrency 8; ≥ 95% of top-20 results hold every term.
import { existsSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { freePort } from '../../src/platform/ports.ts';
import path from 'node:path';
import postgres from 'postgres';
import { CatalogService } from '../../src/modules/catalog/service.ts';
import * as searchRepo from '../../src/modules/search/repository.ts';
import { Cache } from '../../src/platform/cache.ts';
import { SEARCH, SearchService, type ReindexProgress, type ReindexReport, type SearchQuery, type SearchResult, type Suggestions } from '../../src/modules/search/service.ts';
import { requiredWords } from '../../src/modules/search/text.ts';
import { ALL_ROLES, Databases, type Pool } from '../../src/platform/db.ts';
import { startEmbeddedPostgres, type EmbeddedServer } from '../../src/platform/embedded.ts';
import { migrate } from '../../src/platform/migrate.ts';
import { Rng } from '../../src/seed/random.ts';
import { ADJECTIVES, BRANDS, CATEGORY_TREE, COLORS, MATERIALS, singular } from '../../src/seed/vocabulary.ts';
import { seedAtScale, type BulkSeedReport } from '../../src/seed/bulk.ts';
import {
  BENCH_DIR,
  cpuMsOfProcess,
  fmtInt,
  fmtMs,
  fmtRatio,
  hardware,
  hardwareLine,
  LatencyRecorder,
  loadAverage1m,
  median,
  mediansOf,
  phaseLine,
  progress,
  redactUrl,
  runClosedLoop,
  sideBySideRatios,
  table,
  UsageError,
  writeResults,
  type BenchOptions,
  type LatencySummary,
  type PhaseResult,
  type Scenario,
} from '../lib.ts';

const DEFAULT_PRODUCTS = 100_000;
const PRODUCTS_MAX = 5_000_000;
const DEFAULT_CONCURRENCY = 8;
const QUERY_MIX_SIZE = 600;
const QUERY_SEED = 0x5ea_4c11;
/**
 * Untimed load before each timed phase of a side that reads the database: the baseline's bitmap
 * scans read most of the table and evict the other side's pages, so whichever side ran before
 * would otherwise decide how warm the next one starts.
 */
const WARMUP_S = 3;
/** The first warm-up of Meridian's side: each pooled connection faults in the shared buffers it touches. */
const FIRST_WARMUP_S = 10;
const TOP = 20;
/** Distinct queries of each kind whose top results are checked for relevance. */
const RELEVANCE_QUERIES_PER_KIND = 25;
/** The baseline's pool: it runs four statements per search, so 4 × 8 fit. */
const POOL_MAX = 40;
/** A word is broad when at least this share of the documents hold it. */
const BROAD_SHARE = 0.08;
// BENCH_SEARCH_DIR moves the scratch server (a 1M catalog takes several GB): e.g. under /tmp.
const SCRATCH_DIR = process.env.BENCH_SEARCH_DIR ? path.resolve(process.env.BENCH_SEARCH_DIR) : path.resolve(BENCH_DIR, '..', '.meridian', 'bench-search');
/**
 * Settings of the embedded scratch server. 1 GB of shared buffers holds the band indexes and the
 * popular documents' pages, not the whole 1.3 GB of documents at 1M products; 3 GB, enough for all
 * of it, measured slower (560–580 against 650–670 queries/s, same data), and a phase after a
 * baseline phase re-warms instead (see WARMUP_S).
 */
const SCRATCH_SETTINGS = { shared_buffers: '1GB', fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '200' };
const TARGET = { p95MsMax: 30, perSecondVsBaselineMin: 5, concurrency: 8, termsInTopShareMin: 0.95 };

const KINDS = ['one-word', 'broad', 'multi-word', 'typo', 'filtered', 'deep-page'] as const;
type Kind = (typeof KINDS)[number];
/** Share of each kind in the mix. */
const MIX: Record<Kind, number> = { 'one-word': 0.25, broad: 0.15, 'multi-word': 0.2, typo: 0.1, filtered: 0.2, 'deep-page': 0.1 };

interface BenchQuery {
  kind: Kind;
  query: SearchQuery;
  /** For typos: the query before the typo was made. */
  intended?: string;
}

const BASELINE = 'baseline (naive FTS)';
const COLD = 'meridian cold';
const WARM = 'meridian warm';

// ---------------------------------------------------------------------------------------------
// Database

interface BenchDatabase {
  url: string;
  where: string;
  stop(): Promise<void>;
}

async function openDatabase(products: number, fresh: boolean): Promise<BenchDatabase> {
  const name = `meridian_bench_search_${products}`;
  let server: EmbeddedServer | undefined;
  let adminUrl: string;
  let where: string;
  const external = process.env.BENCH_DATABASE_URL;
  if (external) {
    adminUrl = external;
    where = `database ${name} on ${redactUrl(external)}`;
  } else {
    await mkdir(SCRATCH_DIR, { recursive: true });
    progress(`starting the scratch PostgreSQL in ${SCRATCH_DIR}${existsSync(path.join(SCRATCH_DIR, 'pg')) ? '' : ' (first run: initdb)'}`);
    server = await startEmbeddedPostgres({ dataDir: SCRATCH_DIR, port: await freePort(), database: 'postgres', settings: SCRATCH_SETTINGS });
    adminUrl = server.urlFor('postgres');
    where = `embedded PostgreSQL in ${path.relative(process.cwd(), SCRATCH_DIR)}, database ${name}`;
  }
  const admin = postgres(adminUrl, { max: 1, onnotice: () => undefined });
  try {
    if (fresh) await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    const exists = await admin`SELECT 1 FROM pg_database WHERE datname = ${name}`;
    if (exists.length === 0) await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return { url: u.toString(), where, stop: async () => server?.stop() };
}

async function countProducts(db: Pool): Promise<number> {
  const [row] = await db<{ n: string }[]>`SELECT count(*)::text AS n FROM products`;
  return Number(row?.n ?? 0);
}

// ---------------------------------------------------------------------------------------------
// Query mix

interface Vocabulary {
  /** word → documents, from the index just built. */
  documents: Map<string, number>;
  brands: { id: string; name: string }[];
  topCategories: { id: string; name: string }[];
}

async function readVocabulary(db: Pool): Promise<Vocabulary> {
  const words = await db<{ word: string; documents: number }[]>`SELECT word, documents FROM search_vocabulary`;
  const brands = await db<{ id: string; name: string }[]>`SELECT id::text, name FROM brands ORDER BY name`;
  const topCategories = await db<{ id: string; name: string }[]>`SELECT id::text, name FROM categories WHERE parent_id IS NULL ORDER BY name`;
  return { documents: new Map(words.map((w) => [w.word, w.documents])), brands: [...brands], topCategories: [...topCategories] };
}

const VOWEL_SWAPS: Readonly<Record<string, string>> = { a: 'e', e: 'a', i: 'e', o: 'u', u: 'o' };

/** A deterministic typo of a word of 5+ letters: drop, swap, double or change one inner letter. */
function misspell(word: string, rng: Rng, known: Map<string, number>): string | undefined {
  for (let attempt = 0; attempt < 10; attempt++) {
    const i = rng.int(1, word.length - 2);
    const op = rng.int(0, 3);
    const vowel = VOWEL_SWAPS[word[i]!];
    const typo =
      op === 1 ? word.slice(0, i) + word[i + 1] + word[i] + word.slice(i + 2) // swap two letters
      : op === 2 ? word.slice(0, i) + word[i] + word.slice(i) // double one
      : op === 3 && vowel ? word.slice(0, i) + vowel + word.slice(i + 1) // the wrong vowel
      : word.slice(0, i) + word.slice(i + 1); // drop one
    if (typo !== word && !known.has(typo)) return typo;
  }
  return undefined;
}

function buildQueryMix(v: Vocabulary, products: number): BenchQuery[] {
  const rng = new Rng(QUERY_SEED);
  const leaves = Object.values(CATEGORY_TREE).flatMap((subs) => Object.values(subs).flat());
  const has = (w: string): boolean => (v.documents.get(w) ?? 0) > 0;
  const oneWords = [
    ...MATERIALS,
    ...leaves.map((l) => singular(l).toLowerCase().split(' ').at(-1)!),
    ...ADJECTIVES.map((a) => a.toLowerCase()).filter((a) => !a.includes('-')),
    ...BRANDS.map((b) => b.toLowerCase().split(' ')[0]!),
  ].filter(has);
  const broad = [...new Set([...COLORS.map((c) => c.toLowerCase()), ...oneWords])]
    .filter((w) => (v.documents.get(w) ?? 0) >= BROAD_SHARE * products)
    .sort();
  if (broad.length === 0) throw new Error('no broad word in this catalog');
  const multiWord = (): string => {
    const leaf = singular(rng.pick(leaves)).toLowerCase();
    const shape = rng.int(0, 2);
    if (shape === 0) return `${rng.pick(ADJECTIVES).toLowerCase()} ${rng.pick(MATERIALS)} ${leaf}`;
    if (shape === 1) return `${rng.pick(MATERIALS)} ${leaf}`;
    return `${rng.pick(BRANDS).toLowerCase()} ${leaf}`;
  };
  const base = (q: string): SearchQuery => ({ q, limit: 20, page: 1, currency: 'USD' });
  const out: BenchQuery[] = [];
  for (const kind of KINDS) {
    const n = Math.round(MIX[kind] * QUERY_MIX_SIZE);
    for (let i = 0; i < n; i++) {
      switch (kind) {
        case 'one-word':
          out.push({ kind, query: base(rng.pick(oneWords)) });
          break;
        case 'broad':
          out.push({ kind, query: base(rng.pick(broad)) });
          break;
        case 'multi-word':
          out.push({ kind, query: base(multiWord()) });
          break;
        case 'typo': {
          const intended = rng.next() < 0.5 ? rng.pick(oneWords) : multiWord();
          const words = intended.split(' ');
          const long = words.map((w, j) => [w, j] as const).filter(([w]) => w.length >= 5);
          if (long.length === 0) {
            i--;
            continue;
          }
          const [word, j] = rng.pick(long);
          const typo = misspell(word, rng, v.documents);
          if (!typo) {
            i--;
            continue;
          }
          words[j] = typo;
          out.push({ kind, query: base(words.join(' ')), intended });
          break;
        }
        case 'filtered': {
          const q = base(rng.next() < 0.5 ? rng.pick(broad) : rng.pick(oneWords));
          const filters = rng.int(1, 2);
          for (let f = 0; f < filters; f++) {
            const which = rng.int(0, 3);
            if (which === 0) q.category = rng.pick(v.topCategories).id;
            else if (which === 1) q.brand = rng.pick(v.brands.slice(0, 40)).id;
            else if (which === 2) {
              const low = rng.pick([0, 2_500, 5_000, 10_000]);
              q.minPrice = low;
              q.maxPrice = low * 2 + 2_500;
            } else q.inStock = true;
          }
          out.push({ kind, query: q });
          break;
        }
        case 'deep-page': {
          const limit = rng.pick([20, 50]);
          const q = base(rng.next() < 0.6 ? rng.pick(broad) : rng.pick(oneWords));
          q.limit = limit;
          q.page = rng.int(5, 50);
          out.push({ kind, query: q });
          break;
        }
      }
    }
  }
  // Interleaved, so every stretch of the loop sees the whole mix.
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The baseline: the SearchService this issue replaced, statement for statement.

interface BaselineResult {
  ids: string[];
  total: number;
}

async function baselineSearch(db: Pool, catalog: CatalogService, q: SearchQuery): Promise<BaselineResult> {
  let categoryPath: string | undefined;
  if (q.category) {
    const c = await catalog.findCategory(q.category);
    if (!c) return { ids: [], total: 0 };
    categoryPath = c.path;
  }
  const f: searchRepo.SearchFilter = {
    q: q.q,
    categoryPath,
    brandId: q.brand,
    currency: q.currency,
    minPrice: q.minPrice,
    maxPrice: q.maxPrice,
    inStock: q.inStock,
  };
  // allSettled, not all: when one statement fails (the statement timeout), the others must still
  // be awaited, or they would run on into the next phase and be charged to the other side.
  const [hits, total, ...facets] = await Promise.allSettled([
    searchRepo.search(db, f, q.limit, (q.page - 1) * q.limit),
    searchRepo.count(db, f),
    searchRepo.facet(db, f, 'brand'),
    searchRepo.facet(db, f, 'category'),
  ]);
  for (const r of [hits, total, ...facets]) if (r.status === 'rejected') throw r.reason;
  if (hits.status !== 'fulfilled' || total.status !== 'fulfilled') throw new Error('unreachable: checked above');
  return { ids: hits.value.map((h) => h.product_id), total: total.value };
}

// ---------------------------------------------------------------------------------------------
// CPU per query. On a shared machine wall-clock figures move with everything else that runs; the
// CPU time spent per query by the PostgreSQL backends of the bench database (read from /proc,
// so only when the server runs on this machine) and by this process does not.

interface CpuSnapshot {
  /** pid → CPU milliseconds of each backend connected to the bench database. */
  pg: Map<number, number> | undefined;
  nodeMs: number;
}

async function cpuSnapshot(db: Pool): Promise<CpuSnapshot> {
  const usage = process.cpuUsage();
  const nodeMs = (usage.user + usage.system) / 1000;
  try {
    const pids = await db<{ pid: number }[]>`SELECT pid FROM pg_stat_activity WHERE datname = current_database()`;
    const pg = new Map<number, number>();
    for (const { pid } of pids) {
      const ms = cpuMsOfProcess(pid);
      if (ms === undefined) throw new Error(`no /proc/${pid}`);
      pg.set(pid, ms);
    }
    return { pg, nodeMs };
  } catch {
    return { pg: undefined, nodeMs }; // a remote server, or no /proc
  }
}

function cpuPerQuery(before: CpuSnapshot, after: CpuSnapshot, completed: number): { pgMs: number; nodeMs: number } {
  let pg = Number.NaN;
  if (before.pg && after.pg) {
    pg = 0;
    for (const [pid, ms] of after.pg) pg += ms - (before.pg.get(pid) ?? ms);
  }
  return { pgMs: pg / completed, nodeMs: (after.nodeMs - before.nodeMs) / completed };
}

// ---------------------------------------------------------------------------------------------
// Relevance

/** Of these top results, how many hold every (non-stop) word of the query text. */
async function resultsHoldingEveryWord(db: Pool, ids: readonly string[], text: string): Promise<number> {
  if (ids.length === 0) return 0;
  const words = requiredWords(text);
  const [row] = await db<{ n: number }[]>`
    SELECT count(*)::int AS n FROM (
      SELECT d.product_id, bool_and(d.document @@ plainto_tsquery('english', w)) AS every
      FROM search_documents d CROSS JOIN unnest(${words}::text[]) AS w
      WHERE d.product_id = ANY(${ids as string[]}::bigint[]) AND numnode(plainto_tsquery('english', w)) > 0
      GROUP BY d.product_id) x
    WHERE every`;
  return row?.n ?? 0;
}

interface Relevance {
  queries: number;
  results: number;
  holdingEveryWord: number;
  share: number;
  typoQueries: number;
  typoCorrectedToIntended: number;
  typoWithResults: number;
  /** Mean share of ours' top 20 also in the baseline's top 20 (queries without typos). */
  topOverlapWithBaseline: number;
  approximateTotals: number;
}

async function measureRelevance(db: Pool, ours: SearchService, catalog: CatalogService, mix: readonly BenchQuery[]): Promise<{ ours: Relevance; baseline: Relevance }> {
  // The first distinct queries of each kind (the baseline takes up to seconds per broad query).
  const seen = new Set<string>();
  const perKind = new Map<Kind, number>();
  const unique = mix.filter((m) => {
    const key = JSON.stringify(m.query);
    if (seen.has(key) || (perKind.get(m.kind) ?? 0) >= RELEVANCE_QUERIES_PER_KIND) return false;
    seen.add(key);
    perKind.set(m.kind, (perKind.get(m.kind) ?? 0) + 1);
    return true;
  });
  const tally = (): Relevance => ({
    queries: 0, results: 0, holdingEveryWord: 0, share: 0, typoQueries: 0, typoCorrectedToIntended: 0, typoWithResults: 0, topOverlapWithBaseline: 0, approximateTotals: 0,
  });
  const mine = tally();
  const base = tally();
  let overlapSum = 0;
  let overlapN = 0;
  for (const m of unique) {
    const top = { ...m.query, page: 1, limit: TOP };
    const r = await ours.search(top);
    const b = await baselineSearch(db, catalog, top);
    const ids = r.items.map((i) => i.id);
    mine.queries++;
    mine.results += ids.length;
    mine.holdingEveryWord += await resultsHoldingEveryWord(db, ids, r.corrected ?? m.query.q);
    if (r.totalIsApproximate) mine.approximateTotals++;
    base.queries++;
    base.results += b.ids.length;
    base.holdingEveryWord += await resultsHoldingEveryWord(db, b.ids, m.query.q);
    if (m.kind === 'typo') {
      mine.typoQueries++;
      base.typoQueries++;
      if (r.corrected !== null && r.corrected === m.intended) mine.typoCorrectedToIntended++;
      if (ids.length > 0) mine.typoWithResults++;
      if (b.ids.length > 0) base.typoWithResults++;
    } else if (b.ids.length > 0) {
      overlapSum += ids.filter((id) => b.ids.includes(id)).length / b.ids.length;
      overlapN++;
    }
  }
  for (const t of [mine, base]) t.share = t.results > 0 ? t.holdingEveryWord / t.results : Number.NaN;
  mine.topOverlapWithBaseline = overlapN > 0 ? overlapSum / overlapN : Number.NaN;
  return { ours: mine, baseline: base };
}

// ---------------------------------------------------------------------------------------------

function positiveInt(raw: string | boolean | undefined, name: string, fallback: number, max: number): number {
  if (raw === undefined || raw === false) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`--${name} must be an integer from 1 to ${max}, got "${String(raw)}"`);
  return n;
}

function fmtBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`;
}

async function run(o: BenchOptions): Promise<void> {
  const products = positiveInt(o.flags?.products, 'products', DEFAULT_PRODUCTS, PRODUCTS_MAX);
  const fresh = o.flags?.fresh === true;
  const reuseIndex = o.flags?.['reuse-index'] === true;
  const concurrency = o.connections ?? DEFAULT_CONCURRENCY;
  const candidates = positiveInt(o.flags?.candidates, 'candidates', SEARCH.candidatesDefault, 2_500);
  const concurrencyMax = positiveInt(o.flags?.['search-concurrency'], 'search-concurrency', SEARCH.concurrencyDefault, 500);
  const loadAtStart = loadAverage1m();
  progress(`search: ${fmtInt(products)} products, concurrency ${concurrency}, ${o.durationS} s per phase, ${o.rounds} rounds, window ${candidates} candidates, ${concurrencyMax} searches at once`);
  progress(`hardware: ${hardwareLine()}; load average ${loadAtStart}`);

  const database = await openDatabase(products, fresh);
  const stopOnSignal = (): void => void database.stop().finally(() => process.exit(130));
  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);
  const dbs = Databases.single(database.url, { max: POOL_MAX, applicationName: 'meridian-bench-search' });
  // Meridian's side has a pool of its own, as the API's search has its reader pool. PostgreSQL
  // plans a statement per connection (five custom plans, then the generic one): through the
  // baseline's 40 connections that planning, not the searching, filled the first rounds.
  const oursPoolMax = Math.max(concurrency, concurrencyMax);
  const oursDbs = Databases.single(database.url, { max: oursPoolMax, applicationName: 'meridian-bench-search-ours' });
  try {
    const db = dbs.core('catalog');
    progress(`database: ${database.where}`);
    await migrate(db, ALL_ROLES);
    const [server] = await db<{ version: string; shared_buffers: string }[]>`SELECT version(), current_setting('shared_buffers') AS shared_buffers`;

    // 2. The catalog.
    let seed: BulkSeedReport | undefined;
    const existing = await countProducts(db);
    if (existing !== products) {
      if (existing > 0) throw new UsageError(`${database.where} holds ${fmtInt(existing)} products, not ${fmtInt(products)}: run with --fresh`);
      progress(`seeding ${fmtInt(products)} products (src/seed/bulk.ts)`);
      seed = await seedAtScale(dbs, { users: 0, products, orders: 0 });
    } else {
      progress(`reusing the ${fmtInt(products)} products already seeded (--fresh to seed again)`);
    }

    // 3. Meridian's index, built as `meridian search reindex` builds it.
    const catalog = new CatalogService(dbs);
    const builder = new SearchService(dbs, catalog, undefined, { candidates });
    let lastLine = 0;
    const onBuild = (p: ReindexProgress): void => {
      if (p.phase === 'documents' && p.done !== p.total && Date.now() - lastLine < 5_000) return;
      lastLine = Date.now();
      progress(`index ${p.phase}: ${p.message}${p.done !== undefined && p.total ? ` ${fmtInt(p.done)}/${fmtInt(p.total)}` : ''}`);
    };
    const indexed = await searchRepo.documentCount(db);
    let build: ReindexReport;
    if (reuseIndex && indexed > 0) {
      // Repeated runs at 1M: the documents and vocabulary of an earlier run's full reindex are
      // kept (minutes of work); the bands are rebuilt so that they follow the code being measured.
      progress(`reusing the ${fmtInt(indexed)} indexed documents (--reuse-index); rebuilding the popularity bands`);
      const t0 = performance.now();
      const bands = await builder.rebuildBands(onBuild);
      const seconds = (performance.now() - t0) / 1000;
      const [words] = await db<{ n: number }[]>`SELECT count(*)::int AS n FROM search_vocabulary`;
      build = { documents: indexed, removed: 0, words: words?.n ?? 0, bands, seconds: { documents: 0, vocabulary: 0, analyze: 0, bands: seconds, total: seconds } };
    } else {
      progress('building the search index (documents, vocabulary, ANALYZE, popularity bands)');
      build = await builder.reindexAll(onBuild);
    }
    progress(`index built in ${build.seconds.total.toFixed(1)} s: documents ${build.seconds.documents.toFixed(1)} s, vocabulary ${build.seconds.vocabulary.toFixed(1)} s, analyze ${build.seconds.analyze.toFixed(1)} s, bands ${build.seconds.bands.toFixed(1)} s`);
    const sizes = await builder.relationSizes();
    const searchSeed = seed?.tables.find((t) => t.table === 'search_documents');

    // 4. The query mix.
    const vocabulary = await readVocabulary(db);
    const mix = buildQueryMix(vocabulary, products);
    const perKind = Object.fromEntries(KINDS.map((k) => [k, mix.filter((m) => m.kind === k).length]));
    progress(`query mix: ${mix.length} queries (${KINDS.map((k) => `${k} ${perKind[k]}`).join(', ')}), e.g. ${KINDS.map((k) => JSON.stringify(mix.find((m) => m.kind === k)?.query.q)).join(', ')}`);

    // 5. Phases.
    const cold = new SearchService(oursDbs, catalog, undefined, { candidates, concurrencyMax });
    const warmCaches = {
      results: new Cache<SearchResult>({ name: 'search', maxEntries: 10_000, ttlMs: 3_600_000, jitter: 0.1 }),
      suggestions: new Cache<Suggestions>({ name: 'search-suggest', maxEntries: 1_000, ttlMs: 3_600_000, jitter: 0.1 }),
    };
    const warm = new SearchService(oursDbs, catalog, undefined, { candidates, caches: warmCaches, concurrencyMax });
    const sides: Record<string, (q: SearchQuery) => Promise<unknown>> = {
      [BASELINE]: (q) => baselineSearch(db, catalog, q),
      [COLD]: (q) => cold.search(q),
      [WARM]: (q) => warm.search(q),
    };
    const byKind = new Map<string, LatencyRecorder>();
    const cpu = new Map<string, { pgMs: number; nodeMs: number }[]>();
    const load = async (phase: string, round: number, durationS: number): Promise<PhaseResult> => {
      let next = 0;
      const search = sides[phase]!;
      const before = await cpuSnapshot(db);
      const result = await runClosedLoop<BenchQuery>({
        phase,
        round,
        concurrency,
        durationS,
        next: () => mix[next++ % mix.length],
        op: async (m) => {
          const t0 = performance.now();
          await search(m.query);
          if (round > 0) {
            const key = `${phase}\n${m.kind}`;
            let rec = byKind.get(key);
            if (!rec) byKind.set(key, (rec = new LatencyRecorder()));
            rec.record(performance.now() - t0);
          }
          return 'ok';
        },
      });
      const used = cpuPerQuery(before, await cpuSnapshot(db), result.completed);
      if (round > 0) cpu.set(phase, [...(cpu.get(phase) ?? []), used]);
      result.notes = [...(result.notes ?? []), `cpu per query: postgres ${fmtMs(used.pgMs)} ms, bench process ${fmtMs(used.nodeMs)} ms`];
      return result;
    };
    // Warm-up: plans cached, buffers hot, and the warm side's cache filled with the whole mix.
    for (const m of mix) await warm.search(m.query);
    for (const phase of [BASELINE, COLD, WARM]) {
      const w = await load(phase, 0, phase === COLD ? FIRST_WARMUP_S : WARMUP_S);
      progress(`warm-up ${phase}: ${fmtInt(w.perSecond)}/s`);
    }
    const results: PhaseResult[] = [];
    const order = [BASELINE, COLD, WARM];
    const total = o.rounds * order.length;
    for (let round = 1; round <= o.rounds; round++) {
      // Alternate which side goes first, so a drift of the machine favours neither.
      for (const phase of round % 2 === 1 ? order : [...order].reverse()) {
        if (phase !== WARM) await load(phase, 0, WARMUP_S); // the warm side reads no pages
        const r = await load(phase, round, o.durationS);
        results.push(r);
        progress(phaseLine(r, results.length, total) + `, p95 ${fmtMs(r.latency.p95Ms ?? Number.NaN)} ms, load ${loadAverage1m()}`);
      }
    }

    // 6. Relevance.
    progress(`relevance: top-${TOP} of the first ${RELEVANCE_QUERIES_PER_KIND} distinct queries of each kind, ours and the baseline`);
    const relevance = await measureRelevance(db, cold, catalog, mix);

    // Report.
    const med = Object.fromEntries(order.map((p) => [p, mediansOf(p, results)]));
    const ratios = Object.fromEntries([COLD, WARM].map((p) => [p, sideBySideRatios(results, p, BASELINE)]));
    const p95Ratio = (p: string): number => (med[p]!.p95Ms / med[BASELINE]!.p95Ms);
    const cpuMedian = (p: string): { pgMs: number; nodeMs: number } => ({
      pgMs: median((cpu.get(p) ?? []).map((c) => c.pgMs)),
      nodeMs: median((cpu.get(p) ?? []).map((c) => c.nodeMs)),
    });
    const rows = order.map((p) => {
      const m = med[p]!;
      const r = ratios[p];
      const verdict = p === BASELINE ? '' : `${m.p95Ms <= TARGET.p95MsMax ? 'meets' : 'above'} / ${r && r.perSecond >= TARGET.perSecondVsBaselineMin ? 'meets' : 'below'}`;
      const c = cpuMedian(p);
      return [p, fmtInt(m.perSecond), fmtMs(m.p50Ms), fmtMs(m.p95Ms), fmtMs(m.p99Ms), r ? fmtRatio(r.perSecond) : '1.00×', p === BASELINE ? '1.00×' : fmtRatio(p95Ratio(p)), verdict, `${fmtMs(c.pgMs)} + ${fmtMs(c.nodeMs)}`, m.errors ? String(m.errors) : ''];
    });
    const kindSummary = (phase: string, kind: Kind): LatencySummary | undefined => byKind.get(`${phase}\n${kind}`)?.summary();
    const kindRows = KINDS.map((k) => [
      k,
      String(perKind[k]),
      ...[BASELINE, COLD].flatMap((p) => {
        const s = kindSummary(p, k);
        return [s ? fmtMs(s.p50Ms) : '–', s ? fmtMs(s.p95Ms ?? Number.NaN) : '–'];
      }),
    ]);
    const sizeRows = sizes.map((s) => [s.name, s.kind, fmtBytes(s.bytes)]);
    const tiers = build.bands.map((b) => `${b.position}: ${searchRepo.bandPredicate(b) || 'all'} (${fmtInt(b.documents)} docs${b.indexName ? '' : ', full index'})`);

    console.log('');
    console.log(`search — ${fmtInt(products)} products; medians of ${o.rounds} rounds × ${o.durationS} s at concurrency ${concurrency}, in-process (no HTTP); ratios are ours/baseline within each round, median`);
    console.log(`hardware: ${hardwareLine()}; load average ${loadAtStart} at start, ${loadAverage1m()} at end`);
    console.log(`database: ${database.where}; ${server?.version.split(' on ')[0] ?? ''}; shared_buffers ${server?.shared_buffers ?? '?'}`);
    console.log(table(['phase', 'q/s', 'p50 ms', 'p95 ms', 'p99 ms', 'q/s vs base', 'p95 vs base', 'target p95 / 5×', 'cpu ms/q pg + node', 'errors'], rows));
    console.log('cpu ms/q: CPU time per query of the PostgreSQL backends and of this process (in-process search + load generator), medians over rounds: independent of what else the machine runs');
    console.log(`target (issue 4 §3): cold p95 ≤ ${TARGET.p95MsMax} ms and cold q/s ≥ ${TARGET.perSecondVsBaselineMin}× the baseline at concurrency ${TARGET.concurrency} (printed, not asserted); warm = every query of the mix already in the in-process cache`);
    console.log('');
    console.log('latency by query kind (all rounds):');
    console.log(table(['kind', 'queries', 'base p50', 'base p95', 'cold p50', 'cold p95'], kindRows));
    console.log('');
    const pct = (x: number): string => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : '–');
    console.log(
      `relevance: top-${TOP} results holding every query word (after correction): ours ${pct(relevance.ours.share)} of ${fmtInt(relevance.ours.results)}, ` +
        `baseline ${pct(relevance.baseline.share)} of ${fmtInt(relevance.baseline.results)} (target ≥ ${pct(TARGET.termsInTopShareMin)})`,
    );
    console.log(
      `typos: ${relevance.ours.typoCorrectedToIntended}/${relevance.ours.typoQueries} corrected to the intended query, ${relevance.ours.typoWithResults} with results ` +
        `(baseline: ${relevance.baseline.typoWithResults} with results); top-${TOP} overlap with the baseline ${pct(relevance.ours.topOverlapWithBaseline)}; ` +
        `${relevance.ours.approximateTotals}/${relevance.ours.queries} queries answered with an approximate total`,
    );
    console.log('');
    console.log(
      `index build: meridian ${build.seconds.total.toFixed(1)} s (documents ${build.seconds.documents.toFixed(1)} s for ${fmtInt(build.documents)}, vocabulary ${build.seconds.vocabulary.toFixed(1)} s for ${fmtInt(build.words)} words, ` +
        `ANALYZE ${build.seconds.analyze.toFixed(1)} s, band indexes ${build.seconds.bands.toFixed(1)} s)` +
        (searchSeed ? `; the seed's documents + GIN (what the baseline needs): ${searchSeed.seconds.toFixed(1)} s` : ''),
    );
    console.log(`bands: ${tiers.join('; ') || 'none'}`);
    console.log(table(['relation', 'kind', 'size'], sizeRows));

    const file = await writeResults({
      scenario: 'search',
      date: new Date().toISOString(),
      hardware: hardware(),
      loadAverage1m: { start: loadAtStart, end: loadAverage1m() },
      parameters: {
        products,
        concurrency,
        durationS: o.durationS,
        rounds: o.rounds,
        warmupS: WARMUP_S,
        firstWarmupS: FIRST_WARMUP_S,
        warmupBeforeEachPhase: true,
        candidates,
        searchConcurrency: concurrencyMax,
        poolMax: { baseline: POOL_MAX, meridian: oursPoolMax },
        mode: 'in-process SearchService and baseline against the same database; no HTTP',
        database: database.where,
        server: server?.version,
        sharedBuffers: server?.shared_buffers,
        queryMix: { size: mix.length, seed: QUERY_SEED, perKind, broadShareMin: BROAD_SHARE },
        sides: {
          [BASELINE]: 'websearch_to_tsquery + GIN; ts_rank_cd over all matches; exact count(*); exact GROUP BY brand and category (4 statements in parallel)',
          [COLD]: 'SearchService without result caches (band and synonym metadata cached)',
          [WARM]: 'SearchService with the in-process result cache, filled with the whole mix before measuring',
        },
      },
      targets: TARGET,
      medians: order.map((p) => med[p]!),
      ratios,
      phases: results,
      details: {
        cpuPerQueryMs: Object.fromEntries(order.map((p) => [p, { median: cpuMedian(p), rounds: cpu.get(p) ?? [] }])),
        latencyByKind: Object.fromEntries([...byKind].map(([k, r]) => [k.replace('\n', ' / '), r.summary()])),
        relevance,
        indexBuild: { meridian: build, reusedDocuments: reuseIndex && indexed > 0, seed: seed ? { seconds: seed.seconds, tables: seed.tables } : 'reused an earlier seed' },
        sizes,
      },
    });
    // A copy per catalog size, for comparing growth between runs.
    await copyFile(file, file.replace(/search\.json$/, `search-${products}.json`));
    console.log(`results: ${file} (and search-${products}.json)`);
  } finally {
    await oursDbs.close();
    await dbs.close();
    await database.stop();
    process.off('SIGINT', stopOnSignal);
    process.off('SIGTERM', stopOnSignal);
  }
}

export const scenario: Scenario = {
  name: 'search',
  summary: 'product search on a seeded catalog: Meridian (cold and warm) vs naive PostgreSQL FTS, in-process, concurrency 8',
  usage: [
    '--products N     catalog size (default 100000; seeded once per size and reused)',
    '--fresh          seed the catalog again',
    '--candidates K   ranking window (default SEARCH.candidatesDefault)',
    '--reuse-index    keep the documents and vocabulary of an earlier run (rebuild only the bands)',
    '--search-concurrency K  searches run at once, the rest queue (default: the API\'s default, this machine\'s CPU cores)',
    'BENCH_DATABASE_URL  a PostgreSQL server for the scratch database (default: embedded, .meridian/bench-search)',
  ].join('\n'),
  flags: { products: { type: 'string' }, fresh: { type: 'boolean' }, candidates: { type: 'string' }, 'reuse-index': { type: 'boolean' }, 'search-concurrency': { type: 'string' } },
  run,
};
