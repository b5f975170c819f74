-- Each offer's category_path ("1027/1028/1029") beside its document, so the filter columns read
-- categories without parsing documents: `cat_id` keeps an offer in that category or below it.
ALTER TABLE offers ADD COLUMN category_path TEXT;
UPDATE offers SET category_path = (SELECT group_concat(value, '/') FROM json_each(offers.doc, '$.category_path'));
