// The capped, popularity-banded search on a bulk-seeded catalog (src/seed/bulk.ts), shrunk so a
// test runs it: a small candidate window and bands from a few thousand documents. Checks that a
// full reindex rebuilds what the seed wrote, that broad queries are answered from the window with
// flagged estimates that are close to a brute-force count, that narrow ones stay exact, and that
// the statement reads each band through its partial index.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import postgres from 'postgres';
import { CatalogService } from '../src/modules/catalog/service.ts';
import * as repo from '../src/modules/search/repository.ts';
import { SEARCH, SearchService, type SearchResult } from '../src/modules/search/service.ts';
import { seedAtScale } from '../src/seed/bulk.ts';
import { createTestPlatform, type TestPlatform } from './helpers.ts';

const PRODUCTS = 4_000;
const WINDOW = 40;

/**
 * Relations a plan reads by a sequential scan. search_vocabulary may be one: a few hundred words
 * (361 at 1M products), read only when the window is empty; once (auto)ANALYZE has counted it,
 * the planner rightly scans it whole. What must never be scanned is search_documents.
 */
function seqScanned(plan: string): string[] {
  return [...plan.matchAll(/"Node Type":"Seq Scan"[^}]*?"Relation Name":"([a-z_]+)"/g)].map((m) => m[1]!);
}

