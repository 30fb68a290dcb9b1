import type { Pool, Sql } from '../../platform/db.ts';
import type { Id } from '../../platform/ids.ts';

type Fragment = ReturnType<Sql>;

export interface SearchDocumentInput {
  productId: Id;
  title: string;
  description: string;
  brandId: Id | null;
  brandName: string | null;
  categoryId: Id | null;
  categoryPath: string | null;
  categoryName: string | null;
  attributesText: string;
  /** The product's attributes as stored, for attribute filters. */
  attributes: Record<string, unknown>;
  minPrices: Record<string, number>;
  inStock: boolean;
  popularity: number;
}

/**
 * Weights: title A, brand and category B, attributes C, description D. src/seed/bulk.ts builds
 * the same document in SQL; upsertDocuments below must stay identical to this one.
 * Returns true when the document is new (the vocabulary then counts its words once more).
 */
export async function upsertDocument(sql: Sql, d: SearchDocumentInput): Promise<boolean> {
  const [row] = await sql<{ inserted: boolean }[]>`
    INSERT INTO search_documents (product_id, title, brand_id, brand_name, category_id, category_path, category_name,
                                  min_prices, in_stock, popularity, attributes, document, updated_at)
    VALUES (${d.productId}, ${d.title}, ${d.brandId}, ${d.brandName}, ${d.categoryId}, ${d.categoryPath}, ${d.categoryName},
            ${sql.json(d.minPrices)}, ${d.inStock}, ${d.popularity}, ${sql.json(d.attributes as never)},
            setweight(to_tsvector('english', ${d.title}), 'A') ||
            setweight(to_tsvector('english', coalesce(${d.brandName}, '') || ' ' || coalesce(${d.categoryName}, '')), 'B') ||
            setweight(to_tsvector('english', ${d.attributesText}), 'C') ||
            setweight(to_tsvector('english', ${d.description}), 'D'),
            now())
    ON CONFLICT (product_id) DO UPDATE SET
      title = EXCLUDED.title, brand_id = EXCLUDED.brand_id, brand_name = EXCLUDED.brand_name,
      category_id = EXCLUDED.category_id, category_path = EXCLUDED.category_path, category_name = EXCLUDED.category_name,
      min_prices = EXCLUDED.min_prices, in_stock = EXCLUDED.in_stock, popularity = EXCLUDED.popularity,
      attributes = EXCLUDED.attributes, document = EXCLUDED.document, updated_at = now()
    RETURNING (xmax = 0) AS inserted`;
  return row?.inserted === true;
}

/** Many documents in one statement (the full reindex); same document as upsertDocument. */
export async function upsertDocuments(sql: Sql, docs: readonly SearchDocumentInput[]): Promise<void> {
  if (docs.length === 0) return;
  const rows = docs.map((d) => ({
    product_id: d.productId,
    title: d.title,
    brand_id: d.brandId,
    brand_name: d.brandName,
    category_id: d.categoryId,
    category_path: d.categoryPath,
    category_name: d.categoryName,
    min_prices: d.minPrices,
    in_stock: d.inStock,
    popularity: d.popularity,
    attributes: d.attributes,
    attributes_text: d.attributesText,
    description: d.description,
  }));
  await sql`
    INSERT INTO search_documents (product_id, title, brand_id, brand_name, category_id, category_path, category_name,
                                  min_prices, in_stock, popularity, attributes, document, updated_at)
    SELECT x.product_id, x.title, x.brand_id, x.brand_name, x.category_id, x.category_path, x.category_name,
           x.min_prices, x.in_stock, x.popularity, x.attributes,
           setweight(to_tsvector('english', x.title), 'A') ||
           setweight(to_tsvector('english', coalesce(x.brand_name, '') || ' ' || coalesce(x.category_name, '')), 'B') ||
           setweight(to_tsvector('english', x.attributes_text), 'C') ||
           setweight(to_tsvector('english', x.description), 'D'),
           now()
    FROM jsonb_to_recordset(${sql.json(rows as never)}) AS x(
      product_id bigint, title text, brand_id bigint, brand_name text, category_id bigint, category_path text,
      category_name text, min_prices jsonb, in_stock boolean, popularity integer, attributes jsonb,
      attributes_text text, description text)
    ON CONFLICT (product_id) DO UPDATE SET
      title = EXCLUDED.title, brand_id = EXCLUDED.brand_id, brand_name = EXCLUDED.brand_name,
      category_id = EXCLUDED.category_id, category_path = EXCLUDED.category_path, category_name = EXCLUDED.category_name,
      min_prices = EXCLUDED.min_prices, in_stock = EXCLUDED.in_stock, popularity = EXCLUDED.popularity,
      attributes = EXCLUDED.attributes, document = EXCLUDED.document, updated_at = now()`;
}

