-- role: directory
-- The versioned map of logical shards to clusters. The newest row is in force; API processes
-- follow it (LISTEN meridian_shard_map, and a poll). `fenced` ranges are mid-move: requests
-- for them answer 503 until the next version flips their owner.
CREATE TABLE shard_map (
  version    bigint PRIMARY KEY,
  assignment jsonb NOT NULL,           -- [[from, to, "cluster"], …]
  fenced     jsonb NOT NULL DEFAULT '[]', -- [[from, to], …]
  note       text,
  created_at timestamptz NOT NULL DEFAULT now()
);
