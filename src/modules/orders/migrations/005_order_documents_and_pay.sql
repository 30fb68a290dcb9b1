-- role: shard
-- An order as the API shows it (OrderSchema in ../routes.ts), built where its rows are: the
-- `document` column of this view is the one definition of that shape. Every read of an order
-- selects it, and so does the answer a checkout records on its idempotency key, which order_pay()
-- below can therefore write in the statement that marks the order paid. A view, not a function,
-- so that the planner sees (and EXPLAIN shows) the index lookup of the lines. Times are ISO 8601
-- UTC with milliseconds (as JavaScript's Date.toISOString()); amounts are integer minor units.
CREATE VIEW order_documents AS
SELECT o.id, o.user_id, o.cart_id, o.status, o.cancel_reason,
  jsonb_build_object(
    'id', o.id::text,
    'userId', o.user_id::text,
    'status', o.status,
    'total', jsonb_build_object('amount', o.total_amount, 'currency', o.currency),
    'lines', coalesce((
      SELECT jsonb_agg(jsonb_build_object(
               'sku', l.sku, 'title', l.title, 'quantity', l.quantity,
               'unitPrice', jsonb_build_object('amount', l.unit_amount, 'currency', o.currency),
               'lineTotal', jsonb_build_object('amount', l.unit_amount * l.quantity, 'currency', o.currency))
             ORDER BY l.line_no)
      FROM order_lines l WHERE l.order_id = o.id), '[]'::jsonb),
    'cancelReason', o.cancel_reason,
    'createdAt', to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'updatedAt', to_char(o.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'paidAt', to_char(o.paid_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')) AS document
FROM orders o;

-- Step 6's last part, in one statement and one commit: record the capture, mark the order paid,
-- write the event, and record the answer on the order's idempotency key (201 with the order as it
-- now is) unless one is recorded already. Idempotent: a repeat (the sweeper finishing a crashed
-- checkout) changes nothing. Returns the answer the key holds ({status, body}); NULL for an
-- unknown order or one without a key. Replaces order_mark_paid(), after which the answer took a
-- second round trip and commit.
CREATE OR REPLACE FUNCTION order_pay(p_id bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  doc jsonb;
BEGIN
  PERFORM payment_record_capture(p_id);
  IF order_transition(p_id, 'pending_payment', 'paid', 'checkout', NULL) THEN
    INSERT INTO outbox (topic, aggregate_id, payload) VALUES ('order.paid', p_id, jsonb_build_object('orderId', p_id::text));
  END IF;
  SELECT d.document INTO doc FROM order_documents d WHERE d.id = p_id;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  RETURN order_answer(p_id, 201, jsonb_build_object('order', doc));
END
$$;

DROP FUNCTION IF EXISTS order_mark_paid(bigint);
