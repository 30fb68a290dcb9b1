import type { Sql } from '../../platform/db.ts';
import type { Id } from '../../platform/ids.ts';
import type { Money } from '../../platform/money.ts';

export interface VariantView {
  id: Id;
  sku: string;
  title: string;
  options: Record<string, string>;
  inStock: boolean;
  prices: Money[];
}

export interface ProductRow {
  id: Id;
  title: string;
  description: string;
  status: 'active' | 'archived';
  brand: { id: Id; name: string } | null;
  category: { id: Id; name: string; path: string } | null;
  options: { name: string; values: string[] }[];
  attributes: Record<string, unknown>;
  popularity: number;
  created_at: Date;
  updated_at: Date;
  variants: VariantView[];
}

export interface VariantInput {
  sku: string;
  title: string;
  options: Record<string, string>;
  prices: Money[];
}

export interface ProductInput {
  title: string;
  description: string;
  brandId: Id | null;
  categoryId: Id | null;
  options: { name: string; values: string[] }[];
  attributes: Record<string, unknown>;
  popularity: number;
}

/** Products with brand, category and variants (with prices) nested as JSON: one round trip. */
function productSelect(sql: Sql): ReturnType<Sql> {
  return sql`
    SELECT p.id::text, p.title, p.description, p.status, p.options, p.attributes, p.popularity,
      p.created_at, p.updated_at,
      (SELECT json_build_object('id', b.id::text, 'name', b.name) FROM brands b WHERE b.id = p.brand_id) AS brand,
      (SELECT json_build_object('id', c.id::text, 'name', c.name, 'path', c.path) FROM categories c WHERE c.id = p.category_id) AS category,
      COALESCE((
        SELECT json_agg(json_build_object(
          'id', v.id::text, 'sku', v.sku, 'title', v.title, 'options', v.options, 'inStock', v.in_stock,
          'prices', COALESCE((SELECT json_agg(json_build_object('amount', pr.amount, 'currency', pr.currency) ORDER BY pr.currency)
                              FROM prices pr WHERE pr.variant_id = v.id), '[]'::json)
        ) ORDER BY v.position, v.id)
        FROM variants v WHERE v.product_id = p.id), '[]'::json) AS variants
    FROM products p`;
}

export async function findProduct(sql: Sql, id: Id): Promise<ProductRow | undefined> {
  const [row] = await sql<ProductRow[]>`${productSelect(sql)} WHERE p.id = ${id}`;
  return row;
}

export interface ListFilter {
  afterId: Id | undefined;
  limit: number;
  categoryPath: string | undefined;
  brandId: Id | undefined;
  currency: string;
  minPrice: number | undefined;
  maxPrice: number | undefined;
  inStock: boolean | undefined;
}

/** Keyset page of active products, newest first. Every filter is served by an index. */
export async function listProducts(sql: Sql, f: ListFilter): Promise<ProductRow[]> {
  const priceFilter =
    f.minPrice !== undefined || f.maxPrice !== undefined
      ? sql`AND EXISTS (SELECT 1 FROM variants v JOIN prices pr ON pr.variant_id = v.id
                        WHERE v.product_id = p.id AND pr.currency = ${f.currency}
                          AND pr.amount >= ${f.minPrice ?? 0} AND pr.amount <= ${f.maxPrice ?? Number.MAX_SAFE_INTEGER})`
      : sql``;
  return sql<ProductRow[]>`
    ${productSelect(sql)}
    WHERE p.status = 'active'
      ${f.afterId ? sql`AND p.id < ${f.afterId}` : sql``}
      ${f.brandId ? sql`AND p.brand_id = ${f.brandId}` : sql``}
      ${f.categoryPath ? sql`AND p.category_id IN (SELECT id FROM categories WHERE path LIKE ${f.categoryPath + '%'})` : sql``}
      ${f.inStock === true ? sql`AND EXISTS (SELECT 1 FROM variants v WHERE v.product_id = p.id AND v.in_stock)` : sql``}
      ${f.inStock === false ? sql`AND NOT EXISTS (SELECT 1 FROM variants v WHERE v.product_id = p.id AND v.in_stock)` : sql``}
      ${priceFilter}
    ORDER BY p.id DESC
    LIMIT ${f.limit}`;
}

export async function insertProduct(sql: Sql, p: ProductInput): Promise<Id> {
  const [row] = await sql<{ id: Id }[]>`
    INSERT INTO products (title, description, brand_id, category_id, options, attributes, popularity)
    VALUES (${p.title}, ${p.description}, ${p.brandId}, ${p.categoryId}, ${sql.json(p.options as never)},
            ${sql.json(p.attributes as never)}, ${p.popularity})
    RETURNING id::text`;
  if (!row) throw new Error('insert returned nothing');
  return row.id;
}

export async function updateProduct(sql: Sql, id: Id, patch: Partial<ProductInput> & { status?: 'active' | 'archived' }): Promise<boolean> {
  const rows = await sql`
    UPDATE products SET
      title = COALESCE(${patch.title ?? null}, title),
      description = COALESCE(${patch.description ?? null}, description),
      brand_id = ${patch.brandId === undefined ? sql`brand_id` : sql`${patch.brandId}`},
      category_id = ${patch.categoryId === undefined ? sql`category_id` : sql`${patch.categoryId}`},
      options = COALESCE(${patch.options ? sql.json(patch.options as never) : null}::jsonb, options),
      attributes = COALESCE(${patch.attributes ? sql.json(patch.attributes as never) : null}::jsonb, attributes),
      popularity = COALESCE(${patch.popularity ?? null}, popularity),
      status = COALESCE(${patch.status ?? null}, status),
      updated_at = now()
    WHERE id = ${id} RETURNING id`;
  return rows.length === 1;
}

