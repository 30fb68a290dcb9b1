import type { Sql } from '../../platform/db.ts';
import type { Id } from '../../platform/ids.ts';

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
  minPrices: Record<string, number>;
  inStock: boolean;
  popularity: number;
}

/** Weights: title A, brand and category B, attributes C, description D. */
export async function upsertDocument(sql: Sql, d: SearchDocumentInput): Promise<void> {
  await sql`
    INSERT INTO search_documents (product_id, title, brand_id, brand_name, category_id, category_path, category_name,
                                  min_prices, in_stock, popularity, document, updated_at)
    VALUES (${d.productId}, ${d.title}, ${d.brandId}, ${d.brandName}, ${d.categoryId}, ${d.categoryPath}, ${d.categoryName},
            ${sql.json(d.minPrices)}, ${d.inStock}, ${d.popularity},
            setweight(to_tsvector('english', ${d.title}), 'A') ||
            setweight(to_tsvector('english', coalesce(${d.brandName}, '') || ' ' || coalesce(${d.categoryName}, '')), 'B') ||
            setweight(to_tsvector('english', ${d.attributesText}), 'C') ||
            setweight(to_tsvector('english', ${d.description}), 'D'),
            now())
    ON CONFLICT (product_id) DO UPDATE SET
      title = EXCLUDED.title, brand_id = EXCLUDED.brand_id, brand_name = EXCLUDED.brand_name,
      category_id = EXCLUDED.category_id, category_path = EXCLUDED.category_path, category_name = EXCLUDED.category_name,
      min_prices = EXCLUDED.min_prices, in_stock = EXCLUDED.in_stock, popularity = EXCLUDED.popularity,
      document = EXCLUDED.document, updated_at = now()`;
}

export async function deleteDocument(sql: Sql, productId: Id): Promise<void> {
  await sql`DELETE FROM search_documents WHERE product_id = ${productId}`;
}

export interface SearchFilter {
  q: string;
  categoryPath: string | undefined;
  brandId: Id | undefined;
  currency: string;
  minPrice: number | undefined;
  maxPrice: number | undefined;
  inStock: boolean | undefined;
}

function where(sql: Sql, f: SearchFilter): ReturnType<Sql> {
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
