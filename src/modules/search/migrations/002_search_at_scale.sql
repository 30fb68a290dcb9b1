-- role: catalog
-- Search that stays fast at millions of products (issue 4): attribute filters, popularity tiers,
-- a vocabulary for typo correction and autocomplete, and admin-editable synonyms.

-- Attribute values, for filters such as attr=material:wool (jsonb containment). Filled by the
-- indexer; rows written before it ran hold '{}' until `meridian search reindex`.
ALTER TABLE search_documents ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';

-- Filters as terms. The filter values of a document become lexemes of `facets`: B<brand id>,
-- C<id> for its category and each ancestor (so a subtree is one term), S1/S0 (in stock or not),
-- P<currency><price band> (the lowest price's band among the fine bands of PRICE_FILTER_EDGES in
-- search/repository.ts, narrow so that a range reads few rows outside it; the currencies of
-- platform/money.ts), and the words of the attribute values (lower case, 'simple' parser: they
-- never collide with the upper-case terms). The band indexes are GIN on (document, facets): one
-- index scan intersects the words and the filters inside a popularity band, whatever the
-- filters; exact conditions (price bounds, attribute name and value) are checked on the rows
-- found. A generated column, so every writer (the indexer, the bulk seed) fills it the same way;
-- built-in functions only, no subquery (about 4 µs a row; the SQL and PL/pgSQL functions tried
-- first cost 20–45 µs a row, which a million-row load feels).
ALTER TABLE search_documents ADD COLUMN facets tsvector NOT NULL GENERATED ALWAYS AS (
  array_to_tsvector(array_remove(
    ARRAY['S' || CASE WHEN in_stock THEN '1' ELSE '0' END,
          'B' || brand_id,
          -- The same edges as PRICE_FILTER_EDGES in search/repository.ts.
          'PUSD' || width_bucket((min_prices ->> 'USD')::numeric, '{100,200,300,500,750,1000,1500,2000,2500,3000,4000,5000,6000,7500,10000,12500,15000,20000,25000,30000,40000,50000,75000,100000,150000,200000,500000,1000000}'::numeric[]),
          'PEUR' || width_bucket((min_prices ->> 'EUR')::numeric, '{100,200,300,500,750,1000,1500,2000,2500,3000,4000,5000,6000,7500,10000,12500,15000,20000,25000,30000,40000,50000,75000,100000,150000,200000,500000,1000000}'::numeric[]),
          'PGBP' || width_bucket((min_prices ->> 'GBP')::numeric, '{100,200,300,500,750,1000,1500,2000,2500,3000,4000,5000,6000,7500,10000,12500,15000,20000,25000,30000,40000,50000,75000,100000,150000,200000,500000,1000000}'::numeric[])]
    || CASE WHEN length(category_path) > 1
            THEN string_to_array('C' || replace(trim(both '/' from category_path), '/', '/C'), '/')
            ELSE '{}'::text[] END,
    NULL))
  || jsonb_to_tsvector('simple', attributes, '["string", "numeric", "boolean"]')) STORED;

-- Popularity tiers. A broad word matches a large share of a big catalog; ranking every match is
-- what makes naive full-text search slow. Each band of popularity gets its own partial GIN index
-- on (document, facets) (search_tier_<generation>_<position>), so a query reads the most popular
-- band first and stops once it holds enough candidates: its cost follows the candidate cap, not
-- the match count. Bands depend on the data, so `meridian search reindex` builds the indexes
-- (CREATE INDEX CONCURRENTLY, outside any migration) and records them here; with no rows every
-- query reads one band, the whole table, through search_documents_document.
CREATE TABLE search_tiers (
  position       integer PRIMARY KEY,
  -- The band is min_popularity <= popularity < max_popularity; NULL = unbounded on that side.
  min_popularity integer,
  max_popularity integer,
  -- Documents in the band when it was built: the denominator of approximate totals.
  documents      bigint NOT NULL CHECK (documents >= 0),
  index_name     text NOT NULL,
  built_at       timestamptz NOT NULL DEFAULT now()
);

-- Words of the indexed text (and multi-word brand and category names), with how many documents
-- hold them. Typo correction looks up the nearest words by trigram distance (GiST KNN), then
-- checks the edit distance; autocomplete reads words by prefix, most frequent first. Kept by the
-- indexer (new words as products change; exact counts on a full reindex).
CREATE TABLE search_vocabulary (
  word      text PRIMARY KEY CHECK (length(word) BETWEEN 1 AND 100),
  documents integer NOT NULL CHECK (documents >= 0),
  -- In a title, brand, category or attribute value: worth suggesting (description-only words
  -- such as "available" are not).
  suggest   boolean NOT NULL DEFAULT false,
  -- The word's English lexeme (NULL for a stop word): a query word is known to the index when
  -- some indexed word has its lexeme ("boots" and "boot" both hold 'boot').
  lexeme    text
);
CREATE INDEX search_vocabulary_lexeme ON search_vocabulary (lexeme);
CREATE INDEX search_vocabulary_trgm ON search_vocabulary USING gist (word gist_trgm_ops) WHERE position(' ' in word) = 0;
CREATE INDEX search_vocabulary_prefix ON search_vocabulary (word text_pattern_ops) WHERE suggest;
CREATE INDEX search_vocabulary_frequent ON search_vocabulary (documents DESC) WHERE suggest;

-- Synonym groups, edited by admins as a whole list; the rules are derived from them (one per
-- term: the term's query becomes the OR of every term of its group) and applied at query time
-- with ts_rewrite, so "couch" also finds "sofa" without reindexing anything.
CREATE TABLE search_synonyms (
  position integer PRIMARY KEY,
  terms    text[] NOT NULL CHECK (cardinality(terms) >= 2)
);
CREATE TABLE search_synonym_rules (
  target     tsquery NOT NULL,
  substitute tsquery NOT NULL
);
