-- TMAPI behind snapsource (docs/upstream.md): the upstream's path of each query photo it was
-- shown (convert_url), and the pages it answered, so that the same photo and parameters are never
-- paid for twice within upstream_cache_days.
CREATE TABLE IF NOT EXISTS upstream_paths (
    photo TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    converted_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS upstream_pages (
    key TEXT PRIMARY KEY,
    photo TEXT NOT NULL,
    page INTEGER NOT NULL,
    answer TEXT NOT NULL,
    fetched_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS upstream_pages_by_time ON upstream_pages(fetched_at);
