//! `simulate --scale S --format segment`: the planted events as a Segment/RudderStack producer
//! delivers them through Kinesis Firehose (`--format segment-integer-ids`: the same files with
//! the MovieLens-shaped integer ids, to compare string ids with integer ids on equal files).
//!
//! ```text
//!  raw/events/YYYY/MM/DD/HH/segment-YYYY-MM-DD-HH.jsonl.gz   one gzip JSON-lines file per
//!                                                            arrival hour
//!  {"type":"track","event":"purchase","userId":"<uuid>","messageId":"<uuid>",
//!   "timestamp":"2015-03-31T12:34:56Z","properties":{"product_id":"SKU-000123","rating":4.5}}
//!  raw/items/simulated-items.csv                             the catalogue, by SKU
//! ```
//!
//! Users are UUIDs and items SKUs (both derived from the seed, so the same seed names the same
//! ids). The event type follows the planted rating: `purchase` from 4.5 stars, `cart` from 3.5,
//! `view` below. An event arrives 0 to 30 minutes after it happened, so late events land in the
//! next hour's (or day's) folder; about 1% are delivered a second time, unchanged (same
//! `messageId`), an hour later, as at-least-once delivery does. `[events] preset = "segment"`
//! reads these files as they are.

use std::io::Write;

use rayon::prelude::*;

use elastirec_core::rng::SplitMix64;
use elastirec_core::{Lake, Night, layout};

use crate::simulate::{Event, SimulateReport};
use crate::{Error, Result};

/// Hours of files built in memory at once.
const HOURS_PER_BATCH: usize = 24 * 32;
/// Latest arrival after the event, in seconds.
const MAX_DELAY: u64 = 1_800;
/// One event in this many is delivered twice.
const REDELIVER_EVERY: u64 = 100;

/// A stream of the seed for ids and deliveries (apart from the planted model's streams).
const ID_STREAM: u64 = 3 << 40;

/// The UUID (version 4 layout) of simulated user `user`.
pub fn user_uuid(seed: u64, user: u32) -> String {
    uuid_of(&mut SplitMix64::stream(seed, ID_STREAM + u64::from(user)))
}

/// The SKU of simulated item `item` (0-based).
pub fn item_sku(item: u32) -> String {
    format!("SKU-{:06}", u64::from(item) + 1)
}

/// The integer id of simulated item `item` (0-based), as MovieLens-shaped files number them.
fn item_number(item: u32) -> String {
    (u64::from(item) + 1).to_string()
}

fn uuid_of(g: &mut SplitMix64) -> String {
    let (a, b) = (g.next_u64(), g.next_u64());
    let a = (a & !0xF000) | 0x4000; // version 4
    let b = (b & !(0xC << 60)) | (0x8 << 60); // variant 1
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

fn event_type(half_stars: u8) -> &'static str {
    match half_stars {
        9.. => "purchase",
        7..=8 => "cart",
        _ => "view",
    }
}

/// One delivery: arrival second (since the first day's midnight) and the event's index.
type Delivery = (u64, u32);

