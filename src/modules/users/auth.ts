// Bearer-token authentication as route hooks: `requireUser` (401 without a live session) and
// `requireAdmin` (403 for a customer).
import type { FastifyRequest } from 'fastify';
import { AppError } from '../../platform/errors.ts';
import type { Principal, UsersService } from './service.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export interface AuthHooks {
  requireUser: (req: FastifyRequest) => Promise<void>;
  requireAdmin: (req: FastifyRequest) => Promise<void>;
}

const BEARER = /^Bearer ([^\s]{1,200})$/;

export function authHooks(users: UsersService): AuthHooks {
  const requireUser = async (req: FastifyRequest): Promise<void> => {
    const header = req.headers.authorization;
    const m = header ? BEARER.exec(header) : null;
    if (!m?.[1]) throw new AppError('unauthenticated', 'an Authorization: Bearer <token> header is required');
    const principal = await users.authenticate(m[1]);
    if (!principal) throw new AppError('unauthenticated', 'the token is invalid, expired or revoked');
    req.principal = principal;
  };
  const requireAdmin = async (req: FastifyRequest): Promise<void> => {
    await requireUser(req);
    if (req.principal?.role !== 'admin') throw new AppError('forbidden', 'this route is for admins');
  };
  return { requireUser, requireAdmin };
}

/** The authenticated principal; only call behind requireUser/requireAdmin. */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new Error('assertion failed: route has no auth hook');
  return req.principal;
}
