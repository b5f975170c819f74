-- TMAPI behind snapsource (docs/upstream.md): the upstream's path of each query photo it was
-- shown (convert_url), and the pages it answered, so that the same photo and parameters are never
-- paid for twice within upstream_cache_days.
CREATE TABLE IF NOT EXISTS upstream_paths (
    photo TEXT PRIMARY KEY,        -- the query photo's sha256
    path TEXT NOT NULL,            -- what convert_url answered: the img_url the upstream searches
    converted_at REAL NOT NULL     -- seconds since 1970
);
CREATE TABLE IF NOT EXISTS upstream_pages (
    key TEXT PRIMARY KEY,          -- the photo (sha256 or upstream path) and the TMAPI parameters
    photo TEXT NOT NULL,
    page INTEGER NOT NULL,
    answer TEXT NOT NULL,          -- the upstream's `data`, as it sent it
    fetched_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS upstream_pages_by_time ON upstream_pages(fetched_at);
