// Checkout throughput with no stock contention: many buyers, many SKUs, every cart on SKUs no
// other in-flight checkout touches. Side by side with the floor of any durable write on the same
// database: single-row INSERTs, each its own transaction (autocommit), at the same concurrency.
//
// The bench prepares everything through the API and so needs the admin account the server was
// started with. Give BOTH the server and the bench the same two variables:
//
//   MERIDIAN_ADMIN_EMAIL=admin@example.com MERIDIAN_ADMIN_PASSWORD=at-least-12-chars npm start
//   MERIDIAN_ADMIN_EMAIL=admin@example.com MERIDIAN_ADMIN_PASSWORD=at-least-12-chars npm run bench -- checkout
//
// The baseline connects to the server's database: BENCH_DATABASE_URL, else DATABASE_URL, else the
// embedded server's credentials in ${MERIDIAN_DATA_DIR:-.meridian}/credentials.json on port
// ${MERIDIAN_PG_PORT:-54329} (so pass the same MERIDIAN_DATA_DIR / MERIDIAN_PG_PORT as the server).
// It creates the table bench_baseline_inserts and drops it at the end.
//
// Each checkout round also prints the CPU per order of the API process, the embedded PostgreSQL,
// the load generator and the whole machine (see cpuNow below).
//
// Target (issue 2 §7): checkout ≥ 300 orders/s with no stock contention. Printed for comparison;
// nothing here fails on a timing. A checkout that does not answer 201 is counted and reported,
// and makes the run exit non-zero (the figures would not measure what they claim).
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import path from 'node:path';
import {
  api,
  cpuMsOfTrees,
  fmtInt,
  fmtMs,
  fmtRatio,
  hardware,
  hardwareLine,
  loadAverage1m,
  keepAliveClient,
  machineBusyMs,
  mapConcurrent,
  median,
  mediansOf,
  pidFromFile,
  phaseLine,
  progress,
  redactUrl,
  requireServer,
  runClosedLoop,
  serverDatabaseUrl,
  sideBySideRatios,
  table,
  UsageError,
  writeResults,
  type BenchOptions,
  type PhaseResult,
  type Scenario,
} from '../lib.ts';

const DEFAULT_CONCURRENCY = 32;
const BUYERS = 200;
const PRODUCTS = 50;
const VARIANTS_PER_PRODUCT = 20; // 1,000 SKUs
const LINES_PER_CART = 2;
const STOCK_PER_SKU = 100_000;
const LOCATION_ID = 'bench';
const PAYMENT_TOKEN = 'tok_visa';
/** Width of the preparation fan-out (registration is argon2-bound on the server). */
const PREP_WIDTH = 16;
const WARMUP_CHECKOUTS = 200;
/** Carts prepared per phase = estimated orders/s × duration × this margin (+ one per worker). */
const PREPARE_MARGIN = 2;
const TARGET = { ordersPerSecondMin: 300 };

const BASELINE = 'INSERT autocommit (baseline)';
const OURS = 'checkout';

const USAGE = [
  'needs MERIDIAN_ADMIN_EMAIL and MERIDIAN_ADMIN_PASSWORD, set to the same values for the server and the bench:',
  '  MERIDIAN_ADMIN_EMAIL=admin@example.com MERIDIAN_ADMIN_PASSWORD=at-least-12-chars npm start',
  '  MERIDIAN_ADMIN_EMAIL=admin@example.com MERIDIAN_ADMIN_PASSWORD=at-least-12-chars npm run bench -- checkout',
  'the baseline connects to the server database: BENCH_DATABASE_URL, else DATABASE_URL, else the embedded',
  "server's ${MERIDIAN_DATA_DIR:-.meridian}/credentials.json on port ${MERIDIAN_PG_PORT:-54329}",
  '(concurrency: --connections, default 32)',
].join('\n');

interface Buyer {
  email: string;
  token: string;
}

interface PreparedCart {
  cartId: string;
  token: string;
}