/// Writes `events` (sorted by time, over `days` days of `first_day..=last_day`) as Segment
/// track calls in arrival-hour folders, and the catalogue; reports what it wrote.
pub(crate) async fn write_segment(
    lake: &Lake,
    events: &[Event],
    (first_day, last_day, days): (Night, Night, u32),
    (users, items): (u32, u32),
    seed: u64,
    integer_ids: bool,
) -> Result<SimulateReport> {
    let item_id = if integer_ids { item_number } else { item_sku };
    write_catalogue(lake, items, item_id).await?;
    let user_ids: Vec<String> = (0..users)
        .into_par_iter()
        .map(|u| {
            if integer_ids {
                (u64::from(u) + 1).to_string()
            } else {
                user_uuid(seed, u)
            }
        })
        .collect();
    let mut deliveries: Vec<Delivery> = events
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, e)| {
            let mut g = SplitMix64::stream(seed, (5 << 40) + i as u64);
            let arrival = u64::from(e.second) + g.below(MAX_DELAY + 1);
            let again = g.below(REDELIVER_EVERY) == 0;
            let first = std::iter::once((arrival, i as u32));
            first.chain(again.then_some((arrival + 3_600, i as u32)))
        })
        .collect();
    deliveries.par_sort_unstable();
    let redelivered = deliveries.len() as u64 - events.len() as u64;

    // Hour boundaries of the sorted deliveries.
    let mut hours: Vec<(u64, std::ops::Range<usize>)> = Vec::new();
    let mut start = 0;
    while start < deliveries.len() {
        let hour = deliveries[start].0 / 3_600;
        let end = start + deliveries[start..].partition_point(|d| d.0 / 3_600 == hour);
        hours.push((hour, start..end));
        start = end;
    }
    let base = first_day.start_unix_seconds();
    let mut files = 0u64;
    for batch in hours.chunks(HOURS_PER_BATCH) {
        let bodies: Vec<(object_store::path::Path, Vec<u8>)> = batch
            .par_iter()
            .map(|(hour, range)| {
                let day = first_day.plus_days(hour / 24);
                let hh = hour % 24;
                let name = format!("segment-{day}-{hh:02}.jsonl.gz");
                let path = layout::raw_events_day(day)
                    .join(format!("{hh:02}").as_str())
                    .join(name.as_str());
                let lines = deliveries[range.clone()].iter().map(|&(_, i)| {
                    let e = &events[i as usize];
                    line(e, i, base, (&user_ids, item_id), seed)
                });
                gzip_lines(lines).map(|body| (path, body))
            })
            .collect::<Result<_>>()?;
        files += bodies.len() as u64;
        let mut puts = futures::stream::iter(
            bodies
                .into_iter()
                .map(|(path, body)| async move { lake.put(&path, body).await }),
        )
        .buffer_unordered(16);
        use futures::StreamExt;
        while let Some(r) = puts.next().await {
            r?;
        }
    }
    Ok(SimulateReport {
        days,
        events: events.len() as u64,
        files,
        redelivered,
        first_day,
        last_day,
    })
}

/// One track call as a JSON line (ids and names need no escaping: hex, digits, letters).
fn line(
    e: &Event,
    index: u32,
    base: i64,
    (user_ids, item_id): (&[String], fn(u32) -> String),
    seed: u64,
) -> String {
    let at = chrono::DateTime::from_timestamp(base + i64::from(e.second), 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let message = uuid_of(&mut SplitMix64::stream(seed, (7 << 40) + u64::from(index)));
    format!(
        r#"{{"type":"track","event":"{}","userId":"{}","messageId":"{}","timestamp":"{}","properties":{{"product_id":"{}","rating":{}}}}}"#,
        event_type(e.half_stars),
        user_ids[e.user as usize],
        message,
        at,
        item_id(e.item),
        f32::from(e.half_stars) / 2.0
    )
}

fn gzip_lines(lines: impl Iterator<Item = String>) -> Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let fail = |e: std::io::Error| Error::Options(format!("cannot compress events: {e}"));
    for l in lines {
        gz.write_all(l.as_bytes()).map_err(fail)?;
        gz.write_all(b"\n").map_err(fail)?;
    }
    gz.finish().map_err(fail)
}

/// The catalogue by SKU (`SKU-000001,Item 1,Genre 1`, in the items file's columns), as
/// `raw/items/simulated-items.csv`.
async fn write_catalogue(lake: &Lake, items: u32, item_id: fn(u32) -> String) -> Result<()> {
    let mut body = crate::ITEMS_HEADER.join(",") + "\n";
    for i in 0..items {
        let n = u64::from(i) + 1;
        body.push_str(&format!("{},Item {n},Genre {}\n", item_id(i), n % 12));
    }
    lake.put(
        &layout::raw_items_root().join(crate::simulate::ITEMS_FILE_NAME),
        body.into_bytes(),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_shaped_like_theirs() {
        let u = user_uuid(42, 7);
        assert_eq!(u, user_uuid(42, 7));
        assert_ne!(u, user_uuid(42, 8));
        assert_ne!(u, user_uuid(43, 7));
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "version 4: {u}");
        assert!("89ab".contains(&parts[3][..1]), "variant 1: {u}");
        assert_eq!(item_sku(0), "SKU-000001");
    }

    #[test]
    fn event_types_follow_the_rating() {
        assert_eq!(event_type(10), "purchase");
        assert_eq!(event_type(9), "purchase");
        assert_eq!(event_type(7), "cart");
        assert_eq!(event_type(6), "view");
        assert_eq!(event_type(1), "view");
    }
}
