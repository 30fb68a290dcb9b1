-- role: inventory
-- inventory_reserve_many() decides and writes a batch with set-based statements instead of one
-- inventory_try_reserve() call per request. The loop updated the hot stock row once per request
-- (a new row version each time) and ran ~6 statements per request; here the stock rows are
-- updated once per batch and the reservation, ledger and outbox rows go in one INSERT each.
--
-- The decision is the same greedy, request-order, all-or-nothing one the loop made:
--   * requests before the first one that does not fit (cut) are exactly the admitted prefix: a
--     running sum of each SKU's demand in request order stays within its available units;
--   * from the cut on, a request is checked against the units left, in memory; only one that
--     fits all its lines (rare: a smaller request after a refused bigger one, or a cart whose
--     other SKU failed) goes through inventory_try_reserve(), which re-checks under the locks.
-- Units are taken from the locations with the most available units first (fewest split
-- shipments): each SKU's admitted demand is laid over its locations in that order.
-- Repeats of a reservation id (already in the table, or twice in the batch) are replays.
-- One inventory.stock_changed event per SKU per batch, as every engine emits one per SKU per
-- transaction: its consumers re-read the stock, so one per commit says all there is to say.

CREATE OR REPLACE FUNCTION inventory_reserve_many(p_ids bigint[], p_request integer[], p_skus text[], p_quantities integer[], p_ttl_ms bigint)
RETURNS TABLE (r_index integer, r_result jsonb)
LANGUAGE plpgsql AS $$
DECLARE
  v_n integer := coalesce(array_length(p_ids, 1), 0);
  v_expires timestamptz := now() + p_ttl_ms * interval '1 millisecond';
  v_first integer[];
  v_exists boolean[];
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

  SELECT array_agg(s.first_k ORDER BY s.k), array_agg(s.known ORDER BY s.k) INTO v_first, v_exists
  FROM (
    SELECT k, min(k) OVER (PARTITION BY p_ids[k]) AS first_k, EXISTS (SELECT 1 FROM reservations r WHERE r.id = p_ids[k]) AS known
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
    INSERT INTO outbox (topic, aggregate_id, payload)
    SELECT DISTINCT ON (sku) 'inventory.stock_changed', id, jsonb_build_object('sku', sku) FROM taken ORDER BY sku, k
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
