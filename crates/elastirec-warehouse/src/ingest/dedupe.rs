//! Duplicates a load drops before it writes anything.
//!
//! - **With an event id** (`[events] event_id_column`), each id loads once across all loads for
//!   ever: a row is dropped when its id is already in `warehouse/events` or earlier in this load.
//!   A redelivered event has the same time, so it falls on the same `event_date`: only the
//!   partitions of the new rows' dates are read, and ids are compared per date by a 64-bit hash
//!   (a false match needs two different ids on one day with the same hash).
//! - **Without one**, a row identical to an earlier row of the same file (user, item, value,
//!   time and type: a line delivered twice) is dropped. Identical rows in different files load,
//!   and count once in `prepare` (its `DISTINCT`), as before event ids existed.

use std::collections::{BTreeSet, HashSet};
use std::hash::{Hash, Hasher};

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::Date32Type;
use object_store::ObjectMeta;

use elastirec_core::Night;

use super::ParsedEvents;
use crate::Result;
use crate::query::strings;
use crate::tables::Warehouse;

/// A stable 64-bit hash of an event id (SipHash with fixed keys).
fn id_hash(id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// What de-duplication remembers across the parts of one load: the event ids seen (by day and
/// hash), and the days whose stored ids were already read from `warehouse/events`.
#[derive(Debug, Default)]
pub(crate) struct DedupeState {
    seen: HashSet<(i32, u64)>,
    queried: BTreeSet<i32>,
}

impl Warehouse {
    /// Drops the duplicate rows of the parsed files (see the module documentation), given what
    /// earlier parts of the same load saw; returns how many.
    pub(crate) async fn drop_duplicates(
        &self,
        parsed: &mut [(Night, ObjectMeta, ParsedEvents)],
        state: &mut DedupeState,
    ) -> Result<u64> {
        let dates: BTreeSet<i32> = parsed
            .iter()
            .flat_map(|(_, _, p)| {
                p.event_ids
                    .iter()
                    .zip(&p.dates)
                    .filter(|(id, _)| id.is_some())
                    .map(|(_, d)| *d)
            })
            .filter(|d| !state.queried.contains(d))
            .collect();
        let seen = &mut state.seen;
        if !dates.is_empty() {
            let list: Vec<String> = dates
                .iter()
                .filter_map(|d| Night::from_days_since_epoch(*d))
                .map(|n| format!("DATE '{n}'"))
                .collect();
            let query = format!(
                "SELECT event_date, event_id FROM events WHERE event_id IS NOT NULL AND \
                 event_date IN ({})",
                list.join(", ")
            );
            for b in &self.sql(&query).await? {
                let ids = strings(b, "event_id")?;
                let days = b
                    .column_by_name("event_date")
                    .and_then(|c| c.as_primitive_opt::<Date32Type>())
                    .ok_or_else(|| {
                        crate::Error::Internal("event_date is not a date column".into())
                    })?;
                for (row, id) in ids.iter().enumerate() {
                    if let Some(id) = id
                        && !days.is_null(row)
                    {
                        seen.insert((days.value(row), id_hash(id)));
                    }
                }
            }
            state.queried.extend(dates);
        }
        let mut dropped = 0u64;
        for (_, _, p) in parsed.iter_mut() {
            let mut identical: HashSet<(i64, i64, u32, i64, Option<&str>)> = HashSet::new();
            let keep: Vec<bool> = (0..p.len())
                .map(|row| match &p.event_ids[row] {
                    Some(id) => seen.insert((p.dates[row], id_hash(id))),
                    None => identical.insert((
                        p.users.ids[row],
                        p.items.ids[row],
                        p.values[row].to_bits(),
                        p.times[row],
                        p.types[row].as_deref(),
                    )),
                })
                .collect();
            drop(identical);
            let n = keep.iter().filter(|k| !**k).count() as u64;
            if n > 0 {
                dropped += n;
                p.retain(&keep);
            }
        }
        Ok(dropped)
    }
}
