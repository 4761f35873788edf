//! Reading query results into plain Rust values, and the queries other stages need.

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Date32Type, Int64Type};

use elastirec_core::Night;

use crate::tables::Warehouse;
use crate::{Error, Result};

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a std::sync::Arc<dyn Array>> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::Internal(format!("query result has no column '{name}'")))
}

fn cast_to(batch: &RecordBatch, name: &str, t: &DataType) -> Result<std::sync::Arc<dyn Array>> {
    cast(column(batch, name)?, t)
        .map_err(|e| Error::Internal(format!("column '{name}' cannot be read as {t}: {e}")))
}

/// A string column (any string encoding); nulls become `None`.
pub(crate) fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let a = cast_to(batch, name, &DataType::Utf8)?;
    let a = a.as_string::<i32>();
    Ok((0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
        .collect())
}

/// An integer column; nulls become `None`.
pub(crate) fn i64s(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let a = cast_to(batch, name, &DataType::Int64)?;
    let a = a.as_primitive::<Int64Type>();
    Ok((0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect())
}

/// A date column; nulls become `None`.
pub(crate) fn dates(batch: &RecordBatch, name: &str) -> Result<Vec<Option<Night>>> {
    let a = cast_to(batch, name, &DataType::Date32)?;
    let a = a.as_primitive::<Date32Type>();
    Ok((0..a.len())
        .map(|i| {
            a.is_valid(i)
                .then(|| Night::from_days_since_epoch(a.value(i)))
                .flatten()
        })
        .collect())
}

/// The first value of an integer column of a one-row result, 0 when the result is empty.
pub(crate) fn first_count(batches: &[RecordBatch], name: &str) -> Result<u64> {
    Ok(batches
        .first()
        .map(|b| i64s(b, name))
        .transpose()?
        .and_then(|v| v.into_iter().flatten().next())
        .unwrap_or(0)
        .max(0) as u64)
}

/// Distinct (user, item) pairs of a range of event days, for evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPairs {
    pub user_ids: Vec<i64>,
    pub item_ids: Vec<i64>,
    /// The last event day found in the range (`None` when it holds no events).
    pub last_day: Option<Night>,
}

impl Warehouse {
    /// Distinct (user, item) pairs with events on days `from..=to`, sorted.
    pub async fn event_pairs(&self, from: Night, to: Night) -> Result<EventPairs> {
        let query = format!(
            "SELECT user_id, item_id, MAX(event_date) AS last_day FROM events \
             WHERE event_date >= DATE '{from}' AND event_date <= DATE '{to}' \
             GROUP BY user_id, item_id ORDER BY user_id, item_id"
        );
        let mut out = EventPairs::default();
        for batch in self.sql(&query).await? {
            for ((u, i), d) in i64s(&batch, "user_id")?
                .into_iter()
                .zip(i64s(&batch, "item_id")?)
                .zip(dates(&batch, "last_day")?)
            {
                let (Some(u), Some(i)) = (u, i) else {
                    return Err(Error::Internal("null id in events".into()));
                };
                out.user_ids.push(u);
                out.item_ids.push(i);
                out.last_day = out.last_day.max(d);
            }
        }
        Ok(out)
    }

    /// Number of events with event day on or before `night`.
    pub async fn count_events_through(&self, night: Night) -> Result<u64> {
        let sql = format!("SELECT COUNT(*) AS n FROM events WHERE event_date <= DATE '{night}'");
        first_count(&self.sql(&sql).await?, "n")
    }

    /// Events of night `night`: rows loaded from its own raw folders, else (a night whose files
    /// came earlier) events whose event day it is.
    pub async fn count_events_on(&self, night: Night) -> Result<u64> {
        // Rows loaded from the night's own folders (`raw/events/D/`, its hour folders) first:
        // day-first dates in a zone east of UTC, or a producer's late batch, put every event of
        // a folder on another `event_date`, yet the night's data did arrive.
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(rows_loaded), 0) AS BIGINT) AS n FROM loads \
             WHERE target = 'events' AND day = DATE '{night}'"
        );
        let arrived = first_count(&self.sql(&sql).await?, "n")?;
        if arrived > 0 {
            return Ok(arrived);
        }
        let sql = format!("SELECT COUNT(*) AS n FROM events WHERE event_date = DATE '{night}'");
        first_count(&self.sql(&sql).await?, "n")
    }
}
