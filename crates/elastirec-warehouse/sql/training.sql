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
-- over value and event_time), ${minimums} (empty when both minimums are 1 or less, which every
-- user and item of the window meets, else `AND user_events >= … AND item_events >= …`),
-- ${pair_condition} (empty, or `AND value > 0` with a negative weight), and for queries
-- written before those two, ${pair_filter} (empty, or the same condition as a HAVING clause).
--
-- The minimums are counted once, with window sums over the pairs (DataFusion evaluates a CTE
-- once per reference: filters that read the window again would re-run its DISTINCT); without
-- minimums the unused sums are not computed.
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
pairs AS (
    SELECT user_id, item_id, ${aggregate} AS value, COUNT(*) AS events
    FROM weighted
    GROUP BY user_id, item_id
),
counted AS (
    SELECT user_id, item_id, value, events,
           SUM(events) OVER (PARTITION BY user_id) AS user_events,
           SUM(events) OVER (PARTITION BY item_id) AS item_events
    FROM pairs
)
SELECT user_id, item_id, value, events
FROM counted
WHERE TRUE ${minimums} ${pair_condition}
