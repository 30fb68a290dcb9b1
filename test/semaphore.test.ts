// The bulkhead in front of search (src/platform/semaphore.ts): how many run at once, in which
// order the others get their turn, and when one is refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Semaphore } from '../src/platform/semaphore.ts';

function semaphore(limit: number, queueMax = 100, waitTimeoutMs = 5_000): Semaphore {
  return new Semaphore({ limit, queueMax, waitTimeoutMs, refuse: (reason) => new Error(reason) });
}

describe('semaphore', () => {
  it('runs at most `limit` tasks at once, the others in arrival order', async () => {
    const s = semaphore(2);
    let running = 0;
    let most = 0;
    const started: number[] = [];
    const task = (i: number) => async (): Promise<number> => {
      started.push(i);
      running++;
      most = Math.max(most, running);
      await sleep(5);
      running--;
      return i;
    };
    const results = await Promise.all(Array.from({ length: 7 }, (_, i) => s.run(task(i))));
    assert.deepEqual(results, [0, 1, 2, 3, 4, 5, 6]);
    assert.equal(most, 2);
    assert.deepEqual(started, [0, 1, 2, 3, 4, 5, 6], 'first come, first served');
    assert.equal(s.queued, 0);
  });

  it('refuses a limit, queue or wait it cannot honour', () => {
    assert.throws(() => semaphore(0), /limit/);
    assert.throws(() => semaphore(1, -1), /queueMax/);
    assert.throws(() => semaphore(1, 10, 0), /waitTimeoutMs/);
  });

  it('a failing task gives its turn back', async () => {
    const s = semaphore(1);
    await assert.rejects(s.run(async () => Promise.reject(new Error('boom'))), /boom/);
    assert.equal(await s.run(async () => 'next'), 'next');
  });

  it('refuses at once when the queue is full, and after the wait limit', async () => {
    const s = semaphore(1, 1, 30);
    let release = (): void => undefined;
    const holder = s.run(() => new Promise<void>((r) => (release = r)));
    const waiter = s.run(async () => 'waited');
    await assert.rejects(s.run(async () => 'third'), /queue_full/);
    await assert.rejects(waiter, /wait_timeout/, 'no turn within 30 ms');
    assert.equal(s.queued, 0, 'a refused waiter leaves the queue');
    release();
    await holder;
    assert.equal(await s.run(async () => 'free again'), 'free again');
  });
});