export async function deleteDocument(sql: Sql, productId: Id): Promise<void> {
  await sql`DELETE FROM search_documents WHERE product_id = ${productId}`;
}

/** After a full pass: documents it did not write belong to products no longer active. */
export async function deleteDocumentsNotWrittenSince(sql: Sql, since: Date): Promise<number> {
  const rows = await sql`DELETE FROM search_documents WHERE updated_at < ${since} RETURNING 1`;
  return rows.length;
}

// ---------------------------------------------------------------------------------------------
// The naive search, kept as the benchmark's baseline: rank every match, count every match, and
// group every match for each facet. Correct, and slow when a word matches much of the catalog.

export interface SearchFilter {
  q: string;
  categoryPath: string | undefined;
  brandId: Id | undefined;
  currency: string;
  minPrice: number | undefined;
  maxPrice: number | undefined;
  inStock: boolean | undefined;
}

function where(sql: Sql, f: SearchFilter): Fragment {
  const price = f.minPrice !== undefined || f.maxPrice !== undefined;
  return sql`
    WHERE d.document @@ websearch_to_tsquery('english', ${f.q})
      ${f.categoryPath ? sql`AND d.category_path LIKE ${f.categoryPath + '%'}` : sql``}
      ${f.brandId ? sql`AND d.brand_id = ${f.brandId}` : sql``}
      ${f.inStock !== undefined ? sql`AND d.in_stock = ${f.inStock}` : sql``}
      ${price ? sql`AND (d.min_prices ->> ${f.currency})::bigint BETWEEN ${f.minPrice ?? 0} AND ${f.maxPrice ?? Number.MAX_SAFE_INTEGER}` : sql``}`;
}

export interface Hit {
  product_id: Id;
  title: string;
  brand_name: string | null;
  category_name: string | null;
  min_price: number | null;
  in_stock: boolean;
  rank: number;
}

export async function search(sql: Sql, f: SearchFilter, limit: number, offset: number): Promise<Hit[]> {
  return sql<Hit[]>`
    SELECT d.product_id::text, d.title, d.brand_name, d.category_name, (d.min_prices ->> ${f.currency})::bigint::float8 AS min_price,
           d.in_stock, ts_rank_cd(d.document, websearch_to_tsquery('english', ${f.q}))::float8 AS rank
    FROM search_documents d ${where(sql, f)}
    ORDER BY rank DESC, d.popularity DESC, d.product_id DESC
    LIMIT ${limit} OFFSET ${offset}`;
}

