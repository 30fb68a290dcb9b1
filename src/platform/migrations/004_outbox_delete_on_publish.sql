-- role: all
-- The outbox is a queue, not an archive: the relay now deletes the rows it has published instead
-- of marking them. Marking rewrote every row (a non-HOT update, since the partial index's
-- predicate column changed), kept every event forever, and left the relay's scan of the
-- unpublished index stepping over dead entries until vacuum; a delete is the cheapest write there
-- is. The history an event announces lives in its own tables (order_history, stock_ledger).
DELETE FROM outbox WHERE published_at IS NOT NULL;
DROP INDEX outbox_unpublished;
ALTER TABLE outbox DROP COLUMN published_at;
