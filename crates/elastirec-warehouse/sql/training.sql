-- training.sql: the recommender's input for night ${night}, one row per (user, item) pair.
--
-- Reads the `events` table (one row per loaded event, with its source file) and keeps the
-- events of the window [${window_start}, ${night}]. An event delivered twice (the same user,
-- item, value, time and type in two files) counts once. Each event's value is multiplied by the
-- weight of its event type ([events.types.T] weight or [prepare] event_weights; 1 for types not
-- listed and for rows without a type) and by its time decay ([events] half_life_days; 1
-- without), then the pair's events become one value with the configured aggregate
-- ([prepare] aggregate); with a negative weight (a return, a dislike) pairs whose value ends
-- at 0 or below are left out. Users and items with fewer events in the window than the configured
-- minimums are left out (they still count as seen; users left out get the popularity fallback).
--
-- Output columns (exactly these): user_id BIGINT, item_id BIGINT, value REAL, events BIGINT.
-- Parameters, replaced before the query runs: ${night}, ${window_start} (dates as YYYY-MM-DD),
-- ${min_value}, ${min_user_events}, ${min_item_events}, ${event_weight} (an SQL expression over
-- event_type), ${decay} (an SQL expression over event_time), ${aggregate} (an SQL aggregate
-- over value and event_time), ${pair_filter} (empty, or a HAVING clause), ${minimums} (empty
-- when both minimums are 1 or less, which every user and item in the window meets, else the
-- WHERE clause that keeps kept_users and kept_items: DataFusion evaluates a CTE once per
-- reference, so the no-op filter would run the window's DISTINCT three times).
--
-- To change how training data is made, copy this file (`elastirec sql-files --write DIR`),
-- edit it and set [prepare] sql_dir = "DIR". The export's manifest records a hash of the SQL.
WITH window_events AS (
    SELECT DISTINCT user_id, item_id, value, event_time, event_type
    FROM events
    WHERE event_date >= DATE '${window_start}'
      AND event_date <= DATE '${night}'
      AND value >= ${min_value}
),
weighted AS (
    SELECT user_id, item_id, value * ${event_weight} * ${decay} AS value, event_time
    FROM window_events
),
kept_users AS (
    SELECT user_id FROM weighted GROUP BY user_id HAVING COUNT(*) >= ${min_user_events}
),
kept_items AS (
    SELECT item_id FROM weighted GROUP BY item_id HAVING COUNT(*) >= ${min_item_events}
)
SELECT user_id, item_id, ${aggregate} AS value, COUNT(*) AS events
FROM weighted
${minimums}
GROUP BY user_id, item_id
${pair_filter}
