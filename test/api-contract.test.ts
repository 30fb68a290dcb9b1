// HTTP contract of every route in src/modules/*/routes.ts, driven in-process with app.inject()
// against a real PostgreSQL: status codes, response shapes, every documented error (always
// {error:{code,message}}), ids as decimal strings, and user-owned rows on the user's shard.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { shardOfId } from '../src/platform/ids.ts';
import { assertError, assertErrorShape, assertId, assertOnUserShard, drainOutbox } from './assertions.ts';
import { assertInvariants, auth, cartWith, checkout, createProduct, createTestPlatform, createUser, type TestPlatform } from './helpers.ts';

type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
interface Call {
  token?: string | undefined;
  payload?: unknown;
  headers?: Record<string, string>;
}

let t: TestPlatform;
let admin: { userId: string; token: string };
let customer: { userId: string; token: string };

function call(method: Method, url: string, c: Call = {}): Promise<LightMyRequestResponse> {
  return t.app.inject({
    method,
    url,
    headers: { ...(c.token ? auth(c.token) : {}), ...c.headers },
    ...(c.payload === undefined ? {} : { payload: c.payload as string }),
  });
}

function word(): string {
  // Letters only, so PostgreSQL's English parser keeps it one token.
  return Array.from(randomBytes(8), (b) => String.fromCharCode(97 + (b % 26))).join('');
}

function sku(prefix = 'C'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

interface ProductBody {
  id: string;
  title: string;
  status: string;
  brand: { id: string; name: string } | null;
  category: { id: string; name: string; path: string } | null;
  variants: { id: string; sku: string; inStock: boolean; price: { amount: number; currency: string } | null }[];
}

async function adminCreateProduct(body: Record<string, unknown>): Promise<ProductBody> {
  const res = await call('POST', '/v1/admin/products', { token: admin.token, payload: body });
  assert.equal(res.statusCode, 201, res.body);
  assert.match(String(res.headers['meridian-consistency']), /^[0-9A-F]+\/[0-9A-F]+$/, 'an admin write carries its read-your-writes token');
  return res.json<ProductBody>();
}

async function receive(s: string, quantity: number, locationId = 'main'): Promise<void> {
  const res = await call('POST', '/v1/admin/inventory/receipts', { token: admin.token, payload: { sku: s, locationId, quantity } });
  assert.equal(res.statusCode, 201, res.body);
}

/** Every page of a keyset-paginated list, asserting the pages fit together. */
async function walk<T extends { id: string }>(url: string, token?: string): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const sep = url.includes('?') ? '&' : '?';
    const res = await call('GET', cursor ? `${url}${sep}cursor=${encodeURIComponent(cursor)}` : url, { token });
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json<{ items: T[]; nextCursor: string | null }>();
    out.push(...body.items);
    if (body.nextCursor === null) return out;
    assert.ok(body.items.length > 0, 'a page with a next cursor has items');
    cursor = body.nextCursor;
  }
  throw new Error('pagination did not end');
}

function assertDescendingUnique(ids: readonly string[]): void {
  assert.equal(new Set(ids).size, ids.length, 'no duplicates across pages');
  for (let i = 1; i < ids.length; i++) assert.ok(BigInt(ids[i - 1]!) > BigInt(ids[i]!), `newest first at ${i}: ${ids[i - 1]} then ${ids[i]}`);
}

before(async () => {
  t = await createTestPlatform();
  admin = await createUser(t, 'admin');
  customer = await createUser(t);
  await t.s.inventory.upsertLocation('main', 'Main warehouse');
});
after(async () => t.close());

describe('auth', () => {
  const password = 'correct horse battery';

  it('register → 201 {user:{id,email},token}; the token authenticates /v1/me', async () => {
    const email = `New.${word()}@Example.COM`;
    const res = await call('POST', '/v1/auth/register', { payload: { email, password } });
    assert.equal(res.statusCode, 201, res.body);
    const body = res.json<{ user: { id: string; email: string; role: string; createdAt: string }; token: string }>();
    assert.deepEqual(Object.keys(body).sort(), ['token', 'user']);
    assertId(body.user.id, 'user.id');
    assert.equal(body.user.email, email.toLowerCase(), 'emails are normalised');
    assert.equal(body.user.role, 'customer');
    assert.ok(!Number.isNaN(Date.parse(body.user.createdAt)));
    assert.equal('passwordHash' in body.user || 'password_hash' in body.user, false, 'no hash leaks');
    const m = /^mrd_([1-9][0-9]*)_[A-Za-z0-9_-]{43}$/.exec(body.token);
    assert.ok(m, `token format: ${body.token}`);
    assert.equal(shardOfId(m[1]!), shardOfId(body.user.id), 'the session lives on the user shard');

    const me = await call('GET', '/v1/me', { token: body.token });
    assert.equal(me.statusCode, 200, me.body);
    assert.deepEqual(me.json(), body.user);
  });

  it('duplicate email (in any case) → 409 email_taken', async () => {
    const email = `dup-${word()}@example.com`;
    assert.equal((await call('POST', '/v1/auth/register', { payload: { email, password } })).statusCode, 201);
    assertError(await call('POST', '/v1/auth/register', { payload: { email, password } }), 409, 'email_taken');
    assertError(await call('POST', '/v1/auth/register', { payload: { email: email.toUpperCase(), password } }), 409, 'email_taken');
  });

  it('login → 200 with a new token; bad password or unknown email → 401 invalid_credentials', async () => {
    const email = `login-${word()}@example.com`;
    const reg = await call('POST', '/v1/auth/register', { payload: { email, password } });
    const login = await call('POST', '/v1/auth/login', { payload: { email: email.toUpperCase(), password } });
    assert.equal(login.statusCode, 200, login.body);
    const body = login.json<{ user: { id: string; email: string }; token: string }>();
    assert.equal(body.user.id, reg.json().user.id);
    assert.equal(body.user.email, email);
    assert.notEqual(body.token, reg.json().token);
    assertError(await call('POST', '/v1/auth/login', { payload: { email, password: 'wrong password' } }), 401, 'invalid_credentials');
    assertError(await call('POST', '/v1/auth/login', { payload: { email: `nobody-${word()}@example.com`, password } }), 401, 'invalid_credentials');
  });

  it('logout → 204 and revokes only that session; later calls with it → 401', async () => {
    const email = `logout-${word()}@example.com`;
    const first = (await call('POST', '/v1/auth/register', { payload: { email, password } })).json<{ token: string }>().token;
    const second = (await call('POST', '/v1/auth/login', { payload: { email, password } })).json<{ token: string }>().token;
    const out = await call('POST', '/v1/auth/logout', { token: first });
    assert.equal(out.statusCode, 204, out.body);
    assert.equal(out.body, '');
    assertError(await call('GET', '/v1/me', { token: first }), 401, 'unauthenticated');
    assertError(await call('POST', '/v1/auth/logout', { token: first }), 401, 'unauthenticated');
    assert.equal((await call('GET', '/v1/me', { token: second })).statusCode, 200, 'the other session still works');
  });

  it('missing, malformed or forged tokens → 401 unauthenticated', async () => {
    assertError(await call('GET', '/v1/me'), 401, 'unauthenticated');
    assertError(await call('GET', '/v1/me', { headers: { authorization: 'Basic abc' } }), 401, 'unauthenticated');
    assertError(await call('GET', '/v1/me', { token: 'garbage' }), 401, 'unauthenticated');
    const [, sessionId] = /^mrd_([0-9]+)_/.exec(customer.token)!;
    assertError(await call('GET', '/v1/me', { token: `mrd_${sessionId}_${'A'.repeat(43)}` }), 401, 'unauthenticated');
    assertError(await call('GET', '/v1/me', { token: `mrd_9223372036854775807_${'A'.repeat(43)}` }), 401, 'unauthenticated');
  });

  it('bad bodies → 400 validation_failed (malformed JSON, unknown field, bad email, short password); oversize → 413; wrong media type → 415', async () => {
    const json = { 'content-type': 'application/json' };
    assertError(await call('POST', '/v1/auth/register', { headers: json, payload: '{"email": "a@b.co", ' }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/auth/register', { headers: json, payload: '' }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/auth/register', { payload: { email: `x-${word()}@example.com`, password, admin: true } }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/auth/register', { payload: { email: 'not-an-email', password } }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/auth/register', { payload: { email: `x-${word()}@example.com`, password: 'short' } }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/auth/register', { payload: { email: `x-${word()}@example.com` } }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/auth/login', { payload: [] }), 400, 'validation_failed');
    const big = JSON.stringify({ email: 'a@b.co', password: 'x'.repeat(t.s.config.bodyLimitBytes + 1) });
    assertError(await call('POST', '/v1/auth/register', { headers: json, payload: big }), 413, 'payload_too_large');
    assertError(await call('POST', '/v1/auth/login', { headers: { 'content-type': 'application/xml' }, payload: '<a/>' }), 415, 'unsupported_media_type');
  });
});

