import { Type } from 'typebox';
import { consistencyOf, Currency, Cursor, decodeIdCursor, errors, IdString, memoizedSerializer, PageLimit, type App } from '../../platform/http.ts';
import { DEFAULT_CURRENCY } from '../../platform/money.ts';
import { LIMITS } from '../../platform/limits.ts';
import type { AuthHooks } from '../users/auth.ts';
import type { CatalogService, Product, ProductPage } from './service.ts';
import { BrandSchema, CategorySchema, CreateProductBody, ProductSchema, UpdateProductBody } from './schemas.ts';

const admin = { tags: ['admin'], security: [{ bearer: [] }] };

const ProductPageSchema = Type.Object({ items: Type.Array(ProductSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) });

export function catalogRoutes(app: App, catalog: CatalogService, auth: AuthHooks): void {
  const productJson = memoizedSerializer<Product>(ProductSchema);
  const pageJson = memoizedSerializer<ProductPage>(ProductPageSchema);

  app.get('/v1/products', {
    schema: {
      tags: ['catalog'],
      summary: 'List active products, newest first (keyset pagination)',
      querystring: Type.Object({
        limit: PageLimit,
        cursor: Type.Optional(Cursor),
        category: Type.Optional(IdString),
        brand: Type.Optional(IdString),
        minPrice: Type.Optional(Type.Integer({ minimum: 0, maximum: LIMITS.priceAmountMax })),
        maxPrice: Type.Optional(Type.Integer({ minimum: 0, maximum: LIMITS.priceAmountMax })),
        inStock: Type.Optional(Type.Boolean()),
        currency: Type.Optional(Currency),
      }, { additionalProperties: false }),
      response: { 200: ProductPageSchema, ...errors(400) },
    },
  }, async (req, reply) => {
    const q = req.query;
    const page = await catalog.browseProducts({
      limit: q.limit,
      cursor: decodeIdCursor(q.cursor),
      category: q.category,
      brand: q.brand,
      minPrice: q.minPrice,
      maxPrice: q.maxPrice,
      inStock: q.inStock,
      currency: q.currency ?? DEFAULT_CURRENCY,
    }, consistencyOf(req));
    return reply.type('application/json; charset=utf-8').send(pageJson(page) as never);
  });

  app.get('/v1/products/:id', {
    schema: {
      tags: ['catalog'],
      summary: 'Product detail with variants and prices',
      params: Type.Object({ id: IdString }),
      querystring: Type.Object({ currency: Type.Optional(Currency) }, { additionalProperties: false }),
      response: { 200: ProductSchema, ...errors(400, 404) },
    },
  }, async (req, reply) => {
    const product = await catalog.browseProduct(req.params.id, req.query.currency ?? DEFAULT_CURRENCY, consistencyOf(req));
    return reply.type('application/json; charset=utf-8').send(productJson(product) as never);
  });

  app.get('/v1/brands', {
    schema: { tags: ['catalog'], response: { 200: Type.Object({ items: Type.Array(BrandSchema) }) } },
  }, async () => ({ items: await catalog.listBrands() }));

  app.get('/v1/categories', {
    schema: { tags: ['catalog'], summary: 'The category tree, in path order', response: { 200: Type.Object({ items: Type.Array(CategorySchema) }) } },
  }, async () => ({
    items: (await catalog.listCategories()).map((c) => ({ id: c.id, parentId: c.parent_id, name: c.name, slug: c.slug, path: c.path })),
  }));

  app.post('/v1/admin/products', {
    preHandler: auth.requireAdmin,
    schema: { ...admin, summary: 'Create a product with its variants', body: CreateProductBody, response: { 201: ProductSchema, ...errors(400, 401, 403, 409) } },
  }, async (req, reply) => reply.status(201).send(await catalog.createProduct(req.body)));

  app.patch('/v1/admin/products/:id', {
    preHandler: auth.requireAdmin,
    schema: {
      ...admin,
      summary: 'Update a product; variants are upserted by SKU; status "archived" archives it',
      params: Type.Object({ id: IdString }),
      body: UpdateProductBody,
      response: { 200: ProductSchema, ...errors(400, 401, 403, 404, 409) },
    },
  }, async (req) => catalog.updateProduct(req.params.id, req.body, DEFAULT_CURRENCY));

  app.post('/v1/admin/brands', {
    preHandler: auth.requireAdmin,
    schema: { ...admin, body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }) }, { additionalProperties: false }), response: { 201: BrandSchema, ...errors(400, 401, 403) } },
  }, async (req, reply) => reply.status(201).send(await catalog.createBrand(req.body.name)));

  app.post('/v1/admin/categories', {
    preHandler: auth.requireAdmin,
    schema: {
      ...admin,
      body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }), parentId: Type.Optional(Type.Union([IdString, Type.Null()])) }, { additionalProperties: false }),
      response: { 201: CategorySchema, ...errors(400, 401, 403) },
    },
  }, async (req, reply) => {
    const c = await catalog.createCategory(req.body.name, req.body.parentId ?? null);
    return reply.status(201).send({ id: c.id, parentId: c.parent_id, name: c.name, slug: c.slug, path: c.path });
  });
}