export async function count(sql: Sql, f: SearchFilter): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM search_documents d ${where(sql, f)}`;
  return row?.n ?? 0;
}

export async function facet(sql: Sql, f: SearchFilter, by: 'brand' | 'category'): Promise<{ value: string; label: string; count: number }[]> {
  const rows =
    by === 'brand'
      ? await sql<{ value: string; label: string; count: number }[]>`
          SELECT d.brand_id::text AS value, max(d.brand_name) AS label, count(*)::int AS count
          FROM search_documents d ${where(sql, f)} AND d.brand_id IS NOT NULL
          GROUP BY d.brand_id ORDER BY count DESC, value LIMIT 50`
      : await sql<{ value: string; label: string; count: number }[]>`
          SELECT d.category_id::text AS value, max(d.category_name) AS label, count(*)::int AS count
          FROM search_documents d ${where(sql, f)} AND d.category_id IS NOT NULL
          GROUP BY d.category_id ORDER BY count DESC, value LIMIT 50`;
  return [...rows];
}

// ---------------------------------------------------------------------------------------------
// The capped, tiered search.

/** A band of popularity with its own partial index (see migrations/002_search_at_scale.sql). */
export interface Band {
  position: number;
  /** min <= popularity < max; null = unbounded on that side. */
  min: number | null;
  max: number | null;
  documents: number;
  indexName: string;
}

/**
 * Price bands of the `facets` terms (minor units; the migration's generated column uses the same
 * edges): fine, so a price range selects few rows outside it, which are then dropped by the exact
 * check. Independent of the coarser bands of the price facet shown to shoppers.
 */
export const PRICE_FILTER_EDGES: readonly number[] = [
  100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 2_500, 3_000, 4_000, 5_000, 6_000, 7_500, 10_000, 12_500, 15_000, 20_000,
  25_000, 30_000, 40_000, 50_000, 75_000, 100_000, 150_000, 200_000, 500_000, 1_000_000,
];

export interface Filters {
  /** A category: its whole subtree matches. */
  categoryId: Id | undefined;
  brandId: Id | undefined;
  currency: string;
  minPrice: number | undefined;
  maxPrice: number | undefined;
  inStock: boolean | undefined;
  /** Attribute name → accepted values (any of them); every name must match. */
  attributes: Readonly<Record<string, readonly string[]>>;
}

export interface WindowQuery extends Filters {
  /** Web-search syntax: words, "phrases", -excluded, or. */
  text: string;
  /** Apply the synonym rules (skipped when there are none: ts_rewrite runs a query). */
  synonyms: boolean;
  /**
   * The window: candidates ranked together. The total and the facets come from the first
   * window; a page beyond it reads as many further windows as it needs, each ranked on its own.
   */
  window: number;
  limit: number;
  offset: number;
  bands: readonly Band[];
  /** Upper bounds (exclusive) of the price facet's bands, ascending, in minor units. */
  priceBandEdges: readonly number[];
  /** The words that must match, checked against the vocabulary only if nothing matches. */
  words: readonly string[];
  /** Nearest vocabulary words returned per unknown word. */
  nearestMax: number;
  /** Values per facet (brand, category), the most frequent. */
  facetValuesMax: number;
}

export interface WindowItem {
  id: Id;
  title: string;
  brand: string | null;
  category: string | null;
  price: number | null;
  inStock: boolean;
  score: number;
}

export interface WindowResult {
  /** Candidates of the first window read, at most window + 1; more than `window`: there are more matches. */
  read: number;
  /** [band position, candidates read from it]. */
  perBand: [number, number][];
  items: WindowItem[];
  brand: [string, string, number][];
  category: [string, string, number][];
  /** [price band (0 = below the first edge), candidates]. */
  price: [number, number][];
  /** The query after synonym rewriting, as PostgreSQL sees it ('' when it has no words). */
  tsquery: string;
  /** When nothing matched: each word of `words`, whether the index knows it, and its nearest words. */
  checks: WordCheck[] | null;
}

/** An integer of our own (from the database or a constant), as SQL text: see bandPredicate. */
function literalInt(n: number): string {
  if (!Number.isSafeInteger(n)) throw new RangeError(`not an integer: ${n}`);
  return String(n);
}

/**
 * The band as SQL literals, never parameters: the planner proves that a query may use a partial
 * index only from constants (a prepared statement's generic plan would see $n and fall back to
 * the full index). Returns the same text the index was created with.
 */
export function bandPredicate(band: Pick<Band, 'min' | 'max'>, column: 'popularity' | 'd.popularity' = 'popularity'): string {
  const parts: string[] = [];
  if (band.min !== null) parts.push(`${column} >= ${literalInt(band.min)}`);
  if (band.max !== null) parts.push(`${column} < ${literalInt(band.max)}`);
  return parts.join(' AND ');
}

function tsqueryOf(sql: Sql, text: string, synonyms: boolean): Fragment {
  if (!synonyms) return sql`websearch_to_tsquery('english', ${text})`;
  // ts_rewrite's query form: every rule whose target's words are all in the query replaces them
  // with its substitute (the OR of the group), keeping the query's structure (AND, NOT, phrases).
  return sql`ts_rewrite(websearch_to_tsquery('english', ${text}),
    'SELECT target, substitute FROM search_synonym_rules WHERE '
      || quote_literal(websearch_to_tsquery('english', ${text})::text) || '::tsquery @> target')`;
}

/** A lexeme in tsquery syntax: quoted, quotes doubled and backslashes escaped. */
function lexeme(text: string): string {
  return `'${text.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
}

/**
 * The filters as a query on `facets` (see the migration), '' for none. A price range selects the
 * price bands it overlaps; the exact bounds are checked on the rows found.
 */
export function facetQuery(f: Filters): string {
  const all: string[] = [];
  if (f.categoryId) all.push(lexeme(`C${f.categoryId}`));
  if (f.brandId) all.push(lexeme(`B${f.brandId}`));
  // In stock is most of a catalog: its term would make the index read most of each band, so it
  // is checked on the rows found (searchWindow); out of stock is rare, and worth a term.
  if (f.inStock === false) all.push(lexeme('S0'));
  if (f.minPrice !== undefined || f.maxPrice !== undefined) {
    const min = f.minPrice ?? 0;
    const max = f.maxPrice ?? Number.MAX_SAFE_INTEGER;
    const edges = PRICE_FILTER_EDGES;
    const bands: string[] = [];
    for (let b = 0; b <= edges.length; b++) {
      const low = b === 0 ? Number.NEGATIVE_INFINITY : edges[b - 1]!;
      const high = b === edges.length ? Number.POSITIVE_INFINITY : edges[b]!;
      if (low <= max && high > min) bands.push(lexeme(`P${f.currency}${b}`));
    }
    all.push(bands.length > 0 ? `(${bands.join(' | ')})` : lexeme('P-none'));
  }
  return all.join(' & ');
}

