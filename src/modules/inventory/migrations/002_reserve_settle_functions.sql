-- role: inventory
-- Reservation and settlement as server-side functions: one round trip each, so the row locks on
-- a hot SKU are held for microseconds of database work, not for the client's round trips (under
-- load, a busy API process made every lock holder wait on its event loop).
--
-- Lock order, everywhere: stock rows by (sku, location_id). Callers pass SKUs aggregated and
-- sorted; settlement locks its rows with one ordered SELECT … FOR UPDATE.

CREATE OR REPLACE FUNCTION inventory_reserve(p_id bigint, p_skus text[], p_quantities integer[], p_ttl_ms bigint)
RETURNS TABLE (r_sku text, r_location_id text, r_quantity integer, r_status text, r_expires_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
  v_expires timestamptz := now() + p_ttl_ms * interval '1 millisecond';
  v_sku text;
  v_wanted integer;
  v_left integer;
  v_take integer;
  v_available bigint;
  loc record;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM reservations WHERE id = p_id) THEN
    FOR i IN 1 .. coalesce(array_length(p_skus, 1), 0) LOOP
      v_sku := p_skus[i];
      v_wanted := p_quantities[i];
      SELECT coalesce(sum(s.on_hand - s.reserved), 0) INTO v_available
      FROM (SELECT st.on_hand, st.reserved FROM stock st WHERE st.sku = v_sku ORDER BY st.location_id FOR UPDATE) s;
      IF v_available < v_wanted THEN
        RAISE EXCEPTION 'out of stock: %', v_sku USING ERRCODE = 'MR001',
          DETAIL = json_build_object('sku', v_sku, 'requested', v_wanted, 'available', v_available)::text;
      END IF;
      -- Take from the locations with the most available units first: fewest split shipments.
      v_left := v_wanted;
      FOR loc IN
        SELECT st.location_id, st.on_hand - st.reserved AS available FROM stock st
        WHERE st.sku = v_sku AND st.on_hand > st.reserved
        ORDER BY st.on_hand - st.reserved DESC, st.location_id
      LOOP
        EXIT WHEN v_left = 0;
        v_take := least(v_left, loc.available);
        UPDATE stock SET reserved = reserved + v_take, updated_at = now() WHERE sku = v_sku AND location_id = loc.location_id;
        INSERT INTO reservations (id, sku, location_id, quantity, status, expires_at) VALUES (p_id, v_sku, loc.location_id, v_take, 'live', v_expires);
        INSERT INTO stock_ledger (sku, location_id, kind, on_hand_delta, reserved_delta, reservation_id)
        VALUES (v_sku, loc.location_id, 'reserve', 0, v_take, p_id);
        v_left := v_left - v_take;
      END LOOP;
      INSERT INTO outbox (topic, aggregate_id, payload) VALUES ('inventory.stock_changed', p_id, jsonb_build_object('sku', v_sku));
    END LOOP;
  END IF;
  RETURN QUERY SELECT r.sku, r.location_id, r.quantity, r.status, r.expires_at FROM reservations r WHERE r.id = p_id ORDER BY r.sku, r.location_id;
END;
$$;

-- Ends a live reservation as 'consumed' (sold) or 'released'. Returns:
--   settled   this call ended it
--   already   it had already ended the same way (idempotent repeat)
--   expired   consumption refused: past its expiry (it is released now, if still live)
--   ended     it had ended the other way
--   not_found no such reservation
CREATE OR REPLACE FUNCTION inventory_settle(p_id bigint, p_to text, p_note text)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  part record;
  v_settled integer := 0;
  v_to text := p_to;
  v_note text := p_note;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM reservations WHERE id = p_id) THEN
    RETURN 'not_found';
  END IF;
  PERFORM 1 FROM stock st
  WHERE (st.sku, st.location_id) IN (SELECT r.sku, r.location_id FROM reservations r WHERE r.id = p_id)
  ORDER BY st.sku, st.location_id FOR UPDATE;

  IF p_to = 'consumed' AND EXISTS (SELECT 1 FROM reservations WHERE id = p_id AND status = 'live' AND expires_at <= now()) THEN
    -- Live but past its expiry (the sweeper has not come by yet): expiry wins.
    v_to := 'released';
    v_note := 'expired';
  END IF;

  FOR part IN
    UPDATE reservations SET status = v_to, settled_at = now()
    WHERE id = p_id AND status = 'live'
    RETURNING sku, location_id, quantity
  LOOP
    IF v_to = 'consumed' THEN
      UPDATE stock SET on_hand = on_hand - part.quantity, reserved = reserved - part.quantity, updated_at = now()
      WHERE sku = part.sku AND location_id = part.location_id;
    ELSE
      UPDATE stock SET reserved = reserved - part.quantity, updated_at = now()
      WHERE sku = part.sku AND location_id = part.location_id;
    END IF;
    INSERT INTO stock_ledger (sku, location_id, kind, on_hand_delta, reserved_delta, reservation_id, note)
    VALUES (part.sku, part.location_id, CASE WHEN v_to = 'consumed' THEN 'consume' ELSE 'release' END,
            CASE WHEN v_to = 'consumed' THEN -part.quantity ELSE 0 END, -part.quantity, p_id, v_note);
    INSERT INTO outbox (topic, aggregate_id, payload) VALUES ('inventory.stock_changed', p_id, jsonb_build_object('sku', part.sku));
    v_settled := v_settled + 1;
  END LOOP;

  IF v_to <> p_to THEN
    RETURN 'expired';
  ELSIF v_settled > 0 THEN
    RETURN 'settled';
  ELSIF EXISTS (SELECT 1 FROM reservations WHERE id = p_id AND status = p_to) THEN
    RETURN 'already';
  ELSE
    RETURN 'ended';
  END IF;
END;
$$;
