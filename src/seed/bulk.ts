// Bulk seeding at scale (issue 2 §5): `meridian seed --users N --products N --orders N`.
//
// Rows are generated here and streamed to PostgreSQL with COPY … FROM STDIN, in batches: one
// transaction per batch and owning pool, so a failure leaves whole batches behind (never an
// order without its lines), and two batches in flight, so both cores work. Every row is routed
// like the services route it — core roles through dbs.core(), user-owned rows through the pool
// that owns the user's logical shard — so the same seed fills a single node or a sharded
// topology. Progress (rows done/total and rows/s per table) goes to standard error.
//
// Choices, and why:
// - Ids are encodeId(synthetic past time, shard, run tag): times spread over the last two years
//   (never before ID_EPOCH_MS), strictly increasing per table, so a run never repeats an id and
//   never meets an id meridian_id() makes after the run starts. The 10 sequence bits hold a
//   per-run tag, so colliding with an older id needs the same millisecond, shard and tag; if it
//   ever happens the batch's COPY fails on the primary key and nothing of that batch is stored.
// - The seed appends: emails and SKUs carry a run tag, so it can run on a database holding the
//   demo catalog or an earlier bulk run. Brands, the category tree and the locations are reused
//   when they exist (found by name), created through the catalog service otherwise.
// - Every seeded user has the password BULK_PASSWORD, hashed once (argon2id with the service's
//   parameters) and reused: a million argon2 hashes would take hours.
// - Orders are history with final statuses. They hold no reservations and consume no stock: they
//   predate the ledger, whose receipt rows are the opening balance. So the inventory invariants
//   I1–I4 hold, but the cross-module check "each paid order line consumed one reservation" (I5
//   in test/helpers.ts assertInvariants) does not apply to seeded orders. Orders keep a synthetic
//   cart id (the carts of history are not seeded) and write no order_history rows.
// - No outbox events are written: the in_stock flags and the search documents, which the
//   consumers would derive, are written directly from the same data.
// - The data has the shape of a real shop, because the query plans depend on it: brand and
//   category sizes follow Zipf's law (with a long tail of small brands that grows with the
//   catalog), 8% of products never received stock, 2% are archived, and every order's buyer
//   and products existed before it. The random streams are fixed, so runs of the same size
//   generate the same data apart from the run tag and the time window.
// - Catalog ids use logical shard 0, like meridian_id(0) in the catalog's column defaults.
import { availableParallelism } from 'node:os';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CatalogService } from '../modules/catalog/service.ts';
import { UsersService } from '../modules/users/service.ts';
import type { Databases, Pool, Sql } from '../platform/db.ts';
import { encodeId, ID_EPOCH_MS, LOGICAL_SHARDS, type Id } from '../platform/ids.ts';
import { DEMO_LOCATIONS } from './demo.ts';
import { Rng } from './random.ts';
import { ADJECTIVES, BRANDS, CATEGORY_TREE, COLORS, MATERIALS, SIZES, singular } from './vocabulary.ts';

export interface BulkSeedOptions {
  users: number;
  products: number;
  orders: number;
  /** Where progress goes; null for none. Default: standard error. */
  progress?: NodeJS.WritableStream | null;
}

export interface TableReport {
  table: string;
  rows: number;
  /** Time during which at least one COPY (or INSERT) was writing this table. */
  seconds: number;
  rowsPerSecond: number;
}

export interface BulkSeedReport {
  /** Appears in every seeded email and SKU of this run. */
  tag: string;
  seconds: number;
  tables: TableReport[];
}

/** The password of every seeded user (they are for load tests and demos, not for people). */
export const BULK_PASSWORD = 'seed-password';
export const BULK_EMAIL_DOMAIN = 'seed.example';

const BULK = {
  usersMax: 50_000_000,
  productsMax: 5_000_000,
  ordersMax: 200_000_000,
  userBatchRows: 50_000,
  productBatchRows: 10_000,
  orderBatchRows: 25_000,
  searchBatchRows: 5_000,
  // One COPY keeps about one server core busy; the embedded server shares this machine.
  lanes: Math.min(4, Math.max(2, availableParallelism())),
  copyChunkBytes: 256 * 1024,
  // Batches are far larger than any API statement; the pools' statement timeout is for requests.
  statementTimeoutMs: 10 * 60_000,
  historyMs: 2 * 365 * 24 * 3_600_000,
  windowEndBeforeStartMs: 60_000,
  // A product's time slot holds its variants (+k ms) and its ledger rows (+1,000 + … ms).
  productSlotReserveMs: 2_000,
  ledgerOffsetMs: 1_000,
  cartBeforeOrderMs: 90_000,
  progressTtyIntervalMs: 200,
  progressLogIntervalMs: 5_000,
} as const;

// Seeds of the independent random streams; each row draws from its own stream position, so a
// row can be regenerated alone (orders are counted before they are generated).
const STREAM = { users: 0x5eed_0001, products: 0x5eed_0002, orders: 0x5eed_0003, categories: 0x5eed_0004 } as const;

/** murmur3's finaliser: a bijection on 32-bit integers with good avalanche. */
function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85eb_ca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2_ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function rowRng(stream: number, index: number): Rng {
  return new Rng(mix32(mix32(stream) + index));
}

/** Strictly increasing times: row i gets a slot of its own, jittered inside the slot. */
class Timeline {
  readonly slotMs: number;

  constructor(
    private readonly startMs: number,
    endMs: number,
    count: number,
    private readonly reserveMs: number,
    what: string,
  ) {
    this.slotMs = count > 0 ? Math.floor((endMs - startMs) / count) : 0;
    if (count > 0 && this.slotMs < reserveMs) throw new Error(`too many ${what} for the seeding time window`);
  }

  /** Time of row i; jitter in [0, 1). Leaves reserveMs - 1 ms free after it inside the slot. */
  at(i: number, jitter: number): number {
    return this.startMs + i * this.slotMs + Math.floor(jitter * (this.slotMs - this.reserveMs + 1));
  }
}

