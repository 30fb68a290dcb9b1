// Online move of a range of logical shards to another cluster, with PostgreSQL's own logical
// replication (never a home-made copy):
//   1 publish the range's rows on the source (row filters on the shard bits of each id) and
//     subscribe on the target: initial copy, then streaming; wait until the copy is done
//   2 fence: a new map version marks the range fenced (API processes answer 503 for it); once
//     every API process follows it (shard_map_followers), triggers on the source refuse any
//     further write to it — creating them waits for writers already in flight, so after this
//     nothing more can commit there
//   3 wait until the target has applied everything up to the source's WAL position
//   4 flip: the next map version gives the range to the target, unfenced
//   5 clean up, once every API process follows the flipped map (none reads the source's copy
//     any more): drop the subscription (and its slot), the publication, the triggers, and the
//     moved rows on the source
// The fence (2 → 4) is the only pause; it is measured and returned.
import type { Databases, Pool } from '../platform/db.ts';
import { LOGICAL_SHARDS } from '../platform/ids.ts';
import { latestShardMap, publishShardMap, waitForFollowers, type ShardMap } from './shard-map.ts';
import { setTimeout as sleep } from 'node:timers/promises';

/** Tables that hold user-owned rows, with the column whose id carries the user's shard. */
export const SHARDED_TABLES: readonly { table: string; column: string }[] = [
  { table: 'users', column: 'id' },
  { table: 'sessions', column: 'id' },
  { table: 'addresses', column: 'id' },
  { table: 'carts', column: 'id' },
  { table: 'cart_lines', column: 'id' },
  { table: 'orders', column: 'id' },
  { table: 'order_lines', column: 'order_id' },
  { table: 'order_history', column: 'order_id' },
  { table: 'payments', column: 'order_id' },
  { table: 'idempotency_keys', column: 'user_id' },
];

export interface MoveRequest {
  from: number;
  to: number;
  target: string;
  /** How the target server reaches the source primary (a libpq connection string). */
  sourceConnInfo: string;
}

export interface MoveReport {
  from: number;
  to: number;
  source: string;
  target: string;
  copiedRows: number;
  fencedMs: number;
  /**
   * Where the fence's time went: every API process following the fenced map, taking the locks
   * and creating the triggers, catching up, publishing the flip.
   */
  fencePhasesMs: { followers: number; lock: number; catchUp: number; flip: number };
  /**
   * Whether the moved rows were deleted on the source. False when some process did not follow
   * the flipped map in time: the rows stay there, fenced against writes, and cluster-wide reads
   * (admin lists, verify) see them twice until they are deleted by hand (the progress log names
   * the statement). The move itself is complete: the target owns the range.
   */
  sourceCleaned: boolean;
  totalMs: number;
  mapVersion: number;
}

/** One attempt at the fence's table locks; writers queue behind it meanwhile. */
const FENCE_LOCK_TIMEOUT_MS = 150;
const FENCE_LOCK_ATTEMPTS_MAX = 30;
/** Between attempts: long enough for the writers that queued to run. */
const FENCE_LOCK_RETRY_DELAY_MS = 20;

