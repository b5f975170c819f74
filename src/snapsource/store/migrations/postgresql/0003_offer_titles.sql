-- Titles searchable by any substring, Chinese and Latin alike (`keyword`): ILIKE on the title,
-- served by a pg_trgm index where the extension can be created (it ships with PostgreSQL's
-- contrib); without it the same query scans the titles.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXECUTE 'CREATE INDEX IF NOT EXISTS offers_title_trgm ON offers USING gin (((doc::json ->> ''title'')) gin_trgm_ops)';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm unavailable (%): keyword searches scan the titles', SQLERRM;
END $$;
