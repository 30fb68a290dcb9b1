-- role: catalog
-- The search index: one denormalised document per active product, kept in step with the catalog
-- through product.changed events (search/indexer.ts), rebuilt with `meridian search reindex`.
CREATE TABLE search_documents (
  product_id    bigint PRIMARY KEY,
  title         text NOT NULL,
  brand_id      bigint,
  brand_name    text,
  category_id   bigint,
  category_path text,
  category_name text,
  -- Lowest variant price per currency, e.g. {"USD": 1999}.
  min_prices    jsonb NOT NULL DEFAULT '{}',
  in_stock      boolean NOT NULL DEFAULT false,
  popularity    integer NOT NULL DEFAULT 0,
  document      tsvector NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX search_documents_document ON search_documents USING gin (document);
CREATE INDEX search_documents_category ON search_documents (category_path text_pattern_ops);
CREATE INDEX search_documents_brand ON search_documents (brand_id);
