import { Type } from 'typebox';
import { Cursor, decodeIdCursor, errors, IdString, MoneySchema, PageLimit, type App } from '../../platform/http.ts';
import { AppError } from '../../platform/errors.ts';
import { LIMITS } from '../../platform/limits.ts';
import { principalOf, type AuthHooks } from '../users/auth.ts';
import type { CheckoutSaga } from './checkout.ts';
import type { OrdersService } from './service.ts';
import type { Metrics } from '../../platform/metrics.ts';
import type { UsersService } from '../users/service.ts';
import { ORDER_STATUSES } from './state-machine.ts';

const OrderStatusSchema = Type.Union(ORDER_STATUSES.map((s) => Type.Literal(s)));
export const OrderSchema = Type.Object({
  id: IdString,
  userId: IdString,
  status: Type.String(),
  total: MoneySchema,
  lines: Type.Array(Type.Object({ sku: Type.String(), title: Type.String(), quantity: Type.Integer(), unitPrice: MoneySchema, lineTotal: MoneySchema })),
  cancelReason: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  paidAt: Type.Union([Type.String(), Type.Null()]),
});
const OrderPage = Type.Object({ items: Type.Array(OrderSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) });
function errorCodeOf(body: unknown): string {
  return (body as { error?: { code?: string } }).error?.code ?? 'unknown';
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export function orderRoutes(app: App, orders: OrdersService, saga: CheckoutSaga, auth: AuthHooks, metrics: Metrics, users: UsersService): void {
  app.post('/v1/checkout', {
    preHandler: auth.requireUser,
    schema: {
      tags: ['checkout'],
      security: [{ bearer: [] }],
      summary: 'Place an order for a cart: reserve stock, authorize payment, capture',
      description:
        'Requires an `Idempotency-Key` header (1–255 printable ASCII characters). The same key with the same body replays the first response ' +
        '(with `Idempotency-Replayed: true`); the same key with a different body answers 422 `idempotency_key_reused`; a concurrent request ' +
        'with the same key answers 409 `idempotency_conflict`. Payment tokens of the built-in test provider: `tok_visa` approves, `tok_decline` declines.',
      headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String({ maxLength: LIMITS.idempotencyKeyLengthMax })) }),
      body: Type.Object(
        { cartId: IdString, payment: Type.Object({ token: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false }) },
        { additionalProperties: false },
      ),
      response: { 201: Type.Object({ order: OrderSchema }), ...errors(400, 401, 402, 404, 409, 422, 503) },
    },
  }, async (req, reply) => {
    const key = req.headers['idempotency-key'];
    if (typeof key !== 'string' || !IDEMPOTENCY_KEY.test(key)) {
      throw new AppError('validation_failed', 'an Idempotency-Key header of 1–255 printable ASCII characters is required');
    }
    const result = await saga.checkout(principalOf(req).userId, key, req.body).catch((err: unknown) => {
      metrics.checkouts.inc({ outcome: err instanceof AppError ? err.code : 'internal' });
      throw err;
    });
    metrics.checkouts.inc({ outcome: result.replayed ? 'replayed' : 'order' in result.body ? 'paid' : errorCodeOf(result.body) });
    if (result.replayed) void reply.header('idempotency-replayed', 'true');
    // The status and body were recorded with the key (201, 402, 409 or 503) and are replayed as they were.
    return reply.status(result.status as 201).send(result.body as never);
  });

  app.get('/v1/orders', {
    preHandler: auth.requireUser,
    schema: {
      tags: ['orders'],
      security: [{ bearer: [] }],
      summary: "The current user's orders, newest first",
      querystring: Type.Object({ limit: PageLimit, cursor: Type.Optional(Cursor) }, { additionalProperties: false }),
      response: { 200: OrderPage, ...errors(400, 401) },
    },
  }, async (req) => orders.history(principalOf(req).userId, decodeIdCursor(req.query.cursor), req.query.limit));

  app.get('/v1/orders/:id', {
    preHandler: auth.requireUser,
    schema: { tags: ['orders'], security: [{ bearer: [] }], params: Type.Object({ id: IdString }), response: { 200: OrderSchema, ...errors(400, 401, 404) } },
  }, async (req) => orders.get(req.params.id, principalOf(req).userId));

  app.get('/v1/admin/orders', {
    preHandler: auth.requireAdmin,
    schema: {
      tags: ['admin'],
      security: [{ bearer: [] }],
      summary: 'All orders across shards, newest first (or one buyer\'s, by email)',
      description:
        'Scatter-gather over every shard cluster, merged into one stable order. If a shard cluster does not answer within ' +
        'the fan-out timeout the answer is 503 `unavailable` naming it, never a partial page (which would skip its rows for good).',
      querystring: Type.Object(
        { limit: PageLimit, cursor: Type.Optional(Cursor), status: Type.Optional(OrderStatusSchema), email: Type.Optional(Type.String({ maxLength: LIMITS.emailLengthMax })) },
        { additionalProperties: false },
      ),
      response: { 200: OrderPage, ...errors(400, 401, 403, 503) },
    },
  }, async (req) => {
    const cursor = decodeIdCursor(req.query.cursor);
    if (req.query.email === undefined) return orders.adminList(req.query.status, cursor, req.query.limit);
    // By email: the directory names the user, whose id names the one shard to ask.
    const user = await users.findByEmail(req.query.email);
    if (!user) return { items: [], nextCursor: null };
    return orders.history(user.id, cursor, req.query.limit, req.query.status);
  });

  app.get('/v1/admin/orders/:id', {
    preHandler: auth.requireAdmin,
    schema: { tags: ['admin'], security: [{ bearer: [] }], params: Type.Object({ id: IdString }), response: { 200: OrderSchema, ...errors(400, 401, 403, 404) } },
  }, async (req) => orders.get(req.params.id));

  app.post('/v1/admin/orders/:id/transitions', {
    preHandler: auth.requireAdmin,
    schema: {
      tags: ['admin'],
      security: [{ bearer: [] }],
      summary: 'Move an order along its state machine (pending_payment → paid → fulfilled → shipped → delivered; cancelled; refunded)',
      params: Type.Object({ id: IdString }),
      body: Type.Object({ to: OrderStatusSchema }, { additionalProperties: false }),
      response: { 200: OrderSchema, ...errors(400, 401, 403, 404, 409) },
    },
  }, async (req) => saga.adminTransition(req.params.id, req.body.to));
}
