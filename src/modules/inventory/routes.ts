import { Type } from 'typebox';
import { errors, type App } from '../../platform/http.ts';
import { LIMITS } from '../../platform/limits.ts';
import { AppError } from '../../platform/errors.ts';
import type { AuthHooks } from '../users/auth.ts';
import type { CatalogService } from '../catalog/service.ts';
import { Sku } from '../catalog/schemas.ts';
import type { InventoryService, StockChangeKind } from './service.ts';

const LocationId = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' });
const AvailabilitySchema = Type.Object({
  sku: Type.String(),
  available: Type.Integer(),
  locations: Type.Array(Type.Object({ locationId: Type.String(), onHand: Type.Integer(), reserved: Type.Integer(), available: Type.Integer() })),
});
const admin = { tags: ['admin'], security: [{ bearer: [] }] };

export function inventoryRoutes(app: App, inventory: InventoryService, catalog: CatalogService, auth: AuthHooks): void {
  app.get('/v1/inventory/:sku', {
    schema: { tags: ['inventory'], summary: 'Live availability of a SKU per location', params: Type.Object({ sku: Sku }), response: { 200: AvailabilitySchema, ...errors(400) } },
  }, async (req) => inventory.availability(req.params.sku));

  const movement = (kind: StockChangeKind, min: number, summary: string): void => {
    app.post(`/v1/admin/inventory/${kind === 'adjustment' ? 'adjustments' : kind === 'receipt' ? 'receipts' : 'returns'}`, {
      preHandler: auth.requireAdmin,
      schema: {
        ...admin,
        summary,
        body: Type.Object(
          {
            sku: Sku,
            locationId: LocationId,
            quantity: Type.Integer({ minimum: min, maximum: LIMITS.stockMovementMax }),
            note: Type.Optional(Type.String({ maxLength: 500 })),
          },
          { additionalProperties: false },
        ),
        response: { 201: AvailabilitySchema, ...errors(400, 401, 403, 409, 422) },
      },
    }, async (req, reply) => {
      const { sku, locationId, quantity, note } = req.body;
      if (!(await catalog.skuExists(sku))) {
        throw new AppError('validation_failed', `SKU ${sku} is not in the catalog`);
      }
      return reply.status(201).send(await inventory.changeStock(kind, sku, locationId, quantity, note));
    });
  };
  movement('receipt', 1, 'Receive units into a location');
  movement('adjustment', -LIMITS.stockMovementMax, 'Adjust units on hand (signed; cannot go below reserved)');
  movement('return', 1, 'Return units to a location');

  app.get('/v1/admin/inventory/locations', {
    preHandler: auth.requireAdmin,
    schema: { ...admin, response: { 200: Type.Object({ items: Type.Array(Type.Object({ id: Type.String(), name: Type.String() })) }), ...errors(401, 403) } },
  }, async () => ({ items: await inventory.listLocations() }));

  app.put('/v1/admin/inventory/locations/:id', {
    preHandler: auth.requireAdmin,
    schema: {
      ...admin,
      params: Type.Object({ id: LocationId }),
      body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }) }, { additionalProperties: false }),
      response: { 204: Type.Null(), ...errors(400, 401, 403) },
    },
  }, async (req, reply) => {
    await inventory.upsertLocation(req.params.id, req.body.name);
    return reply.status(204).send(null);
  });
}
