import { Type } from 'typebox';
import { consistencyOf, Currency, errors, IdString, memoizedSerializer, MoneySchema, type App } from '../../platform/http.ts';
import { LIMITS } from '../../platform/limits.ts';
import { DEFAULT_CURRENCY } from '../../platform/money.ts';
import type { AuthHooks } from '../users/auth.ts';
import { SEARCH, type SearchResult, type SearchService, type Suggestions } from './service.ts';

const admin = { tags: ['admin'], security: [{ bearer: [] }] };

const Facet = Type.Array(Type.Object({ value: Type.String(), label: Type.String(), count: Type.Integer() }));

const SearchResultSchema = Type.Object({
  items: Type.Array(Type.Object({
    id: IdString,
    title: Type.String(),
    brand: Type.Union([Type.String(), Type.Null()]),
    category: Type.Union([Type.String(), Type.Null()]),
    price: Type.Union([MoneySchema, Type.Null()]),
    inStock: Type.Boolean(),
    score: Type.Number(),
  })),
  facets: Type.Object({
    brand: Facet,
    category: Facet,
    price: Type.Array(Type.Object({
      min: Type.Integer({ description: 'minor units, inclusive' }),
      max: Type.Union([Type.Integer(), Type.Null()], { description: 'minor units, exclusive; null: no upper bound' }),
      count: Type.Integer(),
    }), { description: 'lowest variant price per product, in the requested currency' }),
  }),
  total: Type.Integer({ description: 'exact unless totalIsApproximate' }),
  totalIsApproximate: Type.Boolean({ description: 'the query matched more than the ranking window: total is an estimate' }),
  facetsAreApproximate: Type.Boolean({ description: 'facet counts are estimated from the most popular matches' }),
  corrected: Type.Union([Type.String(), Type.Null()], { description: 'the query run instead of one with typos that matched nothing' }),
  page: Type.Integer(),
});

const SuggestionsSchema = Type.Object({ items: Type.Array(Type.Object({ text: Type.String(), count: Type.Integer() })) });

const Term = Type.String({ minLength: 1, maxLength: 60 });
const SynonymGroups = Type.Array(Type.Array(Term, { minItems: 2, maxItems: SEARCH.synonymTermsMax }), { maxItems: SEARCH.synonymGroupsMax });

/** attr=material:wool → { material: ['wool'] }; several values of one name match any of them. */
function parseAttributes(raw: readonly string[] | undefined): Record<string, string[]> | undefined {
  if (!raw || raw.length === 0) return undefined;
  const out: Record<string, string[]> = {};
  for (const pair of raw) {
    const i = pair.indexOf(':');
    const name = pair.slice(0, i);
    (out[name] ??= []).push(pair.slice(i + 1));
  }
  return out;
}

export function searchRoutes(app: App, search: SearchService, auth: AuthHooks): void {
  const resultJson = memoizedSerializer<SearchResult>(SearchResultSchema);
  const suggestionsJson = memoizedSerializer<Suggestions>(SuggestionsSchema);

  app.get('/v1/search', {
    schema: {
      tags: ['search'],
      summary: 'Full-text product search with filters, facet counts and typo correction',
      description:
        'q takes web-search syntax: words, "quoted phrases", -excluded, or. Results are ranked by text relevance ' +
        '(title > brand, category > attributes > description), then popularity, among the most popular matches ' +
        '(the ranking window). When a query matches more than the window, total and facet counts are estimates ' +
        '(totalIsApproximate, facetsAreApproximate). A query that matches nothing because of typos is corrected ' +
        'and run again; `corrected` then holds the query that was run. Synonyms apply.',
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
        attr: Type.Optional(Type.Array(
          Type.String({ pattern: '^[^:]{1,50}:[^\\u0000]{1,50}$', description: 'attribute filter name:value, e.g. material:wool' }),
          { maxItems: 10, description: 'every name must match; values given for one name match any of them' },
        )),
      }, { additionalProperties: false }),
      response: { 200: SearchResultSchema, ...errors(400, 503) },
    },
  }, async (req, reply) => {
    const { attr, currency, ...q } = req.query;
    const result = await search.search({ ...q, attributes: parseAttributes(attr), currency: currency ?? DEFAULT_CURRENCY }, consistencyOf(req));
    return reply.type('application/json; charset=utf-8').send(resultJson(result) as never);
  });

  app.get('/v1/search/suggest', {
    schema: {
      tags: ['search'],
      summary: 'Autocomplete: completions of the last word typed, and brand and category names, most frequent first',
      querystring: Type.Object({
        q: Type.String({ minLength: 1, maxLength: 100 }),
        limit: Type.Integer({ minimum: 1, maximum: SEARCH.suggestionsMax, default: 8 }),
      }, { additionalProperties: false }),
      response: { 200: SuggestionsSchema, ...errors(400) },
    },
  }, async (req, reply) => {
    const result = await search.suggest(req.query.q, req.query.limit, consistencyOf(req));
    return reply.type('application/json; charset=utf-8').send(suggestionsJson(result) as never);
  });

  app.get('/v1/admin/search/synonyms', {
    preHandler: auth.requireAdmin,
    schema: { ...admin, summary: 'The synonym groups', response: { 200: Type.Object({ groups: SynonymGroups }), ...errors(401, 403) } },
  }, async () => ({ groups: await search.synonymGroups() }));

  app.put('/v1/admin/search/synonyms', {
    preHandler: auth.requireAdmin,
    schema: {
      ...admin,
      summary: 'Replace the synonym groups; each group\'s terms find each other from the next query on',
      description: 'A term may be several words ("t shirt"). Terms are stored lower case.',
      body: Type.Object({ groups: SynonymGroups }, { additionalProperties: false }),
      response: { 200: Type.Object({ groups: SynonymGroups }), ...errors(400, 401, 403) },
    },
  }, async (req) => ({ groups: await search.replaceSynonymGroups(req.body.groups) }));
}
