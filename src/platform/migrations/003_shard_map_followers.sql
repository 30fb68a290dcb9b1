-- role: directory
-- Which shard-map version each API process follows, written each time it confirms the map (on
-- NOTIFY and on every poll; see src/cluster/shard-map.ts). A shard move waits until every live
-- row follows the fenced version before it locks the source, and the flipped version before it
-- deletes the moved rows there. A process routes to shards only within its lease, and its row
-- stays live for the lease plus its request timeout: a row past live_until is a process that
-- has stopped routing by that map, or is gone.
CREATE TABLE shard_map_followers (
  follower   text PRIMARY KEY,          -- host:pid:random, one per process
  version    bigint NOT NULL,
  live_until timestamptz NOT NULL
);
