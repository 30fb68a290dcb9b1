// Search on a small fixed catalog, against a real PostgreSQL: relevance order, typo correction,
// facet counts equal to a brute-force count, filters, autocomplete and synonyms (through HTTP,
// with admin routes), and the unit pieces (edit distance, correction choice, estimates).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CatalogService } from '../src/modules/catalog/service.ts';
import { estimateTotal, SearchService } from '../src/modules/search/service.ts';
import { applyCorrections, chooseCorrection, editDistance, requiredWords } from '../src/modules/search/text.ts';
import { facetQuery, facetsOf } from '../src/modules/search/repository.ts';
import { assertError, drainOutbox } from './assertions.ts';
import { auth, createTestPlatform, createUser, type TestPlatform } from './helpers.ts';

interface Body {
  items: { id: string; title: string; brand: string | null; category: string | null; price: { amount: number; currency: string } | null; inStock: boolean; score: number }[];
  facets: { brand: { value: string; label: string; count: number }[]; category: { value: string; label: string; count: number }[]; price: { min: number; max: number | null; count: number }[] };
  total: number;
  totalIsApproximate: boolean;
  facetsAreApproximate: boolean;
  corrected: string | null;
  page: number;
}

describe('search: relevance, typos, facets, filters', () => {
  let t: TestPlatform;
  let admin: { token: string };
  const ids: Record<string, string> = {};
  interface Fx { key: string; id: string; title: string; brand: string; category: string; price: number; inStock: boolean; attributes: Record<string, string> }
  const fx: Fx[] = [];

  async function search(query: string): Promise<Body> {
    const res = await t.app.inject({ method: 'GET', url: `/v1/search?${query}` });
    assert.equal(res.statusCode, 200, res.body);
    return res.json<Body>();
  }

  before(async () => {
    t = await createTestPlatform();
    admin = await createUser(t, 'admin');
    await t.s.inventory.upsertLocation('main', 'main');
    for (const b of ['Northwind', 'Harbor', 'Quarry']) ids[b] = (await t.s.catalog.createBrand(b)).id;
    ids.Footwear = (await t.s.catalog.createCategory('Footwear', null)).id;
    ids['Chelsea Boots'] = (await t.s.catalog.createCategory('Chelsea Boots', ids.Footwear)).id;
    ids.Sandals = (await t.s.catalog.createCategory('Sandals', ids.Footwear)).id;
    ids.Home = (await t.s.catalog.createCategory('Home', null)).id;
    ids.Living = (await t.s.catalog.createCategory('Living', ids.Home)).id;
    const rows: [string, string, string, string, string, number, number, Record<string, string>, number][] = [
      // key, title, description, brand, category, price, units, attributes, popularity
      ['boots', 'Leather Chelsea Boots', 'Pull-on boots in full-grain leather.', 'Northwind', 'Chelsea Boots', 12_000, 5, { material: 'leather' }, 10],
      ['socks', 'Wool Hiking Socks', 'Warm socks, great with leather boots on long walks.', 'Harbor', 'Sandals', 1_500, 3, { material: 'wool' }, 900],
      ['suede', 'Suede Chelsea Boots', 'Soft suede, leather sole.', 'Harbor', 'Chelsea Boots', 9_000, 0, { material: 'suede' }, 500],
      ['sandal', 'Leather Sandals', 'Open sandals with a leather strap.', 'Quarry', 'Sandals', 4_000, 2, { material: 'leather' }, 50],
      ['sofa', 'Velvet Sofa', 'A three-seat sofa in deep green velvet.', 'Quarry', 'Living', 90_000, 1, { material: 'velvet', color: 'green' }, 70],
      ['lamp', 'Brass Floor Lamp', 'A tall lamp for reading.', 'Northwind', 'Living', 7_500, 0, { material: 'brass' }, 30],
    ];
    for (const [key, title, description, brand, category, price, units, attributes, popularity] of rows) {
      const sku = `RLV-${key}-${Date.now()}`;
      const p = await t.s.catalog.createProduct({
        title, description, brandId: ids[brand], categoryId: ids[category], attributes, popularity,
        variants: [{ sku, prices: [{ amount: price, currency: 'USD' }] }],
      });
      if (units > 0) await t.s.inventory.changeStock('receipt', sku, 'main', units);
      fx.push({ key, id: p.id, title, brand: ids[brand]!, category: ids[category]!, price, inStock: units > 0, attributes });
    }
    await drainOutbox(t);
  });
  after(async () => t.close());

  const byKey = (key: string): Fx => fx.find((f) => f.key === key)!;

  it('ranks the best match first: both words in the title beat words spread over the description', async () => {
    const r = await search('q=leather%20boots');
    assert.equal(r.items[0]?.id, byKey('boots').id, JSON.stringify(r.items.map((i) => i.title)));
    assert.deepEqual(new Set(r.items.map((i) => i.id)), new Set([byKey('boots').id, byKey('socks').id, byKey('suede').id]));
    assert.equal(r.total, 3);
    assert.equal(r.totalIsApproximate, false);
    assert.equal(r.corrected, null);
    for (let i = 1; i < r.items.length; i++) assert.ok(r.items[i - 1]!.score >= r.items[i]!.score, 'scores descend');
    // A title match outranks a category or description match of the same word.
    const sandals = await search('q=sandals');
    assert.equal(sandals.items[0]?.id, byKey('sandal').id);
  });

  it('corrects unknown words to the nearest indexed word and says so', async () => {
    const r = await search('q=lether%20bots');
    assert.equal(r.corrected, 'leather boots');
    assert.equal(r.items[0]?.id, byKey('boots').id);
    const one = await search('q=chelsae');
    assert.equal(one.corrected, 'chelsea');
    assert.equal(one.total, 2);
    const caps = await search(`q=${encodeURIComponent('Velvett sofa')}`);
    assert.equal(caps.corrected, 'velvet sofa');
    // Nothing close enough: no correction, no results.
    const none = await search('q=xylophone');
    assert.equal(none.corrected, null);
    assert.equal(none.total, 0);
    // Known words are never "corrected", even when the query as a whole matches nothing.
    const both = await search('q=velvet%20sandals');
    assert.equal(both.corrected, null);
    assert.equal(both.total, 0);
  });

  it('facet counts equal a brute-force count, under every filter', async () => {
    // Every fixture holds one of these words (socks in its description).
    const q = `q=${encodeURIComponent('leather or boots or lamp or sofa')}`;
    const cases: [string, (f: Fx) => boolean][] = [
      ['', () => true],
      [`brand=${ids.Harbor}`, (f) => f.brand === ids.Harbor],
      [`category=${ids.Footwear}`, (f) => f.category === ids['Chelsea Boots'] || f.category === ids.Sandals],
      [`category=${ids['Chelsea Boots']}`, (f) => f.category === ids['Chelsea Boots']],
      ['minPrice=4000&maxPrice=9000', (f) => f.price >= 4_000 && f.price <= 9_000],
      ['maxPrice=1500', (f) => f.price <= 1_500],
      ['minPrice=50000', (f) => f.price >= 50_000],
      ['inStock=true', (f) => f.inStock],
      ['inStock=false', (f) => !f.inStock],
      ['attr=material:leather', (f) => f.attributes.material === 'leather'],
      ['attr=material:leather&attr=material:velvet', (f) => ['leather', 'velvet'].includes(f.attributes.material ?? '')],
      ['attr=color:green&attr=material:velvet', (f) => f.attributes.color === 'green' && f.attributes.material === 'velvet'],
      ['attr=material:green', () => false],
      [`inStock=true&category=${ids.Footwear}&minPrice=2000`, (f) => f.inStock && f.price >= 2_000 && (f.category === ids['Chelsea Boots'] || f.category === ids.Sandals)],
      ['category=424242', () => false],
    ];
    for (const [filter, pred] of cases) {
      const r = await search(`${q}&limit=50${filter ? `&${filter}` : ''}`);
      const expected = fx.filter(pred);
      assert.deepEqual(new Set(r.items.map((i) => i.id)), new Set(expected.map((f) => f.id)), filter);
      assert.equal(r.total, expected.length, filter);
      assert.equal(r.totalIsApproximate, false);
      assert.equal(r.facetsAreApproximate, false);
      const count = <K extends string>(key: (f: Fx) => K): Map<K, number> => {
        const m = new Map<K, number>();
        for (const f of expected) m.set(key(f), (m.get(key(f)) ?? 0) + 1);
        return m;
      };
      assert.deepEqual(new Map(r.facets.brand.map((b) => [b.value, b.count])), count((f) => f.brand), `brand facet, ${filter}`);
      assert.deepEqual(new Map(r.facets.category.map((c) => [c.value, c.count])), count((f) => f.category), `category facet, ${filter}`);
      const band = (price: number): number => [1_000, 2_500, 5_000, 10_000, 25_000, 50_000].filter((e) => price >= e).length;
      assert.deepEqual(new Map(r.facets.price.map((p) => [p.min, p.count])), new Map([...count((f) => String(band(f.price))).entries()].map(([b, n]) => [[0, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000][Number(b)]!, n])), `price facet, ${filter}`);
    }
  });

  it('pages share one ranking and one total', async () => {
    const q = `q=${encodeURIComponent('leather or boots or lamp or sofa')}`;
    const all = await search(`${q}&limit=50`);
    const paged: string[] = [];
    for (let page = 1; page <= all.total; page++) paged.push(...(await search(`${q}&limit=1&page=${page}`)).items.map((i) => i.id));
    assert.deepEqual(paged, all.items.map((i) => i.id));
  });

  it('runs at most concurrencyMax searches at once; the others wait their turn and all complete', async () => {
    const search = new SearchService(t.s.dbs, new CatalogService(t.s.dbs), undefined, { concurrencyMax: 2 });
    // Watch the searches that reach the database (the private step the bulkhead wraps).
    const inner = search as unknown as { execute: (...args: unknown[]) => Promise<unknown> };
    const execute = inner.execute.bind(search);
    let running = 0;
    let most = 0;
    inner.execute = async (...args: unknown[]): Promise<unknown> => {
      running++;
      most = Math.max(most, running);
      try {
        await sleep(10);
        return await execute(...args);
      } finally {
        running--;
      }
    };
    const results = await Promise.all(
      ['wool', 'leather', 'oak', 'steel', 'cotton', 'linen'].map((q) => search.search({ q, limit: 5, page: 1, currency: 'USD' })),
    );
    assert.equal(results.length, 6);
    assert.equal(most, 2, 'two at once, never more');
  });

  it('autocomplete completes the last word, and brand and category names', async () => {
    const suggest = async (q: string): Promise<{ text: string; count: number }[]> => {
      const res = await t.app.inject({ method: 'GET', url: `/v1/search/suggest?q=${encodeURIComponent(q)}` });
      assert.equal(res.statusCode, 200, res.body);
      return res.json<{ items: { text: string; count: number }[] }>().items;
    };
    const lea = await suggest('lea');
    assert.equal(lea[0]?.text, 'leather', JSON.stringify(lea));
    assert.ok(lea[0]!.count >= 3);
    assert.ok((await suggest('Chelsea b')).some((s) => s.text === 'chelsea boots'), 'a category name');
    assert.ok((await suggest('suede bo')).some((s) => s.text === 'suede boots'), 'the last word completed after the first');
    assert.deepEqual(await suggest('zzq'), []);
    // Words that only occur in descriptions are searchable but not suggested.
    assert.ok(!(await suggest('rea')).some((s) => s.text === 'reading'));
    assertError(await t.app.inject({ method: 'GET', url: '/v1/search/suggest' }), 400, 'validation_failed');
    assertError(await t.app.inject({ method: 'GET', url: `/v1/search/suggest?q=${'a'.repeat(101)}` }), 400, 'validation_failed');
    assertError(await t.app.inject({ method: 'GET', url: '/v1/search/suggest?q=a&limit=21' }), 400, 'validation_failed');
  });

  it('synonyms: admins edit the groups; a query finds its synonyms from the next request on', async () => {
    assert.equal((await search('q=couch')).total, 0);
    const customer = await createUser(t);
    const put = (token: string, groups: unknown) =>
      t.app.inject({ method: 'PUT', url: '/v1/admin/search/synonyms', headers: auth(token), payload: { groups } });
    assertError(await put(customer.token, [['couch', 'sofa']]), 403, 'forbidden');
    assertError(await t.app.inject({ method: 'GET', url: '/v1/admin/search/synonyms' }), 401, 'unauthenticated');
    assertError(await put(admin.token, [['couch']]), 400, 'validation_failed');
    assertError(await put(admin.token, [['couch', ' COUCH ']]), 400, 'validation_failed');
    assertError(await put(admin.token, [['couch', 'x'.repeat(61)]]), 400, 'validation_failed');
    const ok = await put(admin.token, [['Couch', 'sofa', 'settee'], ['lamp', 'light fitting']]);
    assert.equal(ok.statusCode, 200, ok.body);
    assert.deepEqual(ok.json(), { groups: [['couch', 'sofa', 'settee'], ['lamp', 'light fitting']] });
    const listed = await t.app.inject({ method: 'GET', url: '/v1/admin/search/synonyms', headers: auth(admin.token) });
    assert.deepEqual(listed.json(), ok.json());

    const couch = await search('q=couch');
    assert.deepEqual(couch.items.map((i) => i.id), [byKey('sofa').id], 'the cached empty answer was dropped');
    assert.deepEqual((await search('q=green%20settee')).items.map((i) => i.id), [byKey('sofa').id], 'within an AND');
    assert.equal((await search('q=sofa%20-couch')).total, 0, 'a negated term excludes its synonyms too');
    assert.deepEqual((await search(`q=${encodeURIComponent('light fitting')}`)).items.map((i) => i.id), [byKey('lamp').id], 'a multi-word term');

    const cleared = await put(admin.token, []);
    assert.deepEqual(cleared.json(), { groups: [] });
    assert.equal((await search('q=couch')).total, 0);
  });

  it('bad queries → 400', async () => {
    for (const url of ['/v1/search?q=a&attr=nocolon', '/v1/search?q=a&attr=:v', `/v1/search?q=a&attr=k:${'v'.repeat(51)}`, `/v1/search?q=a${'&attr=k:v'.repeat(11)}`]) {
      assertError(await t.app.inject({ method: 'GET', url }), 400, 'validation_failed');
    }
  });
});

