-- items.sql: the item dimension unloaded beside the training data, so serving can show titles
-- and genres without the warehouse. One row per item id (`ingest` upserts `items` by id).
--
-- Output columns (exactly these): item_id BIGINT, title VARCHAR, genres VARCHAR.
-- Parameters: ${night} (unused by the built-in query).
SELECT item_id, title, genres FROM items
