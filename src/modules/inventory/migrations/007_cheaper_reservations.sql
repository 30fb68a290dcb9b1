-- role: inventory
-- Cheaper reservations: the three reservation and settlement functions again, with two changes.
--
-- 1. inventory.stock_changed is written when a SKU's availability (on_hand - reserved, summed
--    over its locations) may cross zero, not on every movement. Its one consumer keeps the
--    catalog's in-stock flags, and a reservation that leaves units, or any consumption (on_hand
--    and reserved drop together), cannot change one. A checkout wrote four of these events and
--    made the relay re-read stock and rewrite variant rows for each; now it writes none unless
--    it takes a SKU's last unit. Receipts and adjustments (inventory/service.ts) still announce
--    every change. Every movement stays in stock_ledger.
-- 2. inventory_reserve_many() found which of a batch's ids were already reserved with a
--    correlated EXISTS per request, which the planner (expecting ~1,000 rows from
--    generate_subscripts()) made a hashed subplan over a sequential scan of the whole
--    reservations table on every batch: each reservation cost more as the table grew (2 ms for
--    a single-request batch at 16k reservations). The ids are now looked up by the primary key.
--    Its statements are also planned once per connection (plan_cache_mode below): PL/pgSQL kept
--    choosing a custom plan for the big statement, and planning it cost ~0.7 ms per call, more
--    than running it for a small batch. The generic plan has the same shape: every stock access
--    is by the primary key, the rest works on the batch's own rows.

CREATE OR REPLACE FUNCTION inventory_try_reserve(p_id bigint, p_skus text[], p_quantities integer[], p_expires timestamptz)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  v_sku text;
  v_wanted integer;
  v_left integer;
  v_take integer;
  v_available bigint;
  v_avail bigint[] := '{}';
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
    v_avail := array_append(v_avail, v_available);
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
  END LOOP;
  -- Availability reached zero for the SKUs whose every unit this took (checked above, under the
  -- locks): the only change to in-stock that a reservation can make.
  INSERT INTO outbox (topic, aggregate_id, payload)
  SELECT 'inventory.stock_changed', p_id, jsonb_build_object('sku', a.sku)
  FROM unnest(p_skus, p_quantities, v_avail) AS a (sku, quantity, available)
  WHERE a.available = a.quantity;
  RETURN jsonb_build_object('ok', true);
END;
$$;

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
    v_settled := v_settled + 1;
  END LOOP;

  -- A consumption leaves availability (on_hand - reserved) as it was. A release adds to it, and
  -- changes in-stock only for a SKU that had nothing available before it: one whose available
  -- units now are exactly the units released (the rows are still locked).
  IF v_settled > 0 AND v_to = 'released' THEN
    INSERT INTO outbox (topic, aggregate_id, payload)
    SELECT 'inventory.stock_changed', p_id, jsonb_build_object('sku', r.sku)
    FROM (SELECT sku, sum(quantity) AS quantity FROM reservations WHERE id = p_id GROUP BY sku) r
    WHERE r.quantity = (SELECT sum(st.on_hand - st.reserved) FROM stock st WHERE st.sku = r.sku);
  END IF;

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

CREATE OR REPLACE FUNCTION inventory_reserve_many(p_ids bigint[], p_request integer[], p_skus text[], p_quantities integer[], p_ttl_ms bigint)
RETURNS TABLE (r_index integer, r_result jsonb)
LANGUAGE plpgsql AS $$
DECLARE
  v_n integer := coalesce(array_length(p_ids, 1), 0);
  v_expires timestamptz := now() + p_ttl_ms * interval '1 millisecond';
  v_first integer[];
  v_exists boolean[];
  v_known bigint[];
  v_cut integer;
  v_left jsonb;
  v_rest_k integer[] := '{}';
  v_rest_answer jsonb[] := '{}';
  v_answer jsonb;
  v_candidates boolean := false;
  v_short integer;
  req record;