describe('addresses', () => {
  const address = { name: 'Ada Lovelace', line1: '12 St James Square', city: 'London', postalCode: 'SW1Y 4JH', country: 'GB' };

  it('create → 201 on the user shard; list; delete → 204; then 404', async () => {
    const u = await createUser(t);
    const empty = await call('GET', '/v1/me/addresses', { token: u.token });
    assert.equal(empty.statusCode, 200);
    assert.deepEqual(empty.json(), { items: [] });

    const created = await call('POST', '/v1/me/addresses', { token: u.token, payload: address });
    assert.equal(created.statusCode, 201, created.body);
    const a = created.json<Record<string, unknown> & { id: string }>();
    assertOnUserShard(a.id, u.userId, 'address id');
    assert.deepEqual(a, { id: a.id, ...address, line2: null });

    const withLine2 = await call('POST', '/v1/me/addresses', { token: u.token, payload: { ...address, line2: 'Flat 3' } });
    assert.equal(withLine2.json().line2, 'Flat 3');
    const explicitNull = await call('POST', '/v1/me/addresses', { token: u.token, payload: { ...address, line2: null } });
    assert.equal(explicitNull.json().line2, null, 'an explicit null stays null');

    const list = await call('GET', '/v1/me/addresses', { token: u.token });
    assert.deepEqual(list.json<{ items: { id: string }[] }>().items.map((x) => x.id), [a.id, withLine2.json().id, explicitNull.json().id]);

    const other = await createUser(t);
    assertError(await call('DELETE', `/v1/me/addresses/${a.id}`, { token: other.token }), 404, 'not_found');
    assert.equal((await call('GET', '/v1/me/addresses', { token: other.token })).json().items.length, 0, "nobody sees another user's addresses");

    const del = await call('DELETE', `/v1/me/addresses/${a.id}`, { token: u.token });
    assert.equal(del.statusCode, 204, del.body);
    assertError(await call('DELETE', `/v1/me/addresses/${a.id}`, { token: u.token }), 404, 'not_found');
    assertError(await call('DELETE', '/v1/me/addresses/abc', { token: u.token }), 400, 'validation_failed');
    assert.equal((await call('GET', '/v1/me/addresses', { token: u.token })).json().items.length, 2);
  });

  it('validation, auth and the per-user limit', async () => {
    const u = await createUser(t);
    assertError(await call('GET', '/v1/me/addresses'), 401, 'unauthenticated');
    assertError(await call('POST', '/v1/me/addresses', { payload: address }), 401, 'unauthenticated');
    assertError(await call('DELETE', '/v1/me/addresses/1'), 401, 'unauthenticated');
    assertError(await call('POST', '/v1/me/addresses', { token: u.token, payload: { ...address, country: 'gb' } }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/me/addresses', { token: u.token, payload: { ...address, name: '' } }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/me/addresses', { token: u.token, payload: { ...address, phone: '1' } }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/me/addresses', { token: u.token, payload: { ...address, line1: 'a\u0000b' } }), 400, 'validation_failed');
    for (let i = 0; i < 20; i++) assert.equal((await call('POST', '/v1/me/addresses', { token: u.token, payload: address })).statusCode, 201);
    assertError(await call('POST', '/v1/me/addresses', { token: u.token, payload: address }), 400, 'validation_failed');
    assert.equal((await call('GET', '/v1/me/addresses', { token: u.token })).json().items.length, 20);
  });
});

describe('admin routes reject anonymous (401) and customer (403) callers', () => {
  const adminRoutes: [Method, string, unknown][] = [
    ['POST', '/v1/admin/products', { title: 'x', variants: [{ sku: 'ADM-1', prices: [{ amount: 1, currency: 'USD' }] }] }],
    ['PATCH', '/v1/admin/products/1', { title: 'x' }],
    ['POST', '/v1/admin/brands', { name: 'x' }],
    ['POST', '/v1/admin/categories', { name: 'x' }],
    ['POST', '/v1/admin/inventory/receipts', { sku: 'ADM-1', locationId: 'main', quantity: 1 }],
    ['POST', '/v1/admin/inventory/adjustments', { sku: 'ADM-1', locationId: 'main', quantity: -1 }],
    ['POST', '/v1/admin/inventory/returns', { sku: 'ADM-1', locationId: 'main', quantity: 1 }],
    ['GET', '/v1/admin/inventory/locations', undefined],
    ['PUT', '/v1/admin/inventory/locations/main', { name: 'x' }],
    ['GET', '/v1/admin/orders', undefined],
    ['GET', '/v1/admin/orders/1', undefined],
    ['POST', '/v1/admin/orders/1/transitions', { to: 'fulfilled' }],
  ];
  for (const [method, url, payload] of adminRoutes) {
    it(`${method} ${url}`, async () => {
      assertError(await call(method, url, { payload }), 401, 'unauthenticated');
      assertError(await call(method, url, { payload, token: customer.token }), 403, 'forbidden');
    });
  }
  it('and nothing was written by the rejected calls', async () => {
    assert.equal(await t.s.catalog.skuExists('ADM-1'), false);
    assert.equal((await t.s.catalog.listBrands()).some((b) => b.name === 'x'), false);
    assert.equal((await t.s.inventory.listLocations()).find((l) => l.id === 'main')?.name, 'Main warehouse');
  });
});

describe('catalog', () => {
  it('admin creates brands and categories; public lists show them', async () => {
    const name = `Brand ${word()}`;
    const b = await call('POST', '/v1/admin/brands', { token: admin.token, payload: { name } });
    assert.equal(b.statusCode, 201, b.body);
    assertId(b.json().id, 'brand id');
    assertError(await call('POST', '/v1/admin/brands', { token: admin.token, payload: { name } }), 400, 'validation_failed');
    const root = await call('POST', '/v1/admin/categories', { token: admin.token, payload: { name: `Root ${word()}` } });
    assert.equal(root.statusCode, 201, root.body);
    const r = root.json<{ id: string; parentId: string | null; path: string }>();
    assertId(r.id, 'category id');
    assert.equal(r.parentId, null);
    assert.equal(r.path, `/${r.id}/`);
    const child = await call('POST', '/v1/admin/categories', { token: admin.token, payload: { name: 'Child', parentId: r.id } });
    assert.equal(child.statusCode, 201, child.body);
    assert.equal(child.json().parentId, r.id);
    assert.equal(child.json().path, `/${r.id}/${child.json().id}/`);
    assertError(await call('POST', '/v1/admin/categories', { token: admin.token, payload: { name: 'Orphan', parentId: '123456789' } }), 400, 'validation_failed');

    const brands = await call('GET', '/v1/brands');
    assert.ok(brands.json<{ items: { id: string }[] }>().items.some((x) => x.id === b.json().id));
    const categories = await call('GET', '/v1/categories');
    const ids = categories.json<{ items: { id: string }[] }>().items.map((x) => x.id);
    assert.ok(ids.indexOf(r.id) >= 0 && ids.indexOf(r.id) < ids.indexOf(child.json().id), 'tree in path order');
  });

  it('create → 201 product shape; detail; 404 for an unknown id; 400 for a malformed or out-of-range id', async () => {
    const s1 = sku();
    const p = await adminCreateProduct({
      title: 'Contract kettle',
      description: 'Boils water',
      attributes: { material: 'steel' },
      options: [{ name: 'size', values: ['1l'] }],
      variants: [{ sku: s1, title: '1 litre', options: { size: '1l' }, prices: [{ amount: 2999, currency: 'USD' }, { amount: 2799, currency: 'EUR' }] }],
    });
    assertId(p.id, 'product id');
    assert.equal(p.status, 'active');
    assert.equal(p.variants.length, 1);
    assertId(p.variants[0]!.id, 'variant id');
    assert.deepEqual(p.variants[0]!.price, { amount: 2999, currency: 'USD' });
    assert.equal(p.variants[0]!.inStock, false);

    const detail = await call('GET', `/v1/products/${p.id}`);
    assert.equal(detail.statusCode, 200);
    assert.deepEqual(detail.json(), p);
    const eur = await call('GET', `/v1/products/${p.id}?currency=EUR`);
    assert.deepEqual(eur.json<ProductBody>().variants[0]!.price, { amount: 2799, currency: 'EUR' });
    assert.equal((await call('GET', `/v1/products/${p.id}?currency=GBP`)).json<ProductBody>().variants[0]!.price, null);

    assertError(await call('GET', '/v1/products/123'), 404, 'not_found');
    assertError(await call('GET', '/v1/products/9223372036854775807'), 404, 'not_found');
    assertError(await call('GET', '/v1/products/9223372036854775808'), 400, 'validation_failed');
    assertError(await call('GET', '/v1/products/99999999999999999999'), 400, 'validation_failed');
    assertError(await call('GET', '/v1/products/abc'), 400, 'validation_failed');
    assertError(await call('GET', '/v1/products/0'), 400, 'validation_failed');
    assertError(await call('GET', `/v1/products/${p.id}?currency=usd`), 400, 'validation_failed');
  });

  it('create/update validation: SKU taken → 409 sku_taken (and nothing changes); unknown references → 400; unknown product → 404', async () => {
    const s1 = sku();
    const s2 = sku();
    const a = await adminCreateProduct({ title: 'Alpha', variants: [{ sku: s1, prices: [{ amount: 100, currency: 'USD' }] }] });
    const b = await adminCreateProduct({ title: 'Beta', variants: [{ sku: s2, prices: [{ amount: 200, currency: 'USD' }] }] });
    assertError(
      await call('POST', '/v1/admin/products', { token: admin.token, payload: { title: 'Gamma', variants: [{ sku: s1, prices: [{ amount: 1, currency: 'USD' }] }] } }),
      409,
      'sku_taken',
    );
    assertError(
      await call('PATCH', `/v1/admin/products/${b.id}`, { token: admin.token, payload: { title: 'Beta renamed', variants: [{ sku: s1, prices: [{ amount: 1, currency: 'USD' }] }] } }),
      409,
      'sku_taken',
    );
    assert.deepEqual((await call('GET', `/v1/products/${b.id}`)).json(), b, 'a rejected update changes nothing');
    assert.deepEqual((await call('GET', `/v1/products/${a.id}`)).json(), a, 'nor the product owning the SKU');

    assertError(await call('POST', '/v1/admin/products', { token: admin.token, payload: { title: 'No variants', variants: [] } }), 400, 'validation_failed');
    assertError(
      await call('POST', '/v1/admin/products', { token: admin.token, payload: { title: 'x', brandId: '424242', variants: [{ sku: sku(), prices: [{ amount: 1, currency: 'USD' }] }] } }),
      400,
      'validation_failed',
    );
    assertError(
      await call('POST', '/v1/admin/products', { token: admin.token, payload: { title: 'x', variants: [{ sku: 'bad sku!', prices: [{ amount: 1, currency: 'USD' }] }] } }),
      400,
      'validation_failed',
    );
    assertError(
      await call('POST', '/v1/admin/products', { token: admin.token, payload: { title: 'x', variants: [{ sku: sku(), prices: [{ amount: -1, currency: 'USD' }] }] } }),
      400,
      'validation_failed',
    );
    assertError(await call('PATCH', '/v1/admin/products/424242', { token: admin.token, payload: { title: 'x' } }), 404, 'not_found');
    assertError(await call('PATCH', `/v1/admin/products/${a.id}`, { token: admin.token, payload: {} }), 400, 'validation_failed');
    assertError(await call('PATCH', `/v1/admin/products/${a.id}`, { token: admin.token, payload: { status: 'deleted' } }), 400, 'validation_failed');
  });

  it('update: fields change, variants upsert by SKU, brand can be set and cleared', async () => {
    const brand = (await call('POST', '/v1/admin/brands', { token: admin.token, payload: { name: `Brand ${word()}` } })).json<{ id: string; name: string }>();
    const s1 = sku();
    const p = await adminCreateProduct({ title: 'Old title', variants: [{ sku: s1, prices: [{ amount: 500, currency: 'USD' }] }] });
    const s2 = sku();
    const res = await call('PATCH', `/v1/admin/products/${p.id}`, {
      token: admin.token,
      payload: { title: 'New title', brandId: brand.id, variants: [{ sku: s1, prices: [{ amount: 450, currency: 'USD' }] }, { sku: s2, prices: [{ amount: 700, currency: 'USD' }] }] },
    });
    assert.equal(res.statusCode, 200, res.body);
    const u = res.json<ProductBody>();
    assert.equal(u.title, 'New title');
    assert.deepEqual(u.brand, { id: brand.id, name: brand.name });
    assert.deepEqual(u.variants.map((v) => [v.sku, v.price?.amount]), [[s1, 450], [s2, 700]]);
    assert.equal(u.variants[0]!.id, p.variants[0]!.id, 'the variant is updated in place');
    const cleared = await call('PATCH', `/v1/admin/products/${p.id}`, { token: admin.token, payload: { brandId: null } });
    assert.equal(cleared.statusCode, 200, cleared.body);
    assert.equal(cleared.json().brand, null);
    assert.equal(cleared.json().title, 'New title', 'fields not in the patch stay');
  });

  it('archive: archived products leave the list and the search index and cannot be added to carts', async () => {
    const title = `Archivable ${word()}`;
    const s1 = sku();
    const p = await adminCreateProduct({ title, variants: [{ sku: s1, prices: [{ amount: 100, currency: 'USD' }] }] });
    await drainOutbox(t);
    assert.ok((await walk<{ id: string }>('/v1/products?limit=100')).some((x) => x.id === p.id));
    assert.equal((await call('GET', `/v1/search?q=${encodeURIComponent(title)}`)).json().total, 1);

    const res = await call('PATCH', `/v1/admin/products/${p.id}`, { token: admin.token, payload: { status: 'archived' } });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().status, 'archived');
    await drainOutbox(t);
    assert.equal((await walk<{ id: string }>('/v1/products?limit=100')).some((x) => x.id === p.id), false);
    assert.equal((await call('GET', `/v1/search?q=${encodeURIComponent(title)}`)).json().total, 0);
    const cartId = await cartWith(t, customer.token, []);
    assertError(await call('POST', `/v1/carts/${cartId}/lines`, { token: customer.token, payload: { sku: s1, quantity: 1 } }), 400, 'validation_failed');

    const back = await call('PATCH', `/v1/admin/products/${p.id}`, { token: admin.token, payload: { status: 'active' } });
    assert.equal(back.json().status, 'active');
    assert.ok((await walk<{ id: string }>('/v1/products?limit=100')).some((x) => x.id === p.id));
  });

  describe('product list', () => {
    let rootId: string;
    let childId: string;
    let otherId: string;
    let brandA: string;
    let brandB: string;
    const made: { id: string; sku: string; category: string; brand: string; price: number; stocked: boolean }[] = [];

    before(async () => {
      const cat = async (name: string, parentId?: string): Promise<string> =>
        (await call('POST', '/v1/admin/categories', { token: admin.token, payload: { name, ...(parentId ? { parentId } : {}) } })).json<{ id: string }>().id;
      rootId = await cat(`List root ${word()}`);
      childId = await cat('List child', rootId);
      otherId = await cat(`List other ${word()}`);
      brandA = (await call('POST', '/v1/admin/brands', { token: admin.token, payload: { name: `List A ${word()}` } })).json<{ id: string }>().id;
      brandB = (await call('POST', '/v1/admin/brands', { token: admin.token, payload: { name: `List B ${word()}` } })).json<{ id: string }>().id;
      for (let i = 0; i < 23; i++) {
        const category = [rootId, childId, otherId][i % 3]!;
        const brand = i % 2 === 0 ? brandA : brandB;
        const price = 1000 + i * 100;
        const s = sku('L');
        const p = await adminCreateProduct({ title: `List item ${i}`, brandId: brand, categoryId: category, variants: [{ sku: s, prices: [{ amount: price, currency: 'USD' }] }] });
        const stocked = i % 4 === 0;
        if (stocked) await receive(s, 2);
        made.push({ id: p.id, sku: s, category, brand, price, stocked });
      }
      await drainOutbox(t);
    });

    const ids = (xs: { id: string }[]): string[] => xs.map((x) => x.id);
    const expected = (pred: (m: (typeof made)[number]) => boolean): string[] =>
      made.filter(pred).map((m) => m.id).sort((a, b) => (BigInt(b) > BigInt(a) ? 1 : -1));

    it('keyset pagination: walking every page gives each active product once, newest first, no gaps', async () => {
      for (const limit of [1, 5, 7, 100]) {
        const all = ids(await walk(`/v1/products?limit=${limit}`));
        assertDescendingUnique(all);
        const active = await t.s.dbs.core('catalog')<{ id: string }[]>`SELECT id::text FROM products WHERE status = 'active' ORDER BY id DESC`;
        assert.deepEqual(all, active.map((r) => r.id), `limit ${limit}`);
      }
      const first = await call('GET', '/v1/products?limit=5');
      assert.equal(first.json().items.length, 5);
      assert.equal(typeof first.json().nextCursor, 'string');
      assert.equal((await call('GET', '/v1/products')).json().items.length, 20, 'default page size');
    });

    it('category filter covers the subtree', async () => {
      assert.deepEqual(ids(await walk(`/v1/products?category=${rootId}&limit=4`)), expected((m) => m.category === rootId || m.category === childId));
      assert.deepEqual(ids(await walk(`/v1/products?category=${childId}&limit=4`)), expected((m) => m.category === childId));
      assert.deepEqual(ids(await walk(`/v1/products?category=${otherId}&limit=4`)), expected((m) => m.category === otherId));
      assert.deepEqual(ids(await walk('/v1/products?category=424242')), []);
    });

    it('brand, price and combined filters', async () => {
      assert.deepEqual(ids(await walk(`/v1/products?brand=${brandA}&limit=3`)), expected((m) => m.brand === brandA));
      assert.deepEqual(ids(await walk(`/v1/products?brand=${brandB}&category=${otherId}`)), expected((m) => m.brand === brandB && m.category === otherId));
      assert.deepEqual(
        ids(await walk(`/v1/products?category=${rootId}&minPrice=1500&maxPrice=2500&limit=2`)),
        expected((m) => (m.category === rootId || m.category === childId) && m.price >= 1500 && m.price <= 2500),
        'minPrice and maxPrice are inclusive',
      );
      assert.deepEqual(ids(await walk(`/v1/products?brand=${brandA}&minPrice=3000`)), expected((m) => m.brand === brandA && m.price >= 3000));
      assert.deepEqual(ids(await walk(`/v1/products?brand=${brandA}&maxPrice=999`)), []);
      assert.deepEqual(ids(await walk(`/v1/products?brand=${brandA}&minPrice=1000&currency=EUR`)), [], 'no EUR prices');
    });

    it('inStock follows stock changes once the outbox is relayed', async () => {
      const inRoot = (m: (typeof made)[number]): boolean => m.category === rootId || m.category === childId || m.category === otherId;
      assert.deepEqual(ids(await walk(`/v1/products?brand=${brandA}&inStock=true`)), expected((m) => m.brand === brandA && m.stocked));
      assert.deepEqual(ids(await walk(`/v1/products?brand=${brandB}&inStock=false`)), expected((m) => m.brand === brandB && !m.stocked));
      // Sell one out and stock another; the flags follow after one relay pass.
      const soldOut = made.find((m) => m.stocked)!;
      const restocked = made.find((m) => !m.stocked)!;
      const adj = await call('POST', '/v1/admin/inventory/adjustments', { token: admin.token, payload: { sku: soldOut.sku, locationId: 'main', quantity: -2 } });
      assert.equal(adj.statusCode, 201, adj.body);
      await receive(restocked.sku, 1);
      soldOut.stocked = false;
      restocked.stocked = true;
      // stock_changed sets the variant flag and emits product.changed, which evicts cached pages.
      await drainOutbox(t);
      const stocked = [...ids(await walk(`/v1/products?brand=${brandA}&inStock=true`)), ...ids(await walk(`/v1/products?brand=${brandB}&inStock=true`))];
      assert.deepEqual(stocked.sort(), expected((m) => inRoot(m) && m.stocked).sort());
      const detail = (await call('GET', `/v1/products/${soldOut.id}`)).json<ProductBody>();
      assert.equal(detail.variants[0]!.inStock, false);
    });

    it('bad queries → 400', async () => {
      assertError(await call('GET', '/v1/products?limit=0'), 400, 'validation_failed');
      assertError(await call('GET', '/v1/products?limit=101'), 400, 'validation_failed');
      assertError(await call('GET', '/v1/products?limit=abc'), 400, 'validation_failed');
      assertError(await call('GET', '/v1/products?cursor=not-a-cursor'), 400, 'invalid_cursor');
      assertError(await call('GET', `/v1/products?cursor=${Buffer.from('["0"]').toString('base64url')}`), 400, 'invalid_cursor');
      assertError(await call('GET', '/v1/products?color=red'), 400, 'validation_failed');
      assertError(await call('GET', '/v1/products?category=abc'), 400, 'validation_failed');
      assertError(await call('GET', '/v1/products?minPrice=-1'), 400, 'validation_failed');
      assertError(await call('GET', '/v1/products?inStock=maybe'), 400, 'validation_failed');
    });
  });
});

describe('inventory', () => {
  it('GET availability: per location and in total; unknown SKU has none; malformed SKU → 400', async () => {
    const p = await createProduct(t, 0);
    await t.s.inventory.upsertLocation('east', 'East');
    await receive(p.sku, 3, 'main');
    await receive(p.sku, 4, 'east');
    const res = await call('GET', `/v1/inventory/${p.sku}`);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json(), {
      sku: p.sku,
      available: 7,
      locations: [
        { locationId: 'east', onHand: 4, reserved: 0, available: 4 },
        { locationId: 'main', onHand: 3, reserved: 0, available: 3 },
      ],
    });
    assert.deepEqual((await call('GET', '/v1/inventory/NO-SUCH-SKU')).json(), { sku: 'NO-SUCH-SKU', available: 0, locations: [] });
    assertError(await call('GET', '/v1/inventory/-bad'), 400, 'validation_failed');
  });

  it('locations: PUT → 204, listed; malformed id → 400', async () => {
    const put = await call('PUT', '/v1/admin/inventory/locations/west-1', { token: admin.token, payload: { name: 'West 1' } });
    assert.equal(put.statusCode, 204, put.body);
    const list = await call('GET', '/v1/admin/inventory/locations', { token: admin.token });
    assert.ok(list.json<{ items: { id: string; name: string }[] }>().items.some((l) => l.id === 'west-1' && l.name === 'West 1'));
    assertError(await call('PUT', '/v1/admin/inventory/locations/West_1', { token: admin.token, payload: { name: 'x' } }), 400, 'validation_failed');
    assertError(await call('PUT', '/v1/admin/inventory/locations/w2', { token: admin.token, payload: {} }), 400, 'validation_failed');
  });

  it('receipts, adjustments and returns → 201 with the new availability', async () => {
    const p = await createProduct(t, 0);
    const post = (kind: string, quantity: unknown, extra: Record<string, unknown> = {}): Promise<LightMyRequestResponse> =>
      call('POST', `/v1/admin/inventory/${kind}`, { token: admin.token, payload: { sku: p.sku, locationId: 'main', quantity, ...extra } });
    let res = await post('receipts', 10, { note: 'PO-1' });
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.json().available, 10);
    res = await post('adjustments', -3);
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.json().available, 7);
    res = await post('returns', 2);
    assert.equal(res.statusCode, 201, res.body);
    assert.deepEqual(res.json().locations, [{ locationId: 'main', onHand: 9, reserved: 0, available: 9 }]);
    res = await post('adjustments', 5);
    assert.equal(res.json().available, 14);
    const ledger = await t.s.dbs.core('inventory')<{ kind: string; on_hand_delta: string }[]>`
      SELECT kind, on_hand_delta::text FROM stock_ledger WHERE sku = ${p.sku} ORDER BY id`;
    assert.deepEqual(ledger.map((r) => [r.kind, Number(r.on_hand_delta)]), [['receipt', 10], ['adjustment', -3], ['return', 2], ['adjustment', 5]]);
  });

  it('errors: below zero or below reserved → 409 insufficient_stock; unknown SKU or location, bad quantities → 400', async () => {
    const p = await createProduct(t, 5);
    const post = (kind: string, payload: Record<string, unknown>): Promise<LightMyRequestResponse> =>
      call('POST', `/v1/admin/inventory/${kind}`, { token: admin.token, payload: { sku: p.sku, locationId: 'main', ...payload } });
    assertError(await post('adjustments', { quantity: -6 }), 409, 'insufficient_stock');
    // Hold 3 units for a checkout: on hand may not drop below them.
    const reservationId = '4242424242';
    const held = await t.s.inventory.reserve(reservationId, [{ sku: p.sku, quantity: 3 }], 60_000);
    assert.ok(held.ok);
    assertError(await post('adjustments', { quantity: -3 }), 409, 'insufficient_stock');
    assert.equal((await post('adjustments', { quantity: -2 })).statusCode, 201, 'down to exactly the reserved units is fine');
    assert.deepEqual((await t.s.inventory.availability(p.sku)).locations, [{ locationId: 'main', onHand: 3, reserved: 3, available: 0 }]);
    assertError(await call('POST', '/v1/admin/inventory/adjustments', { token: admin.token, payload: { sku: p.sku, locationId: 'east-9', quantity: -1 } }), 400, 'validation_failed');

    assertError(await post('receipts', { sku: 'NOT-IN-CATALOG', quantity: 1 }), 400, 'validation_failed');
    assertError(await post('receipts', { locationId: 'nowhere', quantity: 1 }), 400, 'validation_failed');
    assertError(await post('receipts', { quantity: 0 }), 400, 'validation_failed');
    assertError(await post('receipts', { quantity: -1 }), 400, 'validation_failed');
    assertError(await post('returns', { quantity: -1 }), 400, 'validation_failed');
    assertError(await post('adjustments', { quantity: 0 }), 400, 'validation_failed');
    assertError(await post('receipts', { quantity: 1.5 }), 400, 'validation_failed');
    assertError(await post('receipts', { quantity: 1_000_001 }), 400, 'validation_failed');
    assertError(await post('receipts', { quantity: 1, extra: true }), 400, 'validation_failed');
    assertError(await post('receipts', { quantity: 1, note: 'nul \u0000 byte' }), 400, 'validation_failed');
    assert.deepEqual((await t.s.inventory.availability(p.sku)).locations, [{ locationId: 'main', onHand: 3, reserved: 3, available: 0 }], 'rejected movements change nothing');

    const released = await t.s.inventory.release(reservationId);
    assert.ok(released.ok);
    await assertInvariants(t);
  });
});