/**
 * Attribute filters. In the index: the words of each value (any of a name's values); on the rows
 * found: the exact name and value. An empty result means no attribute filter.
 */
function attributeTerms(sql: Sql, attributes: Filters['attributes']): Fragment | undefined {
  const names = Object.values(attributes).filter((values) => values.length > 0);
  if (names.length === 0) return undefined;
  return names
    .map((values): Fragment => sql`(${values.map((v): Fragment => sql`plainto_tsquery('simple', ${v})`).reduce((a, b) => sql`${a} || ${b}`)})`)
    .reduce((a, b) => sql`${a} && ${b}`);
}

/** Attribute filters, checked on the rows the index found: every name, any of its values. */
function attributeFilter(sql: Sql, attributes: Filters['attributes']): Fragment {
  return Object.entries(attributes)
    .filter(([, values]) => values.length > 0)
    .map(([name, values]): Fragment => {
      const any = values.map((v): Fragment => sql`d.attributes @> ${sql.json({ [name]: v })}`).reduce((a, b) => sql`${a} OR ${b}`);
      return sql`AND (${any})`;
    })
    // An empty array would be sent as a parameter: always interpolate one fragment.
    .reduce<Fragment>((a, b) => sql`${a} ${b}`, sql``);
}

/**
 * One statement: read candidates band by band, most popular band first, and stop once the windows
 * the page needs are full (the Append under the LIMIT never starts the later bands once it has
 * enough); rank the windows the page comes from by text relevance (only those: a deep page reads
 * the windows before its own without ranking them); return the page, and the first window as a
 * compact sample that facetsOf() counts into band counts and facets. When the first window is not
 * full, every match was read: the counts are exact. Cost follows the number of candidates read, however many documents match. When
 * nothing matches, the same statement looks the words up in the vocabulary for typo correction.
 *
 * Windows in read order (pages beyond the first window rank the next one) keep pages consistent:
 * every page of a query comes from the same ranking, with no gap and no repeat between pages.
 *
 * Every value the query depends on (words, filters, page, window) travels through the one-row CTE
 * q, never as a parameter in a WHERE clause or as text: a custom plan then knows nothing a generic
 * plan does not, so PostgreSQL settles on the cached generic plan after five executions and stops
 * planning this statement, and the text (so the prepared statement) is the same for every page
 * and every value. Each band's branch joins q (a nested loop whose inner side is the band's
 * index scan, parameterised by q's columns) rather than reading each value through its own
 * InitPlan: with an InitPlan per value per band, planning took ~15 ms, about five times the
 * execution; joined, ~1.5 ms. The plan it caches is the right one for every query: each band is
 * read through its own partial GIN index on (document, facets), the only index that serves both
 * conditions.
 */
