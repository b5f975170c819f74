-- An import job's options (JSON): {"delete_missing": true, "confirm_delete": true}, and what its
-- deletion found and did (docs/catalog.md, Deleting what a file no longer lists).
ALTER TABLE import_jobs ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
ALTER TABLE import_jobs ADD COLUMN deletion TEXT;
