-- role: catalog
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE brands (
  id   bigint PRIMARY KEY DEFAULT meridian_id(0),
  name text NOT NULL UNIQUE,
  slug text NOT NULL UNIQUE
);

-- A category tree with a materialised path ('/<root id>/<child id>/…/'), so a subtree is one
-- index range scan: path LIKE '/1/5/%'.
CREATE TABLE categories (
  id        bigint PRIMARY KEY DEFAULT meridian_id(0),
  parent_id bigint REFERENCES categories (id),
  name      text NOT NULL,
  slug      text NOT NULL UNIQUE,
  path      text NOT NULL
);
CREATE INDEX categories_path ON categories (path text_pattern_ops);

CREATE TABLE products (
  id          bigint PRIMARY KEY DEFAULT meridian_id(0),
  title       text NOT NULL,
  description text NOT NULL DEFAULT '',
  brand_id    bigint REFERENCES brands (id),
  category_id bigint REFERENCES categories (id),
  status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
  options     jsonb NOT NULL DEFAULT '[]',
  attributes  jsonb NOT NULL DEFAULT '{}',
  popularity  integer NOT NULL DEFAULT 0,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Listing is keyset-paginated newest first; each filter has an index that serves that order.
CREATE INDEX products_active_id ON products (id DESC) WHERE status = 'active';
CREATE INDEX products_brand_id ON products (brand_id, id DESC) WHERE status = 'active';
CREATE INDEX products_category_id ON products (category_id, id DESC) WHERE status = 'active';
CREATE INDEX products_attributes ON products USING gin (attributes jsonb_path_ops);

CREATE TABLE variants (
  id         bigint PRIMARY KEY DEFAULT meridian_id(0),
  product_id bigint NOT NULL REFERENCES products (id),
  sku        text NOT NULL UNIQUE,
  title      text NOT NULL DEFAULT '',
  options    jsonb NOT NULL DEFAULT '{}',
  position   integer NOT NULL DEFAULT 0,
  -- Maintained from inventory.stock_changed events (catalog/consumers.ts), for the inStock filter.
  in_stock   boolean NOT NULL DEFAULT false
);
CREATE INDEX variants_product ON variants (product_id, position);
CREATE INDEX variants_in_stock ON variants (product_id) WHERE in_stock;

CREATE TABLE prices (
  variant_id bigint NOT NULL REFERENCES variants (id) ON DELETE CASCADE,
  currency   char(3) NOT NULL,
  amount     bigint NOT NULL CHECK (amount >= 0),
  PRIMARY KEY (variant_id, currency)
);
CREATE INDEX prices_currency_amount ON prices (currency, amount, variant_id);