export async function searchWindow(sql: Sql, w: WindowQuery): Promise<WindowResult> {
  const terms = facetQuery(w);
  const attributeWords = attributeTerms(sql, w.attributes);
  const facets = terms !== '' || attributeWords !== undefined;
  const facetsExpr =
    terms && attributeWords ? sql`(${terms}::tsquery && ${attributeWords})`
    : terms ? sql`${terms}::tsquery`
    : attributeWords ?? sql`NULL::tsquery`;
  const attributes = attributeFilter(sql, w.attributes);
  const price = w.minPrice !== undefined || w.maxPrice !== undefined;
  // Whole windows up to the one holding the page's last row, and one more row to tell "full".
  const windows = Math.max(1, Math.ceil((w.offset + w.limit) / w.window));
  // Windows before the page's first row: read (to know where the page's window starts), not sorted.
  const skipped = Math.floor(w.offset / w.window) * w.window;
  const bands: Pick<Band, 'position' | 'min' | 'max'>[] = w.bands.length > 0 ? [...w.bands] : [{ position: 0, min: null, max: null }];
  // The statement's text depends only on the bands and on which filters are present, never on
  // their values nor on the page: one prepared statement per shape, so every connection soon
  // runs it from its cached generic plan (with the page in the text, deep pages were planned on
  // every request). The price bounds and the in-stock flag are always in the text, as conditions
  // switched by q's flags, for the same reason.
  const branches = bands.map((band) => {
    const predicate = bandPredicate(band, 'd.popularity');
    return sql`
      (SELECT d.product_id, d.title, d.brand_id, d.brand_name, d.category_id, d.category_name,
              d.min_prices, d.in_stock, d.popularity, d.document, ${sql.unsafe(literalInt(band.position))} AS band
       FROM q CROSS JOIN search_documents d
       WHERE d.document @@ q.tsq
         ${facets ? sql`AND d.facets @@ q.facets` : sql``}
         AND (NOT q.priced OR (d.min_prices ->> q.currency)::bigint BETWEEN q.lo AND q.hi)
         AND (NOT q.in_stock_only OR d.in_stock)
         ${attributes}
         ${predicate ? sql.unsafe(`AND ${predicate}`) : sql``})`;
  });
  const union = branches.reduce((a, b) => sql`${a} UNION ALL ${b}`);
  const [row] = await sql<(Pick<WindowResult, 'items' | 'tsquery' | 'checks'> & { sample: SampleRow[] })[]>`
    WITH q AS MATERIALIZED (
      SELECT ${tsqueryOf(sql, w.text, w.synonyms)} AS tsq, ${facetsExpr} AS facets, ${w.currency}::text AS currency,
             ${price}::boolean AS priced, ${w.minPrice ?? 0}::bigint AS lo, ${w.maxPrice ?? Number.MAX_SAFE_INTEGER}::bigint AS hi,
             ${w.inStock === true}::boolean AS in_stock_only,
             ${w.window}::int AS win, ${windows * w.window + 1}::int AS cap, ${skipped}::int AS first_pos,
             ${windows * w.window}::int AS end_pos, ${w.limit}::int AS lim, ${w.offset - skipped}::int AS off,
             ${w.priceBandEdges as number[]}::bigint[] AS edges, ${w.words as string[]}::text[] AS words),
    -- row_number() over the Append streams: it does not make the scan read more than the LIMIT.
    -- Relevance only for the windows the page comes from, and the price only for those and the
    -- first window (the facets): a deep page reads (and counts) the windows before its own, and
    -- ranking and pricing those cost more than reading them.
    c AS MATERIALIZED (
      SELECT n.product_id, n.title, n.brand_id, n.brand_name, n.category_id, n.category_name, n.in_stock,
             n.popularity, n.band, n.pos,
             CASE WHEN n.pos >= q.first_pos AND n.pos < q.end_pos THEN ts_rank_cd(n.document, q.tsq) END AS rank,
             CASE WHEN n.pos < q.win OR (n.pos >= q.first_pos AND n.pos < q.end_pos) THEN (n.min_prices ->> q.currency)::bigint END AS price
      FROM (SELECT u.*, row_number() OVER () - 1 AS pos FROM (${union}) u LIMIT (SELECT cap FROM q)) n, q),
    -- The first window and one more row: the total, and the facets every page shows.
    f AS MATERIALIZED (
      SELECT pos, band, brand_id, brand_name, category_id, category_name, price FROM c, q WHERE pos <= q.win),
    -- The windows the page comes from (a page may straddle two).
    r AS (
      SELECT c.product_id, c.title, c.brand_name, c.category_name, c.price, c.in_stock, c.popularity, c.rank,
             c.pos / q.win AS win_no
      FROM c, q WHERE c.pos >= q.first_pos AND c.pos < q.end_pos)
    SELECT
      (SELECT tsq::text FROM q) AS tsquery,
      -- The first window, one compact row per candidate, counted into facets by facetsOf: one
      -- pass here instead of a grouping and a sort per facet.
      (SELECT coalesce(json_agg(json_build_array(band, brand_id::text, brand_name, category_id::text, category_name,
                                                 width_bucket(price, (SELECT edges FROM q))) ORDER BY pos), '[]')
         FROM f) AS sample,
      (SELECT coalesce(json_agg(json_build_object('id', x.product_id::text, 'title', x.title, 'brand', x.brand_name,
                                                  'category', x.category_name, 'price', x.price, 'inStock', x.in_stock,
                                                  'score', x.rank)
                                ORDER BY x.win_no, x.rank DESC, x.popularity DESC, x.product_id DESC), '[]')
         FROM (SELECT * FROM r
               ORDER BY win_no, rank DESC, popularity DESC, product_id DESC
               LIMIT (SELECT lim FROM q) OFFSET (SELECT off FROM q)) x) AS items,
      -- Only when nothing matched (an InitPlan is not run unless its value is needed). The
      -- vocabulary, not the documents: a word unknown to the index would make a scan of the
      -- documents read them all, where the vocabulary answers by its lexeme index.
      CASE WHEN (SELECT count(*) FROM f) = 0 THEN (
        SELECT coalesce(json_agg(json_build_object(
                 'word', v.word, 'stopWord', v.lexeme IS NULL,
                 'known', v.lexeme IS NOT NULL AND EXISTS (SELECT 1 FROM search_vocabulary k WHERE k.lexeme = v.lexeme),
                 'nearest', CASE WHEN v.lexeme IS NULL OR EXISTS (SELECT 1 FROM search_vocabulary k WHERE k.lexeme = v.lexeme) THEN '[]'::json ELSE
                   (SELECT coalesce(json_agg(json_build_array(n.word, n.documents)), '[]')
                      FROM (SELECT word, documents FROM search_vocabulary
                            WHERE position(' ' in word) = 0 ORDER BY word <-> v.word LIMIT ${sql.unsafe(literalInt(w.nearestMax))}) n) END)
               ORDER BY v.i), '[]')
        FROM (SELECT word, i, (tsvector_to_array(to_tsvector('english', word)))[1] AS lexeme
              FROM unnest((SELECT words FROM q)) WITH ORDINALITY AS x(word, i)) v) END AS checks`;
  if (!row) throw new Error('the search statement returned no row');
  const { sample, ...rest } = row;
  return { ...rest, ...facetsOf(sample, w.window, w.facetValuesMax) };
}