/** Insert or update variants by SKU; returns false when a SKU belongs to another product. */
export async function upsertVariants(sql: Sql, productId: Id, variants: readonly VariantInput[]): Promise<boolean> {
  for (const [position, v] of variants.entries()) {
    const [row] = await sql<{ id: Id; product_id: Id }[]>`
      INSERT INTO variants (product_id, sku, title, options, position)
      VALUES (${productId}, ${v.sku}, ${v.title}, ${sql.json(v.options)}, ${position})
      ON CONFLICT (sku) DO UPDATE SET title = EXCLUDED.title, options = EXCLUDED.options
        WHERE variants.product_id = EXCLUDED.product_id
      RETURNING id::text, product_id::text`;
    if (!row) return false; // the SKU exists on another product: the conflict update did not apply
    for (const price of v.prices) {
      await sql`
        INSERT INTO prices (variant_id, currency, amount) VALUES (${row.id}, ${price.currency}, ${price.amount})
        ON CONFLICT (variant_id, currency) DO UPDATE SET amount = EXCLUDED.amount`;
    }
  }
  return true;
}

export interface SkuPrice {
  sku: string;
  productId: Id;
  title: string;
  active: boolean;
  amount: number | null;
}

export async function pricesForSkus(sql: Sql, skus: readonly string[], currency: string): Promise<SkuPrice[]> {
  // A function, not the query itself: see migrations/002_sku_prices_function.sql.
  const rows = await sql<{ r_sku: string; r_product_id: Id; r_title: string; r_status: string; r_amount: string | null }[]>`
    SELECT r_sku, r_product_id::text, r_title, r_status, r_amount FROM catalog_sku_prices(${skus as string[]}, ${currency})`;
  return rows.map((r) => ({
    sku: r.r_sku,
    productId: r.r_product_id,
    title: r.r_title,
    active: r.r_status === 'active',
    amount: r.r_amount === null ? null : Number(r.r_amount),
  }));
}

/** One statement for many SKUs; returns the products whose flags changed. */
export async function setInStock(sql: Sql, flags: readonly { sku: string; inStock: boolean }[]): Promise<Id[]> {
  const rows = await sql<{ product_id: Id }[]>`
    UPDATE variants v SET in_stock = f.in_stock
    FROM unnest(${flags.map((f) => f.sku)}::text[], ${flags.map((f) => (f.inStock ? 'true' : 'false'))}::text[]::boolean[]) AS f(sku, in_stock)
    WHERE v.sku = f.sku AND v.in_stock IS DISTINCT FROM f.in_stock
    RETURNING v.product_id::text`;
  return [...new Set(rows.map((r) => r.product_id))];
}

export interface BrandRow { id: Id; name: string; slug: string }
export interface CategoryRow { id: Id; parent_id: Id | null; name: string; slug: string; path: string }

export async function insertBrand(sql: Sql, name: string, slug: string): Promise<BrandRow | undefined> {
  const [row] = await sql<BrandRow[]>`
    INSERT INTO brands (name, slug) VALUES (${name}, ${slug}) ON CONFLICT DO NOTHING RETURNING id::text, name, slug`;
  return row;
}

export async function listBrands(sql: Sql, limit: number): Promise<BrandRow[]> {
  return sql<BrandRow[]>`SELECT id::text, name, slug FROM brands ORDER BY name LIMIT ${limit}`;
}

export async function findBrand(sql: Sql, id: Id): Promise<BrandRow | undefined> {
  const [row] = await sql<BrandRow[]>`SELECT id::text, name, slug FROM brands WHERE id = ${id}`;
  return row;
}

export async function insertCategory(sql: Sql, name: string, slug: string, parentPath: string | null): Promise<CategoryRow | undefined> {
  const [row] = await sql<CategoryRow[]>`
    WITH new AS (SELECT meridian_id(0) AS id)
    INSERT INTO categories (id, parent_id, name, slug, path)
    SELECT new.id, ${parentPath === null ? null : sql`(SELECT id FROM categories WHERE path = ${parentPath})`},
           ${name}, ${slug}, ${parentPath ?? '/'} || new.id || '/'
    FROM new
    ON CONFLICT (slug) DO NOTHING
    RETURNING id::text, parent_id::text, name, slug, path`;
  return row;
}

export async function findCategory(sql: Sql, id: Id): Promise<CategoryRow | undefined> {
  const [row] = await sql<CategoryRow[]>`SELECT id::text, parent_id::text, name, slug, path FROM categories WHERE id = ${id}`;
  return row;
}

export async function listCategories(sql: Sql, limit: number): Promise<CategoryRow[]> {
  return sql<CategoryRow[]>`SELECT id::text, parent_id::text, name, slug, path FROM categories ORDER BY path LIMIT ${limit}`;
}

export async function skuExists(sql: Sql, sku: string): Promise<boolean> {
  return (await sql`SELECT 1 FROM variants WHERE sku = ${sku}`).length === 1;
}
