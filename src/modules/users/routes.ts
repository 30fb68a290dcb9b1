import { Type } from 'typebox';
import { errors, IdString, type App } from '../../platform/http.ts';
import { LIMITS } from '../../platform/limits.ts';
import { principalOf, type AuthHooks } from './auth.ts';
import type { UsersService } from './service.ts';

const Email = Type.String({ format: 'email', maxLength: LIMITS.emailLengthMax });
const Password = Type.String({ minLength: LIMITS.passwordLengthMin, maxLength: LIMITS.passwordLengthMax });
const Credentials = Type.Object({ email: Email, password: Password }, { additionalProperties: false });
const UserSchema = Type.Object({ id: IdString, email: Type.String(), role: Type.String(), createdAt: Type.String() });
const AddressInput = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    line1: Type.String({ minLength: 1, maxLength: 200 }),
    // Null first: with type coercion on, a string branch tried first turns null into "".
    line2: Type.Union([Type.Null(), Type.String({ maxLength: 200 })], { default: null }),
    city: Type.String({ minLength: 1, maxLength: 100 }),
    postalCode: Type.String({ minLength: 1, maxLength: 20 }),
    country: Type.String({ pattern: '^[A-Z]{2}$' }),
  },
  { additionalProperties: false },
);
const AddressSchema = Type.Object({ id: IdString, ...AddressInput.properties });

export function userRoutes(app: App, users: UsersService, auth: AuthHooks): void {
  app.post('/v1/auth/register', {
    schema: {
      tags: ['auth'],
      summary: 'Create a customer account and a session',
      body: Credentials,
      response: { 201: Type.Object({ user: UserSchema, token: Type.String() }), ...errors(400, 409) },
    },
  }, async (req, reply) => {
    const result = await users.register(req.body.email, req.body.password);
    return reply.status(201).send(result);
  });

  app.post('/v1/auth/login', {
    schema: {
      tags: ['auth'],
      summary: 'Exchange email and password for a session token',
      body: Credentials,
      response: { 200: Type.Object({ user: UserSchema, token: Type.String() }), ...errors(400, 401) },
    },
  }, async (req) => users.login(req.body.email, req.body.password));

  app.post('/v1/auth/logout', {
    preHandler: auth.requireUser,
    schema: { tags: ['auth'], summary: 'Revoke the current session', security: [{ bearer: [] }], response: { 204: Type.Null(), ...errors(401) } },
  }, async (req, reply) => {
    await users.logout(principalOf(req));
    return reply.status(204).send(null);
  });

  app.get('/v1/me', {
    preHandler: auth.requireUser,
    schema: { tags: ['auth'], summary: 'The current user', security: [{ bearer: [] }], response: { 200: UserSchema, ...errors(401) } },
  }, async (req) => users.get(principalOf(req).userId));

  app.get('/v1/me/addresses', {
    preHandler: auth.requireUser,
    schema: { tags: ['auth'], security: [{ bearer: [] }], response: { 200: Type.Object({ items: Type.Array(AddressSchema) }), ...errors(401) } },
  }, async (req) => ({ items: await users.listAddresses(principalOf(req).userId) }));

  app.post('/v1/me/addresses', {
    preHandler: auth.requireUser,
    schema: { tags: ['auth'], security: [{ bearer: [] }], body: AddressInput, response: { 201: AddressSchema, ...errors(400, 401) } },
  }, async (req, reply) => reply.status(201).send(await users.addAddress(principalOf(req).userId, req.body)));

  app.delete('/v1/me/addresses/:id', {
    preHandler: auth.requireUser,
    schema: { tags: ['auth'], security: [{ bearer: [] }], params: Type.Object({ id: IdString }), response: { 204: Type.Null(), ...errors(401, 404) } },
  }, async (req, reply) => {
    await users.deleteAddress(principalOf(req).userId, req.params.id);
    return reply.status(204).send(null);
  });
}