/** A candidate of the first window: [band, brand id, brand, category id, category, price band]. */
type SampleRow = [number, string | null, string | null, string | null, string | null, number | null];

/**
 * Counts of the first window: candidates per band (all read, the extra row too), and the facets
 * over the window itself (its first `window` rows): the most frequent values first, ties by id.
 * A value's label is the one of its first (most popular) candidate.
 */
export function facetsOf(sample: readonly SampleRow[], window: number, valuesMax: number): Pick<WindowResult, 'read' | 'perBand' | 'brand' | 'category' | 'price'> {
  const perBand = new Map<number, number>();
  const brand = new Map<string, [string, number]>();
  const category = new Map<string, [string, number]>();
  const price = new Map<number, number>();
  const add = (m: Map<string, [string, number]>, id: string | null, label: string | null): void => {
    if (id === null) return;
    const seen = m.get(id);
    if (seen) seen[1]++;
    else m.set(id, [label ?? '', 1]);
  };
  sample.forEach(([band, brandId, brandName, categoryId, categoryName, priceBand], i) => {
    perBand.set(band, (perBand.get(band) ?? 0) + 1);
    if (i >= window) return;
    add(brand, brandId, brandName);
    add(category, categoryId, categoryName);
    if (priceBand !== null) price.set(priceBand, (price.get(priceBand) ?? 0) + 1);
  });
  const top = (m: Map<string, [string, number]>): [string, string, number][] =>
    [...m]
      .map(([id, [label, n]]): [string, string, number] => [id, label, n])
      .sort((a, b) => b[2] - a[2] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .slice(0, valuesMax);
  const ascending = (m: Map<number, number>): [number, number][] => [...m].sort((a, b) => a[0] - b[0]);
  return { read: sample.length, perBand: ascending(perBand), brand: top(brand), category: top(category), price: ascending(price) };
}

// ---------------------------------------------------------------------------------------------
// Popularity tiers

export async function readBands(sql: Sql): Promise<Band[]> {
  const rows = await sql<{ position: number; min: number | null; max: number | null; documents: string; index_name: string }[]>`
    SELECT position, min_popularity AS min, max_popularity AS max, documents::text, index_name
    FROM search_tiers ORDER BY position`;
  return rows.map((r) => ({ position: r.position, min: r.min, max: r.max, documents: Number(r.documents), indexName: r.index_name }));
}

export async function documentCount(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: string }[]>`SELECT count(*)::text AS n FROM search_documents`;
  return Number(row?.n ?? 0);
}

/** The popularity of the documents at these fractions of the ranking, most popular first. */
export async function popularityAt(sql: Sql, fractions: readonly number[]): Promise<number[]> {
  if (fractions.length === 0) return [];
  const [row] = await sql<{ t: number[] | null }[]>`
    SELECT percentile_disc(${fractions as number[]}::float8[]) WITHIN GROUP (ORDER BY popularity DESC) AS t FROM search_documents`;
  return row?.t ?? [];
}

/** Documents per band for thresholds given most popular first (band i: t[i] <= p < t[i-1]). */
export async function documentsPerBand(sql: Sql, thresholds: readonly number[]): Promise<number[]> {
  const ascending = [...thresholds].reverse();
  const rows = await sql<{ band: number; n: string }[]>`
    SELECT ${thresholds.length}::int - width_bucket(popularity, ${ascending}::int[]) AS band, count(*)::text AS n
    FROM search_documents GROUP BY 1`;
  const out = new Array<number>(thresholds.length + 1).fill(0);
  for (const r of rows) out[r.band] = Number(r.n);
  return out;
}

const TIER_INDEX_NAME = /^search_tier_[0-9]+_[0-9]+$/;

