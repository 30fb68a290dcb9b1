// Product search over PostgreSQL full-text search, fast by design at millions of products.
//
// A document per active product (title, brand, category, attributes, description) is kept in
// step with the catalog through product.changed events; its filter values (brand, category and
// ancestors, stock, price band) are terms of a second tsvector, `facets`. A query:
//   1. reads candidates band by band of popularity, most popular first, each band through its
//      own partial GIN index on (document, facets), so words and filters intersect inside one
//      index scan, and stops once it has `candidates` of them (one statement, generic plan);
//   2. ranks those by text relevance (ts_rank_cd), then popularity, and returns the page;
//   3. counts facets over the same candidates. When every match fits in the candidate window the
//      total and the facets are exact; otherwise the total is extrapolated from the bands read in
//      full and flagged approximate, and so are the facets (scaled from the sample);
//   4. when nothing matches, corrects unknown words to the nearest indexed words (trigram
//      candidates, then edit distance) and says what it corrected.
// So a broad word costs what a narrow one does: about `candidates` rows read, however many of
// the catalog's documents hold it. Synonyms (admin-edited groups) rewrite the query in
// PostgreSQL with ts_rewrite. Results are cached (L1 in process, L2 in Redis) and evicted by
// product.changed events; suggestions are cached for their TTL.
import { availableParallelism } from 'node:os';
import type { Counter } from 'prom-client';
import type { CacheBus } from '../../platform/cache.ts';
import { Cache } from '../../platform/cache.ts';
import type { Databases, Pool } from '../../platform/db.ts';
import { transaction } from '../../platform/db.ts';
import { AppError } from '../../platform/errors.ts';
import { Semaphore } from '../../platform/semaphore.ts';
import type { Id } from '../../platform/ids.ts';
import type { Money } from '../../platform/money.ts';
import { money } from '../../platform/money.ts';
import type { Lsn, Reader, ReplicaSet } from '../../platform/replicas.ts';
import type { CatalogService, Product } from '../catalog/service.ts';
import * as repo from './repository.ts';
import { applyCorrections, chooseCorrection, normalizeQuery, requiredWords, tokens } from './text.ts';

/** Every bound of search, with its unit in the name. */
export const SEARCH = {
  /**
   * Candidates ranked together (the window): a broad query ranks the most popular this many
   * matches, and pages past them rank the next window. The main cost of a query: about linear in
   * it for a broad word, and more than that for a multi-word query whose matches are sparse, where
   * a bigger window reads the posting lists of bigger bands. Measured at 1M products (bench
   * `search`, concurrency 8, 2 cores): 200 → 100 took PostgreSQL CPU per query from 4.1–4.7 ms
   * to 2.2–2.6 ms and a sparse three-word query from 6.3 to 2.9 ms, with every top-20 result still
   * holding every query word and 99.7% of them the baseline's. 100 still ranks five pages of 20
   * together; the facets are sampled from 100 matches (and marked approximate when more match).
   */
  candidatesDefault: 100,
  /** The first band holds about this many windows of documents; each next band is bandGrowth× bigger. */
  firstBandWindows: 2,
  bandGrowth: 4,
  /**
   * Bands cover up to this share of the documents; the rest is the last band. A query whose
   * window fills inside the last bands (two common words, "wool sweater") intersects their
   * posting lists in full: past half the catalog a band of its own spares it the last ~40%.
   */
  bandsUpToShare: 0.75,
  /** Below this many documents one index serves every query well: no bands. */
  bandsMinDocuments: 20_000,
  /** Price facet: band upper bounds in minor units (the last band is open). */
  priceBandEdges: [1_000, 2_500, 5_000, 10_000, 25_000, 50_000],
  facetValuesMax: 50,
  /** Indexed words looked at for each unknown word. */
  nearestWordsMax: 8,
  /** Words of a query checked for typos. */
  correctedWordsMax: 8,
  suggestionsMax: 20,
  /** Products read from the catalog per step of a full reindex. */
  reindexPageSize: 1_000,
  /** Searches run at once per process unless configured (SEARCH_CONCURRENCY_MAX): this machine's cores. */
  concurrencyDefault: Math.min(500, availableParallelism()),
  /** Searches waiting for a turn (see SearchOptions.concurrencyMax); one more is refused with a 503. */
  queueMax: 1_000,
  /** The longest a search waits for its turn before a 503. */
  queueWaitTimeoutMs: 2_000,
  /** Bands and synonyms are re-read at least this often even without an invalidation. */
  metadataTtlMs: 30_000,
  synonymGroupsMax: 1_000,
  synonymTermsMax: 20,
  /** Pause between switching to new band indexes and dropping the old ones (processes reload). */
  bandSwitchGraceMs: 2_000,
} as const;