describe('carts', () => {
  interface CartBody {
    id: string;
    status: string;
    currency: string;
    orderId: string | null;
    lines: { id: string; sku: string; title: string | null; quantity: number; unitPrice: unknown; lineTotal: unknown }[];
    subtotal: { amount: number; currency: string };
    purchasable: boolean;
  }

  it('create → 201 on the user shard, with or without a body', async () => {
    const u = await createUser(t);
    const res = await call('POST', '/v1/carts', { token: u.token, payload: {} });
    assert.equal(res.statusCode, 201, res.body);
    const { createdAt, updatedAt, ...c } = res.json<CartBody & { createdAt: string; updatedAt: string }>();
    assertOnUserShard(c.id, u.userId, 'cart id');
    assert.deepEqual(c, { id: c.id, status: 'open', currency: 'USD', orderId: null, lines: [], subtotal: { amount: 0, currency: 'USD' }, purchasable: true });
    assert.ok(!Number.isNaN(Date.parse(createdAt)) && !Number.isNaN(Date.parse(updatedAt)));
    const bare = await call('POST', '/v1/carts', { token: u.token });
    assert.equal(bare.statusCode, 201, bare.body);
    assert.equal(bare.json().currency, 'USD');
    const eur = await call('POST', '/v1/carts', { token: u.token, payload: { currency: 'EUR' } });
    assert.equal(eur.json().currency, 'EUR');
    assertError(await call('POST', '/v1/carts', { token: u.token, payload: { currency: 'usd' } }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/carts', { token: u.token, payload: { owner: '1' } }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/carts', { payload: {} }), 401, 'unauthenticated');
    const got = await call('GET', `/v1/carts/${c.id}`, { token: u.token });
    assert.equal(got.statusCode, 200);
    assert.equal(got.json().id, c.id);
  });

  it('add (201), patch (200), delete (200) lines with server-side prices', async () => {
    const u = await createUser(t);
    const a = await createProduct(t, 10, 1250);
    const b = await createProduct(t, 10, 300);
    const cartId = await cartWith(t, u.token, []);
    const add = await call('POST', `/v1/carts/${cartId}/lines`, { token: u.token, payload: { sku: a.sku, quantity: 2 } });
    assert.equal(add.statusCode, 201, add.body);
    let c = add.json<CartBody>();
    assert.equal(c.lines.length, 1);
    assertOnUserShard(c.lines[0]!.id, u.userId, 'cart line id');
    assert.deepEqual(c.lines[0], {
      id: c.lines[0]!.id,
      sku: a.sku,
      title: `Test product ${a.sku}`,
      quantity: 2,
      unitPrice: { amount: 1250, currency: 'USD' },
      lineTotal: { amount: 2500, currency: 'USD' },
    });
    c = (await call('POST', `/v1/carts/${cartId}/lines`, { token: u.token, payload: { sku: b.sku, quantity: 3 } })).json<CartBody>();
    assert.deepEqual(c.subtotal, { amount: 2500 + 900, currency: 'USD' });
    const lineA = c.lines[0]!.id;
    const lineB = c.lines[1]!.id;

    const patch = await call('PATCH', `/v1/carts/${cartId}/lines/${lineA}`, { token: u.token, payload: { quantity: 100 } });
    assert.equal(patch.statusCode, 200, patch.body);
    assert.equal(patch.json<CartBody>().lines[0]!.quantity, 100);
    assert.deepEqual(patch.json<CartBody>().subtotal, { amount: 125_000 + 900, currency: 'USD' });

    const del = await call('DELETE', `/v1/carts/${cartId}/lines/${lineB}`, { token: u.token });
    assert.equal(del.statusCode, 200, del.body);
    assert.deepEqual(del.json<CartBody>().lines.map((l) => l.id), [lineA]);

    for (const quantity of [0, 101, -1, 1.5, 'abc', null]) {
      assertError(await call('POST', `/v1/carts/${cartId}/lines`, { token: u.token, payload: { sku: a.sku, quantity } }), 400, 'validation_failed');
      assertError(await call('PATCH', `/v1/carts/${cartId}/lines/${lineA}`, { token: u.token, payload: { quantity } }), 400, 'validation_failed');
    }
    assertError(await call('POST', `/v1/carts/${cartId}/lines`, { token: u.token, payload: { sku: 'NOT-SOLD-HERE', quantity: 1 } }), 400, 'validation_failed');
    assertError(await call('POST', `/v1/carts/${cartId}/lines`, { token: u.token, payload: { sku: a.sku } }), 400, 'validation_failed');
    assertError(await call('POST', `/v1/carts/${cartId}/lines`, { token: u.token, payload: { sku: a.sku, quantity: 1, price: 1 } }), 400, 'validation_failed');
    assertError(await call('PATCH', `/v1/carts/${cartId}/lines/123456`, { token: u.token, payload: { quantity: 1 } }), 404, 'not_found');
    assertError(await call('DELETE', `/v1/carts/${cartId}/lines/${lineB}`, { token: u.token }), 404, 'not_found');
    assertError(await call('GET', '/v1/carts/123456', { token: u.token }), 404, 'not_found');
    assertError(await call('GET', '/v1/carts/9223372036854775808', { token: u.token }), 400, 'validation_failed');
    assertError(await call('POST', `/v1/carts/${cartId}/lines`, { payload: { sku: a.sku, quantity: 1 } }), 401, 'unauthenticated');
    const after = (await call('GET', `/v1/carts/${cartId}`, { token: u.token })).json<CartBody>();
    assert.deepEqual(after.lines.map((l) => [l.id, l.quantity]), [[lineA, 100]], 'rejected calls changed nothing');
  });

  it("another user's cart → 404 for every cart route (and it is left alone)", async () => {
    const owner = await createUser(t);
    const intruder = await createUser(t);
    const p = await createProduct(t, 10);
    const cartId = await cartWith(t, owner.token, [{ sku: p.sku, quantity: 1 }]);
    const lineId = (await call('GET', `/v1/carts/${cartId}`, { token: owner.token })).json<CartBody>().lines[0]!.id;
    assertError(await call('GET', `/v1/carts/${cartId}`, { token: intruder.token }), 404, 'not_found');
    assertError(await call('POST', `/v1/carts/${cartId}/lines`, { token: intruder.token, payload: { sku: p.sku, quantity: 1 } }), 404, 'not_found');
    assertError(await call('PATCH', `/v1/carts/${cartId}/lines/${lineId}`, { token: intruder.token, payload: { quantity: 5 } }), 404, 'not_found');
    assertError(await call('DELETE', `/v1/carts/${cartId}/lines/${lineId}`, { token: intruder.token }), 404, 'not_found');
    assertError(await checkout(t, intruder.token, cartId, 'steal'), 404, 'not_found');
    const c = (await call('GET', `/v1/carts/${cartId}`, { token: owner.token })).json<CartBody>();
    assert.deepEqual([c.status, c.lines.map((l) => l.quantity)], ['open', [1]]);
  });

  it('the 101st line → 422 cart_limit', async () => {
    const u = await createUser(t);
    const p = await createProduct(t, 1);
    const cartId = await cartWith(t, u.token, []);
    for (let i = 0; i < 100; i++) {
      const r = await call('POST', `/v1/carts/${cartId}/lines`, { token: u.token, payload: { sku: p.sku, quantity: 1 } });
      assert.equal(r.statusCode, 201, r.body);
    }
    assertError(await call('POST', `/v1/carts/${cartId}/lines`, { token: u.token, payload: { sku: p.sku, quantity: 1 } }), 422, 'cart_limit');
    assert.equal((await call('GET', `/v1/carts/${cartId}`, { token: u.token })).json<CartBody>().lines.length, 100);
  });
});

