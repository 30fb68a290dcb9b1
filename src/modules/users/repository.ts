import type { Sql } from '../../platform/db.ts';
import type { Id } from '../../platform/ids.ts';

export type UserRole = 'customer' | 'admin';

export interface UserRow {
  id: Id;
  email: string;
  password_hash: string;
  role: UserRole;
  created_at: Date;
}

export interface AddressRow {
  id: Id;
  name: string;
  line1: string;
  line2: string | null;
  city: string;
  postal_code: string;
  country: string;
}

export interface DirectoryEntry {
  user_id: Id;
  created_at: Date;
}

export async function claimEmail(sql: Sql, email: string, userId: Id): Promise<boolean> {
  const rows = await sql`
    INSERT INTO user_directory (email, user_id) VALUES (${email}, ${userId})
    ON CONFLICT (email) DO NOTHING RETURNING user_id`;
  return rows.length === 1;
}

export async function findDirectoryEntry(sql: Sql, email: string): Promise<DirectoryEntry | undefined> {
  const [row] = await sql<DirectoryEntry[]>`SELECT user_id::text, created_at FROM user_directory WHERE email = ${email}`;
  return row;
}

export async function releaseEmail(sql: Sql, email: string, userId: Id): Promise<void> {
  await sql`DELETE FROM user_directory WHERE email = ${email} AND user_id = ${userId}`;
}

export async function newId(sql: Sql, shard: number): Promise<Id> {
  const [row] = await sql<{ id: Id }[]>`SELECT meridian_id(${shard})::text AS id`;
  if (!row) throw new Error('meridian_id() returned nothing');
  return row.id;
}

export async function insertUser(sql: Sql, u: { id: Id; email: string; passwordHash: string; role: UserRole }): Promise<UserRow> {
  const [row] = await sql<UserRow[]>`
    INSERT INTO users (id, email, password_hash, role) VALUES (${u.id}, ${u.email}, ${u.passwordHash}, ${u.role})
    RETURNING id::text, email, password_hash, role, created_at`;
  if (!row) throw new Error('insert returned nothing');
  return row;
}

export async function findUser(sql: Sql, userId: Id): Promise<UserRow | undefined> {
  const [row] = await sql<UserRow[]>`SELECT id::text, email, password_hash, role, created_at FROM users WHERE id = ${userId}`;
  return row;
}

export async function insertSession(sql: Sql, s: { id: Id; userId: Id; tokenHash: Buffer; ttlMs: number }): Promise<void> {
  await sql`
    INSERT INTO sessions (id, user_id, token_hash, expires_at)
    VALUES (${s.id}, ${s.userId}, ${s.tokenHash}, now() + ${s.ttlMs} * interval '1 millisecond')`;
}

export interface LiveSession {
  user_id: Id;
  token_hash: Buffer;
  role: UserRole;
  email: string;
}

/** A session that is neither expired nor revoked, with its user's role. */
export async function findLiveSession(sql: Sql, sessionId: Id): Promise<LiveSession | undefined> {
  const [row] = await sql<LiveSession[]>`
    SELECT s.user_id::text, s.token_hash, u.role, u.email
    FROM sessions s JOIN users u ON u.id = s.user_id
    WHERE s.id = ${sessionId} AND s.revoked_at IS NULL AND s.expires_at > now()`;
  return row;
}

export async function revokeSession(sql: Sql, sessionId: Id, userId: Id): Promise<void> {
  await sql`UPDATE sessions SET revoked_at = now() WHERE id = ${sessionId} AND user_id = ${userId} AND revoked_at IS NULL`;
}

export async function insertAddress(sql: Sql, userId: Id, id: Id, a: Omit<AddressRow, 'id'>): Promise<AddressRow> {
  const [row] = await sql<AddressRow[]>`
    INSERT INTO addresses (id, user_id, name, line1, line2, city, postal_code, country)
    VALUES (${id}, ${userId}, ${a.name}, ${a.line1}, ${a.line2}, ${a.city}, ${a.postal_code}, ${a.country})
    RETURNING id::text, name, line1, line2, city, postal_code, country`;
  if (!row) throw new Error('insert returned nothing');
  return row;
}

export async function listAddresses(sql: Sql, userId: Id): Promise<AddressRow[]> {
  return sql<AddressRow[]>`
    SELECT id::text, name, line1, line2, city, postal_code, country FROM addresses
    WHERE user_id = ${userId} ORDER BY id LIMIT 100`;
}

export async function deleteAddress(sql: Sql, userId: Id, id: Id): Promise<boolean> {
  const rows = await sql`DELETE FROM addresses WHERE id = ${id} AND user_id = ${userId} RETURNING id`;
  return rows.length === 1;
}

export async function countAddresses(sql: Sql, userId: Id): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM addresses WHERE user_id = ${userId}`;
  return row?.n ?? 0;
}
