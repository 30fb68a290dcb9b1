/* global console */
// postinstall: fixes for postgres.js 3.4.9. The first four guard a socket that closes under a
// queued write — the everyday case of a failover, when a PostgreSQL primary dies mid-query. The
// fifth keeps the pool's queues from slowing down under sustained load.
//
// 1. connection.js's nextWrite() runs from a setImmediate with `socket === null` and throws an
//    uncatchable TypeError that kills the whole API process (porsager/postgres#1154, #1208; fix
//    proposed upstream in #1176 / #1209, not released as of 3.4.9). With no socket, the queued
//    write now fails the connection's queries with CONNECTION_CLOSED (the caller answers 503)
//    and hands the connection back to the pool as closed, so its next use reconnects: a reserved
//    connection released after its socket died otherwise sits in the open queue and fails every
//    query given to it (seen as minutes of 503s after a failover).
// 2. terminate() and closed() cancel the queued write's timer without forgetting it, so the
//    connection, once reconnected, never schedules a flush again: every later query on it
//    stalls or fails (described in LanternOps/breeze#3225). They now forget the timer and the
//    unsent bytes, which belonged to the dead socket.
// 3. closed() leaves the connection's row counter and result buffer where a result cut off
//    mid-way stopped, so the next query on the reconnected connection fills its rows from that
//    index into that buffer: its result has holes (`undefined` rows, seen as 500s under a core
//    failover) or stale rows of the aborted query. closed() now starts both afresh.
// 4. index.js: when a reserved connection's socket closes, the pool takes the connection back
//    (onclose clears `reserved`) and may reconnect it at once for other queries, while the
//    holder of the reservation still sends its statements to it: the rest of a transaction then
//    runs outside it, on a new session, in autocommit — a checkout saw its stock consume
//    "succeed" and vanish. A broken reservation now rejects every later statement with the
//    closing error, and its release() leaves the connection to the pool.
// 5. queue.js: shift() leaves an `undefined` hole at the head of the queue's array, and the
//    array is only reset when a shift takes its last element; remove() scans it from the start
//    with indexOf. Once every connection is busy the pool pipelines onto the busy queue
//    (busy.shift()), and under sustained load that queue never runs empty, so the holes pile up
//    and every query pays for scanning them (and holds them in memory). A scratch loop of 32
//    concurrent `SELECT 1` on a pool of 20 fell from 21k to 9k queries/s within 30 s, the client
//    CPU per query rising from 44 to 109 µs; the checkout bench's API spent 2.6% of its CPU in
//    that indexOf. remove() now searches from the head, and shift() drops the consumed part of
//    the array once it is half of it.
// Idempotent; it touches nothing if the code it expects is not there (a fixed release).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', 'postgres');
const MARK = '/* meridian: guarded nextWrite v2 */';
const BEFORE = `  function nextWrite(fn) {
    const x = socket.write(chunk, fn)`;
const AFTER = `  function nextWrite(fn) { ${MARK}
    if (!socket) {
      nextWriteTimer !== null && clearImmediate(nextWriteTimer)
      chunk = nextWriteTimer = null
      const err = Errors.connection('CONNECTION_CLOSED', options)
      error(err)
      query = null
      onclose(connection, err)
      return false
    }
    const x = socket.write(chunk, fn)`;

// In terminate() and closed(): the only two bare `clearImmediate(nextWriteTimer)` lines.
const TIMER_MARK = '/* meridian: timer forgotten */';
const TIMER_BEFORE = /\n(\s+)clearImmediate\(nextWriteTimer\)\n/g;
const TIMER_AFTER = `\n$1clearImmediate(nextWriteTimer)\n$1nextWriteTimer = chunk = null ${TIMER_MARK}\n`;

const ROWS_MARK = '/* meridian: row counter reset */';
const ROWS_BEFORE = `  async function closed(hadError) {
    incoming = Buffer.alloc(0)`;
