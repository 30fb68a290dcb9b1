-- role: shard
-- The record of a capture, callable from the statement that marks the order paid
-- (orders/003_checkout_functions.sql), so the money and the order change in one commit.
-- Conditional like every payment move: only an authorized payment becomes captured.
CREATE OR REPLACE FUNCTION payment_record_capture(p_order bigint) RETURNS boolean
LANGUAGE sql AS $$
  WITH moved AS (
    UPDATE payments SET status = 'captured', updated_at = now()
    WHERE order_id = p_order AND status = 'authorized' RETURNING 1
  )
  SELECT EXISTS (SELECT 1 FROM moved)
$$;
