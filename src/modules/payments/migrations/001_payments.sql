-- role: shard
-- One payment per order (UNIQUE order_id) and status moves only forward through conditional
-- updates, so an order is captured at most once (I6).
CREATE TABLE payments (
  order_id     bigint PRIMARY KEY,
  user_id      bigint NOT NULL,
  provider     text NOT NULL,
  provider_ref text,
  status       text NOT NULL CHECK (status IN ('authorized', 'declined', 'captured', 'voided', 'refunded')),
  amount       bigint NOT NULL CHECK (amount >= 0),
  currency     char(3) NOT NULL,
  decline_reason text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_user ON payments (user_id);