/** Number of values in the ascending array that are < x. */
function countBelow(sorted: Float64Array, length: number, x: number): number {
  let lo = 0;
  let hi = length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// --- COPY text format ---------------------------------------------------------------------

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIAL_ALL = /[\\\t\n\r]/g;
const COPY_ESCAPES: Readonly<Record<string, string>> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };
const NULL = '\\N';

/** A text field for COPY's text format: backslash, tab, newline and carriage return escaped. */
export function copyText(value: string): string {
  return COPY_SPECIAL.test(value) ? value.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c] ?? c) : value;
}

function copyJson(value: unknown): string {
  return copyText(JSON.stringify(value));
}

function copyTime(ms: number): string {
  return new Date(ms).toISOString();
}

// --- progress -----------------------------------------------------------------------------

interface TableProgress {
  table: string;
  total: number;
  done: number;
  /** Time during which at least one statement was writing this table. */
  activeMs: number;
  activeSince: number | undefined;
  writers: number;
}

/** One line per phase, rewritten in place on a terminal and printed every few seconds otherwise. */
class Progress {
  private readonly tables = new Map<string, TableProgress>();
  private current: TableProgress[] = [];
  private phaseName = '';
  private phaseStart = 0;
  private lastRender = 0;
  private lastLine = '';
  private readonly tty: boolean;

  constructor(private readonly out: NodeJS.WritableStream | null) {
    this.tty = Boolean(out && (out as { isTTY?: boolean }).isTTY);
  }

  phase(name: string, tables: readonly { table: string; total: number }[]): void {
    this.phaseName = name;
    this.phaseStart = performance.now();
    this.lastRender = 0;
    this.current = tables.map(({ table, total }) => {
      const p = this.tables.get(table) ?? { table, total: 0, done: 0, activeMs: 0, activeSince: undefined, writers: 0 };
      p.total += total;
      this.tables.set(table, p);
      return p;
    });
    this.render(true);
  }

  start(table: string): void {
    const p = this.get(table);
    if (p.writers++ === 0) p.activeSince = performance.now();
  }

  stop(table: string): void {
    const p = this.get(table);
    if (--p.writers === 0 && p.activeSince !== undefined) {
      p.activeMs += performance.now() - p.activeSince;
      p.activeSince = undefined;
    }
  }

  add(table: string, rows: number): void {
    this.get(table).done += rows;
    this.render(false);
  }

  endPhase(): void {
    // Some totals were estimates (variants per product, stock rows): the counts are now known.
    for (const p of this.current) p.total = p.done;
    this.render(true);
    if (this.out && this.tty) this.out.write('\n');
  }

  note(message: string): void {
    this.out?.write(`${message}\n`);
  }

  /** Ends a line left open on a terminal, so an error message starts on its own line. */
  interrupt(): void {
    if (this.out && this.tty) this.out.write('\n');
  }

  report(): TableReport[] {
    return [...this.tables.values()].map((p) => ({
      table: p.table,
      rows: p.done,
      seconds: p.activeMs / 1000,
      rowsPerSecond: p.activeMs > 0 ? Math.round(p.done / (p.activeMs / 1000)) : 0,
    }));
  }

  private get(table: string): TableProgress {
    const p = this.tables.get(table);
    if (!p) throw new Error(`table ${table} is not part of the current phase`);
    return p;
  }

  private render(force: boolean): void {
    if (!this.out) return;
    const now = performance.now();
    const interval = this.tty ? BULK.progressTtyIntervalMs : BULK.progressLogIntervalMs;
    if (!force && now - this.lastRender < interval) return;
    this.lastRender = now;
    const total = this.current.reduce((n, p) => n + p.total, 0);
    const done = this.current.reduce((n, p) => n + p.done, 0);
    const fraction = total > 0 ? Math.min(1, done / total) : 1;
    const width = 20;
    const filled = Math.round(fraction * width);
    const bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
    const parts = this.current.map((p) => {
      const activeMs = p.activeMs + (p.activeSince !== undefined ? now - p.activeSince : 0);
      const rate = activeMs > 0 ? Math.round(p.done / (activeMs / 1000)) : 0;
      return `${p.table} ${short(p.done)}/${short(p.total)} ${short(rate)}/s`;
    });
    const line = `${this.phaseName.padEnd(7)} ${bar} ${String(Math.floor(fraction * 100)).padStart(3)}% ${((now - this.phaseStart) / 1000).toFixed(1).padStart(6)} s  ${parts.join(' | ')}`;
    // A line wider than the terminal wraps, and "\r" then rewrites only its last part.
    const columns = (this.out as { columns?: number }).columns;
    if (this.tty) this.out.write(`\r\x1b[2K${columns ? line.slice(0, columns - 1) : line}`);
    else if (line !== this.lastLine) this.out.write(`${line}\n`);
    this.lastLine = line;
  }
}

function fmt(n: number): string {
  return n.toLocaleString('en-US');
}

/** 987, 12.3k, 456k, 1.23M: progress lines must fit a terminal. */
function short(n: number): string {
  if (n < 10_000) return String(Math.round(n));
  if (n < 1_000_000) return `${(n / 1_000).toFixed(n < 100_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(2)}M`;
}

// --- COPY plumbing ------------------------------------------------------------------------

/** What postgres.js calls when the server fails a query; see copyInto. */
type RejectableQuery = ReturnType<Sql['unsafe']> & { reject(err: unknown): void };

/**
 * Streams lines (each ending in "\n") into a table with COPY on one connection (a transaction)
 * and resolves once the server has stored them all.
 */
