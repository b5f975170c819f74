-- Each token's limits (accounts/tokens.py) and their counters: calls used, the rate bucket.
-- Databases made before this file had them from 0001_catalog.sql: IF NOT EXISTS leaves those be.
ALTER TABLE tokens
    ADD COLUMN IF NOT EXISTS quota BIGINT,
    ADD COLUMN IF NOT EXISTS calls_used BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS qps DOUBLE PRECISION,
    ADD COLUMN IF NOT EXISTS concurrency INTEGER,
    ADD COLUMN IF NOT EXISTS expires_at TEXT,
    ADD COLUMN IF NOT EXISTS bucket DOUBLE PRECISION,
    ADD COLUMN IF NOT EXISTS bucket_at DOUBLE PRECISION;
