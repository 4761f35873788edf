-- unseen.sql: training pairs the user may be offered again on night ${night}: none of the
-- pair's events makes its item seen ([events.types.T] seen = false, such as views; or every
-- event of a type with repeat_after_days is older than that). Without such types (every event
-- makes its item seen for ever) the answer is empty and the built-in query does not run.
--
-- `training` is the result of training.sql for the same night.
-- Output columns (exactly these): user_id BIGINT, item_id BIGINT.
-- Parameters: ${night}, ${seen} (see seen.sql).
SELECT user_id, item_id FROM training
EXCEPT
SELECT user_id, item_id FROM events WHERE event_date <= DATE '${night}' AND ${seen}
