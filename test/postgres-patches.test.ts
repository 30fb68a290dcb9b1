// scripts/patch-postgres.mjs (npm postinstall) fixes postgres.js 3.4.9 in node_modules. These
// tests check that the installed build is the patched one, and pin the queue fix's effect.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const sourceDir = path.dirname(fileURLToPath(import.meta.resolve('postgres')));

interface Queue<T> {
  readonly length: number;
  push(x: T): T;
  shift(): T | undefined;
  remove(x: T): T | null;
}

describe('postgres.js patches', () => {
  it('the installed build carries every patch', () => {
    const marks: [string, string[]][] = [
      ['connection.js', ['/* meridian: guarded nextWrite v2 */', '/* meridian: timer forgotten */', '/* meridian: row counter reset */']],
      ['index.js', ['/* meridian: broken reservation */']],
      ['queue.js', ['/* meridian: queue without holes */']],
    ];
    // The ESM build (src) and the CommonJS one (cjs/src) that `require('postgres')` loads.
    const builds = [sourceDir, path.join(sourceDir, '..', 'cjs', 'src')];
    for (const build of builds) {
      for (const [file, wanted] of marks) {
        const text = readFileSync(path.join(build, file), 'utf8');
        for (const mark of wanted) assert.ok(text.includes(mark), `${build}/${file} lacks ${mark}: run npm install (postinstall patches postgres.js)`);
      }
    }
  });

  it('a queue that never runs empty does not grow: remove() scans only what it holds', async () => {
    const mod = (await import(pathToFileURL(path.join(sourceDir, 'queue.js')).href)) as { default: <T>() => Queue<T> };
    const busy = mod.default<{ id: number }>();
    const connections = Array.from({ length: 20 }, (_, id) => ({ id }));
    for (const c of connections) busy.push(c);

    // The pool under sustained load: a query is pipelined onto the first busy connection
    // (busy.shift()), which then moves to the back of the busy queue (remove, then push).
    // Unpatched, every shift left a hole that remove()'s indexOf scanned ever after.
    const indexOf = Array.prototype.indexOf;
    let longestScan = 0;
    Array.prototype.indexOf = function (this: unknown[], ...args: Parameters<typeof indexOf>): number {
      longestScan = Math.max(longestScan, this.length - (args[1] ?? 0));
      return indexOf.apply(this, args);
    };
    try {
      for (let i = 0; i < 10_000; i++) {
        const c = busy.shift();
        assert.ok(c);
        assert.equal(busy.remove(c), null, 'a shifted connection is no longer in the queue');
        busy.push(c);
        const other = connections[i % connections.length]!;
        assert.equal(busy.remove(other), other);
        busy.push(other);
      }
    } finally {
      Array.prototype.indexOf = indexOf;
    }
    assert.equal(busy.length, connections.length);
    assert.ok(longestScan <= 2 * connections.length + 64, `remove() scanned ${longestScan} slots for a queue of ${connections.length}`);
    const order = Array.from({ length: connections.length }, () => busy.shift()?.id);
    assert.deepEqual([...order].sort((a, b) => a! - b!), connections.map((c) => c.id), 'each connection once');
  });
});
