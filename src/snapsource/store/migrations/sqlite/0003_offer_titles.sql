-- Titles searchable by any substring, Chinese and Latin alike (`keyword`): an FTS5 index with the
-- trigram tokenizer (SQLite 3.34+), kept in step with `offers` by triggers. LIKE '%...%' uses it
-- for terms of three characters or more and scans it (still only titles) for shorter ones.
CREATE VIRTUAL TABLE IF NOT EXISTS offer_titles USING fts5(title, tokenize = 'trigram');
CREATE TRIGGER IF NOT EXISTS offer_titles_added AFTER INSERT ON offers BEGIN
    INSERT INTO offer_titles (rowid, title) VALUES (new.item_id, json_extract(new.doc, '$.title'));
END;
CREATE TRIGGER IF NOT EXISTS offer_titles_changed AFTER UPDATE OF doc ON offers BEGIN
    UPDATE offer_titles SET title = json_extract(new.doc, '$.title') WHERE rowid = new.item_id;
END;
CREATE TRIGGER IF NOT EXISTS offer_titles_deleted AFTER DELETE ON offers BEGIN
    DELETE FROM offer_titles WHERE rowid = old.item_id;
END;
DELETE FROM offer_titles;
INSERT INTO offer_titles (rowid, title) SELECT item_id, json_extract(doc, '$.title') FROM offers;