interface OrderBody {
  id: string;
  userId: string;
  status: string;
  total: { amount: number; currency: string };
  lines: { sku: string; title: string; quantity: number; unitPrice: { amount: number; currency: string }; lineTotal: { amount: number; currency: string } }[];
  cancelReason: string | null;
  paidAt: string | null;
  updatedAt: string;
}

describe('checkout', () => {
  it('201 {order:{id,status,total,lines}} on the user shard; stock consumed; cart closed', async () => {
    const u = await createUser(t);
    const p = await createProduct(t, 5, 1250);
    const cartId = await cartWith(t, u.token, [{ sku: p.sku, quantity: 2 }]);
    const res = await checkout(t, u.token, cartId, `first-${word()}`);
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.headers['idempotency-replayed'], undefined);
    assert.equal(res.headers['meridian-consistency'], undefined, 'a checkout changes nothing the catalog reads serve');
    const body = res.json<{ order: OrderBody }>();
    assert.deepEqual(Object.keys(body), ['order']);
    const o = body.order;
    assertOnUserShard(o.id, u.userId, 'order id');
    assert.equal(o.userId, u.userId);
    assert.equal(o.status, 'paid');
    assert.deepEqual(o.total, { amount: 2500, currency: 'USD' });
    assert.deepEqual(o.lines, [
      { sku: p.sku, title: `Test product ${p.sku}`, quantity: 2, unitPrice: { amount: 1250, currency: 'USD' }, lineTotal: { amount: 2500, currency: 'USD' } },
    ]);
    assert.ok(o.paidAt !== null);
    assert.equal((await t.s.inventory.availability(p.sku)).available, 3);
    const cart = (await call('GET', `/v1/carts/${cartId}`, { token: u.token })).json<{ status: string; orderId: string }>();
    assert.deepEqual([cart.status, cart.orderId], ['checked_out', o.id]);
    assertError(await call('POST', `/v1/carts/${cartId}/lines`, { token: u.token, payload: { sku: p.sku, quantity: 1 } }), 409, 'cart_not_open');
    const lineCount = (await call('GET', `/v1/carts/${cartId}`, { token: u.token })).json<{ lines: { id: string }[] }>().lines;
    assertError(await call('PATCH', `/v1/carts/${cartId}/lines/${lineCount[0]!.id}`, { token: u.token, payload: { quantity: 1 } }), 409, 'cart_not_open');
    assertError(await call('DELETE', `/v1/carts/${cartId}/lines/${lineCount[0]!.id}`, { token: u.token }), 409, 'cart_not_open');
  });

  it('Idempotency-Key: required; same key + same body replays; same key + different body → 422', async () => {
    const u = await createUser(t);
    const p = await createProduct(t, 5);
    const cartId = await cartWith(t, u.token, [{ sku: p.sku, quantity: 1 }]);
    const body = { cartId, payment: { token: 'tok_visa' } };
    assertError(await call('POST', '/v1/checkout', { token: u.token, payload: body }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/checkout', { token: u.token, payload: body, headers: { 'idempotency-key': 'has space' } }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/checkout', { token: u.token, payload: body, headers: { 'idempotency-key': 'k'.repeat(256) } }), 400, 'validation_failed');
    assert.equal((await t.s.inventory.availability(p.sku)).available, 5, 'no side effect without a key');

    const key = `idem-${word()}`;
    const first = await checkout(t, u.token, cartId, key);
    assert.equal(first.statusCode, 201, first.body);
    const replay = await checkout(t, u.token, cartId, key);
    assert.equal(replay.statusCode, 201);
    assert.equal(replay.headers['idempotency-replayed'], 'true');
    assert.deepEqual(replay.json(), first.json());
    assertError(await checkout(t, u.token, cartId, key, 'tok_decline'), 422, 'idempotency_key_reused');
    const otherCart = await cartWith(t, u.token, [{ sku: p.sku, quantity: 1 }]);
    assertError(await checkout(t, u.token, otherCart, key), 422, 'idempotency_key_reused');
    assert.equal((await t.s.inventory.availability(p.sku)).available, 4, 'one sale only');
    // Keys are per user: another user may use the same key.
    const v = await createUser(t);
    const vCart = await cartWith(t, v.token, [{ sku: p.sku, quantity: 1 }]);
    assert.equal((await checkout(t, v.token, vCart, key)).statusCode, 201);
  });

  it('tok_decline → 402 payment_declined: stock released, order cancelled, cart reopened; the key replays 402', async () => {
    const u = await createUser(t);
    const p = await createProduct(t, 4);
    const cartId = await cartWith(t, u.token, [{ sku: p.sku, quantity: 3 }]);
    const key = `decline-${word()}`;
    const res = await checkout(t, u.token, cartId, key, 'tok_decline');
    const err = assertError(res, 402, 'payment_declined');
    const orderId = err.details?.orderId;
    assertOnUserShard(orderId, u.userId, 'declined order id');
    assert.deepEqual((await t.s.inventory.availability(p.sku)).locations, [{ locationId: 'main', onHand: 4, reserved: 0, available: 4 }]);
    assert.equal(await t.s.inventory.reservationStatus(orderId as string), 'released');
    const order = await call('GET', `/v1/orders/${orderId as string}`, { token: u.token });
    assert.equal(order.json<OrderBody>().status, 'cancelled');
    assert.equal(order.json<OrderBody>().cancelReason, 'payment_declined');
    assert.equal((await t.s.payments.find(orderId as string))?.status, 'declined');
    const cart = (await call('GET', `/v1/carts/${cartId}`, { token: u.token })).json<{ status: string; orderId: string | null }>();
    assert.deepEqual([cart.status, cart.orderId], ['open', null]);

    const replay = await checkout(t, u.token, cartId, key, 'tok_decline');
    assertError(replay, 402, 'payment_declined');
    assert.equal(replay.headers['idempotency-replayed'], 'true');
    assert.deepEqual(replay.json(), res.json());
    assertError(await checkout(t, u.token, cartId, `garbage-${word()}`, 'tok_not_a_card'), 402, 'payment_declined');
    const retry = await checkout(t, u.token, cartId, `retry-${word()}`);
    assert.equal(retry.statusCode, 201, retry.body);
    assert.equal((await t.s.inventory.availability(p.sku)).available, 1);
  });

  it('sold out → 409 out_of_stock with details; nothing held; the key is free for a retry', async () => {
    const u = await createUser(t);
    const p = await createProduct(t, 1);
    const cartId = await cartWith(t, u.token, [{ sku: p.sku, quantity: 2 }]);
    const key = `soldout-${word()}`;
    const err = assertError(await checkout(t, u.token, cartId, key), 409, 'out_of_stock');
    assert.deepEqual(err.details, { sku: p.sku, requested: 2, available: 1 });
    assert.deepEqual((await t.s.inventory.availability(p.sku)).locations, [{ locationId: 'main', onHand: 1, reserved: 0, available: 1 }]);
    assert.equal((await call('GET', '/v1/orders', { token: u.token })).json().items.length, 0, 'no order');
    assert.equal((await call('GET', `/v1/carts/${cartId}`, { token: u.token })).json().status, 'open');
    const lineId = (await call('GET', `/v1/carts/${cartId}`, { token: u.token })).json<{ lines: { id: string }[] }>().lines[0]!.id;
    await call('PATCH', `/v1/carts/${cartId}/lines/${lineId}`, { token: u.token, payload: { quantity: 1 } });
    assert.equal((await checkout(t, u.token, cartId, key)).statusCode, 201, 'the same key works once the cart is fixed');
    const other = await createUser(t);
    const otherCart = await cartWith(t, other.token, [{ sku: p.sku, quantity: 1 }]);
    assertError(await checkout(t, other.token, otherCart, 'late'), 409, 'out_of_stock');
  });

  it('a line added while the checkout runs → 409 cart_changed; nothing held, no order, the key is free', async () => {
    const u = await createUser(t);
    const p = await createProduct(t, 10);
    const cartId = await cartWith(t, u.token, [{ sku: p.sku, quantity: 1 }]);
    // Add a line after the saga has read the cart and before it closes it (during the reservation).
    const inventory = t.s.inventory;
    const reserve = inventory.reserve.bind(inventory);
    inventory.reserve = async (id, lines, ttlMs) => {
      inventory.reserve = reserve;
      await t.s.carts.addLine(u.userId, cartId, p.sku, 2);
      return reserve(id, lines, ttlMs);
    };
    try {
      assertError(await checkout(t, u.token, cartId, 'moving-cart'), 409, 'cart_changed');
    } finally {
      inventory.reserve = reserve;
    }
    const cart = (await call('GET', `/v1/carts/${cartId}`, { token: u.token })).json<{ status: string; lines: { quantity: number }[] }>();
    assert.deepEqual([cart.status, cart.lines.map((l) => l.quantity)], ['open', [1, 2]]);
    assert.deepEqual((await t.s.inventory.availability(p.sku)).locations, [{ locationId: 'main', onHand: 10, reserved: 0, available: 10 }]);
    assert.equal((await call('GET', '/v1/orders', { token: u.token })).json().items.length, 0);
    const retry = await checkout(t, u.token, cartId, 'moving-cart');
    assert.equal(retry.statusCode, 201, retry.body);
    assert.deepEqual(retry.json().order.lines.map((l: { quantity: number }) => l.quantity), [1, 2], 'the order holds every line of the closed cart');
    await assertInvariants(t);
  });

  it('checked-out cart → 409 cart_not_open; empty cart → 422 cart_empty; unknown cart → 404; bad bodies → 400; no token → 401', async () => {
    const u = await createUser(t);
    const p = await createProduct(t, 5);
    const cartId = await cartWith(t, u.token, [{ sku: p.sku, quantity: 1 }]);
    assert.equal((await checkout(t, u.token, cartId, 'once')).statusCode, 201);
    assertError(await checkout(t, u.token, cartId, 'twice'), 409, 'cart_not_open');
    const empty = await cartWith(t, u.token, []);
    assertError(await checkout(t, u.token, empty, 'empty'), 422, 'cart_empty');
    assertError(await checkout(t, u.token, '123456789', 'nocart'), 404, 'not_found');
    // Nothing happened, so the key was given back: the same key with another body is a new request.
    const second = await cartWith(t, u.token, [{ sku: p.sku, quantity: 1 }]);
    assert.equal((await checkout(t, u.token, second, 'nocart')).statusCode, 201);
    assertError(await checkout(t, u.token, '9223372036854775808', 'huge'), 400, 'validation_failed');
    const post = (payload: unknown): Promise<LightMyRequestResponse> =>
      call('POST', '/v1/checkout', { token: u.token, payload, headers: { 'idempotency-key': `bad-${word()}` } });
    assertError(await post({ cartId: empty }), 400, 'validation_failed');
    assertError(await post({ cartId: 'abc', payment: { token: 'tok_visa' } }), 400, 'validation_failed');
    assertError(await post({ cartId: empty, payment: { token: '' } }), 400, 'validation_failed');
    assertError(await post({ cartId: empty, payment: { token: 'tok_visa', amount: 1 } }), 400, 'validation_failed');
    assertError(await post({ cartId: empty, payment: { token: 'tok_visa' }, total: 0 }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/checkout', { payload: { cartId: empty, payment: { token: 'tok_visa' } }, headers: { 'idempotency-key': 'x' } }), 401, 'unauthenticated');
    assert.equal((await call('GET', '/v1/orders', { token: u.token })).json().items.length, 2);
    await assertInvariants(t);
  });

  it('a product archived after it went into the cart → 422 price_unavailable, nothing reserved, the key free; prices are read at checkout', async () => {
    const u = await createUser(t);
    const kept = await createProduct(t, 5, 300);
    const gone = await createProduct(t, 5, 700);
    const cartId = await cartWith(t, u.token, [{ sku: kept.sku, quantity: 1 }, { sku: gone.sku, quantity: 2 }]);
    const available = async (s: string): Promise<number> => (await call('GET', `/v1/inventory/${s}`)).json<{ available: number }>().available;
    const setProduct = async (id: string, payload: Record<string, unknown>): Promise<void> => {
      assert.equal((await call('PATCH', `/v1/admin/products/${id}`, { token: admin.token, payload })).statusCode, 200);
    };

    await setProduct(gone.productId, { status: 'archived' });
    const refused = await checkout(t, u.token, cartId, 'archived-meanwhile');
    assertError(refused, 422, 'price_unavailable');
    assert.ok(refused.json().error.message.includes(gone.sku), refused.body);
    assert.deepEqual([await available(kept.sku), await available(gone.sku)], [5, 5], 'nothing reserved');

    // Back on sale at a new price: the same key is a new attempt, priced now.
    await setProduct(gone.productId, { status: 'active', variants: [{ sku: gone.sku, prices: [{ amount: 650, currency: 'USD' }] }] });
    const res = await checkout(t, u.token, cartId, 'archived-meanwhile');
    assert.equal(res.statusCode, 201, res.body);
    assert.deepEqual(res.json<{ order: OrderBody }>().order.total, { amount: 300 + 2 * 650, currency: 'USD' });
    assert.deepEqual([await available(kept.sku), await available(gone.sku)], [4, 3]);
    await assertInvariants(t);
  });
});

describe('orders', () => {
  let buyer: { userId: string; token: string };
  const orderIds: string[] = [];

  before(async () => {
    buyer = await createUser(t);
    const p = await createProduct(t, 100, 700);
    for (let i = 0; i < 7; i++) {
      const cartId = await cartWith(t, buyer.token, [{ sku: p.sku, quantity: 1 + (i % 3) }]);
      const res = await checkout(t, buyer.token, cartId, `hist-${i}`, i === 3 ? 'tok_decline' : 'tok_visa');
      orderIds.push(res.statusCode === 201 ? res.json<{ order: OrderBody }>().order.id : String(res.json().error.details.orderId));
    }
  });

  it('history: keyset pages, newest first, no duplicates or gaps; every order on the user shard', async () => {
    for (const limit of [1, 3, 7, 20]) {
      const all = await walk<OrderBody>(`/v1/orders?limit=${limit}`, buyer.token);
      assertDescendingUnique(all.map((o) => o.id));
      assert.deepEqual(all.map((o) => o.id), [...orderIds].reverse(), `limit ${limit}`);
      for (const o of all) {
        assertOnUserShard(o.id, buyer.userId, 'order id');
        assert.equal(o.userId, buyer.userId);
      }
    }
    const statuses = (await walk<OrderBody>('/v1/orders', buyer.token)).map((o) => o.status);
    assert.deepEqual(statuses, ['paid', 'paid', 'paid', 'cancelled', 'paid', 'paid', 'paid']);
    assertError(await call('GET', '/v1/orders?cursor=xyz', { token: buyer.token }), 400, 'invalid_cursor');
    assertError(await call('GET', '/v1/orders?limit=101', { token: buyer.token }), 400, 'validation_failed');
    assertError(await call('GET', '/v1/orders'), 401, 'unauthenticated');
  });

  it("detail: own order → 200; another user's or unknown order → 404", async () => {
    const own = await call('GET', `/v1/orders/${orderIds[0]!}`, { token: buyer.token });
    assert.equal(own.statusCode, 200, own.body);
    assert.equal(own.json<OrderBody>().id, orderIds[0]);
    assertError(await call('GET', `/v1/orders/${orderIds[0]!}`, { token: customer.token }), 404, 'not_found');
    assertError(await call('GET', '/v1/orders/123456789', { token: buyer.token }), 404, 'not_found');
    assertError(await call('GET', '/v1/orders/abc', { token: buyer.token }), 400, 'validation_failed');
  });

  it('admin list: all orders, status filter, keyset pages', async () => {
    const all = await walk<OrderBody>('/v1/admin/orders?limit=4', admin.token);
    assertDescendingUnique(all.map((o) => o.id));
    const inDb = await t.s.dbs.shardPools()[0]!<{ id: string; status: string }[]>`SELECT id::text, status FROM orders ORDER BY id DESC`;
    assert.deepEqual(all.map((o) => o.id), inDb.map((r) => r.id));
    for (const status of ['paid', 'cancelled', 'refunded']) {
      const filtered = await walk<OrderBody>(`/v1/admin/orders?status=${status}&limit=3`, admin.token);
      assert.deepEqual(filtered.map((o) => o.id), inDb.filter((r) => r.status === status).map((r) => r.id), status);
      for (const o of filtered) assert.equal(o.status, status);
    }
    assert.ok((await walk<OrderBody>('/v1/admin/orders?status=cancelled', admin.token)).some((o) => o.id === orderIds[3]));
    assertError(await call('GET', '/v1/admin/orders?status=lost', { token: admin.token }), 400, 'validation_failed');
    const one = await call('GET', `/v1/admin/orders/${orderIds[1]!}`, { token: admin.token });
    assert.equal(one.statusCode, 200);
    assert.equal(one.json().userId, buyer.userId);
    assertError(await call('GET', '/v1/admin/orders/123456789', { token: admin.token }), 404, 'not_found');
  });

  it('admin transitions: paid → fulfilled → shipped → delivered → refunded; illegal moves → 409 and change nothing', async () => {
    const id = orderIds[0]!;
    const move = (to: string): Promise<LightMyRequestResponse> => call('POST', `/v1/admin/orders/${id}/transitions`, { token: admin.token, payload: { to } });
    const err = assertError(await move('shipped'), 409, 'illegal_transition');
    assert.deepEqual(err.details, { from: 'paid', to: 'shipped' });
    assertError(await move('paid'), 409, 'illegal_transition');
    assertError(await move('cancelled'), 409, 'illegal_transition');
    for (const to of ['fulfilled', 'shipped', 'delivered']) {
      const res = await move(to);
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.json<OrderBody>().status, to);
      assertError(await move('paid'), 409, 'illegal_transition');
    }
    assertError(await move('cancelled'), 409, 'illegal_transition');
    assert.equal((await t.s.payments.find(id))?.status, 'captured');
    const refunded = await move('refunded');
    assert.equal(refunded.statusCode, 200, refunded.body);
    assert.equal(refunded.json<OrderBody>().status, 'refunded');
    assert.equal((await t.s.payments.find(id))?.status, 'refunded');
    const before = (await call('GET', `/v1/orders/${id}`, { token: buyer.token })).json<OrderBody>();
    for (const to of ['paid', 'fulfilled', 'refunded', 'cancelled', 'pending_payment']) assertError(await move(to), 409, 'illegal_transition');
    assert.deepEqual((await call('GET', `/v1/orders/${id}`, { token: buyer.token })).json(), before);
    const history = await t.s.dbs.forId(id)<{ from_status: string | null; to_status: string; actor: string }[]>`
      SELECT from_status, to_status, actor FROM order_history WHERE order_id = ${id} ORDER BY at, to_status`;
    assert.deepEqual(history.map((h) => [h.from_status, h.to_status, h.actor]), [
      [null, 'pending_payment', 'checkout'],
      ['pending_payment', 'paid', 'checkout'],
      ['paid', 'fulfilled', 'admin'],
      ['fulfilled', 'shipped', 'admin'],
      ['shipped', 'delivered', 'admin'],
      ['delivered', 'refunded', 'admin'],
    ]);
    assertError(await call('POST', `/v1/admin/orders/${orderIds[1]!}/transitions`, { token: admin.token, payload: { to: 'lost' } }), 400, 'validation_failed');
    assertError(await call('POST', '/v1/admin/orders/123456789/transitions', { token: admin.token, payload: { to: 'fulfilled' } }), 404, 'not_found');
    assertError(await call('POST', `/v1/admin/orders/${orderIds[3]!}/transitions`, { token: admin.token, payload: { to: 'refunded' } }), 409, 'illegal_transition');
    await assertInvariants(t);
  });
});

