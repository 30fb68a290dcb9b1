// Plain SQL migrations. Each file names the role of the data it creates in its first line
// (`-- role: shard`); a database receives the migrations of the roles it holds, so the same
// files build a single node and every cluster of a topology. Applied files are recorded in
// meridian_migrations; an advisory lock serialises concurrent starts.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pool, Role } from './db.ts';
import { ALL_ROLES, transaction } from './db.ts';

const SRC_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MIGRATION_LOCK_KEY = 7_262_021_001;

export interface Migration {
  readonly id: string; // "<module>/<file>"
  readonly roles: readonly Role[];
  readonly sql: string;
}

function parseRoles(id: string, sql: string): Role[] {
  const match = /^--\s*role:\s*([a-z, ]+)$/m.exec(sql.split('\n', 1)[0] ?? '');
  if (!match?.[1]) throw new Error(`migration ${id} must start with "-- role: <role>"`);
  const names = match[1].split(',').map((s) => s.trim());
  if (names.includes('all')) return [...ALL_ROLES];
  for (const n of names) {
    if (!(ALL_ROLES as readonly string[]).includes(n)) throw new Error(`migration ${id}: unknown role ${n}`);
  }
  return names as Role[];
}

async function readDir(module: string, dir: string): Promise<Migration[]> {
  let files: string[];
  try {
    files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  } catch {
    return [];
  }
  return Promise.all(
    files.map(async (f) => {
      const sql = await readFile(path.join(dir, f), 'utf8');
      const id = `${module}/${f}`;
      return { id, roles: parseRoles(id, sql), sql };
    }),
  );
}

/** Platform migrations first, then each module's in file order. Modules share no tables. */
export async function loadMigrations(): Promise<Migration[]> {
  const platform = await readDir('platform', path.join(SRC_DIR, 'platform', 'migrations'));
  const modules = (await readdir(path.join(SRC_DIR, 'modules'))).sort();
  const perModule = await Promise.all(modules.map((m) => readDir(m, path.join(SRC_DIR, 'modules', m, 'migrations'))));
  return [...platform, ...perModule.flat()];
}

export async function migrate(pool: Pool, roles: readonly Role[], log: (msg: string) => void = () => undefined): Promise<number> {
  const migrations = (await loadMigrations()).filter((m) => m.roles.some((r) => roles.includes(r)));
  let applied = 0;
  await transaction(pool, async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
    await tx`CREATE TABLE IF NOT EXISTS meridian_migrations (id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`;
    const done = new Set((await tx<{ id: string }[]>`SELECT id FROM meridian_migrations`).map((r) => r.id));
    for (const m of migrations) {
      if (done.has(m.id)) continue;
      log(`migrating ${m.id}`);
      await tx.unsafe(m.sql);
      await tx`INSERT INTO meridian_migrations (id) VALUES (${m.id})`;
      applied++;
    }
  });
  return applied;
}