async function copyInto(tx: Sql, table: string, columns: readonly string[], lines: Iterable<string>, progress: Progress): Promise<void> {
  // Table and column names are constants of this file, never input.
  const query = tx.unsafe(`COPY ${table} (${columns.join(', ')}) FROM STDIN`) as RejectableQuery;
  // postgres.js 3.4 never settles the writable when the server rejects a COPY after its last
  // row was sent (a key or foreign key violated in the last chunk; porsager/postgres#1173): the
  // pipeline would wait until the pool's idle-in-transaction timeout kills the connection, and
  // report CONNECTION_CLOSED instead of the violation. The query's own rejection is still
  // called with the real error, so listen to it.
  let failed: (err: unknown) => void = () => undefined;
  const failure = new Promise<never>((_, reject) => {
    failed = reject;
  });
  failure.catch(() => undefined);
  const reject = query.reject;
  query.reject = (err: unknown): void => {
    failed(err);
    reject(err);
  };
  progress.start(table);
  try {
    const writable = await query.writable();
    await Promise.race([pipeline(Readable.from(chunked(lines, table, progress)), writable), failure]);
  } finally {
    progress.stop(table);
  }
}

function* chunked(lines: Iterable<string>, table: string, progress: Progress): Generator<string> {
  let buffer = '';
  let rows = 0;
  for (const line of lines) {
    buffer += line;
    rows++;
    if (buffer.length >= BULK.copyChunkBytes) {
      yield buffer;
      progress.add(table, rows);
      buffer = '';
      rows = 0;
    }
  }
  if (rows > 0) {
    yield buffer;
    progress.add(table, rows);
  }
}

async function inBulkTransaction(pool: Pool, work: (tx: Sql) => Promise<void>): Promise<void> {
  await pool.begin(async (tx) => {
    await tx.unsafe(`SET LOCAL statement_timeout = ${BULK.statementTimeoutMs}`);
    await work(tx);
  });
}

/** Like Promise.all, but waits for every promise to settle before throwing the first error. */
async function settleAll(promises: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

function groupByPool<T>(items: readonly T[], poolOf: (item: T) => Pool): Map<Pool, T[]> {
  const groups = new Map<Pool, T[]>();
  for (const item of items) {
    const pool = poolOf(item);
    const group = groups.get(pool);
    if (group) group.push(item);
    else groups.set(pool, [item]);
  }
  return groups;
}

/**
 * Writes batches with a bounded number in flight: one COPY keeps one server core busy while this
 * process mostly waits, so a second lane uses the second core, and the next batch is generated
 * while the previous ones are written. The first failure stops new batches; the others finish
 * (or roll back) before it is thrown.
 */
class Lanes {
  private readonly running = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;

  constructor(private readonly width: number) {}

  get failed(): boolean {
    return this.failure !== undefined;
  }

  async run(task: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.width) await Promise.race(this.running);
    if (this.failure) return;
    const p: Promise<void> = task()
      .catch((error: unknown) => {
        this.failure ??= { error };
      })
      .finally(() => this.running.delete(p));
    this.running.add(p);
  }

  async drain(): Promise<void> {
    await Promise.all(this.running);
    if (this.failure) throw this.failure.error;
  }
}

// --- reference data: brands, categories, locations ------------------------------------------

interface Leaf {
  id: Id;
  name: string;
}

interface Brand {
  id: Id;
  name: string;
}

const BRAND_SUFFIXES = ['Supply', 'Works', 'Studio', 'Goods', 'Outfitters', 'Collective', 'Labs', 'Trading', 'Atelier', 'Co.'] as const;

/**
 * The vocabulary's brands, then a long tail of smaller ones ("Acme Works", …) that grows with
 * the catalog: a real catalog of 100,000 products has hundreds of brands, and a filter on a
 * small brand is the case its index exists for.
 */
function brandNames(products: number): string[] {
  const tail = Math.min(BRANDS.length * BRAND_SUFFIXES.length, Math.floor(products / 50));
  const names: string[] = [...BRANDS];
  for (let k = 0; k < tail; k++) names.push(`${BRANDS[k % BRANDS.length]} ${BRAND_SUFFIXES[Math.floor(k / BRANDS.length)]}`);
  return names;
}

async function ensureBrands(catalog: CatalogService, names: readonly string[]): Promise<Brand[]> {
  const existing = new Map((await catalog.listBrands()).map((b) => [b.name, b.id]));
  const brands: Brand[] = [];
  for (const name of names) brands.push({ id: existing.get(name) ?? (await catalog.createBrand(name)).id, name });
  return brands;
}

/** Picks index k of n with probability proportional to 1 / (k + 1)^exponent (Zipf's law). */
class Zipf {
  private readonly cumulative: Float64Array;

  constructor(n: number, exponent: number) {
    this.cumulative = new Float64Array(n);
    let sum = 0;
    for (let k = 0; k < n; k++) this.cumulative[k] = sum += 1 / (k + 1) ** exponent;
    for (let k = 0; k < n; k++) this.cumulative[k]! /= sum;
  }

  /** u in [0, 1). */
  pick(u: number): number {
    return Math.min(this.cumulative.length - 1, countBelow(this.cumulative, this.cumulative.length, u + Number.EPSILON));
  }
}

/** The vocabulary's 3-level tree, reusing the nodes that exist (the demo seed makes the same). */
async function ensureCategoryTree(catalog: CatalogService): Promise<Leaf[]> {
  const all = await catalog.listCategories();
  const find = (name: string, parentId: Id | null): Id | undefined => all.find((c) => c.name === name && c.parent_id === parentId)?.id;
  const ensure = async (name: string, parentId: Id | null): Promise<Id> => find(name, parentId) ?? (await catalog.createCategory(name, parentId)).id;
  const leaves: Leaf[] = [];
  for (const [top, subs] of Object.entries(CATEGORY_TREE)) {
    const topId = await ensure(top, null);
    for (const [sub, leafNames] of Object.entries(subs)) {
      const subId = await ensure(sub, topId);
      for (const leaf of leafNames) leaves.push({ id: await ensure(leaf, subId), name: leaf });
    }
  }
  // Category sizes follow Zipf's law, big and small ones spread over the tree.
  const shuffle = new Rng(STREAM.categories);
  for (let k = leaves.length - 1; k > 0; k--) {
    const j = shuffle.int(0, k);
    [leaves[k], leaves[j]] = [leaves[j]!, leaves[k]!];
  }
  return leaves;
}

