-- role: shard
-- Closing a cart for an order as one function, so the checkout saga can close the cart and
-- create the order in a single statement (orders/003_checkout_functions.sql). The cart row is
-- locked first; the lines are then compared with the ones the saga priced and reserved. A line
-- added or changed since then would otherwise be closed into the cart without being ordered,
-- reserved or paid for. Nothing is written unless the answer is 'closed'.
CREATE OR REPLACE FUNCTION cart_close_for_order(p_user bigint, p_cart bigint, p_order bigint,
                                                p_line_ids bigint[], p_skus text[], p_quantities integer[])
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM carts
  WHERE id = p_cart AND user_id = p_user AND (status = 'open' OR order_id = p_order)
  FOR UPDATE;
  IF NOT FOUND THEN
    RETURN 'not_open';
  END IF;
  IF EXISTS (
    SELECT 1
    FROM (SELECT id, sku, quantity FROM cart_lines WHERE cart_id = p_cart AND user_id = p_user) AS held
    FULL JOIN unnest(p_line_ids, p_skus, p_quantities) AS priced (id, sku, quantity) USING (id)
    WHERE held.sku IS DISTINCT FROM priced.sku OR held.quantity IS DISTINCT FROM priced.quantity
  ) THEN
    RETURN 'changed';
  END IF;
  UPDATE carts SET status = 'checked_out', order_id = p_order, updated_at = now() WHERE id = p_cart;
  RETURN 'closed';
END
$$;