describe('search at scale (shrunk): bands, window, estimates', () => {
  let t: TestPlatform;
  let search: SearchService;
  const db = (): postgres.Sql => t.s.dbs.core('catalog');

  async function bruteForce(text: string, extra = ''): Promise<{ n: number; brands: Map<string, number> }> {
    const rows = await db().unsafe<{ brand: string; n: number }[]>(
      `SELECT brand_id::text AS brand, count(*)::int AS n FROM search_documents
       WHERE document @@ websearch_to_tsquery('english', $1) ${extra} GROUP BY 1`,
      [text],
    );
    return { n: rows.reduce((s, r) => s + r.n, 0), brands: new Map(rows.map((r) => [r.brand, r.n])) };
  }

  async function holdEveryWord(r: SearchResult, text: string): Promise<boolean> {
    const [row] = await db()<{ ok: boolean }[]>`
      SELECT bool_and(document @@ plainto_tsquery('english', ${text})) AS ok
      FROM search_documents WHERE product_id = ANY(${r.items.map((i) => i.id)}::bigint[])`;
    return row?.ok === true;
  }

  before(async () => {
    t = await createTestPlatform();
    await seedAtScale(t.s.dbs, { users: 0, products: PRODUCTS, orders: 0, progress: null });
    search = new SearchService(t.s.dbs, new CatalogService(t.s.dbs), undefined, { candidates: WINDOW, bandsMinDocuments: 1_000 });
  });
  after(async () => t.close());

  it('the bulk seed writes each product\'s attributes into its document: attribute filters work before any reindex', async () => {
    const [missing] = await db()<{ n: number }[]>`
      SELECT count(*)::int AS n FROM search_documents d JOIN products p ON p.id = d.product_id WHERE d.attributes <> p.attributes`;
    assert.equal(missing!.n, 0, 'every document holds its product\'s attributes');
    const [wool] = await db()<{ n: number }[]>`
      SELECT count(*)::int AS n FROM products WHERE status = 'active' AND attributes @> '{"material":"wool"}'`;
    assert.ok(wool!.n > WINDOW, `wool products: ${wool!.n}`);
    const r = await search.search({ q: 'wool', attributes: { material: ['wool'] }, limit: 20, page: 1, currency: 'USD' });
    assert.equal(r.items.length, 20);
    const [held] = await db()<{ n: number }[]>`
      SELECT count(*)::int AS n FROM search_documents
      WHERE product_id = ANY(${r.items.map((i) => i.id)}::bigint[]) AND attributes @> '{"material":"wool"}'`;
    assert.equal(held!.n, 20);
  });

  it('a full reindex rewrites every active product, fills attributes and the vocabulary, and builds bands', async () => {
    const phases = new Set<string>();
    const report = await search.reindexAll((p) => phases.add(p.phase));
    assert.deepEqual([...phases].sort(), ['analyze', 'bands', 'documents', 'vocabulary']);
    const [active] = await db()<{ n: number }[]>`SELECT count(*)::int AS n FROM products WHERE status = 'active'`;
    assert.equal(report.documents, active!.n);
    assert.equal((await repo.documentCount(db())), active!.n);
    assert.equal(report.removed, 0);
    const [empty] = await db()<{ n: number }[]>`SELECT count(*)::int AS n FROM search_documents WHERE attributes = '{}'`;
    assert.equal(empty!.n, 0, 'attributes filled');
    assert.ok(report.words > 50);
    // Bands: the first holds about two windows of the most popular documents; each has its index.
    assert.ok(report.bands.length >= 3, JSON.stringify(report.bands));
    assert.equal(report.bands.reduce((s, b) => s + b.documents, 0), active!.n);
    assert.ok(Math.abs(report.bands[0]!.documents - SEARCH.firstBandWindows * WINDOW) <= WINDOW, 'first band size');
    const indexes = await repo.bandIndexes(db());
    assert.deepEqual(indexes.sort(), report.bands.map((b) => b.indexName).sort());
    // A second build replaces the indexes of the first.
    const again = await search.rebuildBands();
    assert.deepEqual((await repo.bandIndexes(db())).sort(), again.map((b) => b.indexName).sort());
  });

  it('a broad word: answered from the window, flagged, with an estimate near the true count', async () => {
    const [broad] = await db()<{ word: string; documents: number }[]>`
      SELECT word, documents FROM search_vocabulary WHERE suggest AND position(' ' in word) = 0 ORDER BY documents DESC LIMIT 1`;
    const r = await search.search({ q: broad!.word, limit: 20, page: 1, currency: 'USD' });
    const truth = await bruteForce(broad!.word);
    assert.ok(truth.n > WINDOW * 4, `${broad!.word} matches ${truth.n}`);
    assert.equal(r.totalIsApproximate, true);
    assert.equal(r.facetsAreApproximate, true);
    assert.equal(r.items.length, 20);
    assert.ok(await holdEveryWord(r, broad!.word));
    assert.ok(r.total >= truth.n / 2 && r.total <= truth.n * 2, `estimate ${r.total} vs ${truth.n}`);
    // Facets are scaled to the estimate: their sum is near the total.
    const facetSum = r.facets.brand.reduce((s, b) => s + b.count, 0);
    assert.ok(facetSum >= r.total / 2 && facetSum <= r.total * 1.5, `brand facet sum ${facetSum} vs total ${r.total}`);
    // The window holds the most popular matches: every item is at least as popular as a band's floor.
    for (let i = 1; i < r.items.length; i++) assert.ok(r.items[i - 1]!.score >= r.items[i]!.score);
  });

  it('pages past the first window: every page size gives the same order, no repeats, no gaps', async () => {
    const [broad] = await db()<{ word: string }[]>`
      SELECT word FROM search_vocabulary WHERE suggest AND position(' ' in word) = 0 ORDER BY documents DESC LIMIT 1`;
    const page = async (limit: number, n: number): Promise<string[]> =>
      (await search.search({ q: broad!.word, limit, page: n, currency: 'USD' })).items.map((i) => i.id);
    const by20: string[] = [];
    for (let n = 1; n <= 5; n++) by20.push(...(await page(20, n)));
    const by50 = [...(await page(50, 1)), ...(await page(50, 2))];
    assert.equal(by20.length, 100);
    assert.equal(new Set(by20).size, 100, 'no repeats');
    assert.deepEqual(by50, by20, 'the same order whatever the page size');
    const first = await search.search({ q: broad!.word, limit: 20, page: 4, currency: 'USD' });
    const again = await search.search({ q: broad!.word, limit: 20, page: 1, currency: 'USD' });
    assert.equal(first.total, again.total, 'one total for every page');
    assert.deepEqual(first.facets, again.facets, 'one set of facets for every page');
  });

  it('a narrow query stays exact and equals a brute-force count, facets included', async () => {
    const [row] = await db()<{ title: string }[]>`SELECT title FROM search_documents ORDER BY product_id LIMIT 1`;
    const text = row!.title; // adjective, material and leaf: a few dozen matches at most
    const truth = await bruteForce(text);
    assert.ok(truth.n > 0 && truth.n <= WINDOW, `${text}: ${truth.n}`);
    const r = await search.search({ q: text, limit: 50, page: 1, currency: 'USD' });
    assert.equal(r.totalIsApproximate, false);
    assert.equal(r.total, truth.n);
    assert.deepEqual(new Map(r.facets.brand.map((b) => [b.value, b.count])), truth.brands);
  });

  it('a filter is a term of the same index scan: a brand\'s results only, exact when the window holds them', async () => {
    const [brand] = await db()<{ id: string; name: string }[]>`
      SELECT b.id::text, b.name FROM brands b JOIN search_documents d ON d.brand_id = b.id GROUP BY 1, 2 ORDER BY count(*) LIMIT 1`;
    const [broad] = await db()<{ word: string }[]>`
      SELECT word FROM search_vocabulary WHERE suggest AND position(' ' in word) = 0 ORDER BY documents DESC LIMIT 1`;
    const r = await search.search({ q: broad!.word, brand: brand!.id, limit: 50, page: 1, currency: 'USD' });
    const truth = await bruteForce(broad!.word, `AND brand_id = ${BigInt(brand!.id)}`); // digits from the database
    assert.equal(r.totalIsApproximate, truth.n > WINDOW);
    if (!r.totalIsApproximate) assert.equal(r.total, truth.n);
    assert.ok(r.items.every((i) => i.brand === brand!.name));
  });

  it('sends one statement text per filter shape, whatever the page or the values, and its generic plan reads every band through its index', async () => {
    // The text is what PostgreSQL caches a plan under: a page or a price in it made every deep
    // page a new statement, planned on every request.
    const texts = new Set<string>();
    const recorder = postgres(t.url, {
      max: 1,
      onnotice: () => undefined,
      debug: (_c, text) => void (text.includes('FROM q CROSS JOIN search_documents d') && !text.startsWith('EXPLAIN') && texts.add(text)),
    });
    try {
      const bands = await repo.readBands(db());
      const [brand] = await db()<{ id: string }[]>`SELECT brand_id::text AS id FROM search_documents WHERE brand_id IS NOT NULL LIMIT 1`;
      const run = (text: string, offset: number, limit: number, filters: Partial<repo.Filters>): Promise<repo.WindowResult> =>
        repo.searchWindow(recorder, {
          text, synonyms: false, categoryId: undefined, brandId: undefined, currency: 'USD', minPrice: undefined, maxPrice: undefined,
          inStock: undefined, attributes: {}, window: WINDOW, limit, offset, bands, priceBandEdges: SEARCH.priceBandEdges, words: [], nearestMax: 8, facetValuesMax: SEARCH.facetValuesMax,
          ...filters,
        });
      await run('lamp', 0, 20, {});
      await run('wool', 60, 20, {});
      await run('cotton lamp', 450, 50, {});
      assert.equal(texts.size, 1, 'no filter: one text for every page');
      await run('lamp', 0, 20, { minPrice: 1_000, maxPrice: 9_000 });
      await run('wool', 140, 20, { minPrice: 0, maxPrice: 500, inStock: true });
      await run('lamp', 40, 50, { brandId: brand!.id, inStock: true });
      assert.equal(texts.size, 2, 'filters: one more text, whatever their values and the page');
      // EXPLAIN (GENERIC_PLAN) exists from PostgreSQL 16: on 15 (the cluster engine) the next
      // test still checks the plan of one statement with its values.
      const [version] = await recorder<{ v: number }[]>`SELECT current_setting('server_version_num')::int AS v`;
      for (const text of (version?.v ?? 0) >= 160000 ? [...texts] : []) {
        const [plan] = await recorder.unsafe<{ 'QUERY PLAN': unknown }[]>(`EXPLAIN (GENERIC_PLAN, FORMAT JSON) ${text}`);
        const json = JSON.stringify(plan);
        for (const b of bands) assert.ok(json.includes(`"Index Name":"${b.indexName}"`), `generic plan uses ${b.indexName}`);
        assert.ok(!seqScanned(json).includes('search_documents'), `no sequential scan of the documents: ${json}`);
      }
    } finally {
      await recorder.end();
    }
  });

  it('reads each band through its partial index, never by a sequential scan', async () => {
    let sent: { text: string; params: unknown[] } | undefined;
    const recorder = postgres(t.url, { max: 1, onnotice: () => undefined, debug: (_c, text, params) => (sent = { text, params: params as unknown[] }) });
    try {
      const bands = await repo.readBands(db());
      await repo.searchWindow(recorder, {
        text: 'lamp', synonyms: false, categoryId: undefined, brandId: undefined, currency: 'USD', minPrice: 1_000, maxPrice: 9_000,
        inStock: undefined, attributes: {}, window: WINDOW, limit: 20, offset: 0, bands, priceBandEdges: SEARCH.priceBandEdges, words: [], nearestMax: 8, facetValuesMax: SEARCH.facetValuesMax,
      });
      assert.ok(sent);
      const [plan] = await recorder.unsafe<{ 'QUERY PLAN': unknown }[]>(`EXPLAIN (FORMAT JSON) ${sent.text}`, sent.params as never[]);
      const text = JSON.stringify(plan);
      for (const b of bands) assert.ok(text.includes(`"Index Name":"${b.indexName}"`), `uses ${b.indexName}`);
      assert.ok(!seqScanned(text).includes('search_documents'), `no sequential scan of the documents: ${text}`);
    } finally {
      await recorder.end();
    }
  });
});