describe('search text helpers', () => {
  it('edit distance counts insertions, deletions, substitutions and adjacent swaps', () => {
    assert.equal(editDistance('leather', 'lether'), 1);
    assert.equal(editDistance('boots', 'bots'), 1);
    assert.equal(editDistance('chelsea', 'chelsae'), 1);
    assert.equal(editDistance('kitten', 'sitting'), 3);
    assert.equal(editDistance('abc', 'abc'), 0);
    assert.ok(editDistance('abcdef', 'zzzzzz', 2) > 2, 'stops past the budget');
  });

  it('chooses the fewest edits within the budget, then the most frequent word', () => {
    assert.equal(chooseCorrection('lether', [['leather', 10], ['lathe', 50], ['feather', 99]]), 'leather');
    assert.equal(chooseCorrection('bot', [['boot', 3], ['bat', 9]]), 'bat');
    assert.equal(chooseCorrection('ab', [['abc', 5]]), undefined, 'two letters are never corrected');
    assert.equal(chooseCorrection('xylophone', [['phone', 5]]), undefined);
    assert.equal(applyCorrections('Lether -bots "soft lether"', new Map([['lether', 'leather']])), 'leather -bots "soft leather"');
    assert.deepEqual(requiredWords('leather -suede "chelsea boots" or sandals'), ['leather', 'chelsea', 'boots', 'sandals']);
  });

  it('facet terms: a price range selects the bands it overlaps', () => {
    const base = { categoryId: undefined, brandId: undefined, currency: 'USD', minPrice: undefined, maxPrice: undefined, inStock: undefined, attributes: {} };
    assert.equal(facetQuery(base), '');
    assert.equal(facetQuery({ ...base, brandId: '12', categoryId: '7', inStock: false }), "'C7' & 'B12' & 'S0'");
    assert.equal(facetQuery({ ...base, inStock: true }), '', 'in stock is checked on the rows');
    assert.equal(facetQuery({ ...base, minPrice: 2_500, maxPrice: 3_500 }), "('PUSD9' | 'PUSD10')");
    assert.equal(facetQuery({ ...base, currency: 'EUR', maxPrice: 150 }), "('PEUR0' | 'PEUR1')");
  });

  it('facets of a window: counted over the window only, most frequent first, ties by id, capped', () => {
    const sample: Parameters<typeof facetsOf>[0] = [
      [0, '7', 'Acme', '3', 'Mugs', 1],
      [0, '12', 'Bolt', '3', 'Mugs', 1],
      [1, '12', 'Bolt', null, null, null],
      [1, '9', 'Core', '4', 'Cups', 2],
      [2, '9', 'Core', '4', 'Cups', 0], // the extra row: counted per band, not in the facets
    ];
    assert.deepEqual(facetsOf(sample, 4, 50), {
      read: 5,
      perBand: [[0, 2], [1, 2], [2, 1]],
      brand: [['12', 'Bolt', 2], ['7', 'Acme', 1], ['9', 'Core', 1]],
      category: [['3', 'Mugs', 2], ['4', 'Cups', 1]],
      price: [[1, 2], [2, 1]],
    });
    assert.deepEqual(facetsOf(sample, 4, 1).brand, [['12', 'Bolt', 2]], 'at most valuesMax values');
    assert.deepEqual(facetsOf([], 4, 50), { read: 0, perBand: [], brand: [], category: [], price: [] });
  });

  it('estimates a total from the bands read in full and the density seen', () => {
    const bands = [
      { position: 0, min: 100, max: null, documents: 1_000, indexName: 'a' },
      { position: 1, min: 10, max: 100, documents: 4_000, indexName: 'b' },
      { position: 2, min: null, max: 10, documents: 95_000, indexName: 'c' },
    ];
    // Band 0 read in full (100 of 1,000 match: 10%), stopped in band 1 after 401: the rest at ≥ 10%.
    assert.equal(estimateTotal({ read: 401, perBand: [[0, 100], [1, 301]] }, bands), 100 + Math.round(0.1 * 99_000));
    // Stopped inside band 0: its share read so far is a lower bound of the density.
    assert.equal(estimateTotal({ read: 501, perBand: [[0, 501]] }, bands), Math.round((501 / 1_000) * 100_000));
    assert.equal(estimateTotal({ read: 7, perBand: [[2, 7]] }, []), 7);
  });
});