export const SEARCH_RESULTS_CACHE = 'search';
export const SEARCH_SUGGEST_CACHE = 'search-suggest';
const SEARCH_BANDS_CACHE = 'search-bands';
const SEARCH_SYNONYMS_CACHE = 'search-synonyms';

/** What a product change makes stale (for CacheBus.publish): any result may now differ. */
export function searchStaleKeys(): { cache: string; key: string }[] {
  return [{ cache: SEARCH_RESULTS_CACHE, key: '*' }];
}

export interface SearchQuery {
  q: string;
  limit: number;
  page: number;
  category?: Id | undefined;
  brand?: Id | undefined;
  minPrice?: number | undefined;
  maxPrice?: number | undefined;
  inStock?: boolean | undefined;
  /** Attribute name → accepted values. */
  attributes?: Readonly<Record<string, readonly string[]>> | undefined;
  currency: string;
}

export interface FacetValue {
  value: string;
  label: string;
  count: number;
}

export interface PriceBand {
  /** Minor units; max is exclusive, null for the open last band. */
  min: number;
  max: number | null;
  count: number;
}

export interface SearchItem {
  id: Id;
  title: string;
  brand: string | null;
  category: string | null;
  price: Money | null;
  inStock: boolean;
  score: number;
}

export interface SearchResult {
  items: SearchItem[];
  facets: { brand: FacetValue[]; category: FacetValue[]; price: PriceBand[] };
  /** Exact unless totalIsApproximate: then an estimate (never below the matches read). */
  total: number;
  totalIsApproximate: boolean;
  /** Facet counts estimated from the most popular matches (scaled to the total). */
  facetsAreApproximate: boolean;
  /** The query that was run instead, when the one typed matched nothing and had typos. */
  corrected: string | null;
  page: number;
}

export interface Suggestion {
  text: string;
  /** Documents holding the completed word or name (as of the last count). */
  count: number;
}

export interface Suggestions {
  items: Suggestion[];
}

export interface SearchCaches {
  results: Cache<SearchResult>;
  suggestions: Cache<Suggestions>;
}

export interface SearchOptions {
  caches?: SearchCaches | undefined;
  bus?: CacheBus | undefined;
  /** Candidates window; SEARCH.candidatesDefault unless a benchmark or test sets it. */
  candidates?: number | undefined;
  /** SEARCH.bandsMinDocuments unless a test sets it (to build bands on a small catalog). */
  bandsMinDocuments?: number | undefined;
  /** Queries by how they were answered: exact, window (capped), corrected, empty; refused (busy). */
  queries?: Counter<'mode'> | undefined;
  /**
   * Searches this process runs at once; the others wait their turn (SEARCH.queueMax,
   * SEARCH.queueWaitTimeoutMs). A search is CPU-bound in the database: about the database's
   * cores divided by the API processes serves the most and leaves the other requests their share
   * (default SEARCH.concurrencyDefault: this machine's cores, where the single node runs its own
   * database). Bench `search` at 1M products on 2 cores, 8 clients, medians of 3 rounds in one
   * hour: 2 at once 540 q/s, p95 27.0 ms, 2.3 ms of PostgreSQL CPU per query; 8 at once 490 q/s,
   * p95 38.4 ms, 2.9 ms.
   */
  concurrencyMax?: number | undefined;
}

export interface ReindexProgress {
  phase: 'documents' | 'vocabulary' | 'analyze' | 'bands';
  message: string;
  done?: number;
  total?: number;
}

export interface ReindexReport {
  documents: number;
  removed: number;
  words: number;
  bands: repo.Band[];
  seconds: { documents: number; vocabulary: number; analyze: number; bands: number; total: number };
}

interface SynonymsMeta {
  /** Rules exist: the query goes through ts_rewrite. */
  active: boolean;
  /** Every term, lower case: a term is never "corrected" as a typo. */
  terms: Set<string>;
}

