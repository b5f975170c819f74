-- Each token's limits (accounts/tokens.py) and their counters: calls used, the rate bucket.
-- Releases before numbered migrations added these columns at start, so some databases at
-- user_version 1 have them already: SQLite has no ADD COLUMN IF NOT EXISTS, and the runner
-- (store/sqlite.py) skips an ADD COLUMN whose column is there.
ALTER TABLE tokens ADD COLUMN quota INTEGER;
ALTER TABLE tokens ADD COLUMN calls_used INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN qps REAL;
ALTER TABLE tokens ADD COLUMN concurrency INTEGER;
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
ALTER TABLE tokens ADD COLUMN bucket REAL;
ALTER TABLE tokens ADD COLUMN bucket_at REAL;
