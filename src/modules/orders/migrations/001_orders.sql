-- role: shard
-- Orders, their lines and their history live on the buyer's shard; the order id carries it.
CREATE TABLE orders (
  id            bigint PRIMARY KEY,
  user_id       bigint NOT NULL,
  cart_id       bigint NOT NULL,
  status        text NOT NULL CHECK (status IN ('pending_payment', 'paid', 'fulfilled', 'shipped', 'delivered', 'cancelled', 'refunded')),
  currency      char(3) NOT NULL,
  total_amount  bigint NOT NULL CHECK (total_amount >= 0),
  cancel_reason text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  paid_at       timestamptz
);
CREATE INDEX orders_user ON orders (user_id, id DESC);
CREATE INDEX orders_status ON orders (status, id DESC);
CREATE INDEX orders_pending ON orders (created_at) WHERE status = 'pending_payment';

CREATE TABLE order_lines (
  order_id    bigint NOT NULL REFERENCES orders (id),
  line_no     integer NOT NULL,
  user_id     bigint NOT NULL,
  sku         text NOT NULL,
  title       text NOT NULL,
  quantity    integer NOT NULL CHECK (quantity BETWEEN 1 AND 100),
  unit_amount bigint NOT NULL CHECK (unit_amount >= 0),
  PRIMARY KEY (order_id, line_no)
);

CREATE TABLE order_history (
  order_id    bigint NOT NULL REFERENCES orders (id),
  user_id     bigint NOT NULL,
  from_status text,
  to_status   text NOT NULL,
  actor       text NOT NULL,
  at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_history_order ON order_history (order_id, at);

-- Stripe-style idempotency keys, one per (user, key) (I6). The stored response is replayed for
-- the same key and body.
CREATE TABLE idempotency_keys (
  user_id         bigint NOT NULL,
  key             text NOT NULL,
  request_hash    text NOT NULL,
  state           text NOT NULL CHECK (state IN ('in_progress', 'completed')),
  order_id        bigint,
  response_status integer,
  response_body   jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_order ON idempotency_keys (order_id) WHERE order_id IS NOT NULL;
