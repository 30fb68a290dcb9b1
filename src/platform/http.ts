// Shared HTTP pieces: bounded schemas every route reuses, the one error handler that maps
// error codes to statuses, and pagination cursors.
import fastJson from 'fast-json-stringify';
import { Type, type TSchema } from 'typebox';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, ERROR_STATUS, type ErrorCode } from './errors.ts';
import { LIMITS } from './limits.ts';
import { isId } from './ids.ts';
import { pgCode } from './db.ts';
import { isTransientDbError } from './db.ts';
import { parseLsn, type Lsn } from './replicas.ts';

/** SQLSTATE 22021 (character_not_in_repertoire): what PostgreSQL answers to a NUL in text. */
const PG_NUL_IN_TEXT = '22021';

/**
 * Decimal integers 1..max as a regular expression. JSON Schema cannot compare numbers held in
 * strings, and an id past bigint's range would otherwise reach PostgreSQL and fail as a 500.
 */
function decimalAtMostPattern(max: bigint): string {
  const m = max.toString();
  const alternatives = [`[1-9][0-9]{0,${m.length - 2}}`]; // fewer digits than max
  for (let i = 0; i < m.length; i++) {
    const digit = Number(m[i]);
    const lowest = i === 0 ? 1 : 0;
    if (digit > lowest) alternatives.push(`${m.slice(0, i)}[${lowest}-${digit - 1}][0-9]{${m.length - 1 - i}}`);
  }
  alternatives.push(m);
  return `^(?:${alternatives.join('|')})$`;
}

export const IdString = Type.String({ pattern: decimalAtMostPattern(0x7fff_ffff_ffff_ffffn), description: '64-bit id as a decimal string' });
export const MoneySchema = Type.Object(
  {
    amount: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'minor units (cents)' }),
    currency: Type.String({ pattern: '^[A-Z]{3}$', description: 'ISO 4217' }),
  },
  { additionalProperties: false },
);
export const Currency = Type.String({ pattern: '^[A-Z]{3}$' });
export const PageLimit = Type.Integer({ minimum: 1, maximum: LIMITS.pageSizeMax, default: LIMITS.pageSizeDefault });
export const Cursor = Type.String({ maxLength: 200 });
export const ErrorResponse = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  }),
});

/** The documented error responses a route can give, for its OpenAPI entry. */
export function errors(...statuses: number[]): Record<number, TSchema> {
  return Object.fromEntries(statuses.map((s) => [s, ErrorResponse]));
}

export function sendError(reply: FastifyReply, code: ErrorCode, message: string, details?: Record<string, unknown>): FastifyReply {
  const body: { error: { code: string; message: string; details?: Record<string, unknown> } } = { error: { code, message } };
  if (details) body.error.details = details;
  return reply.status(ERROR_STATUS[code]).send(body);
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setNotFoundHandler((req, reply) => {
    void sendError(reply, 'route_not_found', `no route ${req.method} ${req.url.split('?')[0] ?? ''}`);
  });
  app.setErrorHandler((err: FastifyError | AppError | Error, req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof AppError) {
      if (err.status >= 500) req.log.warn({ code: err.code }, err.message);
      if (err.code === 'unavailable' || err.code === 'timeout') void reply.header('retry-after', '1');
      return sendError(reply, err.code, err.message, err.details);
    }
    if (isTransientDbError(err)) {
      req.log.warn({ err }, 'transient database error');
      void reply.header('retry-after', '1');
      return sendError(reply, 'unavailable', 'the service is briefly unavailable; retry shortly');
    }
    const fe = err as FastifyError;
    if (fe.validation) return sendError(reply, 'validation_failed', fe.message);
    if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return sendError(reply, 'payload_too_large', fe.message);
    if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return sendError(reply, 'unsupported_media_type', fe.message);
    if (pgCode(err) === PG_NUL_IN_TEXT) {
      // JSON and query strings may carry U+0000, which PostgreSQL text and jsonb cannot store.
      return sendError(reply, 'validation_failed', 'text must not contain NUL (U+0000) characters');
    }
    if (fe.statusCode !== undefined && fe.statusCode >= 400 && fe.statusCode < 500) {
      // Malformed JSON, empty body with a JSON content type, and Fastify's other client errors.
      return sendError(reply, 'validation_failed', fe.message);
    }
    req.log.error({ err }, 'unhandled error');
    return sendError(reply, 'internal', 'internal error');
  });
}

/** Keyset cursors are opaque to clients: base64url of the last row's sort key. */
export function encodeCursor(key: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

export function decodeIdCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(parsed) && typeof parsed[0] === 'string' && isId(parsed[0])) return parsed[0];
  } catch {
    // fall through
  }
  throw new AppError('invalid_cursor', 'cursor is not one this API issued');
}

export function parseIdParam(value: string, what: string): string {
  if (!isId(value)) throw new AppError('not_found', `${what} not found`);
  return value;
}

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';

/** The Fastify instance every module registers its routes on. */
export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** The client's last write position (Meridian-Consistency), for read-your-writes. */
export function consistencyOf(req: FastifyRequest): Lsn | undefined {
  const raw = req.headers['meridian-consistency'];
  if (raw === undefined) return undefined;
  try {
    return parseLsn(String(raw));
  } catch {
    throw new AppError('validation_failed', 'Meridian-Consistency must be a token this API returned');
  }
}

/**
 * Serialize with the route's response schema once per cached object, to UTF-8 bytes: a cache hit
 * returns the same object, so its body is reused instead of being rebuilt on every request
 * (serializing a product page was a third of the server's CPU under load). Bytes rather than a
 * string, because Fastify would otherwise measure and encode a 20 KB string on every send.
 * Send it with reply.type('application/json; charset=utf-8').
 */
export function memoizedSerializer<T extends object>(schema: TSchema): (value: T) => Buffer {
  const serialize = fastJson(schema as unknown as Parameters<typeof fastJson>[0]) as (value: T) => string;
  const memo = new WeakMap<T, Buffer>();
  return (value) => {
    let body = memo.get(value);
    if (body === undefined) {
      body = Buffer.from(serialize(value));
      memo.set(value, body);
    }
    return body;
  };
}
