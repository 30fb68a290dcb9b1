// Catalog: brands, a category tree, products with variants (unique SKU) and prices per currency.
// It is reference data: written by admins on the catalog primary, read everywhere.
import type { Databases, Sql } from '../../platform/db.ts';
import { pgCode, PG, transaction } from '../../platform/db.ts';
import { AppError } from '../../platform/errors.ts';
import { encodeCursor } from '../../platform/http.ts';
import type { Id } from '../../platform/ids.ts';
import { LIMITS } from '../../platform/limits.ts';
import { money, type Money } from '../../platform/money.ts';
import { emit } from '../../events/outbox.ts';
import type { Cache } from '../../platform/cache.ts';
import type { Lsn, Reader, ReplicaSet } from '../../platform/replicas.ts';
import * as repo from './repository.ts';

export interface Variant {
  id: Id;
  sku: string;
  title: string;
  options: Record<string, string>;
  inStock: boolean;
  /** Price in the requested currency, null when the variant has none in it. */
  price: Money | null;
  prices: Money[];
}

export interface Product {
  id: Id;
  title: string;
  description: string;
  status: 'active' | 'archived';
  brand: { id: Id; name: string } | null;
  category: { id: Id; name: string; path: string } | null;
  options: { name: string; values: string[] }[];
  attributes: Record<string, unknown>;
  popularity: number;
  variants: Variant[];
  createdAt: string;
  updatedAt: string;
}

export interface ProductListQuery {
  limit: number;
  cursor: Id | undefined;
  category?: Id | undefined;
  brand?: Id | undefined;
  minPrice?: number | undefined;
  maxPrice?: number | undefined;
  inStock?: boolean | undefined;
  currency: string;
}

export interface CreateProduct {
  title: string;
  description?: string | undefined;
  brandId?: Id | null | undefined;
  categoryId?: Id | null | undefined;
  options?: { name: string; values: string[] }[] | undefined;
  attributes?: Record<string, unknown> | undefined;
  popularity?: number | undefined;
  variants: { sku: string; title?: string | undefined; options?: Record<string, string> | undefined; prices: Money[] }[];
}

export type UpdateProduct = Partial<Omit<CreateProduct, 'variants'>> & {
  status?: 'active' | 'archived' | undefined;
  variants?: CreateProduct['variants'] | undefined;
};

/** A priced line for checkout: only the server decides what something costs. */
export interface PricedSku {
  sku: string;
  productId: Id;
  title: string;
  unitPrice: Money;
}

