-- role: catalog
-- The prices of a few SKUs (a cart being filled or checked out): the hottest catalog read of a
-- checkout, as a function so that its plan is made once per connection.
--
-- As a plain statement (`WHERE v.sku = ANY($1)`) PostgreSQL planned it again on every call:
-- a custom plan, which knows the array holds two SKUs, always looks cheaper than the generic
-- one, which assumes ten and (over a small catalog) hashes the whole products table. Planning
-- the three-table join cost ~0.4 ms, eight times more than running it (pg_stat_statements with
-- track_planning, checkout bench). Here every SKU is looked up by itself (LIMIT 1 keeps the
-- lateral subquery from being flattened into a join the planner could turn into hashes), so
-- the generic plan is unique-index lookups whatever the catalog's size, and it is forced.
CREATE FUNCTION catalog_sku_prices(p_skus text[], p_currency text)
RETURNS TABLE (r_sku text, r_product_id bigint, r_title text, r_status text, r_amount bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  RETURN QUERY
  SELECT x.sku, x.product_id, x.title, x.status, x.amount
  FROM unnest(p_skus) AS s (sku)
  CROSS JOIN LATERAL (
    SELECT v.sku, p.id AS product_id,
           CASE WHEN v.title = '' THEN p.title ELSE p.title || ' — ' || v.title END AS title,
           p.status, pr.amount
    FROM variants v
    JOIN products p ON p.id = v.product_id
    LEFT JOIN prices pr ON pr.variant_id = v.id AND pr.currency = p_currency::bpchar
    WHERE v.sku = s.sku
    LIMIT 1
  ) x;
END
$$;
