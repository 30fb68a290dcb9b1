-- role: shard
-- order_history has no primary key; logical replication (online shard moves) needs a replica
-- identity to filter its rows by shard. It is append-only, so FULL costs nothing in practice.
ALTER TABLE order_history REPLICA IDENTITY FULL;
