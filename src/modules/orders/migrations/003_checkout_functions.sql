-- role: shard
-- The checkout saga's shard-side steps as single statements. Each step
-- was a transaction of five to nine round trips; as a function it is one round trip and one
-- commit with the same all-or-nothing effect (a statement commits or rolls back whole). The saga
-- is the one orchestrator that spans modules: the cart and payment parts are their modules'
-- functions (carts/002, payments/002).

-- Record the final answer of an order's checkout on its idempotency key, unless one is recorded
-- already (whichever of checkout, retry and sweeper ends the order first answers for good).
-- Returns the answer the key holds, {status, body}, so the caller sends exactly what a replay
-- will; NULL when the order has no key.
CREATE OR REPLACE FUNCTION order_answer(p_id bigint, p_status integer, p_body jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  held jsonb;
BEGIN
  UPDATE idempotency_keys SET state = 'completed', response_status = p_status, response_body = p_body, updated_at = now()
  WHERE order_id = p_id AND state = 'in_progress';
  IF FOUND THEN
    RETURN jsonb_build_object('status', p_status, 'body', p_body);
  END IF;
  SELECT jsonb_build_object('status', response_status, 'body', response_body) INTO held
  FROM idempotency_keys WHERE order_id = p_id AND state = 'completed';
  RETURN held;
END
$$;

-- A conditional move along the transition table (state-machine.ts decides what is legal): only
-- from the expected status, so concurrent movers cannot both win. True when it moved.
CREATE OR REPLACE FUNCTION order_transition(p_id bigint, p_from text, p_to text, p_actor text, p_reason text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  buyer bigint;
BEGIN
  UPDATE orders SET status = p_to, updated_at = now(),
    paid_at = CASE WHEN p_to = 'paid' THEN now() ELSE paid_at END,
    cancel_reason = COALESCE(p_reason, cancel_reason)
  WHERE id = p_id AND status = p_from
  RETURNING user_id INTO buyer;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  INSERT INTO order_history (order_id, user_id, from_status, to_status, actor) VALUES (p_id, buyer, p_from, p_to, p_actor);
  RETURN true;
END
$$;

-- Step 4: close the cart (unchanged since it was priced), write the order, its lines and its
-- history, attach the order to the idempotency key and write the event. Answers 'created', or
-- the cart's refusal ('not_open', 'changed') having written nothing.
CREATE OR REPLACE FUNCTION order_create(p_id bigint, p_user bigint, p_cart bigint, p_key text, p_currency text, p_total bigint,
                                        p_line_ids bigint[], p_skus text[], p_titles text[], p_quantities integer[],
                                        p_unit_amounts bigint[], p_event jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  cart text;
BEGIN
  cart := cart_close_for_order(p_user, p_cart, p_id, p_line_ids, p_skus, p_quantities);
  IF cart <> 'closed' THEN
    RETURN cart;
  END IF;
  INSERT INTO orders (id, user_id, cart_id, status, currency, total_amount)
  VALUES (p_id, p_user, p_cart, 'pending_payment', p_currency, p_total);
  INSERT INTO order_lines (order_id, line_no, user_id, sku, title, quantity, unit_amount)
  SELECT p_id, n, p_user, sku, title, quantity, unit_amount
  FROM unnest(p_skus, p_titles, p_quantities, p_unit_amounts) WITH ORDINALITY AS t (sku, title, quantity, unit_amount, n);
  INSERT INTO order_history (order_id, user_id, from_status, to_status, actor) VALUES (p_id, p_user, NULL, 'pending_payment', 'checkout');
  UPDATE idempotency_keys SET order_id = p_id, updated_at = now() WHERE user_id = p_user AND key = p_key;
  INSERT INTO outbox (topic, aggregate_id, payload) VALUES ('order.placed', p_id, p_event);
  RETURN 'created';
END
$$;

-- Step 6's last part: record the capture, mark the order paid and write the event. Idempotent:
-- a repeat (the sweeper finishing a crashed checkout) changes nothing. Returns the order as it is
-- now (paid, or whatever another actor made it), or no row for an unknown order.
CREATE OR REPLACE FUNCTION order_mark_paid(p_id bigint) RETURNS SETOF orders LANGUAGE plpgsql AS $$
BEGIN
  PERFORM payment_record_capture(p_id);
  IF order_transition(p_id, 'pending_payment', 'paid', 'checkout', NULL) THEN
    INSERT INTO outbox (topic, aggregate_id, payload) VALUES ('order.paid', p_id, jsonb_build_object('orderId', p_id::text));
  END IF;
  RETURN QUERY SELECT * FROM orders WHERE id = p_id;
END
$$;
