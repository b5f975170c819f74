-- Each offer's category_path ("1027/1028/1029") beside its document, so the filter columns read
-- categories without parsing documents: `cat_id` keeps an offer in that category or below it.
ALTER TABLE offers ADD COLUMN IF NOT EXISTS category_path TEXT;
UPDATE offers SET category_path = (
    SELECT string_agg(value, '/' ORDER BY n) FROM json_array_elements_text(doc::json -> 'category_path') WITH ORDINALITY AS c(value, n)
);
