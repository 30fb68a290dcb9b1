-- role: directory
-- Email → user id, on the core cluster: the one lookup login needs before it knows the shard.
CREATE TABLE user_directory (
  email      text PRIMARY KEY,
  user_id    bigint NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);