async function ensureLocations(sql: Sql): Promise<string[]> {
  for (const l of DEMO_LOCATIONS) await sql`INSERT INTO locations (id, name) VALUES (${l.id}, ${l.name}) ON CONFLICT (id) DO NOTHING`;
  return DEMO_LOCATIONS.map((l) => l.id);
}

// --- generated rows -----------------------------------------------------------------------

interface SeedContext {
  dbs: Databases;
  progress: Progress;
  tag: string;
  idTag: number;
  windowStartMs: number;
  windowEndMs: number;
}

/** What orders need of the users: ids and sign-up times, in sign-up order. */
interface SeededUsers {
  count: number;
  ids: Id[];
  shards: Uint16Array;
  times: Float64Array;
}

/** What orders need of the catalog: variants in creation order and when their product appeared. */
interface SeededCatalog {
  products: number;
  productTimes: Float64Array;
  /** firstVariant[i] = index of product i's first variant; firstVariant[products] = variant count. */
  firstVariant: Int32Array;
  skus: string[];
  lineTitles: string[];
  usd: number[];
  eur: number[];
  activeProductIds: Id[];
}

async function seedUsers(ctx: SeedContext, count: number): Promise<SeededUsers> {
  const { dbs, progress } = ctx;
  const users: SeededUsers = { count, ids: new Array<Id>(count), shards: new Uint16Array(count), times: new Float64Array(count) };
  if (count === 0) return users;
  const passwordHash = copyText(await new UsersService(dbs, 0).hashPassword(BULK_PASSWORD));
  const timeline = new Timeline(ctx.windowStartMs, ctx.windowEndMs, count, 1, 'users');
  progress.phase('users', [
    { table: 'user_directory', total: count },
    { table: 'users', total: count },
  ]);
  const lanes = new Lanes(BULK.lanes);
  for (let from = 0; from < count && !lanes.failed; from += BULK.userBatchRows) {
    const batch: { id: Id; email: string; time: string }[] = [];
    for (let i = from; i < Math.min(count, from + BULK.userBatchRows); i++) {
      const rng = rowRng(STREAM.users, i);
      const timeMs = timeline.at(i, rng.next());
      // pickShardForNewUser()'s even spread, but reproducible.
      const shard = rng.int(0, LOGICAL_SHARDS - 1);
      const id = encodeId(timeMs, shard, ctx.idTag);
      users.ids[i] = id;
      users.shards[i] = shard;
      users.times[i] = timeMs;
      batch.push({ id, email: `user${i + 1}-${ctx.tag}@${BULK_EMAIL_DOMAIN}`, time: copyTime(timeMs) });
    }
    await lanes.run(async () => {
      // The directory first, as registration does: an entry without its user is reclaimable.
      await inBulkTransaction(dbs.core('directory'), (tx) =>
        copyInto(tx, 'user_directory', ['email', 'user_id', 'created_at'], batch.map((u) => `${u.email}\t${u.id}\t${u.time}\n`), progress),
      );
      await settleAll(
        [...groupByPool(batch, (u) => dbs.forId(u.id))].map(([pool, rows]) =>
          inBulkTransaction(pool, (tx) =>
            copyInto(
              tx,
              'users',
              ['id', 'email', 'password_hash', 'role', 'created_at'],
              rows.map((u) => `${u.id}\t${u.email}\t${passwordHash}\tcustomer\t${u.time}\n`),
              progress,
            ),
          ),
        ),
      );
    });
  }
  await lanes.drain();
  progress.endPhase();
  return users;
}

interface ProductSpec {
  id: Id;
  timeMs: number;
  title: string;
  description: string;
  brandId: Id;
  categoryId: Id;
  status: 'active' | 'archived';
  options: { name: string; values: string[] }[];
  attributes: Record<string, string>;
  popularity: number;
  variants: {
    id: Id;
    sku: string;
    title: string;
    options: Record<string, string>;
    usd: number;
    eur: number;
    /** Units received per location (0 = no stock row). */
    units: number[];
  }[];
}

interface CatalogShape {
  brands: readonly Brand[];
  brandOf: Zipf;
  leaves: readonly Leaf[];
  leafOf: Zipf;
  locations: number;
}

function productSpec(ctx: SeedContext, i: number, timeline: Timeline, shape: CatalogShape): ProductSpec {
  const rng = rowRng(STREAM.products, i);
  const timeMs = timeline.at(i, rng.next());
  const leaf = shape.leaves[shape.leafOf.pick(rng.next())]!;
  const brand = shape.brands[shape.brandOf.pick(rng.next())]!;
  // Some products were never received (sold out before the ledger, or not launched yet).
  const stocked = rng.next() >= 0.08;
  const material = rng.pick(MATERIALS);
  const title = `${rng.pick(ADJECTIVES)} ${material[0]!.toUpperCase()}${material.slice(1)} ${singular(leaf.name)}`;
  const base = rng.int(9, 250) * 100 - 1;
  const colors = [rng.pick(COLORS), rng.pick(COLORS)].filter((c, j, a) => a.indexOf(c) === j);
  const sizes = rng.next() < 0.4 ? SIZES.slice(0, 2) : [];
  const skuStem = `B${ctx.tag.toUpperCase()}-${i + 1}`;
  const variants: ProductSpec['variants'] = [];
  for (const color of colors) {
    for (const size of sizes.length > 0 ? sizes : ['']) {
      const k = variants.length;
      variants.push({
        id: encodeId(timeMs + k, 0, ctx.idTag),
        sku: `${skuStem}-${color.slice(0, 3).toUpperCase()}${size ? `-${size}` : ''}`,
        title: size ? `${color} / ${size}` : color,
        options: size ? { Color: color, Size: size } : { Color: color },
        usd: base,
        eur: Math.round(base * 0.92),
        units: Array.from({ length: shape.locations }, () => (!stocked || rng.int(0, 4) === 0 ? 0 : rng.int(5, 200))),
      });
    }
  }
  return {
    id: encodeId(timeMs, 0, ctx.idTag),
    timeMs,
    title,
    description: `A ${material} ${singular(leaf.name).toLowerCase()} by ${brand.name}, made to last. Available in ${colors.join(' and ')}.`,
    brandId: brand.id,
    categoryId: leaf.id,
    status: rng.next() < 0.02 ? 'archived' : 'active',
    options: [{ name: 'Color', values: colors }, ...(sizes.length > 0 ? [{ name: 'Size', values: [...sizes] }] : [])],
    attributes: { material, care: rng.pick(['machine wash', 'hand wash', 'wipe clean']) },
    // Skewed like real catalogs: a few products sell most.
    popularity: Math.floor(10_000 * rng.next() ** 3),
    variants,
  };
}

