-- The catalog API: what a token may do (scopes: "search", "catalog"), offers listed by when they
-- changed (GET /catalog/offers?updated_since=), and import jobs that outlive a server.
ALTER TABLE tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'search';
CREATE INDEX IF NOT EXISTS offers_by_update ON offers(updated_at, item_id);
CREATE TABLE IF NOT EXISTS import_jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,          -- queued, running, done, failed
    source TEXT NOT NULL,          -- the file's name or the URL it came from
    path TEXT NOT NULL,            -- the copy in the data dir that the job reads
    format TEXT,                   -- null: detected from the content
    mapping TEXT,                  -- a CSV mapping (JSON), when given
    rows_done INTEGER NOT NULL DEFAULT 0,  -- rows written: a resumed job starts after them
    rows_total INTEGER,
    counts TEXT NOT NULL DEFAULT '{}',     -- added, updated, unchanged, rejected, skipped, images...
    problems TEXT NOT NULL DEFAULT '[]',   -- the first rejected rows, with their reasons
    error TEXT,
    owner TEXT,                    -- the server process running it
    heartbeat REAL,                -- its last sign of life (seconds since 1970)
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS import_jobs_by_status ON import_jobs(status, created_at);