/** Builds one band's partial index without blocking writes; can take minutes on a large catalog. */
export async function createBandIndex(pool: Pool, name: string, band: Pick<Band, 'min' | 'max'>): Promise<void> {
  if (!TIER_INDEX_NAME.test(name)) throw new Error(`not a tier index name: ${name}`);
  const conn = await pool.reserve();
  try {
    // The pools' statement timeout is for requests; an index build is not one.
    await conn`SET statement_timeout = 0`;
    await conn.unsafe(`DROP INDEX CONCURRENTLY IF EXISTS ${name}`).simple();
    // fastupdate off: every query reads these indexes, and a pending list would be scanned by each.
    await conn
      .unsafe(`CREATE INDEX CONCURRENTLY ${name} ON search_documents USING gin (document, facets) WITH (fastupdate = off)${band.min === null && band.max === null ? '' : ` WHERE ${bandPredicate(band)}`}`)
      .simple();
  } finally {
    await conn`RESET statement_timeout`.catch(() => undefined);
    conn.release();
  }
}

export async function dropBandIndex(pool: Pool, name: string): Promise<void> {
  if (!TIER_INDEX_NAME.test(name)) throw new Error(`not a tier index name: ${name}`);
  const conn = await pool.reserve();
  try {
    await conn`SET statement_timeout = 0`;
    await conn.unsafe(`DROP INDEX CONCURRENTLY IF EXISTS ${name}`).simple();
  } finally {
    await conn`RESET statement_timeout`.catch(() => undefined);
    conn.release();
  }
}