async function writeCatalogBatch(tx: Sql, batch: readonly ProductSpec[], progress: Progress): Promise<void> {
  await copyInto(
    tx,
    'products',
    ['id', 'title', 'description', 'brand_id', 'category_id', 'status', 'options', 'attributes', 'popularity', 'created_at', 'updated_at'],
    (function* () {
      for (const p of batch) {
        const time = copyTime(p.timeMs);
        yield `${p.id}\t${copyText(p.title)}\t${copyText(p.description)}\t${p.brandId}\t${p.categoryId}\t${p.status}\t${copyJson(p.options)}\t${copyJson(p.attributes)}\t${p.popularity}\t${time}\t${time}\n`;
      }
    })(),
    progress,
  );
  await copyInto(
    tx,
    'variants',
    ['id', 'product_id', 'sku', 'title', 'options', 'position', 'in_stock'],
    (function* () {
      for (const p of batch) {
        for (const [position, v] of p.variants.entries()) {
          // What the inventory.stock_changed consumer would set: available units > 0.
          const inStock = v.units.some((u) => u > 0) ? 't' : 'f';
          yield `${v.id}\t${p.id}\t${copyText(v.sku)}\t${copyText(v.title)}\t${copyJson(v.options)}\t${position}\t${inStock}\n`;
        }
      }
    })(),
    progress,
  );
  await copyInto(
    tx,
    'prices',
    ['variant_id', 'currency', 'amount'],
    (function* () {
      for (const p of batch) {
        for (const v of p.variants) {
          yield `${v.id}\tUSD\t${v.usd}\n`;
          yield `${v.id}\tEUR\t${v.eur}\n`;
        }
      }
    })(),
    progress,
  );
}

/** When variant k's stock arrived at location li: inside the product's time slot, after the variants. */
function receiptTimeMs(p: ProductSpec, k: number, li: number, locations: number): number {
  return p.timeMs + BULK.ledgerOffsetMs + k * locations + li;
}

/** Stock arrives as one receipt per (SKU, location), so on_hand = sum of the ledger (I3). */
async function writeInventoryBatch(
  tx: Sql,
  batch: readonly ProductSpec[],
  locations: readonly string[],
  note: string,
  idTag: number,
  progress: Progress,
): Promise<void> {
  await copyInto(
    tx,
    'stock',
    ['sku', 'location_id', 'on_hand', 'reserved', 'updated_at'],
    (function* () {
      for (const p of batch) {
        for (const [k, v] of p.variants.entries()) {
          for (const [li, units] of v.units.entries()) {
            if (units > 0) yield `${copyText(v.sku)}\t${locations[li]}\t${units}\t0\t${copyTime(receiptTimeMs(p, k, li, locations.length))}\n`;
          }
        }
      }
    })(),
    progress,
  );
  await copyInto(
    tx,
    'stock_ledger',
    ['id', 'sku', 'location_id', 'kind', 'on_hand_delta', 'reserved_delta', 'note', 'created_at'],
    (function* () {
      for (const p of batch) {
        for (const [k, v] of p.variants.entries()) {
          for (const [li, units] of v.units.entries()) {
            if (units === 0) continue;
            const timeMs = receiptTimeMs(p, k, li, locations.length);
            yield `${encodeId(timeMs, 0, idTag)}\t${copyText(v.sku)}\t${locations[li]}\treceipt\t${units}\t0\t${note}\t${copyTime(timeMs)}\n`;
          }
        }
      }
    })(),
    progress,
  );
}

