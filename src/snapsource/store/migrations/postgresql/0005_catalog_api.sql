-- The catalog API: what a token may do (scopes: "search", "catalog"), offers listed by when they
-- changed (GET /catalog/offers?updated_since=), and import jobs that outlive a server.
ALTER TABLE tokens ADD COLUMN IF NOT EXISTS scopes TEXT NOT NULL DEFAULT 'search';
CREATE INDEX IF NOT EXISTS offers_by_update ON offers(updated_at, item_id);
CREATE TABLE IF NOT EXISTS import_jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    format TEXT,
    mapping TEXT,
    rows_done BIGINT NOT NULL DEFAULT 0,
    rows_total BIGINT,
    counts TEXT NOT NULL DEFAULT '{}',
    problems TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    owner TEXT,
    heartbeat DOUBLE PRECISION,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS import_jobs_by_status ON import_jobs(status, created_at);
