-- role: shard
-- Carts live on the owner's shard; the cart id carries that shard. Lines hold SKUs and
-- quantities only: prices are always read from the catalog on the server.
CREATE TABLE carts (
  id         bigint PRIMARY KEY,
  user_id    bigint NOT NULL,
  currency   char(3) NOT NULL,
  status     text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'checked_out')),
  order_id   bigint,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX carts_user ON carts (user_id, id DESC);

CREATE TABLE cart_lines (
  id         bigint PRIMARY KEY,
  cart_id    bigint NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
  user_id    bigint NOT NULL,
  sku        text NOT NULL,
  quantity   integer NOT NULL CHECK (quantity BETWEEN 1 AND 100),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cart_lines_cart ON cart_lines (cart_id, id);
