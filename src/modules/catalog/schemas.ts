import { Type } from 'typebox';
import { Currency, IdString, MoneySchema } from '../../platform/http.ts';
import { LIMITS } from '../../platform/limits.ts';

export const Sku = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$', minLength: 1, maxLength: LIMITS.skuLengthMax });
const OptionValues = Type.Record(Type.String({ maxLength: 50 }), Type.String({ maxLength: 100 }), { maxProperties: 10 });
const ProductOptions = Type.Array(
  Type.Object({ name: Type.String({ minLength: 1, maxLength: 50 }), values: Type.Array(Type.String({ maxLength: 100 }), { maxItems: 50 }) }, { additionalProperties: false }),
  { maxItems: 10 },
);
const PriceInput = Type.Object(
  { amount: Type.Integer({ minimum: 0, maximum: LIMITS.priceAmountMax }), currency: Currency },
  { additionalProperties: false },
);
export const VariantInput = Type.Object(
  {
    sku: Sku,
    title: Type.Optional(Type.String({ maxLength: LIMITS.titleLengthMax })),
    options: Type.Optional(OptionValues),
    prices: Type.Array(PriceInput, { minItems: 1, maxItems: 10 }),
  },
  { additionalProperties: false },
);
const productFields = {
  title: Type.String({ minLength: 1, maxLength: LIMITS.titleLengthMax }),
  description: Type.Optional(Type.String({ maxLength: LIMITS.descriptionLengthMax })),
  brandId: Type.Optional(Type.Union([IdString, Type.Null()])),
  categoryId: Type.Optional(Type.Union([IdString, Type.Null()])),
  options: Type.Optional(ProductOptions),
  attributes: Type.Optional(Type.Record(Type.String({ maxLength: 100 }), Type.Unknown(), { maxProperties: 50 })),
  popularity: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000_000 })),
};
export const CreateProductBody = Type.Object(
  { ...productFields, variants: Type.Array(VariantInput, { minItems: 1, maxItems: LIMITS.variantsPerProductMax }) },
  { additionalProperties: false },
);
export const UpdateProductBody = Type.Object(
  {
    ...Type.Partial(Type.Object(productFields)).properties,
    status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('archived')])),
    variants: Type.Optional(Type.Array(VariantInput, { minItems: 1, maxItems: LIMITS.variantsPerProductMax })),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const VariantSchema = Type.Object({
  id: IdString,
  sku: Type.String(),
  title: Type.String(),
  options: Type.Record(Type.String(), Type.String()),
  inStock: Type.Boolean(),
  price: Type.Union([MoneySchema, Type.Null()]),
  prices: Type.Array(MoneySchema),
});
export const ProductSchema = Type.Object({
  id: IdString,
  title: Type.String(),
  description: Type.String(),
  status: Type.String(),
  brand: Type.Union([Type.Object({ id: IdString, name: Type.String() }), Type.Null()]),
  category: Type.Union([Type.Object({ id: IdString, name: Type.String(), path: Type.String() }), Type.Null()]),
  options: Type.Array(Type.Object({ name: Type.String(), values: Type.Array(Type.String()) })),
  attributes: Type.Record(Type.String(), Type.Unknown()),
  popularity: Type.Integer(),
  variants: Type.Array(VariantSchema),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export const BrandSchema = Type.Object({ id: IdString, name: Type.String(), slug: Type.String() });
export const CategorySchema = Type.Object({ id: IdString, parentId: Type.Union([IdString, Type.Null()]), name: Type.String(), slug: Type.String(), path: Type.String() });