/** Attribute values as searchable words: {"material":"wool"} → "material wool". */
function attributesText(attributes: Record<string, unknown>): string {
  return Object.entries(attributes)
    .map(([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(' ')
    .slice(0, 4000);
}

export function documentFor(p: Product): repo.SearchDocumentInput {
  const minPrices: Record<string, number> = {};
  for (const v of p.variants) {
    for (const price of v.prices) {
      const current = minPrices[price.currency];
      if (current === undefined || price.amount < current) minPrices[price.currency] = price.amount;
    }
  }
  return {
    productId: p.id,
    title: p.title,
    description: p.description,
    brandId: p.brand?.id ?? null,
    brandName: p.brand?.name ?? null,
    categoryId: p.category?.id ?? null,
    categoryPath: p.category?.path ?? null,
    categoryName: p.category?.name ?? null,
    attributesText: attributesText(p.attributes),
    attributes: p.attributes,
    minPrices,
    inStock: p.variants.some((v) => v.inStock),
    popularity: p.popularity,
  };
}

/**
 * The vocabulary entries of a document: every word of its text, marked `suggest` when it is in
 * the title, brand, category or an attribute value; multi-word brand and category names whole.
 */
export function vocabularyOf(d: repo.SearchDocumentInput): { word: string; suggest: boolean }[] {
  const attributeValues = Object.values(d.attributes).filter((v): v is string => typeof v === 'string');
  const words = new Map<string, boolean>();
  for (const w of tokens([d.title, d.brandName ?? '', d.categoryName ?? '', ...attributeValues].join(' '))) words.set(w, true);
  for (const w of tokens(`${d.attributesText} ${d.description}`)) if (!words.has(w)) words.set(w, false);
  for (const name of [d.brandName, d.categoryName]) {
    const phrase = name ? tokens(name).join(' ') : '';
    if (phrase.includes(' ') && phrase.length <= 100) words.set(phrase, true);
  }
  return [...words].map(([word, suggest]) => ({ word, suggest }));
}

/** The query with its unknown words replaced by the nearest indexed words, if any qualify. */
export function correctionOf(text: string, checks: readonly repo.WordCheck[]): string | undefined {
  const fixes = new Map<string, string>();
  for (const check of checks) {
    if (check.stopWord || check.known) continue;
    const best = chooseCorrection(check.word, check.nearest);
    if (best) fixes.set(check.word, best);
  }
  return fixes.size > 0 ? applyCorrections(text, fixes) : undefined;
}

function resultKey(q: SearchQuery): string {
  const attributes = Object.entries(q.attributes ?? {})
    .map(([k, v]) => [k, [...v].sort()] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([normalizeQuery(q.q), q.limit, q.page, q.category, q.brand, q.minPrice, q.maxPrice, q.inStock, q.currency, attributes]);
}

/**
 * Total matches, from a window that stopped early: bands read in full count exactly; the rest
 * (the band it stopped in, and the bands it never started) is extrapolated at the density seen,
 * taking the higher of the full bands' density and the partial band's lower bound.
 */
export function estimateTotal(w: Pick<repo.WindowResult, 'read' | 'perBand'>, bands: readonly repo.Band[]): number {
  if (bands.length === 0 || w.perBand.length === 0) return w.read;
  const last = Math.max(...w.perBand.map(([b]) => b));
  const readIn = new Map(w.perBand);
  let fullMatches = 0;
  let fullDocuments = 0;
  let restDocuments = 0;
  for (const band of bands) {
    if (band.position < last) {
      fullMatches += readIn.get(band.position) ?? 0;
      fullDocuments += band.documents;
    } else {
      restDocuments += band.documents;
    }
  }
  const partial = readIn.get(last) ?? 0;
  const lastDocuments = bands.find((b) => b.position === last)?.documents ?? 0;
  const density = Math.max(fullDocuments > 0 ? fullMatches / fullDocuments : 0, lastDocuments > 0 ? partial / lastDocuments : 0);
  return Math.max(w.read, Math.round(fullMatches + density * restDocuments));
}

export class SearchService {
  private readonly caches: SearchCaches | undefined;
  private readonly bus: CacheBus | undefined;
  private readonly candidates: number;
  private readonly bandsMinDocuments: number;
  private readonly queries: Counter<'mode'> | undefined;
  private readonly turns: Semaphore;
  /** Search configuration, not results: kept even when result caching is off. */
  private readonly bandsMeta = new Cache<repo.Band[]>({ name: SEARCH_BANDS_CACHE, maxEntries: 1, ttlMs: SEARCH.metadataTtlMs, jitter: 0.1 });
  private readonly synonymsMeta = new Cache<SynonymsMeta>({ name: SEARCH_SYNONYMS_CACHE, maxEntries: 1, ttlMs: SEARCH.metadataTtlMs, jitter: 0.1 });

  constructor(
    private readonly dbs: Databases,
    private readonly catalog: CatalogService,
    private readonly replicas?: ReplicaSet,
    options: SearchOptions = {},
  ) {
    this.caches = options.caches;
    this.bus = options.bus;
    this.candidates = options.candidates ?? SEARCH.candidatesDefault;
    this.bandsMinDocuments = options.bandsMinDocuments ?? SEARCH.bandsMinDocuments;
    this.queries = options.queries;
    this.turns = new Semaphore({
      limit: options.concurrencyMax ?? SEARCH.concurrencyDefault,
      queueMax: SEARCH.queueMax,
      waitTimeoutMs: SEARCH.queueWaitTimeoutMs,
      refuse: (reason) => {
        this.queries?.inc({ mode: 'refused' });
        return new AppError('unavailable', `search is busy (${reason === 'queue_full' ? 'too many searches waiting' : 'no turn within the wait limit'}); retry in a moment`);
      },
    });
    this.bus?.register(SEARCH_BANDS_CACHE, this.bandsMeta as Cache<unknown>);
    this.bus?.register(SEARCH_SYNONYMS_CACHE, this.synonymsMeta as Cache<unknown>);
    if (this.caches) {
      this.bus?.register(SEARCH_RESULTS_CACHE, this.caches.results as Cache<unknown>);
      this.bus?.register(SEARCH_SUGGEST_CACHE, this.caches.suggestions as Cache<unknown>);
    }
  }

  private get db(): Pool {
    return this.dbs.core('catalog');
  }

  private reader(atLeast: Lsn | undefined): Reader {
    return this.replicas?.reader(atLeast) ?? { pool: this.db, lsn: 0n, served: 'primary' };
  }

  /** Served by a standby when one is healthy (and has replayed past atLeast, if given). */
  async search(q: SearchQuery, atLeast?: Lsn): Promise<SearchResult> {
    const reader = this.reader(atLeast);
    const run = (): Promise<SearchResult> => this.turns.run(() => this.execute(reader.pool, q));
    if (!this.caches) return run();
    return this.caches.results.getOrLoad(resultKey(q), run, { minVersion: atLeast, version: reader.lsn });
  }

  private async execute(db: Pool, q: SearchQuery): Promise<SearchResult> {
    const [bands, synonyms] = await Promise.all([this.bands(), this.synonyms()]);
    const offset = (q.page - 1) * q.limit;
    // Words a typo check may correct (synonym terms and words with digits never are).
    const words = requiredWords(q.q)
      .filter((w) => !synonyms.terms.has(w) && !/\p{N}/u.test(w))
      .slice(0, SEARCH.correctedWordsMax);
    const window = (text: string, checked: readonly string[]): Promise<repo.WindowResult> =>
      repo.searchWindow(db, {
        text,
        synonyms: synonyms.active,
        categoryId: q.category,
        brandId: q.brand,
        currency: q.currency,
        minPrice: q.minPrice,
        maxPrice: q.maxPrice,
        inStock: q.inStock,
        attributes: q.attributes ?? {},
        window: this.candidates,
        limit: q.limit,
        offset,
        bands,
        priceBandEdges: SEARCH.priceBandEdges,
        words: checked,
        nearestMax: SEARCH.nearestWordsMax,
        facetValuesMax: SEARCH.facetValuesMax,
      });
    const first = await window(q.q, words);
    if (first.read === 0 && first.tsquery !== '' && first.checks) {
      const corrected = correctionOf(q.q, first.checks);
      if (corrected !== undefined) {
        const second = await window(corrected, []);
        if (second.read > 0) return this.toResult(second, q, bands, corrected);
      }
    }
    return this.toResult(first, q, bands, null);
  }

  private toResult(w: repo.WindowResult, q: SearchQuery, bands: readonly repo.Band[], corrected: string | null): SearchResult {
    const exact = w.read <= this.candidates;
    const total = exact ? w.read : estimateTotal(w, bands);
    // Facets over a sample are scaled to the estimated total: shares, not sample counts.
    // The facets count the window's rows, not the extra row read to tell that more match.
    const scale = exact || w.read === 0 ? 1 : total / Math.min(w.read, this.candidates);
    const scaled = (n: number): number => (exact ? n : Math.max(1, Math.round(n * scale)));
    const edges = SEARCH.priceBandEdges;
    this.queries?.inc({ mode: w.read === 0 ? 'empty' : corrected !== null ? 'corrected' : exact ? 'exact' : 'window' });
    return {
      items: w.items.map((i) => ({
        id: i.id,
        title: i.title,
        brand: i.brand,
        category: i.category,
        price: i.price === null ? null : money(i.price, q.currency),
        inStock: i.inStock,
        score: i.score,
      })),
      facets: {
        brand: w.brand.map(([value, label, n]) => ({ value, label, count: scaled(n) })),
        category: w.category.map(([value, label, n]) => ({ value, label, count: scaled(n) })),
        price: w.price.map(([band, n]) => ({ min: band === 0 ? 0 : edges[band - 1]!, max: edges[band] ?? null, count: scaled(n) })),
      },
      total,
      totalIsApproximate: !exact,
      facetsAreApproximate: !exact,
      corrected,
      page: q.page,
    };
  }

  private bands(): Promise<repo.Band[]> {
    return this.bandsMeta.getOrLoad('bands', () => repo.readBands(this.db));
  }

  private synonyms(): Promise<SynonymsMeta> {
    return this.synonymsMeta.getOrLoad('synonyms', async () => {
      const groups = await repo.readSynonyms(this.db);
      const terms = new Set(groups.flat().flatMap((t) => [t, ...tokens(t)]));
      return { active: groups.length > 0 && (await repo.synonymRuleCount(this.db)) > 0, terms };
    });
  }

  // -------------------------------------------------------------------------------------------
  // Autocomplete

  /** Completions of the last word typed (and whole brand and category names), most frequent first. */
  async suggest(text: string, limit: number, atLeast?: Lsn): Promise<Suggestions> {
    const typed = text.toLowerCase().replace(/\s+/g, ' ').trimStart();
    const parts = typed.trim().split(' ');
    const last = parts[parts.length - 1] ?? '';
    if (last === '' || typed.endsWith(' ')) return { items: [] };
    const head = parts.slice(0, -1).join(' ');
    const reader = this.reader(atLeast);
    const run = async (): Promise<Suggestions> => {
      const [whole, word] = await Promise.all([
        repo.wordsStartingWith(reader.pool, typed.trim(), limit),
        head ? repo.wordsStartingWith(reader.pool, last, limit) : Promise.resolve([]),
      ]);
      const seen = new Map<string, number>();
      for (const w of whole) seen.set(w.word, w.documents);
      for (const w of word) {
        const t = `${head} ${w.word}`;
        if (!seen.has(t)) seen.set(t, w.documents);
      }
      const items = [...seen]
        .map(([t, count]) => ({ text: t, count }))
        .sort((a, b) => b.count - a.count || (a.text < b.text ? -1 : 1))
        .slice(0, limit);
      return { items };
    };
    if (!this.caches) return run();
    return this.caches.suggestions.getOrLoad(JSON.stringify([typed, limit]), run, { minVersion: atLeast, version: reader.lsn });
  }

  // -------------------------------------------------------------------------------------------
  // Synonyms (admin)

  async synonymGroups(): Promise<string[][]> {
    return repo.readSynonyms(this.db);
  }

  /** Replaces the whole list; applies to queries from the next one on (no reindex needed). */
  async replaceSynonymGroups(groups: readonly (readonly string[])[]): Promise<string[][]> {
    const clean: string[][] = [];
    for (const [i, group] of groups.entries()) {
      const terms = [...new Set(group.map((t) => t.trim().replace(/\s+/g, ' ').toLowerCase()).filter((t) => t.length > 0))];
      if (terms.length < 2) throw new AppError('validation_failed', `synonym group ${i} needs at least two distinct terms`, { group: i });
      if (terms.every((t) => tokens(t).length === 0)) throw new AppError('validation_failed', `synonym group ${i} has no words`, { group: i });
      clean.push(terms);
    }
    await transaction(this.db, (tx) => repo.replaceSynonyms(tx, clean));
    await this.announce([
      { cache: SEARCH_SYNONYMS_CACHE, key: '*' },
      { cache: SEARCH_RESULTS_CACHE, key: '*' },
    ]);
    return clean;
  }

  private async announce(stale: { cache: string; key: string }[]): Promise<void> {
    if (this.bus) {
      await this.bus.publish(stale);
      return;
    }
    const local: Record<string, Cache<unknown> | undefined> = {
      [SEARCH_BANDS_CACHE]: this.bandsMeta as Cache<unknown>,
      [SEARCH_SYNONYMS_CACHE]: this.synonymsMeta as Cache<unknown>,
      [SEARCH_RESULTS_CACHE]: this.caches?.results as Cache<unknown> | undefined,
      [SEARCH_SUGGEST_CACHE]: this.caches?.suggestions as Cache<unknown> | undefined,
    };
    for (const { cache, key } of stale) local[cache]?.invalidate(key);
  }

  // -------------------------------------------------------------------------------------------
  // Indexing

  /** Bring one product's document up to date (idempotent: safe for at-least-once events). */
  async reindexProduct(productId: Id): Promise<void> {
    let product: Product | undefined;
    try {
      product = await this.catalog.getProduct(productId, 'USD');
    } catch (err) {
      // Only "no such product" removes a document; a database error must not.
      if (!(err instanceof AppError && err.code === 'not_found')) throw err;
    }
    if (!product || product.status !== 'active') {
      await repo.deleteDocument(this.db, productId);
      return;
    }
    const doc = documentFor(product);
    const inserted = await repo.upsertDocument(this.db, doc);
    await repo.addWords(this.db, vocabularyOf(doc), inserted);
  }

  /**
   * Rebuild every document from the catalog, then the vocabulary, statistics and popularity
   * bands. Online: queries keep being served from the current documents and indexes throughout.
   */
  async reindexAll(onProgress: (p: ReindexProgress) => void = () => undefined): Promise<ReindexReport> {
    const t0 = performance.now();
    // The database's clock, as updated_at is: documents not written after it are stale.
    const [clock] = await this.db<{ now: Date }[]>`SELECT now() AS now`;
    const since = clock?.now ?? new Date(0);
    const expected = await repo.documentCount(this.db);
    const words = new Map<string, { documents: number; suggest: boolean }>();
    let done = 0;
    let cursor: Id | undefined;
    let writing: Promise<void> = Promise.resolve();
    onProgress({ phase: 'documents', message: 'reading the catalog', done: 0, total: expected });
    for (;;) {
      const page = await this.catalog.listProducts({ limit: SEARCH.reindexPageSize, cursor, currency: 'USD' });
      const docs = page.items.map(documentFor);
      for (const d of docs) {
        for (const { word, suggest } of vocabularyOf(d)) {
          const w = words.get(word);
          if (w) {
            w.documents++;
            w.suggest ||= suggest;
          } else {
            words.set(word, { documents: 1, suggest });
          }
        }
      }
      // Write this page while the next one is read: both ends of the pipe stay busy.
      await writing;
      writing = repo.upsertDocuments(this.db, docs);
      done += docs.length;
      onProgress({ phase: 'documents', message: 'documents', done, total: Math.max(expected, done) });
      const last = page.items[page.items.length - 1];
      if (!page.nextCursor || !last) break;
      cursor = last.id;
    }
    await writing;
    const removed = await repo.deleteDocumentsNotWrittenSince(this.db, since);
    const t1 = performance.now();
    onProgress({ phase: 'vocabulary', message: `${words.size} words` });
    const vocabulary = [...words].map(([word, w]) => ({ word, documents: w.documents, suggest: w.suggest })).filter((w) => w.word.length <= 100);
    await transaction(this.db, (tx) => repo.replaceVocabulary(tx, vocabulary));
    const t2 = performance.now();
    onProgress({ phase: 'analyze', message: 'VACUUM (ANALYZE) search_documents' });
    await repo.vacuumDocuments(this.db);
    const t3 = performance.now();
    const bands = await this.rebuildBands(onProgress);
    const t4 = performance.now();
    await this.announce([{ cache: SEARCH_RESULTS_CACHE, key: '*' }, { cache: SEARCH_SUGGEST_CACHE, key: '*' }]);
    const s = (a: number, b: number): number => (b - a) / 1000;
    return {
      documents: done,
      removed,
      words: vocabulary.length,
      bands,
      seconds: { documents: s(t0, t1), vocabulary: s(t1, t2), analyze: s(t2, t3), bands: s(t3, t4), total: s(t0, t4) },
    };
  }

  /**
   * Popularity bands from the current documents: the first holds about firstBandWindows
   * windows of the most popular documents, each next one bandGrowth times more, until
   * bandsUpToShare of the catalog; the rest is the last band. New partial indexes are built
   * beside the old ones (CONCURRENTLY: writes continue), switched to in one transaction, then
   * the old ones dropped.
   */
  async rebuildBands(onProgress: (p: ReindexProgress) => void = () => undefined): Promise<repo.Band[]> {
    const n = await repo.documentCount(this.db);
    const bands: repo.Band[] = [];
    if (n >= this.bandsMinDocuments) {
      const ranks: number[] = [];
      for (let r = SEARCH.firstBandWindows * this.candidates; r < n * SEARCH.bandsUpToShare; r *= SEARCH.bandGrowth) ranks.push(r);
      const raw = await repo.popularityAt(this.db, ranks.map((r) => r / n));
      // Equal popularity at two ranks would make an empty band: keep strictly decreasing bounds.
      const thresholds = raw.filter((t, i) => i === 0 || t < raw[i - 1]!);
      const counts = thresholds.length > 0 ? await repo.documentsPerBand(this.db, thresholds) : [];
      if (thresholds.length > 0 && (counts[0] ?? 0) <= n / 2) {
        const generation = Math.floor(Date.now() / 1000);
        // The bands above each threshold, then the rest below the last one: every band has an index.
        const edges: { min: number | null; max: number | null }[] = thresholds.map((t, i) => ({ min: t, max: i === 0 ? null : thresholds[i - 1]! }));
        edges.push({ min: null, max: thresholds[thresholds.length - 1]! });
        for (const [i, band] of edges.entries()) {
          const name = `search_tier_${generation}_${i}`;
          const started = performance.now();
          onProgress({ phase: 'bands', message: `building ${name} (${repo.bandPredicate(band)}, ${counts[i]} documents)`, done: i, total: edges.length });
          await this.withIndexProgress(() => repo.createBandIndex(this.db, name, band), (p) =>
            onProgress({ phase: 'bands', message: `${name}: ${p.phase}, ${p.blocksTotal ? Math.floor((100 * p.blocksDone) / p.blocksTotal) : 0}% of blocks`, done: i, total: edges.length }),
          );
          onProgress({ phase: 'bands', message: `${name} built in ${((performance.now() - started) / 1000).toFixed(1)} s`, done: i + 1, total: edges.length });
          bands.push({ position: i, ...band, documents: counts[i] ?? 0, indexName: name });
        }
      }
    }
    const previous = await repo.bandIndexes(this.db);
    await transaction(this.db, (tx) => repo.replaceBands(tx, bands));
    await this.announce([{ cache: SEARCH_BANDS_CACHE, key: '*' }]);
    const current = new Set(bands.map((b) => b.indexName));
    const stale = previous.filter((name) => !current.has(name));
    if (stale.length > 0) {
      // Let every process switch to the new bands before their old indexes disappear.
      await new Promise((r) => setTimeout(r, SEARCH.bandSwitchGraceMs));
      for (const name of stale) await repo.dropBandIndex(this.db, name);
    }
    onProgress({ phase: 'bands', message: bands.length ? `${bands.length} bands` : `no bands (${n} documents)` });
    return bands;
  }

  private async withIndexProgress(build: () => Promise<void>, report: (p: repo.IndexBuildProgress) => void): Promise<void> {
    const timer = setInterval(() => {
      repo.indexBuildProgress(this.db).then((p) => p && report(p), () => undefined);
    }, 1_000);
    try {
      await build();
    } finally {
      clearInterval(timer);
    }
  }

  /** Sizes of the search tables and indexes (for operators and the benchmark). */
  relationSizes(): Promise<repo.RelationSize[]> {
    return repo.relationSizes(this.db);
  }
}
