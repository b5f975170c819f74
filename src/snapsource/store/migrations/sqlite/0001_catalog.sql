-- The catalog (offers, images, local features), tokens and their metering: the tables of
-- postgresql/0001_catalog.sql in SQLite's words. Every statement may run again (IF NOT EXISTS):
-- releases before numbered migrations stamped user_version 1 on whatever they had made, so a
-- database at 1 gets this file again and with it the tables those releases lacked.
CREATE TABLE IF NOT EXISTS offers (
    item_id INTEGER PRIMARY KEY,
    doc TEXT NOT NULL,
    price TEXT NOT NULL,
    sales INTEGER NOT NULL,
    is_factory INTEGER,
    support_dropshipping INTEGER,
    free_shipping INTEGER,
    verified_supplier INTEGER,
    new_arrival INTEGER,
    created_at TEXT,
    main_image_id INTEGER NOT NULL REFERENCES images(id),
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    ext TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS offer_images (
    item_id INTEGER NOT NULL REFERENCES offers(item_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images(id),
    source TEXT NOT NULL,
    PRIMARY KEY (item_id, position)
);
CREATE INDEX IF NOT EXISTS offer_images_by_image ON offer_images(image_id);
CREATE TABLE IF NOT EXISTS local_features (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    data BLOB NOT NULL
);

-- Bumped by every statement that changes offers or what they show: servers reload their filter
-- columns when it moves (columns.py).
CREATE TABLE IF NOT EXISTS catalog_version (n INTEGER NOT NULL);
INSERT INTO catalog_version (n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM catalog_version);
CREATE TRIGGER IF NOT EXISTS offers_added AFTER INSERT ON offers BEGIN UPDATE catalog_version SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS offers_changed AFTER UPDATE ON offers BEGIN UPDATE catalog_version SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS offers_deleted AFTER DELETE ON offers BEGIN UPDATE catalog_version SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS offer_images_added AFTER INSERT ON offer_images BEGIN UPDATE catalog_version SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS offer_images_deleted AFTER DELETE ON offer_images BEGIN UPDATE catalog_version SET n = n + 1; END;

CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS token_inflight (
    id INTEGER PRIMARY KEY,
    token_id INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    started REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS token_inflight_by_token ON token_inflight(token_id);
CREATE TABLE IF NOT EXISTS token_usage (
    token_id INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    latency TEXT NOT NULL,
    PRIMARY KEY (token_id, day, endpoint)
);