describe('search', () => {
  // Nonsense words keep this section's matches apart from every other product in the database.
  const w = { lantern: word(), kettle: word(), brandA: word(), brandB: word(), lighting: word(), lamps: word(), cookware: word() };
  const cap = (s: string): string => s[0]!.toUpperCase() + s.slice(1);
  interface Fx { id: string; title: string; brand: string | null; category: string; price: number; units: number }
  const fx: Fx[] = [];
  const ids: Record<string, string> = {};

  before(async () => {
    const brand = async (name: string): Promise<string> => (await call('POST', '/v1/admin/brands', { token: admin.token, payload: { name } })).json<{ id: string }>().id;
    const category = async (name: string, parentId?: string): Promise<string> =>
      (await call('POST', '/v1/admin/categories', { token: admin.token, payload: { name, ...(parentId ? { parentId } : {}) } })).json<{ id: string }>().id;
    ids.brandA = await brand(cap(w.brandA));
    ids.brandB = await brand(cap(w.brandB));
    ids.lighting = await category(cap(w.lighting));
    ids.lamps = await category(cap(w.lamps), ids.lighting);
    ids.cookware = await category(cap(w.cookware));
    const rows: [string, string | null, string, number, number][] = [
      [`Brass ${w.lantern}`, 'brandA', 'lamps', 1500, 3],
      [`Copper ${w.lantern}`, 'brandB', 'lighting', 2500, 0],
      [`Iron ${w.lantern} hook`, null, 'cookware', 900, 2],
      [`Brass ${w.kettle}`, 'brandB', 'cookware', 3000, 1],
      [`Enamel ${w.kettle}`, 'brandA', 'cookware', 2000, 0],
      [`Tiny ${w.lantern}`, 'brandA', 'lamps', 500, 0],
    ];
    for (const [title, b, c, price, units] of rows) {
      const s = sku('S');
      const p = await adminCreateProduct({
        title,
        ...(b ? { brandId: ids[b] } : {}),
        categoryId: ids[c],
        variants: [{ sku: s, prices: [{ amount: price, currency: 'USD' }] }],
      });
      if (units > 0) await receive(s, units);
      fx.push({ id: p.id, title, brand: b ? ids[b]! : null, category: ids[c]!, price, units });
    }
    await drainOutbox(t);
  });

  interface SearchBody {
    items: { id: string; title: string; brand: string | null; category: string | null; price: { amount: number; currency: string } | null; inStock: boolean; score: number }[];
    facets: { brand: { value: string; label: string; count: number }[]; category: { value: string; label: string; count: number }[] };
    total: number;
    page: number;
  }

  async function search(query: string): Promise<SearchBody> {
    const res = await call('GET', `/v1/search?${query}`);
    assert.equal(res.statusCode, 200, res.body);
    return res.json<SearchBody>();
  }

  const sorted = (xs: string[]): string[] => [...xs].sort();

  /** Facet counts must equal a count over every matched item (the page holds them all here). */
  function assertFacetsMatchItems(r: SearchBody): void {
    assert.equal(r.items.length, r.total, 'the page holds every match');
    const byId = new Map(fx.map((f) => [f.id, f]));
    const brandCounts = new Map<string, number>();
    const categoryCounts = new Map<string, number>();
    for (const item of r.items) {
      const f = byId.get(item.id);
      assert.ok(f, `unexpected hit ${item.title}`);
      if (f.brand) brandCounts.set(f.brand, (brandCounts.get(f.brand) ?? 0) + 1);
      categoryCounts.set(f.category, (categoryCounts.get(f.category) ?? 0) + 1);
    }
    assert.deepEqual(new Map(r.facets.brand.map((x) => [x.value, x.count])), brandCounts, 'brand facet');
    assert.deepEqual(new Map(r.facets.category.map((x) => [x.value, x.count])), categoryCounts, 'category facet');
    for (const x of r.facets.brand) assert.equal(x.label, cap(x.value === ids.brandA ? w.brandA : w.brandB));
    for (let i = 1; i < r.facets.brand.length; i++) assert.ok(r.facets.brand[i - 1]!.count >= r.facets.brand[i]!.count, 'facets by count');
  }

  it('finds by title word, with prices, stock flags and facet counts equal to a brute-force count', async () => {
    const r = await search(`q=${w.lantern}`);
    const expected = fx.filter((f) => f.title.includes(w.lantern));
    assert.equal(r.total, 4);
    assert.deepEqual(sorted(r.items.map((i) => i.id)), sorted(expected.map((f) => f.id)));
    for (const item of r.items) {
      const f = fx.find((x) => x.id === item.id)!;
      assertId(item.id, 'search hit id');
      assert.equal(item.title, f.title);
      assert.deepEqual(item.price, { amount: f.price, currency: 'USD' });
      assert.equal(item.inStock, f.units > 0, `inStock of ${f.title}`);
      assert.equal(typeof item.score, 'number');
    }
    assertFacetsMatchItems(r);
    assert.deepEqual(r.facets.brand.find((x) => x.value === ids.brandA)?.count, 2);
    assert.equal(r.page, 1);
  });

  it('finds by brand name and by category name', async () => {
    const byBrand = await search(`q=${w.brandA}`);
    assert.deepEqual(sorted(byBrand.items.map((i) => i.id)), sorted(fx.filter((f) => f.brand === ids.brandA).map((f) => f.id)));
    for (const item of byBrand.items) assert.equal(item.brand, cap(w.brandA));
    assertFacetsMatchItems(byBrand);
    const byCategory = await search(`q=${w.cookware}`);
    assert.deepEqual(sorted(byCategory.items.map((i) => i.id)), sorted(fx.filter((f) => f.category === ids.cookware).map((f) => f.id)));
    for (const item of byCategory.items) assert.equal(item.category, cap(w.cookware));
    assertFacetsMatchItems(byCategory);
    const either = await search(`q=${encodeURIComponent(`${w.kettle} or ${w.lamps}`)}`);
    assert.deepEqual(sorted(either.items.map((i) => i.id)), sorted(fx.filter((f) => f.title.includes(w.kettle) || f.category === ids.lamps).map((f) => f.id)));
    assertFacetsMatchItems(either);
  });

  it('filters: brand, category subtree, price range, inStock; facets follow the filters', async () => {
    const q = `q=${encodeURIComponent(`${w.lantern} or ${w.kettle}`)}`;
    const cases: [string, (f: Fx) => boolean][] = [
      [`brand=${ids.brandB}`, (f) => f.brand === ids.brandB],
      [`category=${ids.lighting}`, (f) => f.category === ids.lighting || f.category === ids.lamps],
      [`category=${ids.lamps}`, (f) => f.category === ids.lamps],
      ['minPrice=900&maxPrice=2000', (f) => f.price >= 900 && f.price <= 2000],
      ['maxPrice=899', (f) => f.price <= 899],
      ['inStock=true', (f) => f.units > 0],
      ['inStock=false', (f) => f.units === 0],
      [`inStock=true&category=${ids.cookware}&minPrice=1000`, (f) => f.units > 0 && f.category === ids.cookware && f.price >= 1000],
      ['category=424242', () => false],
    ];
    for (const [filter, pred] of cases) {
      const r = await search(`${q}&${filter}`);
      assert.deepEqual(sorted(r.items.map((i) => i.id)), sorted(fx.filter(pred).map((f) => f.id)), filter);
      assertFacetsMatchItems(r);
    }
  });

  it('pages share one total; the index follows title changes and stock changes', async () => {
    const all = await search(`q=${w.lantern}&limit=50`);
    const pages = [];
    for (let page = 1; page <= 4; page++) pages.push(...(await search(`q=${w.lantern}&limit=1&page=${page}`)).items.map((i) => i.id));
    assert.deepEqual(pages, all.items.map((i) => i.id), 'pages follow the ranking');
    assert.equal((await search(`q=${w.lantern}&limit=1&page=2`)).total, 4);
    assert.equal((await search(`q=${w.lantern}&limit=2&page=3`)).items.length, 0);

    const renamed = fx.find((f) => f.title === `Tiny ${w.lantern}`)!;
    const fresh = word();
    await call('PATCH', `/v1/admin/products/${renamed.id}`, { token: admin.token, payload: { title: `Tiny ${fresh}` } });
    const soldOut = fx.find((f) => f.title === `Brass ${w.kettle}`)!;
    const skuOf = (await call('GET', `/v1/products/${soldOut.id}`)).json<ProductBody>().variants[0]!.sku;
    await call('POST', '/v1/admin/inventory/adjustments', { token: admin.token, payload: { sku: skuOf, locationId: 'main', quantity: -1 } });
    await drainOutbox(t);
    assert.equal((await search(`q=${w.lantern}`)).total, 3);
    assert.deepEqual((await search(`q=${fresh}`)).items.map((i) => i.id), [renamed.id]);
    renamed.title = `Tiny ${fresh}`;
    assert.equal((await search(`q=${w.kettle}&inStock=true`)).total, 0);
    soldOut.units = 0;
  });

  it('bad queries → 400', async () => {
    assertError(await call('GET', '/v1/search'), 400, 'validation_failed');
    assertError(await call('GET', '/v1/search?q='), 400, 'validation_failed');
    assertError(await call('GET', `/v1/search?q=${'a'.repeat(201)}`), 400, 'validation_failed');
    assertError(await call('GET', '/v1/search?q=a&limit=51'), 400, 'validation_failed');
    assertError(await call('GET', '/v1/search?q=a&page=0'), 400, 'validation_failed');
    assertError(await call('GET', '/v1/search?q=a&sort=price'), 400, 'validation_failed');
    assertError(await call('GET', '/v1/search?q=a&brand=x'), 400, 'validation_failed');
    assertError(await call('GET', '/v1/search?q=a%00b'), 400, 'validation_failed');
    const odd = await call('GET', `/v1/search?q=${encodeURIComponent('"unclosed -(:*& |!')}`);
    assert.equal(odd.statusCode, 200, 'web-search syntax never fails');
  });
});