/** Tier indexes that exist, whether recorded in search_tiers or left behind by an interrupted build. */
export async function bandIndexes(sql: Sql): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    SELECT indexname AS name FROM pg_indexes WHERE tablename = 'search_documents' AND indexname LIKE 'search\\_tier\\_%' ORDER BY 1`;
  return rows.map((r) => r.name).filter((n) => TIER_INDEX_NAME.test(n));
}

export async function replaceBands(sql: Sql, bands: readonly Band[]): Promise<void> {
  await sql`DELETE FROM search_tiers`;
  for (const b of bands) {
    await sql`
      INSERT INTO search_tiers (position, min_popularity, max_popularity, documents, index_name)
      VALUES (${b.position}, ${b.min}, ${b.max}, ${b.documents}, ${b.indexName})`;
  }
}

export interface IndexBuildProgress {
  phase: string;
  blocksDone: number;
  blocksTotal: number;
  tuplesDone: number;
  tuplesTotal: number;
}

export async function indexBuildProgress(sql: Sql): Promise<IndexBuildProgress | undefined> {
  const [row] = await sql<{ phase: string; blocks_done: string; blocks_total: string; tuples_done: string; tuples_total: string }[]>`
    SELECT phase, blocks_done::text, blocks_total::text, tuples_done::text, tuples_total::text
    FROM pg_stat_progress_create_index WHERE relid = to_regclass('search_documents')`;
  if (!row) return undefined;
  return {
    phase: row.phase,
    blocksDone: Number(row.blocks_done),
    blocksTotal: Number(row.blocks_total),
    tuplesDone: Number(row.tuples_done),
    tuplesTotal: Number(row.tuples_total),
  };
}

/**
 * After a full rewrite of the documents: VACUUM makes the old row versions' space reusable (a full
 * pass leaves one dead version per document) and merges the GIN pending lists; ANALYZE refreshes
 * the statistics, so the first queries plan as later ones will.
 */
export async function vacuumDocuments(pool: Pool): Promise<void> {
  const conn = await pool.reserve();
  try {
    await conn`SET statement_timeout = 0`;
    await conn.unsafe('VACUUM (ANALYZE) search_documents').simple();
  } finally {
    await conn`RESET statement_timeout`.catch(() => undefined);
    conn.release();
  }
}

export interface RelationSize {
  name: string;
  kind: 'table' | 'index';
  bytes: number;
}

/** The search tables and every index on them, largest first (pg_relation_size: main fork only). */
export async function relationSizes(sql: Sql): Promise<RelationSize[]> {
  const rows = await sql<{ name: string; kind: 'table' | 'index'; bytes: string }[]>`
    SELECT c.relname AS name, CASE c.relkind WHEN 'i' THEN 'index' ELSE 'table' END AS kind,
           (pg_relation_size(c.oid) + coalesce(pg_relation_size(c.reltoastrelid), 0))::text AS bytes
    FROM pg_class c
    WHERE c.relname IN ('search_documents', 'search_vocabulary', 'search_tiers', 'search_synonyms', 'search_synonym_rules')
       OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN (to_regclass('search_documents'), to_regclass('search_vocabulary')))
    ORDER BY pg_relation_size(c.oid) DESC`;
  return rows.map((r) => ({ name: r.name, kind: r.kind, bytes: Number(r.bytes) }));
}

// ---------------------------------------------------------------------------------------------
// Vocabulary

export interface VocabularyWord {
  word: string;
  documents: number;
  suggest: boolean;
}

/**
 * One product's words, after its document was written: new words enter with one document; a new
 * document counts its words once more. Rows that would not change are not rewritten.
 */
export async function addWords(sql: Sql, words: readonly { word: string; suggest: boolean }[], newDocument: boolean): Promise<void> {
  if (words.length === 0) return;
  // Sorted, so two indexers never lock the same words in opposite orders.
  const sorted = [...words].sort((a, b) => (a.word < b.word ? -1 : a.word > b.word ? 1 : 0));
  await sql`
    INSERT INTO search_vocabulary AS v (word, documents, suggest, lexeme)
    -- Booleans travel as text: postgres.js sends a boolean array as one boolean.
    SELECT w, 1, s, (tsvector_to_array(to_tsvector('english', w)))[1] FROM unnest(${sorted.map((w) => w.word)}::text[], ${sorted.map((w) => String(w.suggest))}::text[]::boolean[]) AS x(w, s)
    ON CONFLICT (word) DO UPDATE SET
      documents = v.documents + ${newDocument ? 1 : 0},
      suggest = v.suggest OR EXCLUDED.suggest
    WHERE ${newDocument} OR (EXCLUDED.suggest AND NOT v.suggest)`;
}

/** Replaces the whole vocabulary (call inside a transaction, so readers never see it empty). */
export async function replaceVocabulary(sql: Sql, words: readonly VocabularyWord[]): Promise<void> {
  await sql`DELETE FROM search_vocabulary`;
  const chunk = 20_000;
  for (let i = 0; i < words.length; i += chunk) {
    const part = words.slice(i, i + chunk);
    await sql`
      INSERT INTO search_vocabulary (word, documents, suggest, lexeme)
      SELECT w, n, s, (tsvector_to_array(to_tsvector('english', w)))[1]
      FROM unnest(${part.map((w) => w.word)}::text[], ${part.map((w) => w.documents)}::int[], ${part.map((w) => String(w.suggest))}::text[]::boolean[]) AS x(w, n, s)`;
  }
}

export interface WordCheck {
  word: string;
  /** The word has no lexeme (a stop word such as "the"): it never makes a query fail. */
  stopWord: boolean;
  /** The vocabulary holds a word of the same lexeme (so the index does). */
  known: boolean;
  /** Nearest vocabulary words by trigram distance: [word, documents]. */
  nearest: [string, number][];
}

/** Words and names starting with a prefix, most frequent first. */
export async function wordsStartingWith(sql: Sql, prefix: string, limit: number): Promise<{ word: string; documents: number }[]> {
  // A range instead of LIKE: the prefix is a parameter, and text_pattern_ops serves ~>=~ / ~<~.
  return sql<{ word: string; documents: number }[]>`
    SELECT word, documents FROM search_vocabulary
    WHERE suggest AND word ~>=~ ${prefix} AND word ~<~ ${prefix + '\u{10FFFF}'}
    ORDER BY documents DESC, word LIMIT ${limit}`;
}

// ---------------------------------------------------------------------------------------------
// Synonyms

export async function readSynonyms(sql: Sql): Promise<string[][]> {
  const rows = await sql<{ terms: string[] }[]>`SELECT terms FROM search_synonyms ORDER BY position`;
  return rows.map((r) => r.terms);
}

/**
 * Replaces every group (call inside a transaction). One rule per term whose query has words:
 * its query (a phrase for several words) is replaced by the OR of its group's queries.
 */
export async function replaceSynonyms(sql: Sql, groups: readonly (readonly string[])[]): Promise<void> {
  await sql`DELETE FROM search_synonym_rules`;
  await sql`DELETE FROM search_synonyms`;
  for (const [position, terms] of groups.entries()) {
    await sql`INSERT INTO search_synonyms (position, terms) VALUES (${position}, ${terms as string[]})`;
    await sql`
      WITH t AS (SELECT phraseto_tsquery('english', term) AS q, plainto_tsquery('english', term) AS target
                 FROM unnest(${terms as string[]}::text[]) AS term),
      g AS (SELECT (SELECT string_agg('(' || q::text || ')', ' | ') FROM t WHERE numnode(q) > 0)::tsquery AS substitute)
      INSERT INTO search_synonym_rules (target, substitute)
      SELECT t.target, g.substitute FROM t, g WHERE numnode(t.target) > 0 AND g.substitute IS NOT NULL`;
  }
}

export async function synonymRuleCount(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM search_synonym_rules`;
  return row?.n ?? 0;
}