async function seedCatalog(ctx: SeedContext, count: number): Promise<SeededCatalog> {
  const { dbs, progress } = ctx;
  const seeded: SeededCatalog = {
    products: count,
    productTimes: new Float64Array(count),
    firstVariant: new Int32Array(count + 1),
    skus: [],
    lineTitles: [],
    usd: [],
    eur: [],
    activeProductIds: [],
  };
  if (count === 0) return seeded;
  const catalog = new CatalogService(dbs);
  const brands = await ensureBrands(catalog, brandNames(count));
  const leaves = await ensureCategoryTree(catalog);
  const locations = await ensureLocations(dbs.core('inventory'));
  const shape: CatalogShape = {
    brands,
    brandOf: new Zipf(brands.length, 1.1),
    leaves,
    leafOf: new Zipf(leaves.length, 1.1),
    locations: locations.length,
  };
  const timeline = new Timeline(ctx.windowStartMs, ctx.windowEndMs, count, BULK.productSlotReserveMs, 'products');
  // Variant and stock counts are only known as products are generated: estimate for the bar.
  const variantsPerProduct = 2.6;
  progress.phase('catalog', [
    { table: 'products', total: count },
    { table: 'variants', total: Math.round(count * variantsPerProduct) },
    { table: 'prices', total: Math.round(count * variantsPerProduct * 2) },
    { table: 'stock', total: Math.round(count * variantsPerProduct * locations.length * 0.92 * 0.8) },
    { table: 'stock_ledger', total: Math.round(count * variantsPerProduct * locations.length * 0.92 * 0.8) },
  ]);
  const note = copyText(`bulk seed ${ctx.tag}`);
  const lanes = new Lanes(BULK.lanes);
  for (let from = 0; from < count && !lanes.failed; from += BULK.productBatchRows) {
    const batch: ProductSpec[] = [];
    for (let i = from; i < Math.min(count, from + BULK.productBatchRows); i++) {
      const p = productSpec(ctx, i, timeline, shape);
      batch.push(p);
      seeded.productTimes[i] = p.timeMs;
      seeded.firstVariant[i] = seeded.skus.length;
      for (const v of p.variants) {
        seeded.skus.push(v.sku);
        seeded.lineTitles.push(`${p.title} — ${v.title}`);
        seeded.usd.push(v.usd);
        seeded.eur.push(v.eur);
      }
      if (p.status === 'active') seeded.activeProductIds.push(p.id);
    }
    // The catalog and the inventory rows of a batch go to their own databases, side by side.
    await lanes.run(() =>
      settleAll([
        inBulkTransaction(dbs.core('catalog'), (tx) => writeCatalogBatch(tx, batch, progress)),
        inBulkTransaction(dbs.core('inventory'), (tx) => writeInventoryBatch(tx, batch, locations, note, ctx.idTag, progress)),
      ]),
    );
  }
  await lanes.drain();
  seeded.firstVariant[count] = seeded.skus.length;
  progress.endPhase();
  return seeded;
}

/**
 * One search document per active seeded product, computed in SQL from the catalog rows just
 * written. It must build the same document as search/repository.ts upsertDocument (weights:
 * title A, brand and category B, attributes C, description D) fed by search/service.ts
 * documentFor (lowest price per currency, in stock when any variant is).
 */
async function writeSearchBatch(tx: Sql, ids: readonly Id[], progress: Progress): Promise<void> {
  progress.start('search_documents');
  try {
    await tx`
      INSERT INTO search_documents (product_id, title, brand_id, brand_name, category_id, category_path, category_name,
                                    min_prices, in_stock, popularity, attributes, document, updated_at)
      SELECT p.id, p.title, p.brand_id, b.name, p.category_id, c.path, c.name,
             COALESCE(mp.min_prices, '{}'), COALESCE(st.in_stock, false), p.popularity,
             -- The attributes as stored: attribute filters (and the facets column generated from
             -- them) work on a seeded catalog without a reindex.
             p.attributes,
             setweight(to_tsvector('english', p.title), 'A') ||
             setweight(to_tsvector('english', coalesce(b.name, '') || ' ' || coalesce(c.name, '')), 'B') ||
             setweight(to_tsvector('english', attrs.text), 'C') ||
             setweight(to_tsvector('english', p.description), 'D'),
             now()
      FROM products p
      LEFT JOIN brands b ON b.id = p.brand_id
      LEFT JOIN categories c ON c.id = p.category_id
      LEFT JOIN LATERAL (
        SELECT jsonb_object_agg(currency, amount) AS min_prices
        FROM (SELECT pr.currency, min(pr.amount) AS amount
              FROM variants v JOIN prices pr ON pr.variant_id = v.id
              WHERE v.product_id = p.id GROUP BY pr.currency) m
      ) mp ON true
      LEFT JOIN LATERAL (SELECT bool_or(v.in_stock) AS in_stock FROM variants v WHERE v.product_id = p.id) st ON true
      CROSS JOIN LATERAL (
        SELECT left(coalesce(string_agg(a.key || ' ' || CASE jsonb_typeof(a.value) WHEN 'string' THEN a.value #>> '{}' ELSE a.value::text END, ' '), ''), 4000) AS text
        FROM jsonb_each(p.attributes) a
      ) attrs
      WHERE p.id = ANY(${ids as string[]}::bigint[]) AND p.status = 'active'`;
  } finally {
    progress.stop('search_documents');
  }
  progress.add('search_documents', ids.length);
}

async function seedSearchDocuments(ctx: SeedContext, productIds: readonly Id[]): Promise<void> {
  const { dbs, progress } = ctx;
  if (productIds.length === 0) return;
  progress.phase('search', [{ table: 'search_documents', total: productIds.length }]);
  const lanes = new Lanes(BULK.lanes);
  for (let from = 0; from < productIds.length && !lanes.failed; from += BULK.searchBatchRows) {
    const ids = productIds.slice(from, from + BULK.searchBatchRows);
    await lanes.run(() => inBulkTransaction(dbs.core('catalog'), (tx) => writeSearchBatch(tx, ids, progress)));
  }
  await lanes.drain();
  progress.endPhase();
}

type FinalStatus = 'delivered' | 'shipped' | 'paid' | 'refunded' | 'cancelled';

/** Final statuses of historical orders; cancellations come from the two ways a checkout fails. */
const ORDER_OUTCOMES: readonly { upTo: number; status: FinalStatus; cancelReason?: 'payment_declined' | 'reservation_expired' }[] = [
  { upTo: 0.72, status: 'delivered' },
  { upTo: 0.78, status: 'shipped' },
  { upTo: 0.81, status: 'paid' },
  { upTo: 0.86, status: 'refunded' },
  { upTo: 0.94, status: 'cancelled', cancelReason: 'payment_declined' },
  { upTo: 1, status: 'cancelled', cancelReason: 'reservation_expired' },
];

function outcomeOf(u: number): (typeof ORDER_OUTCOMES)[number] {
  return ORDER_OUTCOMES.find((o) => u < o.upTo) ?? ORDER_OUTCOMES[ORDER_OUTCOMES.length - 1]!;
}

function lineCountOf(u: number): number {
  return u < 0.45 ? 1 : u < 0.75 ? 2 : u < 0.9 ? 3 : 4;
}

