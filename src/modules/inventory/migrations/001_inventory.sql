-- role: inventory
CREATE TABLE locations (
  id   text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  name text NOT NULL
);

-- Stock per (SKU, location). I1 (0 <= reserved <= on_hand) is a constraint, so no code path,
-- however wrong, can commit an oversell.
CREATE TABLE stock (
  sku         text NOT NULL,
  location_id text NOT NULL REFERENCES locations (id),
  on_hand     bigint NOT NULL DEFAULT 0,
  reserved    bigint NOT NULL DEFAULT 0,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (sku, location_id),
  CONSTRAINT stock_reserved_within_on_hand CHECK (reserved >= 0 AND reserved <= on_hand)
);

-- Append-only ledger: every change of on_hand or reserved is one row, so both counters can be
-- recomputed from history (I3) and every reservation's life is auditable (I4).
CREATE TABLE stock_ledger (
  id             bigint PRIMARY KEY DEFAULT meridian_id(0),
  sku            text NOT NULL,
  location_id    text NOT NULL,
  kind           text NOT NULL CHECK (kind IN ('receipt', 'adjustment', 'return', 'reserve', 'release', 'consume')),
  on_hand_delta  bigint NOT NULL,
  reserved_delta bigint NOT NULL,
  reservation_id bigint,
  note           text,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_ledger_sku ON stock_ledger (sku, location_id);
CREATE INDEX stock_ledger_reservation ON stock_ledger (reservation_id) WHERE reservation_id IS NOT NULL;
CREATE RULE stock_ledger_no_update AS ON UPDATE TO stock_ledger DO INSTEAD NOTHING;
CREATE RULE stock_ledger_no_delete AS ON DELETE TO stock_ledger DO INSTEAD NOTHING;

-- A reservation holds units at one or more (SKU, location) for a checkout; its id is the order
-- id. It ends exactly once: consumed (sold) or released (expired, declined, cancelled).
CREATE TABLE reservations (
  id          bigint NOT NULL,
  sku         text NOT NULL,
  location_id text NOT NULL,
  quantity    integer NOT NULL CHECK (quantity > 0),
  status      text NOT NULL CHECK (status IN ('live', 'consumed', 'released')),
  expires_at  timestamptz NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  settled_at  timestamptz,
  PRIMARY KEY (id, sku, location_id),
  CHECK ((status = 'live') = (settled_at IS NULL))
);
CREATE INDEX reservations_live_expiry ON reservations (expires_at) WHERE status = 'live';
