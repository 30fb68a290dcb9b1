import { Type } from 'typebox';
import { Currency, errors, IdString, MoneySchema, type App } from '../../platform/http.ts';
import { LIMITS } from '../../platform/limits.ts';
import { DEFAULT_CURRENCY } from '../../platform/money.ts';
import { principalOf, type AuthHooks } from '../users/auth.ts';
import { Sku } from '../catalog/schemas.ts';
import type { CartsService } from './service.ts';

const Quantity = Type.Integer({ minimum: 1, maximum: LIMITS.lineQuantityMax });
const CartSchema = Type.Object({
  id: IdString,
  status: Type.String(),
  currency: Type.String(),
  orderId: Type.Union([IdString, Type.Null()]),
  lines: Type.Array(Type.Object({
    id: IdString,
    sku: Type.String(),
    title: Type.Union([Type.String(), Type.Null()]),
    quantity: Type.Integer(),
    unitPrice: Type.Union([MoneySchema, Type.Null()]),
    lineTotal: Type.Union([MoneySchema, Type.Null()]),
  })),
  subtotal: MoneySchema,
  purchasable: Type.Boolean(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
const CartParams = Type.Object({ id: IdString });
const LineParams = Type.Object({ id: IdString, lineId: IdString });
const common = { tags: ['carts'], security: [{ bearer: [] }] };

export function cartRoutes(app: App, carts: CartsService, auth: AuthHooks): void {
  app.post('/v1/carts', {
    preHandler: auth.requireUser,
    schema: {
      ...common,
      summary: 'Create a cart',
      // Null admits a request without a body (Fastify validates a missing body as null).
      body: Type.Union([Type.Object({ currency: Type.Optional(Currency) }, { additionalProperties: false }), Type.Null()]),
      response: { 201: CartSchema, ...errors(400, 401) },
    },
  }, async (req, reply) => reply.status(201).send(await carts.create(principalOf(req).userId, req.body?.currency ?? DEFAULT_CURRENCY)));

  app.get('/v1/carts/:id', {
    preHandler: auth.requireUser,
    schema: { ...common, params: CartParams, response: { 200: CartSchema, ...errors(400, 401, 404) } },
  }, async (req) => carts.get(principalOf(req).userId, req.params.id));

  app.post('/v1/carts/:id/lines', {
    preHandler: auth.requireUser,
    schema: {
      ...common,
      summary: 'Add a line (a SKU may appear on several lines; they count together against stock)',
      params: CartParams,
      body: Type.Object({ sku: Sku, quantity: Quantity }, { additionalProperties: false }),
      response: { 201: CartSchema, ...errors(400, 401, 404, 409, 422) },
    },
  }, async (req, reply) => reply.status(201).send(await carts.addLine(principalOf(req).userId, req.params.id, req.body.sku, req.body.quantity)));

  app.patch('/v1/carts/:id/lines/:lineId', {
    preHandler: auth.requireUser,
    schema: {
      ...common,
      params: LineParams,
      body: Type.Object({ quantity: Quantity }, { additionalProperties: false }),
      response: { 200: CartSchema, ...errors(400, 401, 404, 409) },
    },
  }, async (req) => carts.updateLine(principalOf(req).userId, req.params.id, req.params.lineId, req.body.quantity));

  app.delete('/v1/carts/:id/lines/:lineId', {
    preHandler: auth.requireUser,
    schema: { ...common, params: LineParams, response: { 200: CartSchema, ...errors(400, 401, 404, 409) } },
  }, async (req) => carts.removeLine(principalOf(req).userId, req.params.id, req.params.lineId));
}