describe('platform routes', () => {
  // Every route of src/modules/*/routes.ts, as OpenAPI spells its path.
  const ROUTES: [Method, string][] = [
    ['POST', '/v1/auth/register'], ['POST', '/v1/auth/login'], ['POST', '/v1/auth/logout'], ['GET', '/v1/me'],
    ['GET', '/v1/me/addresses'], ['POST', '/v1/me/addresses'], ['DELETE', '/v1/me/addresses/{id}'],
    ['GET', '/v1/products'], ['GET', '/v1/products/{id}'], ['GET', '/v1/brands'], ['GET', '/v1/categories'],
    ['POST', '/v1/admin/products'], ['PATCH', '/v1/admin/products/{id}'], ['POST', '/v1/admin/brands'], ['POST', '/v1/admin/categories'],
    ['GET', '/v1/search'], ['GET', '/v1/search/suggest'], ['GET', '/v1/admin/search/synonyms'], ['PUT', '/v1/admin/search/synonyms'],
    ['GET', '/v1/inventory/{sku}'], ['POST', '/v1/admin/inventory/receipts'], ['POST', '/v1/admin/inventory/adjustments'],
    ['POST', '/v1/admin/inventory/returns'], ['GET', '/v1/admin/inventory/locations'], ['PUT', '/v1/admin/inventory/locations/{id}'],
    ['POST', '/v1/carts'], ['GET', '/v1/carts/{id}'], ['POST', '/v1/carts/{id}/lines'], ['PATCH', '/v1/carts/{id}/lines/{lineId}'],
    ['DELETE', '/v1/carts/{id}/lines/{lineId}'],
    ['POST', '/v1/checkout'], ['GET', '/v1/orders'], ['GET', '/v1/orders/{id}'], ['GET', '/v1/admin/orders'],
    ['GET', '/v1/admin/orders/{id}'], ['POST', '/v1/admin/orders/{id}/transitions'],
  ];

  it('/healthz and /readyz', async () => {
    const health = await call('GET', '/healthz');
    assert.equal(health.statusCode, 200);
    assert.deepEqual(health.json(), { status: 'ok' });
    const ready = await call('GET', '/readyz');
    assert.equal(ready.statusCode, 200, ready.body);
    const body = ready.json<{ status: string; checks: { cluster: string; ok: boolean; sinceMs: number }[] }>();
    assert.deepEqual({ ...body, checks: body.checks.map(({ sinceMs: _, ...c }) => c) }, { status: 'ready', checks: [{ cluster: 'main', ok: true }] });
    assert.ok(body.checks.every((c) => Number.isInteger(c.sinceMs) && c.sinceMs >= 0), 'each check says since when');
  });

  it('/metrics: Prometheus text with the request-duration histogram by route and status', async () => {
    await call('GET', '/healthz');
    const res = await call('GET', '/metrics');
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    assert.match(res.body, /# TYPE meridian_http_request_duration_seconds histogram/);
    assert.match(res.body, /meridian_http_request_duration_seconds_count\{method="GET",route="\/healthz",status="200"\} [1-9]/);
    assert.match(res.body, /meridian_http_request_duration_seconds_bucket\{[^}]*route="\/v1\/products\/:id"[^}]*status="404"/);
  });

  it('/v1/openapi.json is OpenAPI 3 and lists exactly the /v1 routes', async () => {
    const res = await call('GET', '/v1/openapi.json');
    assert.equal(res.statusCode, 200);
    const doc = res.json<{ openapi: string; paths: Record<string, Record<string, unknown>> }>();
    assert.match(doc.openapi, /^3\./);
    const listed = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).filter((m) => ['get', 'post', 'put', 'patch', 'delete'].includes(m)).map((m) => `${m.toUpperCase()} ${path}`),
    );
    assert.deepEqual(sorted(listed), sorted(ROUTES.map(([m, p]) => `${m} ${p}`)));
    for (const [method, path] of ROUTES) {
      assert.ok(t.app.hasRoute({ method, url: path.replace(/\{(\w+)\}/g, ':$1') }), `${method} ${path} is served`);
    }
    function sorted(xs: string[]): string[] {
      return [...xs].sort();
    }
  });

  it('unknown routes → 404 route_not_found', async () => {
    assertError(await call('GET', '/v1/nothing-here'), 404, 'route_not_found');
    assertError(await call('DELETE', '/v1/products'), 404, 'route_not_found');
    assertError(await call('POST', '/v2/checkout', { payload: {} }), 404, 'route_not_found');
  });
});

describe('end state', () => {
  it('inventory and order invariants hold after every contract test', async () => {
    await t.s.saga.sweep();
    await assertInvariants(t);
    assert.equal(assertErrorShape(await call('GET', '/v1/orders/1')).code, 'unauthenticated');
  });
});
