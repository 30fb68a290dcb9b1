-- role: all
-- Id generator (layout in src/platform/ids.ts): 41 bits ms since 2024-01-01 | 12 bits logical
-- shard | 10 bits of a per-database sequence. Unique per database up to 1,024 ids per ms.
CREATE SEQUENCE IF NOT EXISTS meridian_id_seq;

CREATE OR REPLACE FUNCTION meridian_id(shard integer) RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL UNSAFE AS $$
  SELECT ((floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1704067200000) << 22)
       | ((shard & 4095)::bigint << 10)
       | (nextval('meridian_id_seq') % 1024)
$$;

-- Transactional outbox: a change others care about writes its event in the same transaction.
-- The relay (src/events/outbox.ts) publishes rows in id order and marks them; consumers are
-- idempotent because delivery is at least once.
CREATE TABLE outbox (
  id           bigint PRIMARY KEY DEFAULT meridian_id(0),
  topic        text NOT NULL,
  aggregate_id bigint NOT NULL,
  payload      jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
