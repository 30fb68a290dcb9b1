/* global console */
// postinstall: guards postgres.js 3.4.9 against writing to a closed socket.
//
// Why: when a connection's socket closes while a small write is queued (a PostgreSQL primary
// dying mid-query, the everyday case of a failover), connection.js's nextWrite() runs from a
// setImmediate with `socket === null` and throws an uncatchable TypeError that kills the whole
// API process (porsager/postgres#1154, #1208; fix proposed upstream in #1176 / #1209, not
// released as of 3.4.9). The guard below is that fix: with no socket, the queued write fails
// the connection's queries with CONNECTION_CLOSED, which the caller sees and answers 503.
// Idempotent; it touches nothing if the code it expects is not there (a fixed release).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', 'postgres');
const MARK = '/* meridian: guarded nextWrite */';
const BEFORE = `  function nextWrite(fn) {
    const x = socket.write(chunk, fn)`;
const AFTER = `  function nextWrite(fn) { ${MARK}
    if (!socket) {
      nextWriteTimer !== null && clearImmediate(nextWriteTimer)
      chunk = nextWriteTimer = null
      error(Errors.connection('CONNECTION_CLOSED', options))
      return false
    }
    const x = socket.write(chunk, fn)`;

let patched = 0;
for (const variant of ['src', 'cjs/src', 'cf/src']) {
  const file = path.join(root, variant, 'connection.js');
  if (!existsSync(file)) continue;
  const text = readFileSync(file, 'utf8');
  if (text.includes(MARK)) continue;
  if (!text.includes(BEFORE)) {
    console.warn(`patch-postgres: ${file} does not have the expected nextWrite(); left as is`);
    continue;
  }
  writeFileSync(file, text.replace(BEFORE, AFTER));
  patched++;
}
if (patched) console.log(`patch-postgres: guarded nextWrite() in ${patched} build(s) of postgres.js`);