function toProduct(row: repo.ProductRow, currency: string): Product {
  return {
    id: row.id,
    title: row.title,
    description: row.description,
    status: row.status,
    brand: row.brand,
    category: row.category,
    options: row.options,
    attributes: row.attributes,
    popularity: row.popularity,
    variants: row.variants.map((v) => {
      const p = v.prices.find((x) => x.currency === currency);
      return { ...v, price: p ? money(p.amount, p.currency) : null };
    }),
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

function slugify(name: string): string {
  return name.toLowerCase().normalize('NFKD').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 80) || 'x';
}

function checkAttributesSize(attributes: Record<string, unknown> | undefined): void {
  if (attributes && Buffer.byteLength(JSON.stringify(attributes)) > LIMITS.attributesJsonBytesMax) {
    throw new AppError('validation_failed', `attributes must be at most ${LIMITS.attributesJsonBytesMax} bytes of JSON`);
  }
}

export interface CatalogCaches {
  product: Cache<Product>;
  list: Cache<ProductPage>;
}

export type ProductPage = { items: Product[]; nextCursor: string | null };

export const PRODUCT_CACHE = 'product';
export const PRODUCT_LIST_CACHE = 'product-list';

/** Cache keys a change of this product makes stale (for CacheBus.publish). */
export function staleKeysFor(productId: Id): { cache: string; key: string }[] {
  return [
    { cache: PRODUCT_CACHE, key: `${productId}:*` },
    { cache: PRODUCT_LIST_CACHE, key: '*' },
  ];
}

export class CatalogService {
  constructor(
    private readonly dbs: Databases,
    private readonly replicas?: ReplicaSet,
    private readonly caches?: CatalogCaches,
  ) {}

  private reader(atLeast: Lsn | undefined): Reader {
    return this.replicas?.reader(atLeast) ?? { pool: this.db, lsn: 0n, served: 'primary' };
  }

  /**
   * Shopper-facing reads: the cache, then a standby (or the primary). With `atLeast` (the
   * client's last write position) nothing older than that write is served. On a cache hit, the
   * common case, no reader or loader closure is made: only a miss needs them.
   */
  async browseProduct(id: Id, currency: string, atLeast?: Lsn): Promise<Product> {
    const key = `${id}:${currency}`;
    const cached = this.caches?.product.hit(key, atLeast);
    if (cached) return cached;
    const reader = this.reader(atLeast);
    const load = (): Promise<Product> => this.productFrom(reader.pool, id, currency);
    if (!this.caches) return load();
    return this.caches.product.getOrLoad(key, load, { minVersion: atLeast, version: reader.lsn });
  }

  async browseProducts(q: ProductListQuery, atLeast?: Lsn): Promise<ProductPage> {
    const key = JSON.stringify(q);
    const cached = this.caches?.list.hit(key, atLeast);
    if (cached) return cached;
    const reader = this.reader(atLeast);
    const load = (): Promise<ProductPage> => this.listFrom(reader.pool, q);
    if (!this.caches) return load();
    return this.caches.list.getOrLoad(key, load, { minVersion: atLeast, version: reader.lsn });
  }

  private forget(productId: Id): void {
    for (const { cache, key } of staleKeysFor(productId)) {
      (cache === PRODUCT_CACHE ? this.caches?.product : this.caches?.list)?.invalidate(key);
    }
  }

  private get db(): ReturnType<Databases['core']> {
    return this.dbs.core('catalog');
  }

  /** Fresh from the primary: for writers, indexers and anything that decides. */
  async getProduct(id: Id, currency: string): Promise<Product> {
    return this.productFrom(this.db, id, currency);
  }

  private async productFrom(db: Sql, id: Id, currency: string): Promise<Product> {
    const row = await repo.findProduct(db, id);
    if (!row) throw new AppError('not_found', 'product not found');
    return toProduct(row, currency);
  }

  /** Fresh from the primary: for writers, indexers and anything that decides. */
  async listProducts(q: ProductListQuery): Promise<ProductPage> {
    return this.listFrom(this.db, q);
  }

  private async listFrom(db: Sql, q: ProductListQuery): Promise<ProductPage> {
    let categoryPath: string | undefined;
    if (q.category) {
      const category = await repo.findCategory(db, q.category);
      if (!category) return { items: [], nextCursor: null };
      categoryPath = category.path;
    }
    const rows = await repo.listProducts(db, {
      afterId: q.cursor,
      limit: q.limit + 1,
      categoryPath,
      brandId: q.brand,
      currency: q.currency,
      minPrice: q.minPrice,
      maxPrice: q.maxPrice,
      inStock: q.inStock,
    });
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    return {
      items: page.map((r) => toProduct(r, q.currency)),
      nextCursor: rows.length > q.limit && last ? encodeCursor([last.id]) : null,
    };
  }

  async createProduct(input: CreateProduct): Promise<Product> {
    checkAttributesSize(input.attributes);
    await this.checkReferences(input.brandId, input.categoryId);
    const id = await this.writeOrMapConflicts(() =>
      transaction(this.db, async (tx) => {
        const productId = await repo.insertProduct(tx, {
          title: input.title,
          description: input.description ?? '',
          brandId: input.brandId ?? null,
          categoryId: input.categoryId ?? null,
          options: input.options ?? [],
          attributes: input.attributes ?? {},
          popularity: input.popularity ?? 0,
        });
        await this.writeVariants(tx, productId, input.variants);
        await emit(tx, 'product.changed', productId, { productId });
        return productId;
      }),
    );
    this.forget(id);
    return this.getProduct(id, input.variants[0]?.prices[0]?.currency ?? 'USD');
  }

  async updateProduct(id: Id, patch: UpdateProduct, currency: string): Promise<Product> {
    checkAttributesSize(patch.attributes);
    await this.checkReferences(patch.brandId, patch.categoryId);
    await this.writeOrMapConflicts(() =>
      transaction(this.db, async (tx) => {
        const { variants, ...fields } = patch;
        if (!(await repo.updateProduct(tx, id, fields))) throw new AppError('not_found', 'product not found');
        if (variants) await this.writeVariants(tx, id, variants);
        await emit(tx, 'product.changed', id, { productId: id });
      }),
    );
    this.forget(id); // this process at once; others when the event is relayed
    return this.getProduct(id, currency);
  }

  private async writeVariants(tx: Parameters<typeof repo.upsertVariants>[0], productId: Id, variants: CreateProduct['variants']): Promise<void> {
    const ok = await repo.upsertVariants(
      tx,
      productId,
      variants.map((v) => ({ sku: v.sku, title: v.title ?? '', options: v.options ?? {}, prices: v.prices })),
    );
    if (!ok) throw new AppError('sku_taken', 'a SKU in this request belongs to another product');
  }

  private async writeOrMapConflicts<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (err) {
      if (pgCode(err) === PG.uniqueViolation) throw new AppError('sku_taken', 'a SKU in this request already exists');
      throw err;
    }
  }

  private async checkReferences(brandId: Id | null | undefined, categoryId: Id | null | undefined): Promise<void> {
    if (brandId && !(await repo.findBrand(this.db, brandId))) throw new AppError('validation_failed', `brand ${brandId} does not exist`);
    if (categoryId && !(await repo.findCategory(this.db, categoryId))) {
      throw new AppError('validation_failed', `category ${categoryId} does not exist`);
    }
  }

  /** Server-side prices for checkout and carts, read from the primary. */
  async priceSkus(skus: readonly string[], currency: string): Promise<Map<string, PricedSku>> {
    const rows = await repo.pricesForSkus(this.db, [...new Set(skus)], currency);
    const out = new Map<string, PricedSku>();
    for (const r of rows) {
      if (r.active && r.amount !== null) out.set(r.sku, { sku: r.sku, productId: r.productId, title: r.title, unitPrice: money(r.amount, currency) });
    }
    return out;
  }

  async skuExists(sku: string): Promise<boolean> {
    return repo.skuExists(this.db, sku);
  }

  /** Set the inStock flags of many SKUs; products whose flags changed are announced. */
  async setSkusInStock(flags: readonly { sku: string; inStock: boolean }[]): Promise<void> {
    if (flags.length === 0) return;
    await transaction(this.db, async (tx) => {
      for (const productId of await repo.setInStock(tx, flags)) await emit(tx, 'product.changed', productId, { productId });
    });
  }

  async createBrand(name: string): Promise<repo.BrandRow> {
    const row = await repo.insertBrand(this.db, name, slugify(name));
    if (!row) throw new AppError('validation_failed', `a brand named "${name}" exists`);
    return row;
  }

  listBrands(): Promise<repo.BrandRow[]> {
    return repo.listBrands(this.db, 1000);
  }

  async createCategory(name: string, parentId: Id | null): Promise<repo.CategoryRow> {
    let parentPath: string | null = null;
    if (parentId) {
      const parent = await repo.findCategory(this.db, parentId);
      if (!parent) throw new AppError('validation_failed', `category ${parentId} does not exist`);
      parentPath = parent.path;
    }
    const slug = parentPath ? `${slugify(name)}-${parentId}` : slugify(name);
    const row = await repo.insertCategory(this.db, name, slug, parentPath);
    if (!row) throw new AppError('validation_failed', `a category "${name}" exists there`);
    return row;
  }

  listCategories(): Promise<repo.CategoryRow[]> {
    return repo.listCategories(this.db, 5000);
  }

  async findCategory(id: Id): Promise<repo.CategoryRow | undefined> {
    return repo.findCategory(this.db, id);
  }
}
