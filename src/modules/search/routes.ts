import { Type } from 'typebox';
import { consistencyOf, Currency, errors, IdString, MoneySchema, type App } from '../../platform/http.ts';
import { LIMITS } from '../../platform/limits.ts';
import { DEFAULT_CURRENCY } from '../../platform/money.ts';
import type { SearchService } from './service.ts';

const Facet = Type.Array(Type.Object({ value: Type.String(), label: Type.String(), count: Type.Integer() }));

export function searchRoutes(app: App, search: SearchService): void {
  app.get('/v1/search', {
    schema: {
      tags: ['search'],
      summary: 'Full-text product search with filters and facet counts',
      description: 'q takes web-search syntax: words, "quoted phrases", -excluded, or.',
      querystring: Type.Object({
        q: Type.String({ minLength: 1, maxLength: LIMITS.searchQueryLengthMax }),
        limit: Type.Integer({ minimum: 1, maximum: 50, default: 20 }),
        page: Type.Integer({ minimum: 1, maximum: 50, default: 1 }),
        category: Type.Optional(IdString),
        brand: Type.Optional(IdString),
        minPrice: Type.Optional(Type.Integer({ minimum: 0, maximum: LIMITS.priceAmountMax })),
        maxPrice: Type.Optional(Type.Integer({ minimum: 0, maximum: LIMITS.priceAmountMax })),
        inStock: Type.Optional(Type.Boolean()),
        currency: Type.Optional(Currency),
      }, { additionalProperties: false }),
      response: {
        200: Type.Object({
          items: Type.Array(Type.Object({
            id: IdString,
            title: Type.String(),
            brand: Type.Union([Type.String(), Type.Null()]),
            category: Type.Union([Type.String(), Type.Null()]),
            price: Type.Union([MoneySchema, Type.Null()]),
            inStock: Type.Boolean(),
            score: Type.Number(),
          })),
          facets: Type.Object({ brand: Facet, category: Facet }),
          total: Type.Integer(),
          page: Type.Integer(),
        }),
        ...errors(400),
      },
    },
  }, async (req) => search.search({ ...req.query, currency: req.query.currency ?? DEFAULT_CURRENCY }, consistencyOf(req)));
}
