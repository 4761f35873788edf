-- seen.sql: pairs a user has already seen up to night ${night} that are not in training
-- (older than the window, below [prepare] min_value, or filtered out by the minimums), so the
-- recommender never offers an item the user already has, whatever the window. An event makes
-- its item seen unless its type says otherwise ([events.types.T] seen = false, or an event
-- older than its type's repeat_after_days): ${seen} is that predicate over event_type and
-- event_date (TRUE when every type makes its items seen for ever).
--
-- `training` is the result of training.sql for the same night.
-- Output columns (exactly these): user_id BIGINT, item_id BIGINT.
-- Parameters: ${night}.
SELECT user_id, item_id FROM events WHERE event_date <= DATE '${night}' AND ${seen}
EXCEPT
SELECT user_id, item_id FROM training
