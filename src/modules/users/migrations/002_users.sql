-- role: shard
CREATE TABLE users (
  id            bigint PRIMARY KEY,
  email         text NOT NULL,
  password_hash text NOT NULL,
  role          text NOT NULL CHECK (role IN ('customer', 'admin')),
  created_at    timestamptz NOT NULL DEFAULT now()
);

-- Opaque bearer tokens: only a SHA-256 of the secret is stored, so a leaked table grants nothing.
CREATE TABLE sessions (
  id         bigint PRIMARY KEY,
  user_id    bigint NOT NULL REFERENCES users (id),
  token_hash bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE addresses (
  id          bigint PRIMARY KEY,
  user_id     bigint NOT NULL REFERENCES users (id),
  name        text NOT NULL,
  line1       text NOT NULL,
  line2       text,
  city        text NOT NULL,
  postal_code text NOT NULL,
  country     char(2) NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX addresses_user ON addresses (user_id, id);