BEGIN
  PERFORM 1 FROM stock st WHERE st.sku = ANY (p_skus) ORDER BY st.sku, st.location_id FOR UPDATE;

  -- The batch's ids that are already reserved, by the primary key (see the header).
  v_known := ARRAY(SELECT DISTINCT r.id FROM reservations r WHERE r.id = ANY (p_ids));
  SELECT array_agg(s.first_k ORDER BY s.k), array_agg(s.known ORDER BY s.k) INTO v_first, v_exists
  FROM (
    SELECT k, min(k) OVER (PARTITION BY p_ids[k]) AS first_k, p_ids[k] = ANY (v_known) AS known
    FROM generate_subscripts(p_ids, 1) AS k
  ) s;

  WITH line AS (
    SELECT u.j, u.k, u.sku, u.qty FROM unnest(p_request, p_skus, p_quantities) WITH ORDINALITY AS u(k, sku, qty, j)
  ), fresh_line AS (
    SELECT line.* FROM line WHERE v_first[line.k] = line.k AND NOT v_exists[line.k]
  ), avail AS (
    SELECT st.sku, sum(st.on_hand - st.reserved) AS available FROM stock st WHERE st.sku = ANY (p_skus) GROUP BY st.sku
  ), demand AS (
    SELECT f.k, f.sku, f.qty, coalesce(a.available, 0) AS available,
           sum(f.qty) OVER (PARTITION BY f.sku ORDER BY f.k, f.j ROWS UNBOUNDED PRECEDING) AS upto
    FROM fresh_line f LEFT JOIN avail a USING (sku)
  ), cut AS (
    SELECT coalesce(min(d.k), v_n + 1) AS k FROM demand d WHERE d.upto > d.available
  ), taken AS (
    SELECT d.k, p_ids[d.k] AS id, d.sku, d.upto - d.qty AS from_unit, d.upto AS to_unit FROM demand d, cut WHERE d.k < cut.k
  ), loc AS (
    SELECT st.sku, st.location_id,
           sum(st.on_hand - st.reserved) OVER w - (st.on_hand - st.reserved) AS from_unit,
           sum(st.on_hand - st.reserved) OVER w AS to_unit
    FROM stock st WHERE st.sku = ANY (p_skus) AND st.on_hand > st.reserved
    WINDOW w AS (PARTITION BY st.sku ORDER BY st.on_hand - st.reserved DESC, st.location_id ROWS UNBOUNDED PRECEDING)
  ), part AS (
    SELECT t.k, t.id, t.sku, l.location_id, (least(t.to_unit, l.to_unit) - greatest(t.from_unit, l.from_unit))::integer AS quantity
    FROM taken t JOIN loc l ON l.sku = t.sku AND l.from_unit < t.to_unit AND t.from_unit < l.to_unit
  ), upd AS (
    UPDATE stock st SET reserved = st.reserved + s.quantity, updated_at = now()
    FROM (SELECT sku, location_id, sum(quantity) AS quantity FROM part GROUP BY 1, 2) s
    WHERE st.sku = s.sku AND st.location_id = s.location_id
  ), ins AS (
    INSERT INTO reservations (id, sku, location_id, quantity, status, expires_at)
    SELECT id, sku, location_id, quantity, 'live', v_expires FROM part
  ), led AS (
    INSERT INTO stock_ledger (sku, location_id, kind, on_hand_delta, reserved_delta, reservation_id)
    SELECT sku, location_id, 'reserve', 0, quantity, id FROM part ORDER BY k, sku, location_id
  ), evt AS (
    -- The request that took a SKU's last available unit (its running demand reaches the
    -- available units exactly) announces that the SKU is out of stock.
    INSERT INTO outbox (topic, aggregate_id, payload)
    SELECT 'inventory.stock_changed', t.id, jsonb_build_object('sku', t.sku)
    FROM taken t JOIN avail a USING (sku) WHERE t.to_unit = a.available
  )
  SELECT cut.k,
         coalesce((SELECT jsonb_object_agg(a.sku, a.available - coalesce((SELECT sum(t.to_unit - t.from_unit) FROM taken t WHERE t.sku = a.sku), 0))
                   FROM avail a), '{}'::jsonb)
  INTO v_cut, v_left
  FROM cut;

  -- Answers of requests from the cut on (v_rest_k, v_rest_answer); the others follow from
  -- v_first, v_exists and v_cut.
  IF v_cut <= v_n THEN
    -- Each remainder request's first line (in line order) that exceeds the units left.
    SELECT array_agg(r.k ORDER BY r.k), array_agg(r.refusal ORDER BY r.k), bool_or(r.refusal IS NULL)
    INTO v_rest_k, v_rest_answer, v_candidates
    FROM (
      SELECT u.k, (array_agg(jsonb_build_object('ok', false, 'sku', u.sku, 'requested', u.qty, 'available', coalesce((v_left ->> u.sku)::bigint, 0)) ORDER BY u.j)
                   FILTER (WHERE u.qty > coalesce((v_left ->> u.sku)::bigint, 0)))[1] AS refusal
      FROM unnest(p_request, p_skus, p_quantities) WITH ORDINALITY AS u(k, sku, qty, j)
      WHERE u.k >= v_cut AND v_first[u.k] = u.k AND NOT v_exists[u.k]
      GROUP BY u.k
    ) r;
  END IF;

  -- The common case (a sold-out SKU) ends there: nothing fits, and since the units left only
  -- shrink, every refusal above is final with the figures it reports. If some request does fit,
  -- the remainder is decided one request at a time, exactly as the loop did.
  IF v_candidates THEN
    v_rest_k := '{}';
    v_rest_answer := '{}';
    FOR req IN
      SELECT u.k, array_agg(u.sku ORDER BY u.j) AS skus, array_agg(u.qty ORDER BY u.j) AS qtys
      FROM unnest(p_request, p_skus, p_quantities) WITH ORDINALITY AS u(k, sku, qty, j)
      WHERE u.k >= v_cut AND v_first[u.k] = u.k AND NOT v_exists[u.k]
      GROUP BY u.k ORDER BY u.k
    LOOP
      v_short := NULL;
      FOR i IN 1 .. array_length(req.skus, 1) LOOP
        IF req.qtys[i] > coalesce((v_left ->> req.skus[i])::bigint, 0) THEN
          v_short := i;
          EXIT;
        END IF;
      END LOOP;
      IF v_short IS NULL THEN
        v_answer := inventory_try_reserve(p_ids[req.k], req.skus, req.qtys, v_expires);
        IF (v_answer ->> 'ok')::boolean THEN
          FOR i IN 1 .. array_length(req.skus, 1) LOOP
            v_left := jsonb_set(v_left, ARRAY[req.skus[i]], to_jsonb((v_left ->> req.skus[i])::bigint - req.qtys[i]));
          END LOOP;
        END IF;
      ELSE
        v_answer := jsonb_build_object('ok', false, 'sku', req.skus[v_short], 'requested', req.qtys[v_short],
                                       'available', coalesce((v_left ->> req.skus[v_short])::bigint, 0));
      END IF;
      v_rest_k := array_append(v_rest_k, req.k);
      v_rest_answer := array_append(v_rest_answer, v_answer);
    END LOOP;
  END IF;

  -- Rows in request order; a repeat inside the batch answers as its first occurrence did.
  RETURN QUERY
  WITH first_answer AS (
    SELECT rest.k, rest.a FROM unnest(v_rest_k, v_rest_answer) AS rest(k, a)
    UNION ALL
    SELECT k, CASE WHEN v_exists[k] THEN '{"ok": true, "replayed": true}'::jsonb ELSE '{"ok": true}'::jsonb END
    FROM generate_subscripts(p_ids, 1) AS k
    WHERE v_first[k] = k AND k NOT IN (SELECT unnest(v_rest_k))
  )
  SELECT f.k, f.a FROM first_answer f
  UNION ALL
  SELECT d.k, CASE WHEN (f.a ->> 'ok')::boolean THEN '{"ok": true, "replayed": true}'::jsonb ELSE f.a END
  FROM generate_subscripts(p_ids, 1) AS d(k) JOIN first_answer f ON f.k = v_first[d.k]
  WHERE v_first[d.k] <> d.k
  ORDER BY 1;
END;
$$;

ALTER FUNCTION inventory_reserve_many(bigint[], integer[], text[], integer[], bigint) SET plan_cache_mode = force_generic_plan;