/** A declined checkout records a declined payment; an expired reservation never reached payment. */
function hasPayment(outcome: (typeof ORDER_OUTCOMES)[number]): boolean {
  return outcome.cancelReason !== 'reservation_expired';
}

interface SeedOrder {
  id: Id;
  userId: Id;
  cartId: Id;
  status: FinalStatus;
  cancelReason: string | null;
  paymentStatus: 'captured' | 'refunded' | 'declined' | null;
  currency: 'USD' | 'EUR';
  total: number;
  createdMs: number;
  updatedMs: number;
  paidMs: number | null;
  lines: { variant: number; quantity: number; unit: number }[];
}

const DAY_MS = 86_400_000;

/** An order, its lines and its payment commit together: the lines' foreign key sees the order. */
async function writeOrderBatch(tx: Sql, orders: readonly SeedOrder[], catalog: SeededCatalog, progress: Progress): Promise<void> {
  await copyInto(
    tx,
    'orders',
    ['id', 'user_id', 'cart_id', 'status', 'currency', 'total_amount', 'cancel_reason', 'created_at', 'updated_at', 'paid_at'],
    (function* () {
      for (const o of orders) {
        yield `${o.id}\t${o.userId}\t${o.cartId}\t${o.status}\t${o.currency}\t${o.total}\t${o.cancelReason ?? NULL}\t${copyTime(o.createdMs)}\t${copyTime(o.updatedMs)}\t${o.paidMs === null ? NULL : copyTime(o.paidMs)}\n`;
      }
    })(),
    progress,
  );
  await copyInto(
    tx,
    'order_lines',
    ['order_id', 'line_no', 'user_id', 'sku', 'title', 'quantity', 'unit_amount'],
    (function* () {
      for (const o of orders) {
        for (const [n, l] of o.lines.entries()) {
          yield `${o.id}\t${n + 1}\t${o.userId}\t${copyText(catalog.skus[l.variant]!)}\t${copyText(catalog.lineTitles[l.variant]!)}\t${l.quantity}\t${l.unit}\n`;
        }
      }
    })(),
    progress,
  );
  await copyInto(
    tx,
    'payments',
    ['order_id', 'user_id', 'provider', 'provider_ref', 'status', 'amount', 'currency', 'decline_reason', 'created_at', 'updated_at'],
    (function* () {
      for (const o of orders) {
        if (o.paymentStatus === null) continue;
        const declined = o.paymentStatus === 'declined';
        yield `${o.id}\t${o.userId}\tseed\t${declined ? NULL : `seed_${o.id}`}\t${o.paymentStatus}\t${o.total}\t${o.currency}\t${declined ? 'card_declined' : NULL}\t${copyTime(o.createdMs)}\t${copyTime(o.updatedMs)}\n`;
      }
    })(),
    progress,
  );
}

async function seedOrders(ctx: SeedContext, count: number, users: SeededUsers, catalog: SeededCatalog): Promise<void> {
  const { dbs, progress } = ctx;
  if (count === 0) return;
  if (users.count === 0 || catalog.products === 0) throw new Error('seeding orders needs --users and --products in the same run');
  // Orders start after the first user signed up and the first product appeared.
  const startMs = Math.max(users.times[0]!, catalog.productTimes[0]!) + 1;
  const timeline = new Timeline(startMs, ctx.windowEndMs, count, 1, 'orders');
  let lineTotal = 0;
  let paymentTotal = 0;
  for (let i = 0; i < count; i++) {
    const rng = rowRng(STREAM.orders, i);
    if (hasPayment(outcomeOf(rng.next()))) paymentTotal++;
    lineTotal += lineCountOf(rng.next());
  }
  progress.phase('orders', [
    { table: 'orders', total: count },
    { table: 'order_lines', total: lineTotal },
    { table: 'payments', total: paymentTotal },
  ]);

  const orderAt = (i: number): SeedOrder => {
    // The first two draws are the ones counted above.
    const rng = rowRng(STREAM.orders, i);
    const outcome = outcomeOf(rng.next());
    const lineCount = lineCountOf(rng.next());
    const createdMs = timeline.at(i, rng.next());
    // A buyer who had signed up by then, buying products that existed by then.
    const u = Math.floor(rng.next() * countBelow(users.times, users.count, createdMs));
    const userId = users.ids[u]!;
    const shard = users.shards[u]!;
    const available = catalog.firstVariant[countBelow(catalog.productTimes, catalog.products, createdMs)]!;
    const currency = rng.next() < 0.7 ? 'USD' : 'EUR';
    const lines: SeedOrder['lines'] = [];
    let total = 0;
    for (let n = 0; n < lineCount; n++) {
      let variant = Math.floor(rng.next() * available);
      for (let retry = 0; retry < 3 && lines.some((l) => l.variant === variant); retry++) variant = Math.floor(rng.next() * available);
      const quantity = rng.next() < 0.75 ? 1 : rng.int(2, 3);
      const unit = currency === 'USD' ? catalog.usd[variant]! : catalog.eur[variant]!;
      lines.push({ variant, quantity, unit });
      total += quantity * unit;
    }
    let status = outcome.status;
    // Old orders have arrived by now.
    if ((status === 'paid' || status === 'shipped') && ctx.windowEndMs - createdMs > 30 * DAY_MS) status = 'delivered';
    const paid = status !== 'cancelled';
    const paidMs = paid ? createdMs + rng.int(2_000, 20_000) : null;
    const settledAfterMs =
      status === 'delivered' ? rng.int(3, 8) * DAY_MS
      : status === 'shipped' ? rng.int(1, 3) * DAY_MS
      : status === 'refunded' ? rng.int(5, 30) * DAY_MS
      : status === 'paid' ? (paidMs ?? createdMs) - createdMs
      : 15 * 60_000; // cancelled: declined at once or the reservation expired
    return {
      id: encodeId(createdMs, shard, ctx.idTag),
      userId,
      cartId: encodeId(Math.max(ID_EPOCH_MS, createdMs - BULK.cartBeforeOrderMs), shard, ctx.idTag),
      status,
      cancelReason: outcome.cancelReason ?? null,
      paymentStatus: status === 'refunded' ? 'refunded' : paid ? 'captured' : hasPayment(outcome) ? 'declined' : null,
      currency,
      total,
      createdMs,
      updatedMs: Math.max(paidMs ?? createdMs, Math.min(ctx.windowEndMs, createdMs + settledAfterMs)),
      paidMs,
      lines,
    };
  };

  const lanes = new Lanes(BULK.lanes);
  for (let from = 0; from < count && !lanes.failed; from += BULK.orderBatchRows) {
    const batch: SeedOrder[] = [];
    for (let i = from; i < Math.min(count, from + BULK.orderBatchRows); i++) batch.push(orderAt(i));
    const byPool = [...groupByPool(batch, (o) => dbs.forId(o.id))];
    await lanes.run(() => settleAll(byPool.map(([pool, orders]) => inBulkTransaction(pool, (tx) => writeOrderBatch(tx, orders, catalog, progress)))));
  }
  await lanes.drain();
  progress.endPhase();
}

