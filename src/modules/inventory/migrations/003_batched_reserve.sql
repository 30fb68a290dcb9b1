-- role: inventory
-- Group commit for hot SKUs: many waiting reservations in one statement and one commit.
-- inventory_try_reserve() is the single-reservation core (no exception on a shortage, so one
-- short request does not abort a batch); inventory_reserve_many() locks every stock row the
-- batch touches up front, in the global (sku, location) order, then tries each request in turn.

CREATE OR REPLACE FUNCTION inventory_try_reserve(p_id bigint, p_skus text[], p_quantities integer[], p_expires timestamptz)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  v_sku text;
  v_wanted integer;
  v_left integer;
  v_take integer;
  v_available bigint;
  loc record;
BEGIN
  IF EXISTS (SELECT 1 FROM reservations WHERE id = p_id) THEN
    RETURN jsonb_build_object('ok', true, 'replayed', true);
  END IF;
  -- Check every line before changing anything: all or nothing without a subtransaction.
  FOR i IN 1 .. coalesce(array_length(p_skus, 1), 0) LOOP
    SELECT coalesce(sum(s.on_hand - s.reserved), 0) INTO v_available
    FROM (SELECT st.on_hand, st.reserved FROM stock st WHERE st.sku = p_skus[i] ORDER BY st.location_id FOR UPDATE) s;
    IF v_available < p_quantities[i] THEN
      RETURN jsonb_build_object('ok', false, 'sku', p_skus[i], 'requested', p_quantities[i], 'available', v_available);
    END IF;
  END LOOP;
  FOR i IN 1 .. coalesce(array_length(p_skus, 1), 0) LOOP
    v_sku := p_skus[i];
    v_wanted := p_quantities[i];
    v_left := v_wanted;
    -- Take from the locations with the most available units first: fewest split shipments.
    FOR loc IN
      SELECT st.location_id, st.on_hand - st.reserved AS available FROM stock st
      WHERE st.sku = v_sku AND st.on_hand > st.reserved
      ORDER BY st.on_hand - st.reserved DESC, st.location_id
    LOOP
      EXIT WHEN v_left = 0;
      v_take := least(v_left, loc.available);
      UPDATE stock SET reserved = reserved + v_take, updated_at = now() WHERE sku = v_sku AND location_id = loc.location_id;
      INSERT INTO reservations (id, sku, location_id, quantity, status, expires_at) VALUES (p_id, v_sku, loc.location_id, v_take, 'live', p_expires);
      INSERT INTO stock_ledger (sku, location_id, kind, on_hand_delta, reserved_delta, reservation_id)
      VALUES (v_sku, loc.location_id, 'reserve', 0, v_take, p_id);
      v_left := v_left - v_take;
    END LOOP;
    INSERT INTO outbox (topic, aggregate_id, payload) VALUES ('inventory.stock_changed', p_id, jsonb_build_object('sku', v_sku));
  END LOOP;
  RETURN jsonb_build_object('ok', true);
END;
$$;

-- One statement for a batch of reservations. p_request[k] says which request line k belongs to
-- (requests numbered 1..n, lines of one request sorted by SKU). Returns one row per request.
CREATE OR REPLACE FUNCTION inventory_reserve_many(p_ids bigint[], p_request integer[], p_skus text[], p_quantities integer[], p_ttl_ms bigint)
RETURNS TABLE (r_index integer, r_result jsonb)
LANGUAGE plpgsql AS $$
DECLARE
  v_expires timestamptz := now() + p_ttl_ms * interval '1 millisecond';
BEGIN
  PERFORM 1 FROM stock st WHERE st.sku = ANY (p_skus) ORDER BY st.sku, st.location_id FOR UPDATE;
  FOR k IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
    r_index := k;
    r_result := inventory_try_reserve(
      p_ids[k],
      ARRAY(SELECT p_skus[j] FROM generate_subscripts(p_request, 1) j WHERE p_request[j] = k ORDER BY j),
      ARRAY(SELECT p_quantities[j] FROM generate_subscripts(p_request, 1) j WHERE p_request[j] = k ORDER BY j),
      v_expires);
    RETURN NEXT;
  END LOOP;
END;
$$;

-- The single-request function keeps its contract (raises MR001 on a shortage) on the same core.
CREATE OR REPLACE FUNCTION inventory_reserve(p_id bigint, p_skus text[], p_quantities integer[], p_ttl_ms bigint)
RETURNS TABLE (r_sku text, r_location_id text, r_quantity integer, r_status text, r_expires_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
  v_result jsonb;
BEGIN
  v_result := inventory_try_reserve(p_id, p_skus, p_quantities, now() + p_ttl_ms * interval '1 millisecond');
  IF NOT (v_result ->> 'ok')::boolean THEN
    RAISE EXCEPTION 'out of stock: %', v_result ->> 'sku' USING ERRCODE = 'MR001', DETAIL = v_result::text;
  END IF;
  RETURN QUERY SELECT r.sku, r.location_id, r.quantity, r.status, r.expires_at FROM reservations r WHERE r.id = p_id ORDER BY r.sku, r.location_id;
END;
$$;
