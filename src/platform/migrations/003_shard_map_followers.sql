-- role: directory
-- Which shard-map version each API process follows, written each time it confirms the map (on
-- NOTIFY and on every poll). A shard move waits until every process whose lease is live follows
-- the fenced version before it locks the source, and the flipped version before it deletes the
-- moved rows there; a process that cannot confirm the map within its lease stops routing to
-- shards by itself (Databases.shard), so one that stopped writing here is safe to ignore.
CREATE TABLE shard_map_followers (
  follower text PRIMARY KEY,          -- host:pid:random, one per process
  version  bigint NOT NULL,
  seen_at  timestamptz NOT NULL DEFAULT now()
);
