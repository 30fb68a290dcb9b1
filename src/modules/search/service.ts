// Product search, first version: PostgreSQL full-text search over a denormalised document per
// product (title, brand, category, attributes, description), with filters and facet counts.
import type { Databases, Pool } from '../../platform/db.ts';
import type { Lsn, ReplicaSet } from '../../platform/replicas.ts';
import type { Id } from '../../platform/ids.ts';
import type { Money } from '../../platform/money.ts';
import { money } from '../../platform/money.ts';
import type { CatalogService, Product } from '../catalog/service.ts';
import * as repo from './repository.ts';

export interface SearchQuery {
  q: string;
  limit: number;
  page: number;
  category?: Id | undefined;
  brand?: Id | undefined;
  minPrice?: number | undefined;
  maxPrice?: number | undefined;
  inStock?: boolean | undefined;
  currency: string;
}

export interface SearchResult {
  items: { id: Id; title: string; brand: string | null; category: string | null; price: Money | null; inStock: boolean; score: number }[];
  facets: { brand: { value: string; label: string; count: number }[]; category: { value: string; label: string; count: number }[] };
  total: number;
  page: number;
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
    minPrices,
    inStock: p.variants.some((v) => v.inStock),
    popularity: p.popularity,
  };
}

export class SearchService {
  constructor(
    private readonly dbs: Databases,
    private readonly catalog: CatalogService,
    private readonly replicas?: ReplicaSet,
  ) {}

  private get db(): Pool {
    return this.dbs.core('catalog');
  }

  /** Served by a standby when one is healthy (and has replayed past atLeast, if given). */
  async search(q: SearchQuery, atLeast?: Lsn): Promise<SearchResult> {
    const db = this.replicas?.reader(atLeast).pool ?? this.db;
    let categoryPath: string | undefined;
    if (q.category) {
      const c = await this.catalog.findCategory(q.category);
      if (!c) return { items: [], facets: { brand: [], category: [] }, total: 0, page: q.page };
      categoryPath = c.path;
    }
    const f: repo.SearchFilter = {
      q: q.q,
      categoryPath,
      brandId: q.brand,
      currency: q.currency,
      minPrice: q.minPrice,
      maxPrice: q.maxPrice,
      inStock: q.inStock,
    };
    const [hits, total, brand, category] = await Promise.all([
      repo.search(db, f, q.limit, (q.page - 1) * q.limit),
      repo.count(db, f),
      repo.facet(db, f, 'brand'),
      repo.facet(db, f, 'category'),
    ]);
    return {
      items: hits.map((h) => ({
        id: h.product_id,
        title: h.title,
        brand: h.brand_name,
        category: h.category_name,
        price: h.min_price === null ? null : money(h.min_price, q.currency),
        inStock: h.in_stock,
        score: h.rank,
      })),
      facets: { brand, category },
      total,
      page: q.page,
    };
  }

  /** Bring one product's document up to date (idempotent: safe for at-least-once events). */
  async reindexProduct(productId: Id): Promise<void> {
    const product = await this.catalog.getProduct(productId, 'USD').catch(() => undefined);
    if (!product || product.status !== 'active') {
      await repo.deleteDocument(this.db, productId);
      return;
    }
    await repo.upsertDocument(this.db, documentFor(product));
  }

  /** Rebuild every document, reporting progress. */
  async reindexAll(onProgress: (done: number) => void = () => undefined): Promise<number> {
    let cursor: Id | undefined;
    let done = 0;
    for (;;) {
      const page = await this.catalog.listProducts({ limit: 100, cursor, currency: 'USD' });
      for (const p of page.items) await repo.upsertDocument(this.db, documentFor(p));
      done += page.items.length;
      onProgress(done);
      const last = page.items[page.items.length - 1];
      if (!page.nextCursor || !last) return done;
      cursor = last.id;
    }
  }
}
