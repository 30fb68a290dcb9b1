-- role: shard
-- Who holds an in-progress key's lease: a random token drawn at each claim. A request that ends
-- with its saga part-way (a 503 from a failover or a shard-move fence) gives the lease back at
-- once, naming its token, so a retry resumes the saga instead of answering 409 until the lease
-- ends; a late give-back can never free a lease another request has taken since.
ALTER TABLE idempotency_keys ADD COLUMN lease_token bigint;