async function run(o: BenchOptions): Promise<void> {
  const adminEmail = process.env.MERIDIAN_ADMIN_EMAIL;
  const adminPassword = process.env.MERIDIAN_ADMIN_PASSWORD;
  if (!adminEmail || !adminPassword) {
    throw new UsageError('MERIDIAN_ADMIN_EMAIL and MERIDIAN_ADMIN_PASSWORD must be set, to the values the server was started with');
  }
  await requireServer(o.url);
  const databaseUrl = serverDatabaseUrl();
  const concurrency = o.connections ?? DEFAULT_CONCURRENCY;
  if (concurrency * LINES_PER_CART > PRODUCTS * VARIANTS_PER_PRODUCT) {
    throw new UsageError(`--connections ${concurrency} is too high for ${PRODUCTS * VARIANTS_PER_PRODUCT} SKUs without contention`);
  }
  const runId = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  progress(`checkout: ${o.url}, concurrency ${concurrency}, ${o.durationS} s per phase, ${o.rounds} rounds, run ${runId}`);
  const loadAtStart = loadAverage1m();
  progress(`hardware: ${hardwareLine()}; load average ${loadAtStart}`);
  progress(`baseline database: ${redactUrl(databaseUrl)}`);

  const sql = postgres(databaseUrl, { max: concurrency, onnotice: () => undefined, connect_timeout: 10 });
  const client = keepAliveClient(o.url, concurrency);
  const prepTimings: Record<string, number> = {};
  const timed = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const out = await work();
    prepTimings[what] = Math.round(performance.now() - t0);
    return out;
  };
  let productIds: string[] = [];
  let adminToken = '';
  try {
    // --- the database baseline's table, and the server's durability settings for the record
    const [settings] = await sql<{ synchronous_commit: string; fsync: string; version: string }[]>`
      SELECT current_setting('synchronous_commit') AS synchronous_commit, current_setting('fsync') AS fsync,
             current_setting('server_version') AS version`;
    await sql`DROP TABLE IF EXISTS bench_baseline_inserts`;
    await sql`CREATE TABLE bench_baseline_inserts (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      payload text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now())`;

    // --- catalog and stock, through the admin API
    adminToken = (await api<{ token: string }>(o.url, 'POST', '/v1/auth/login', { body: { email: adminEmail, password: adminPassword }, expect: [200] })
      .catch((err: unknown) => {
        throw new UsageError(`admin login as ${adminEmail} failed (${err instanceof Error ? err.message : String(err)}); the server must have been started with the same MERIDIAN_ADMIN_EMAIL / MERIDIAN_ADMIN_PASSWORD`);
      })).body.token;
    await api(o.url, 'PUT', `/v1/admin/inventory/locations/${LOCATION_ID}`, { token: adminToken, body: { name: 'Benchmark warehouse' }, expect: [204] });
    const skus: string[] = [];
    productIds = await timed('createProductsMs', () =>
      mapConcurrent(Array.from({ length: PRODUCTS }, (_, i) => i), PREP_WIDTH, async (i) => {
        const variants = Array.from({ length: VARIANTS_PER_PRODUCT }, (_, j) => ({
          sku: `BENCH-${runId}-${i}-${j}`,
          title: `Variant ${j}`,
          prices: [{ amount: 1_000 + j, currency: 'USD' }],
        }));
        const res = await api<{ id: string }>(o.url, 'POST', '/v1/admin/products', {
          token: adminToken,
          body: { title: `Bench product ${runId} #${i}`, description: 'created by bench/scenarios/checkout.ts', variants },
          expect: [201],
        });
        return res.body.id;
      }),
    );
    for (let i = 0; i < PRODUCTS; i++) for (let j = 0; j < VARIANTS_PER_PRODUCT; j++) skus.push(`BENCH-${runId}-${i}-${j}`);
    progress(`prepared ${PRODUCTS} products, ${skus.length} SKUs (${prepTimings.createProductsMs} ms)`);
    await timed('receiveStockMs', () =>
      mapConcurrent(skus, PREP_WIDTH, (sku) =>
        api(o.url, 'POST', '/v1/admin/inventory/receipts', { token: adminToken, body: { sku, locationId: LOCATION_ID, quantity: STOCK_PER_SKU }, expect: [201] }),
      ),
    );
    progress(`received ${fmtInt(STOCK_PER_SKU)} units of each SKU at ${LOCATION_ID} (${prepTimings.receiveStockMs} ms)`);

    // --- buyers (argon2id on the server: tens of ms of CPU each)
    const buyers: Buyer[] = await timed('registerBuyersMs', () =>
      mapConcurrent(Array.from({ length: BUYERS }, (_, i) => `buyer-${runId}-${i}@bench.local`), PREP_WIDTH, async (email) => {
        const res = await api<{ token: string }>(o.url, 'POST', '/v1/auth/register', { body: { email, password: 'bench-buyer-password' }, expect: [201] });
        return { email, token: res.body.token };
      }),
    );
    progress(`registered ${buyers.length} buyers (${prepTimings.registerBuyersMs} ms, ${fmtMs(prepTimings.registerBuyersMs! / buyers.length)} ms each at width ${PREP_WIDTH})`);

    // --- carts: cart n belongs to buyer n mod BUYERS and holds SKUs n·L … n·L+L−1 (mod SKUs), so
    // the carts in flight at one time share neither a buyer nor a SKU.
    let cartSeq = 0;
    const pool: PreparedCart[] = [];
    const prepareCarts = async (count: number): Promise<void> => {
      const seqs = Array.from({ length: count }, () => cartSeq++);
      const t0 = performance.now();
      const carts = await mapConcurrent(seqs, concurrency, async (n) => {
        const buyer = buyers[n % buyers.length]!;
        const cart = await api<{ id: string }>(o.url, 'POST', '/v1/carts', { token: buyer.token, body: {}, expect: [201] });
        for (let j = 0; j < LINES_PER_CART; j++) {
          const sku = skus[(n * LINES_PER_CART + j) % skus.length]!;
          await api(o.url, 'POST', `/v1/carts/${cart.body.id}/lines`, { token: buyer.token, body: { sku, quantity: 1 }, expect: [201] });
        }
        return { cartId: cart.body.id, token: buyer.token };
      });
      pool.push(...carts);
      progress(`prepared ${count} carts × ${LINES_PER_CART} lines in ${((performance.now() - t0) / 1000).toFixed(1)} s (pool ${pool.length})`);
    };

    // --- the two measured operations
    const nonCreated: string[] = [];
    const checkoutOnce = async (cart: PreparedCart): Promise<string> => {
      const res = await client.request(
        'POST',
        '/v1/checkout',
        {
          authorization: `Bearer ${cart.token}`,
          'content-type': 'application/json',
          'idempotency-key': `bench-${runId}-${cart.cartId}`,
        },
        JSON.stringify({ cartId: cart.cartId, payment: { token: PAYMENT_TOKEN } }),
      );
      if (res.status !== 201) {
        if (nonCreated.length < 5) nonCreated.push(`${res.status} ${res.body.slice(0, 200)}`);
        return String(res.status);
      }
      const status = (JSON.parse(res.body) as { order?: { status?: string } }).order?.status;
      return status === 'paid' ? '201' : `201 (order ${status ?? 'missing'})`;
    };
    let insertSeq = 0;
    const insertOnce = async (): Promise<string> => {
      await sql`INSERT INTO bench_baseline_inserts (payload) VALUES (${`row ${insertSeq++}`})`;
      return 'ok';
    };
    // CPU per order of each process group, for the checkout phases: where an order's cost goes.
    const cpuPerOrder: CpuMs[] = [];
    const checkoutPhase = async (round: number, durationS: number): Promise<PhaseResult> => {
      const before = await cpuNow(o.url);
      const r = await runClosedLoop({ phase: OURS, round, concurrency, durationS, next: () => pool.shift(), op: checkoutOnce });
      const after = await cpuNow(o.url);
      const used = perOrder(before, after, r.completed);
      if (round > 0) cpuPerOrder.push(used);
      r.notes = [...(r.notes ?? []), `cpu per order: ${describeCpu(used)}`];
      return r;
    };
    const baselinePhase = (round: number, durationS: number): Promise<PhaseResult> =>
      runClosedLoop({ phase: BASELINE, round, concurrency, durationS, next: () => true, op: insertOnce });

    // --- warm-up (not recorded): JIT, pools, caches; and a first estimate of the rate
    await prepareCarts(WARMUP_CHECKOUTS);
    const warm = await checkoutPhase(0, 600);
    progress(`warm-up checkout: ${fmtInt(warm.perSecond)}/s over ${warm.completed} orders`);
    const warmBase = await baselinePhase(0, 2);
    progress(`warm-up ${BASELINE}: ${fmtInt(warmBase.perSecond)}/s`);
    let estimate = warm.perSecond;
    const warmUpStatuses = { checkout: warm.statuses, baseline: warmBase.statuses };

    const results: PhaseResult[] = [];
    const total = o.rounds * 2;
    for (let round = 1; round <= o.rounds; round++) {
      const wanted = Math.ceil(estimate * o.durationS * PREPARE_MARGIN) + concurrency;
      if (pool.length < wanted) await prepareCarts(wanted - pool.length);
      // Alternate which side goes first, so a drift of the machine does not favour one side.
      const order = round % 2 === 1 ? ['ours', 'base'] : ['base', 'ours'];
      for (const side of order) {
        const r = side === 'ours' ? await checkoutPhase(round, o.durationS) : await baselinePhase(round, o.durationS);
        results.push(r);
        progress(phaseLine(r, results.length, total));
        if (side === 'ours') estimate = Math.max(estimate, r.perSecond);
      }
    }

    // --- report
    const ours = mediansOf(OURS, results);
    const base = mediansOf(BASELINE, results);
    const ratio = sideBySideRatios(results, OURS, BASELINE);
    const checkoutsTotal = Object.values(ours.statuses).reduce((n, v) => n + v, 0) + ours.errors;
    const created = ours.statuses['201'] ?? 0;
    const statusText = (s: Record<string, number>, errors: number): string =>
      Object.entries(s).map(([k, v]) => `${k}:${v}`).join(' ') + (errors ? ` err:${errors}` : '');
    console.log('');
    console.log(`checkout — medians of ${o.rounds} rounds × ${o.durationS} s at concurrency ${concurrency}; ratios are ours/baseline within each round, median`);
    console.log(`hardware: ${hardwareLine()}; PostgreSQL ${settings?.version ?? '?'} (fsync=${settings?.fsync ?? '?'}, synchronous_commit=${settings?.synchronous_commit ?? '?'})`);
    console.log(
      table(
        ['phase', 'per s', 'p50 ms', 'p99 ms', 'per s vs base', 'p99 vs base', 'target', 'statuses'],
        [
          [BASELINE, fmtInt(base.perSecond), fmtMs(base.p50Ms), fmtMs(base.p99Ms), '1.00×', '1.00×', '', statusText(base.statuses, base.errors)],
          [
            `${OURS} (orders)`,
            fmtInt(ours.perSecond),
            fmtMs(ours.p50Ms),
            fmtMs(ours.p99Ms),
            fmtRatio(ratio.perSecond),
            fmtRatio(ratio.p99),
            `≥ ${TARGET.ordersPerSecondMin}/s: ${ours.perSecond >= TARGET.ordersPerSecondMin ? 'meets' : 'below'}`,
            statusText(ours.statuses, ours.errors),
          ],
        ],
      ),
    );
    console.log(`target: checkout ≥ ${TARGET.ordersPerSecondMin} orders/s with no stock contention (for comparison; not asserted)`);
    const cpuMedian = medianCpu(cpuPerOrder);
    console.log(`cpu per order (median of the checkout rounds): ${describeCpu(cpuMedian)}`);
    console.log(`checkouts answered 201 with a paid order: ${created} of ${checkoutsTotal}`);
    if (created !== checkoutsTotal) {
      console.log(`NOT EVERY CHECKOUT SUCCEEDED — first answers that were not 201:\n  ${nonCreated.join('\n  ') || '(transport errors only)'}`);
      process.exitCode = 1;
    }

    const file = await writeResults({
      scenario: 'checkout',
      date: new Date().toISOString(),
      hardware: hardware(),
      loadAverage1m: { start: loadAtStart, end: loadAverage1m() },
      parameters: {
        url: o.url,
        concurrency,
        durationS: o.durationS,
        rounds: o.rounds,
        buyers: BUYERS,
        products: PRODUCTS,
        skus: skus.length,
        linesPerCart: LINES_PER_CART,
        quantityPerLine: 1,
        stockPerSku: STOCK_PER_SKU,
        location: LOCATION_ID,
        paymentToken: PAYMENT_TOKEN,
        warmupCheckouts: warm.completed,
        runId,
        baseline: 'INSERT INTO bench_baseline_inserts (payload) VALUES ($1), one autocommit transaction each, same concurrency, postgres.js',
        database: redactUrl(databaseUrl),
        postgres: settings ?? null,
        loadGenerator: 'closed loop of node:http keep-alive requests in the bench process, same machine',
        preparationMs: prepTimings,
      },
      targets: TARGET,
      medians: [base, ours],
      ratios: { [OURS]: ratio },
      phases: results,
      details: { cpuPerOrderMs: { median: cpuMedian, rounds: cpuPerOrder, sources: CPU_SOURCES } },
      notes: [
        `checkouts answered 201 with a paid order: ${created} of ${checkoutsTotal}`,
        `warm-up statuses: ${JSON.stringify(warmUpStatuses)}`,
        ...nonCreated.map((n) => `non-201: ${n}`),
      ],
    });
    console.log(`results: ${file}`);
  } finally {
    client.close();
    await sql`DROP TABLE IF EXISTS bench_baseline_inserts`.catch((err: unknown) => progress(`could not drop bench_baseline_inserts: ${String(err)}`));
    await sql.end({ timeout: 5 });
    // Keep the storefront's listings free of bench products (orders keep referring to them).
    if (adminToken && productIds.length) {
      await mapConcurrent(productIds, PREP_WIDTH, (id) =>
        api(o.url, 'PATCH', `/v1/admin/products/${id}`, { token: adminToken, body: { status: 'archived' }, expect: [200] }),
      ).then(
        () => progress(`archived the ${productIds.length} bench products`),
        (err: unknown) => progress(`could not archive the bench products: ${String(err)}`),
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// CPU per order. The server runs apart from the bench, so each group is read where it can be:
// the API process from its own /metrics (prom-client's process_cpu_seconds_total), the embedded
// PostgreSQL as the process tree of the postmaster in ${MERIDIAN_DATA_DIR}/pg/postmaster.pid (its
// backends and background workers, reaped ones included), this process from process.cpuUsage(),
// and the whole machine from /proc/stat. A group that cannot be read (another host) is NaN.

const CPU_SOURCES = {
  apiMs: 'GET /metrics process_cpu_seconds_total of the API process',
  postgresMs: 'process tree of the embedded postmaster (/proc; NaN for an external database)',
  loadGeneratorMs: 'process.cpuUsage() of the bench process',
  machineMs: 'busy time of the whole machine (/proc/stat), every process included',
};

/** CPU milliseconds per group: a cumulative reading, or (per order) the difference of two. */
type CpuMs = Record<keyof typeof CPU_SOURCES, number>;
const CPU_GROUPS = Object.keys(CPU_SOURCES) as (keyof typeof CPU_SOURCES)[];

function embeddedPostmasterPid(): number | undefined {
  if (process.env.BENCH_DATABASE_URL || process.env.DATABASE_URL) return undefined;
  return pidFromFile(path.join(path.resolve(process.env.MERIDIAN_DATA_DIR ?? '.meridian'), 'pg', 'postmaster.pid'));
}

async function apiCpuMs(baseUrl: string): Promise<number> {
  try {
    const res = await fetch(new URL('/metrics', baseUrl));
    const line = (await res.text()).split('\n').find((l) => l.startsWith('process_cpu_seconds_total '));
    return line ? Number(line.split(' ')[1]) * 1000 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

async function cpuNow(baseUrl: string): Promise<CpuMs> {
  const postmaster = embeddedPostmasterPid();
  const own = process.cpuUsage();
  return {
    apiMs: await apiCpuMs(baseUrl),
    postgresMs: postmaster === undefined ? Number.NaN : cpuMsOfTrees([postmaster]),
    loadGeneratorMs: (own.user + own.system) / 1000,
    machineMs: machineBusyMs(),
  };
}

function perOrder(before: CpuMs, after: CpuMs, orders: number): CpuMs {
  return Object.fromEntries(CPU_GROUPS.map((k) => [k, orders > 0 ? (after[k] - before[k]) / orders : Number.NaN])) as CpuMs;
}

function medianCpu(rounds: readonly CpuMs[]): CpuMs {
  return Object.fromEntries(CPU_GROUPS.map((k) => [k, median(rounds.map((r) => r[k]))])) as CpuMs;
}

function describeCpu(c: CpuMs): string {
  return `API ${fmtMs(c.apiMs)} ms, PostgreSQL ${fmtMs(c.postgresMs)} ms, load generator ${fmtMs(c.loadGeneratorMs)} ms; machine ${fmtMs(c.machineMs)} ms`;
}

export const scenario: Scenario = {
  name: 'checkout',
  summary: 'POST /v1/checkout, many buyers and SKUs (no stock contention) vs autocommit INSERTs into PostgreSQL',
  usage: USAGE,
  run,
};