const ROWS_AFTER = `${ROWS_BEFORE}
    rows = 0
    result = new Result() ${ROWS_MARK}`;

const RESERVE_MARK = '/* meridian: broken reservation */';
const RESERVE_PATCHES = [
  [`  function onclose(c, e) {
    move(c, closed)
    c.reserved = null`, `  function onclose(c, e) {
    move(c, closed)
    c.reserved && c.reserved.broken && c.reserved.broken(e) ${RESERVE_MARK}
    c.reserved = null`],
  [`    c.reserved.release = true

    const sql = Sql(handler)
    sql.release = () => {
      c.reserved = null
      onopen(c)
    }`, `    c.reserved.release = true
    let broken = null
    c.reserved.broken = (e) => { broken = e }

    const sql = Sql(handler)
    sql.release = () => {
      if (broken) return
      c.reserved = null
      onopen(c)
    }`],
  [`    function handler(q) {
      c.queue === full`, `    function handler(q) {
      if (broken) return q.reject(broken)
      c.queue === full`],
];

const QUEUE_MARK = '/* meridian: queue without holes */';
const QUEUE_PATCHES = [
  [`    remove: (x) => {
      const index = xs.indexOf(x)
      return index === -1
        ? null
        : (xs.splice(index, 1), x)
    },`, `    remove: (x) => { ${QUEUE_MARK}
      const at = xs.indexOf(x, index)
      return at === -1
        ? null
        : (xs.splice(at, 1), x)
    },`],
  [`      } else {
        xs[index - 1] = undefined
      }`, `      } else {
        xs[index - 1] = undefined
        if (index >= 64 && index * 2 >= xs.length) {
          xs = xs.slice(index)
          index = 0
        }
      }`],
];

let patched = 0;
for (const variant of ['src', 'cjs/src', 'cf/src']) {
  const file = path.join(root, variant, 'connection.js');
  if (!existsSync(file)) continue;
  let text = readFileSync(file, 'utf8');
  const before = text;
  if (!text.includes(MARK)) {
    if (text.includes(BEFORE)) text = text.replace(BEFORE, AFTER);
    else console.warn(`patch-postgres: ${file} does not have the expected nextWrite(); left as is`);
  }
  if (!text.includes(TIMER_MARK)) {
    const count = text.match(TIMER_BEFORE)?.length ?? 0;
    if (count === 2) text = text.replace(TIMER_BEFORE, TIMER_AFTER);
    else console.warn(`patch-postgres: ${file} has ${count} bare clearImmediate(nextWriteTimer) lines, expected 2; left as is`);
  }
  if (!text.includes(ROWS_MARK)) {
    if (text.includes(ROWS_BEFORE)) text = text.replace(ROWS_BEFORE, ROWS_AFTER);
    else console.warn(`patch-postgres: ${file} does not have the expected closed(); left as is`);
  }
  if (text !== before) {
    writeFileSync(file, text);
    patched++;
  }
}
/** All-or-nothing replacements in one file of every build, skipped once the mark is there. */
function patchEachBuild(name, mark, patches, expected) {
  for (const variant of ['src', 'cjs/src', 'cf/src']) {
    const file = path.join(root, variant, name);
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    if (text.includes(mark)) continue;
    if (!patches.every(([before]) => text.includes(before))) {
      console.warn(`patch-postgres: ${file} does not have the expected ${expected}; left as is`);
      continue;
    }
    writeFileSync(file, patches.reduce((t, [before, after]) => t.replace(before, after), text));
    patched++;
  }
}
patchEachBuild('index.js', RESERVE_MARK, RESERVE_PATCHES, 'reserve() and onclose()');
patchEachBuild('queue.js', QUEUE_MARK, QUEUE_PATCHES, 'remove() and shift()');
if (patched) console.log(`patch-postgres: patched ${patched} build(s) of postgres.js (see the comment at the top)`);
