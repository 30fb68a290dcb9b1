-- role: inventory
-- inventory_settle() plus what a gate that follows stock (Redis) needs to give released units
-- back, in the same round trip (no second read of the reservation):
--   r_units  [{"sku", "quantity"}] when this call ended the reservation ('settled', or 'expired':
--            released instead of consumed), else []
--   r_at_us  clock_timestamp() in microseconds, taken while the stock rows are locked. A gate
--            reconciliation holds these rows FOR SHARE while it reads PostgreSQL and sets the
--            Redis counter, and stamps the counter with its own clock: a settlement stamped
--            earlier is already in that counter and must not be given back a second time.
CREATE OR REPLACE FUNCTION inventory_settle_units(p_id bigint, p_to text, p_note text)
RETURNS TABLE (r_outcome text, r_units jsonb, r_at_us bigint)
LANGUAGE plpgsql AS $$
BEGIN
  r_outcome := inventory_settle(p_id, p_to, p_note);
  r_units := '[]'::jsonb;
  IF r_outcome IN ('settled', 'expired') THEN
    SELECT coalesce(jsonb_agg(jsonb_build_object('sku', u.sku, 'quantity', u.quantity) ORDER BY u.sku), '[]'::jsonb) INTO r_units
    FROM (SELECT r.sku, sum(r.quantity)::integer AS quantity FROM reservations r WHERE r.id = p_id GROUP BY r.sku) u;
  END IF;
  r_at_us := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
  RETURN NEXT;
END;
$$;
