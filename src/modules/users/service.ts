// Users: registration, login, sessions, roles, addresses.
//
// Sessions are opaque tokens, not JWTs: `mrd_<sessionId>_<secret>`. The session id carries the
// user's logical shard, so a request is routed to the right database with no lookup, and a
// revoked or logged-out token stops working at once — which a stateless JWT cannot do without
// a revocation list. The cost is one primary-key read per request (a cache can take it later).
import { hash, verify } from '@node-rs/argon2';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Databases } from '../../platform/db.ts';
import { AppError } from '../../platform/errors.ts';
import { isId, pickShardForNewUser, shardOfId, type Id } from '../../platform/ids.ts';
import * as repo from './repository.ts';
import type { AddressRow, UserRole } from './repository.ts';

// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
const ARGON2ID = 2; // Algorithm.Argon2id (a const enum, which isolated modules cannot import)
const ARGON2_OPTIONS = { algorithm: ARGON2ID, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;
const TOKEN_SECRET_BYTES = 32; // 256 bits
const TOKEN_PATTERN = /^mrd_([1-9][0-9]{0,18})_([A-Za-z0-9_-]{43})$/;
/** Directory entries whose user row never appeared (a crash mid-registration) are reclaimable after this. */
const ORPHAN_DIRECTORY_ENTRY_MS = 60_000;

export interface Principal {
  userId: Id;
  sessionId: Id;
  role: UserRole;
  email: string;
}

export interface PublicUser {
  id: Id;
  email: string;
  role: UserRole;
  createdAt: string;
}

export interface Address {
  id: Id;
  name: string;
  line1: string;
  line2: string | null;
  city: string;
  postalCode: string;
  country: string;
}

export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

function sha256(data: string): Buffer {
  return createHash('sha256').update(data).digest();
}

function toPublic(u: repo.UserRow): PublicUser {
  return { id: u.id, email: u.email, role: u.role, createdAt: u.created_at.toISOString() };
}

function toAddress(a: AddressRow): Address {
  return { id: a.id, name: a.name, line1: a.line1, line2: a.line2, city: a.city, postalCode: a.postal_code, country: a.country };
}

export class UsersService {
  // A real hash to verify against when the email is unknown, so both paths take the same time.
  private dummyHash: Promise<string> | undefined;

  constructor(
    private readonly dbs: Databases,
    private readonly sessionTtlMs: number,
  ) {}

  hashPassword(password: string): Promise<string> {
    return hash(password, ARGON2_OPTIONS);
  }

  async register(emailInput: string, password: string, role: UserRole = 'customer'): Promise<{ user: PublicUser; token: string }> {
    return this.registerWithHash(emailInput, await this.hashPassword(password), role);
  }

  /** Registration with an argon2id hash made beforehand (bulk imports, tests). */
  async registerWithHash(emailInput: string, passwordHash: string, role: UserRole = 'customer'): Promise<{ user: PublicUser; token: string }> {
    const email = normaliseEmail(emailInput);
    const shard = pickShardForNewUser();
    const shardDb = this.dbs.shard(shard);
    const userId = await repo.newId(shardDb, shard);
    // Two databases: claim the email in the directory first (the unique arbiter), then write the
    // user on its shard; undo the claim if that fails.
    if (!(await repo.claimEmail(this.dbs.core('directory'), email, userId))) {
      if (!(await this.reclaimOrphanedEmail(email))) throw new AppError('email_taken', 'an account with this email exists');
      if (!(await repo.claimEmail(this.dbs.core('directory'), email, userId))) {
        throw new AppError('email_taken', 'an account with this email exists');
      }
    }
    try {
      const user = await repo.insertUser(shardDb, { id: userId, email, passwordHash, role });
      const token = await this.createSession(user.id);
      return { user: toPublic(user), token };
    } catch (err) {
      await repo.releaseEmail(this.dbs.core('directory'), email, userId);
      throw err;
    }
  }

  /** A directory entry with no user behind it (the process died between the two writes). */
  private async reclaimOrphanedEmail(email: string): Promise<boolean> {
    const entry = await repo.findDirectoryEntry(this.dbs.core('directory'), email);
    if (!entry) return true;
    if (Date.now() - entry.created_at.getTime() < ORPHAN_DIRECTORY_ENTRY_MS) return false;
    if (await repo.findUser(this.dbs.forId(entry.user_id), entry.user_id)) return false;
    await repo.releaseEmail(this.dbs.core('directory'), email, entry.user_id);
    return true;
  }

  async login(emailInput: string, password: string): Promise<{ user: PublicUser; token: string }> {
    const email = normaliseEmail(emailInput);
    const entry = await repo.findDirectoryEntry(this.dbs.core('directory'), email);
    const user = entry ? await repo.findUser(this.dbs.forId(entry.user_id), entry.user_id) : undefined;
    if (!user) {
      this.dummyHash ??= this.hashPassword(randomBytes(16).toString('hex'));
      await verify(await this.dummyHash, password).catch(() => false);
      throw new AppError('invalid_credentials', 'email or password is wrong');
    }
    if (!(await verify(user.password_hash, password))) throw new AppError('invalid_credentials', 'email or password is wrong');
    return { user: toPublic(user), token: await this.createSession(user.id) };
  }

  private async createSession(userId: Id): Promise<string> {
    const db = this.dbs.forId(userId);
    const sessionId = await repo.newId(db, shardOfId(userId));
    const secret = randomBytes(TOKEN_SECRET_BYTES).toString('base64url');
    await repo.insertSession(db, { id: sessionId, userId, tokenHash: sha256(secret), ttlMs: this.sessionTtlMs });
    return `mrd_${sessionId}_${secret}`;
  }

  /** The principal behind a bearer token, or undefined for a malformed, unknown, expired or revoked one. */
  async authenticate(token: string): Promise<Principal | undefined> {
    const m = TOKEN_PATTERN.exec(token);
    if (!m?.[1] || !m[2] || !isId(m[1])) return undefined;
    const sessionId = m[1];
    const session = await repo.findLiveSession(this.dbs.forId(sessionId), sessionId);
    if (!session) return undefined;
    if (!timingSafeEqual(session.token_hash, sha256(m[2]))) return undefined;
    return { userId: session.user_id, sessionId, role: session.role, email: session.email };
  }

  async logout(principal: Principal): Promise<void> {
    await repo.revokeSession(this.dbs.forId(principal.sessionId), principal.sessionId, principal.userId);
  }

  async get(userId: Id): Promise<PublicUser> {
    const user = await repo.findUser(this.dbs.forId(userId), userId);
    if (!user) throw new AppError('not_found', 'user not found');
    return toPublic(user);
  }

  async findByEmail(emailInput: string): Promise<PublicUser | undefined> {
    const entry = await repo.findDirectoryEntry(this.dbs.core('directory'), normaliseEmail(emailInput));
    if (!entry) return undefined;
    const user = await repo.findUser(this.dbs.forId(entry.user_id), entry.user_id);
    return user ? toPublic(user) : undefined;
  }

  /** Boot-time: make sure the configured admin exists (idempotent). */
  async ensureAdmin(email: string, password: string): Promise<{ created: boolean }> {
    if (await this.findByEmail(email)) return { created: false };
    await this.register(email, password, 'admin');
    return { created: true };
  }

  async addAddress(userId: Id, a: Omit<Address, 'id'>): Promise<Address> {
    const db = this.dbs.forId(userId);
    if ((await repo.countAddresses(db, userId)) >= 20) throw new AppError('validation_failed', 'at most 20 addresses per user');
    const id = await repo.newId(db, shardOfId(userId));
    return toAddress(
      await repo.insertAddress(db, userId, id, { name: a.name, line1: a.line1, line2: a.line2, city: a.city, postal_code: a.postalCode, country: a.country }),
    );
  }

  async listAddresses(userId: Id): Promise<Address[]> {
    return (await repo.listAddresses(this.dbs.forId(userId), userId)).map(toAddress);
  }

  async deleteAddress(userId: Id, addressId: Id): Promise<void> {
    if (!(await repo.deleteAddress(this.dbs.forId(userId), userId, addressId))) throw new AppError('not_found', 'address not found');
  }
}