const inRange = (column: string, from: number, to: number): string => `((${column} >> 10) & 4095) BETWEEN ${from} AND ${to}`;

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export async function moveShards(dbs: Databases, req: MoveRequest, progress: (m: string) => void = () => undefined): Promise<MoveReport> {
  const started = Date.now();
  const { from, to } = req;
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to >= LOGICAL_SHARDS || from > to) {
    throw new Error(`--shards must be FROM-TO within 0-${LOGICAL_SHARDS - 1}`);
  }
  const source = dbs.ownerOf(from);
  for (let s = from; s <= to; s++) {
    if (dbs.ownerOf(s) !== source) throw new Error(`shards ${from}-${to} are not all on one cluster (${s} is on ${dbs.ownerOf(s).spec.name})`);
  }
  const target = dbs.clusters.find((c) => c.spec.name === req.target);
  if (!target || !target.spec.roles.includes('shard')) throw new Error(`no shard cluster named ${req.target}`);
  if (target === source) throw new Error(`shards ${from}-${to} are already on ${req.target}`);
  const mapDb = dbs.core('directory');
  const current = await latestShardMap(mapDb);
  if (!current) throw new Error('no shard map in the database: start the API once first');
  if (current.fenced.length > 0) throw new Error(`another move is in progress (fenced ${JSON.stringify(current.fenced)})`);

  await mapDb`DELETE FROM shard_map_followers WHERE live_until < now() - interval '1 day'`; // long gone
  const name = `meridian_move_${from}_${to}_${Date.now()}`;
  const src: Pool = source.pool;
  const dst: Pool = target.pool;
  const tables = SHARDED_TABLES.map((t) => `${t.table} WHERE (${inRange(t.column, from, to)})`).join(', ');
  let fencedAt = 0;
  let report: MoveReport | undefined;
  try {
    // 1. Copy, then stream. The slot is made first and apart: a subscription cannot create its
    // slot on the server it runs on (tests move between databases of one server).
    progress(`publishing shards ${from}-${to} on ${source.spec.name}`);
    await src.unsafe(`CREATE PUBLICATION ${name} FOR TABLE ${tables}`);
    await src`SELECT pg_create_logical_replication_slot(${name}, 'pgoutput')`;
    await dst.unsafe(
      `CREATE SUBSCRIPTION ${name} CONNECTION '${req.sourceConnInfo.replace(/'/g, "''")}' PUBLICATION ${name} ` +
        // synchronous_commit = on: the apply worker reports a commit as flushed as soon as it has
        // applied it. With the subscription default (off) it reports only after its own WAL
        // writer flushed and its next wake-up, which held the fence's catch-up step ~1 s.
        `WITH (create_slot = false, slot_name = '${name}', copy_data = true, synchronous_commit = 'on')`,
    );
    progress(`subscribed on ${target.spec.name}; copying`);
    await waitFor('the initial copy', 600_000, async () => {
      const [row] = await dst<{ pending: number }[]>`
        SELECT count(*)::int AS pending FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
        WHERE s.subname = ${name} AND r.srsubstate <> 'r'`;
      return row?.pending === 0;
    });
    progress('initial copy done; streaming');

    // 2. Fence: the API stops routing the range, then the source refuses writes to it.
    fencedAt = Date.now();
    const fencedMap: ShardMap = { version: current.version + 1, assignment: current.assignment, fenced: [[from, to]] };
    await publishShardMap(mapDb, fencedMap, `fence ${from}-${to} for a move to ${req.target}`);
    // A process still on the unfenced map would route requests to the source while we lock it.
    await waitForFollowers(mapDb, fencedMap.version);
    const followedAt = Date.now();
    // Taking the tables' locks waits for writers in flight, and every writer that comes after
    // queues behind the waiting lock: so wait only briefly, let the queue go, and try again. A
    // deadlock with a writer aborts one side; if it is ours we try again too.
    for (let attempt = 1; ; attempt++) {
      try {
        await src.begin(async (tx) => {
          await tx.unsafe(`SET LOCAL lock_timeout = '${FENCE_LOCK_TIMEOUT_MS}ms'`);
          // Flushed at commit, so the WAL flush position after it covers every write that
          // committed before the fence, asynchronous commits included (step 3).
          await tx`SET LOCAL synchronous_commit = on`;
          await tx.unsafe(`LOCK TABLE ${SHARDED_TABLES.map((t) => t.table).join(', ')} IN SHARE ROW EXCLUSIVE MODE`);
          await tx.unsafe(`
            CREATE FUNCTION ${name}_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'shards ${from}-${to} are moving' USING ERRCODE = '55006'; END $$`);
          for (const t of SHARDED_TABLES) {
            await tx.unsafe(`
              CREATE TRIGGER ${name}_fence BEFORE INSERT OR UPDATE ON ${t.table}
              FOR EACH ROW WHEN (${inRange(`NEW.${t.column}`, from, to)}) EXECUTE FUNCTION ${name}_refuse()`);
            await tx.unsafe(`
              CREATE TRIGGER ${name}_fence_del BEFORE DELETE ON ${t.table}
              FOR EACH ROW WHEN (${inRange(`OLD.${t.column}`, from, to)}) EXECUTE FUNCTION ${name}_refuse()`);
          }
        });
        break;
      } catch (err) {
        if (!['40P01', '55P03'].includes((err as { code?: string }).code ?? '') || attempt >= FENCE_LOCK_ATTEMPTS_MAX) throw err;
        progress(`fence attempt ${attempt} lost a lock race; retrying`);
        await sleep(FENCE_LOCK_RETRY_DELAY_MS);
      }
    }

    const lockedAt = Date.now();
    // 3. Catch up to everything the source committed for the range.
    // Everything the range will ever have on the source is in the WAL up to the fence's own
    // commit, which was flushed: catch up to the flush position. (pg_current_wal_lsn(), the write
    // position, can lie before an asynchronous commit; the insert position can lie past a page
    // header that no record ends at, and an idle source would never confirm it.)
    const [pos] = await src<{ lsn: string }[]>`SELECT pg_current_wal_flush_lsn()::text AS lsn`;
    await waitFor('the target to catch up', 60_000, async () => {
      const [row] = await src<{ caught: boolean }[]>`
        SELECT confirmed_flush_lsn >= ${pos!.lsn}::pg_lsn AS caught FROM pg_replication_slots WHERE slot_name = ${name}`;
      return row?.caught === true;
    });

    const caughtUpAt = Date.now();
    // 4. Flip.
    const assignment: [number, number, string][] = [...current.assignment, [from, to, req.target]];
    const flipped: ShardMap = { version: current.version + 2, assignment: normalise(assignment), fenced: [] };
    await publishShardMap(mapDb, flipped, `shards ${from}-${to} moved to ${req.target}`);
    const flippedAt = Date.now();
    const fencedMs = flippedAt - fencedAt;
    const fencePhasesMs = { followers: followedAt - fencedAt, lock: lockedAt - followedAt, catchUp: caughtUpAt - lockedAt, flip: flippedAt - caughtUpAt };
    fencedAt = 0;
    progress(`flipped: shards ${from}-${to} now on ${req.target} (writes fenced for ${fencedMs} ms)`);

    const [copied] = await dst<{ n: number }[]>`SELECT count(*)::int AS n FROM orders WHERE ${dst.unsafe(inRange('id', from, to))}`;
    report = {
      from, to, source: source.spec.name, target: req.target, copiedRows: copied?.n ?? 0, fencedMs,
      fencePhasesMs,
      totalMs: 0, mapVersion: flipped.version, sourceCleaned: false,
    };
  } finally {
    // 5. Clean up (also after a failure: an unfinished move leaves the source authoritative).
    await dst.unsafe(`ALTER SUBSCRIPTION ${name} DISABLE`).catch(() => undefined);
    await dst.unsafe(`ALTER SUBSCRIPTION ${name} SET (slot_name = NONE)`).catch(() => undefined);
    await dst.unsafe(`DROP SUBSCRIPTION IF EXISTS ${name}`).catch(() => undefined);
    // The slot stays active until the source's walsender notices the subscription is gone.
    await waitFor('the replication slot to be released', 30_000, async () => {
      const rows = await src<{ active: boolean }[]>`SELECT active FROM pg_replication_slots WHERE slot_name = ${name}`;
      if (rows.length === 0) return true;
      if (!rows[0]!.active) await src`SELECT pg_drop_replication_slot(${name})`.catch(() => undefined);
      return false;
    }).catch(() => undefined);
    await src.unsafe(`DROP PUBLICATION IF EXISTS ${name}`).catch(() => undefined);
    if (report) {
      // The source's copy of the moved range is stale now: remove it, children first, once no
      // process routes there by an older map. The insert/update fence stays for good, so a
      // request that still routes by the old map can never write the range on the source again.
      const followed = await waitForFollowers(mapDb, report.mapVersion).then(
        () => true,
        (err: unknown) => {
          const where = SHARDED_TABLES.map((t) => `DELETE FROM ${t.table} WHERE ${inRange(t.column, from, to)};`).reverse().join(' ');
          progress(`the moved rows stay on ${source.spec.name} (fenced against writes): ${String(err)}. Once every API process follows v${report!.mapVersion}, run there: ${where}`);
          return false;
        },
      );
      if (followed) {
        for (const t of [...SHARDED_TABLES].reverse()) {
          await src.begin(async (tx) => {
            await tx.unsafe(`DROP TRIGGER IF EXISTS ${name}_fence_del ON ${t.table}`);
            await tx.unsafe(`DELETE FROM ${t.table} WHERE ${inRange(t.column, from, to)}`);
          });
        }
        report.sourceCleaned = true;
      }
    } else {
      if (fencedAt > 0) {
        // Failed while fenced: lift the fence; the source keeps the range.
        const now = await latestShardMap(mapDb);
        if (now) await publishShardMap(mapDb, { version: now.version + 1, assignment: now.assignment, fenced: [] }, 'move aborted');
      }
      for (const t of SHARDED_TABLES) {
        await src.unsafe(`DROP TRIGGER IF EXISTS ${name}_fence ON ${t.table}`).catch(() => undefined);
        await src.unsafe(`DROP TRIGGER IF EXISTS ${name}_fence_del ON ${t.table}`).catch(() => undefined);
      }
      await src.unsafe(`DROP FUNCTION IF EXISTS ${name}_refuse()`).catch(() => undefined);
    }
  }
  if (!report) throw new Error('unreachable: the move neither finished nor failed');
  report.totalMs = Date.now() - started;
  return report;
}

/** Later ranges override earlier ones; merge into disjoint, sorted ranges. */
function normalise(assignment: [number, number, string][]): [number, number, string][] {
  const owner = new Array<string>(LOGICAL_SHARDS);
  for (const [from, to, name] of assignment) owner.fill(name, from, to + 1);
  const out: [number, number, string][] = [];
  owner.forEach((name, s) => {
    const last = out[out.length - 1];
    if (last && last[2] === name && last[1] === s - 1) last[1] = s;
    else out.push([s, s, name]);
  });
  return out;
}
