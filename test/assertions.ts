// Assertions shared by the HTTP contract, state-machine and property tests.
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { shardOfId } from '../src/platform/ids.ts';
import type { TestPlatform } from './helpers.ts';

/** Ids travel as decimal strings without sign or leading zeros. */
export const ID = /^[1-9][0-9]*$/;

export function assertId(value: unknown, what = 'id'): asserts value is string {
  assert.equal(typeof value, 'string', `${what} must be a string, got ${JSON.stringify(value)}`);
  assert.match(value as string, ID, `${what} ${String(value)}`);
}

/** A row owned by a user carries the user's logical shard in its id. */
export function assertOnUserShard(id: unknown, userId: string, what = 'id'): void {
  assertId(id, what);
  assert.equal(shardOfId(id), shardOfId(userId), `${what} ${id} is not on the shard of user ${userId}`);
}

/** The one error shape: {error:{code,message[,details]}}, nothing else, with the status of its code. */
export function assertErrorShape(res: LightMyRequestResponse): { code: string; message: string; details?: Record<string, unknown> } {
  assert.ok(res.statusCode >= 400, `expected an error status, got ${res.statusCode} ${res.body}`);
  assert.match(String(res.headers['content-type']), /^application\/json/, `error content-type for ${res.statusCode} ${res.body}`);
  const body = res.json<{ error?: { code?: unknown; message?: unknown; details?: unknown } }>();
  assert.deepEqual(Object.keys(body), ['error'], `error body ${res.body}`);
  const error = body.error!;
  assert.equal(typeof error.code, 'string', `error.code in ${res.body}`);
  assert.equal(typeof error.message, 'string', `error.message in ${res.body}`);
  assert.ok((error.message as string).length > 0, `empty error.message in ${res.body}`);
  for (const key of Object.keys(error)) assert.ok(['code', 'message', 'details'].includes(key), `unexpected error.${key} in ${res.body}`);
  if (error.details !== undefined) assert.equal(typeof error.details, 'object', `error.details in ${res.body}`);
  return error as { code: string; message: string; details?: Record<string, unknown> };
}

export function assertError(res: LightMyRequestResponse, status: number, code: string): { code: string; message: string; details?: Record<string, unknown> } {
  assert.equal(res.statusCode, status, `expected ${status} ${code}, got ${res.statusCode} ${res.body}`);
  const error = assertErrorShape(res);
  assert.equal(error.code, code, `expected code ${code}, got ${res.body}`);
  return error;
}

/**
 * Publishes outbox events until none is left. One drain() publishes what was pending when it
 * started; consumers emit further events (stock change → in-stock flag → product.changed →
 * search document), which the next pass publishes.
 */
export async function drainOutbox(t: TestPlatform, passesMax = 10): Promise<void> {
  for (let pass = 0; pass < passesMax; pass++) {
    if ((await t.s.relay.drain()) === 0) return;
  }
  throw new Error(`the outbox still had events after ${passesMax} drains`);
}
