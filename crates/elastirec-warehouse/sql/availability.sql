-- availability.sql: item availability windows unloaded beside the training data, where the
-- recommend step's offer rules ([rules] exclude_unavailable) read them. One row per window of
-- `warehouse/availability` (from raw/availability/*.csv); an item is available from
-- available_from to available_to (both days included; null: open-ended), in region and segment
-- (null: everywhere).
--
-- Output columns (exactly these): item_id BIGINT, available_from DATE, available_to DATE,
-- region VARCHAR, segment VARCHAR.
-- Parameters: ${night} (unused by the built-in query).
SELECT item_id, available_from, available_to, region, segment FROM availability