/** Fresh statistics and merged GIN pending lists, so the first queries plan as later ones will. */
async function analyze(ctx: SeedContext, touched: readonly { pools: readonly Pool[]; tables: readonly string[] }[]): Promise<void> {
  if (touched.length === 0) return;
  const started = performance.now();
  const byPool = new Map<Pool, Set<string>>();
  for (const { pools, tables } of touched) {
    for (const pool of pools) {
      const set = byPool.get(pool) ?? new Set<string>();
      for (const t of tables) set.add(t);
      byPool.set(pool, set);
    }
  }
  for (const [pool, tables] of byPool) {
    await inBulkTransaction(pool, async (tx) => {
      // Table names are constants of this file.
      await tx.unsafe(`ANALYZE ${[...tables].join(', ')}`);
      // Rows inserted into a GIN index wait in its pending list (up to 4 MB) until a vacuum; the
      // planner prices that list in, and right after a load picks a Seq Scan over the index.
      await tx`
        SELECT gin_clean_pending_list(i.indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
        WHERE am.amname = 'gin' AND i.indrelid IN (SELECT to_regclass(t) FROM unnest(${[...tables]}::text[]) AS t)`;
    });
  }
  ctx.progress.note(`analyze  ${[...new Set([...byPool.values()].flatMap((s) => [...s]))].length} tables in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

function checkCount(name: string, value: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) throw new Error(`--${name} must be an integer from 0 to ${max}, got ${value}`);
}

export async function seedAtScale(dbs: Databases, options: BulkSeedOptions): Promise<BulkSeedReport> {
  checkCount('users', options.users, BULK.usersMax);
  checkCount('products', options.products, BULK.productsMax);
  checkCount('orders', options.orders, BULK.ordersMax);
  if (options.orders > 0 && (options.users === 0 || options.products === 0)) {
    throw new Error('seeding orders needs --users and --products in the same run (orders are made for the users and products it creates)');
  }
  const startedMs = Date.now();
  const windowEndMs = startedMs - BULK.windowEndBeforeStartMs;
  const ctx: SeedContext = {
    dbs,
    progress: new Progress(options.progress === undefined ? process.stderr : options.progress),
    // Lower case: emails are stored normalised. Distinct for runs started in distinct milliseconds.
    tag: startedMs.toString(36),
    idTag: startedMs % 1024,
    windowStartMs: Math.max(ID_EPOCH_MS, windowEndMs - BULK.historyMs),
    windowEndMs,
  };
  ctx.progress.note(
    `bulk seed ${ctx.tag}: ${fmt(options.users)} users, ${fmt(options.products)} products, ${fmt(options.orders)} orders ` +
      `(emails user<n>-${ctx.tag}@${BULK_EMAIL_DOMAIN}, password "${BULK_PASSWORD}")`,
  );
  try {
    return await seed(ctx, options);
  } catch (err) {
    ctx.progress.interrupt();
    throw err;
  }
}

/** The phases in dependency order: orders need the users and the catalog of the same run. */
async function seed(ctx: SeedContext, options: BulkSeedOptions): Promise<BulkSeedReport> {
  const { dbs } = ctx;
  const started = performance.now();
  const users = await seedUsers(ctx, options.users);
  const catalog = await seedCatalog(ctx, options.products);
  if (options.products > 0) {
    // Before the search documents are built from them: stale statistics plan that join badly.
    await analyze(ctx, [
      { pools: [dbs.core('catalog')], tables: ['brands', 'categories', 'products', 'variants', 'prices'] },
      { pools: [dbs.core('inventory')], tables: ['locations', 'stock', 'stock_ledger'] },
    ]);
  }
  await seedSearchDocuments(ctx, catalog.activeProductIds);
  await seedOrders(ctx, options.orders, users, catalog);
  const shardPools = dbs.shardPools();
  await analyze(ctx, [
    ...(options.users > 0 ? [{ pools: [dbs.core('directory')], tables: ['user_directory'] }, { pools: shardPools, tables: ['users'] }] : []),
    ...(options.products > 0 ? [{ pools: [dbs.core('catalog')], tables: ['search_documents'] }] : []),
    ...(options.orders > 0 ? [{ pools: shardPools, tables: ['orders', 'order_lines', 'payments'] }] : []),
  ]);
  const report: BulkSeedReport = { tag: ctx.tag, seconds: (performance.now() - started) / 1000, tables: ctx.progress.report() };
  ctx.progress.note(`done in ${report.seconds.toFixed(1)} s`);
  for (const t of report.tables) {
    ctx.progress.note(`  ${t.table.padEnd(17)} ${fmt(t.rows).padStart(11)} rows  ${t.seconds.toFixed(1).padStart(6)} s  ${fmt(t.rowsPerSecond).padStart(9)} rows/s`);
  }
  return report;
}
