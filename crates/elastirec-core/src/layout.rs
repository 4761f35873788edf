//! The lake layout: every object path elastirec reads or writes is built here and nowhere else.
//!
//! Paths are relative to the lake root (a local folder or an object store prefix). The contracts
//! behind these paths — who writes what, in which order, and what a reader may see mid-write —
//! are in `docs/lake-layout.md`.

use object_store::path::Path;

use crate::night::Night;

/// Version of the layout written into `lake.json`. Bump it when a path or schema changes, and
/// teach `elastirec migrate` (`elastirec_flow::migrate`) the step from the previous one.
///
/// - 1: the first released layout: `warehouse/{events,items,loads,rejects}`, exports, models,
///   recommendations, runs, snapshots.
/// - 2: adds `warehouse/erasures` (erasure requests, ids kept only as salted hashes),
///   `governance/salt.json` (the salt), `warehouse/availability` (item availability windows
///   for offer rules), `exports/training/…/availability-*.parquet` and `staging/spark/`
///   (the Spark engine's transient output; nothing to migrate).
pub const LAYOUT_VERSION: u32 = 3;

/// `lake.json`: the layout version of this lake.
pub fn lake_marker() -> Path {
    Path::from("lake.json")
}

/// `raw/events/`: where producers drop event files, under `YYYY/MM/DD/`.
pub fn raw_events_root() -> Path {
    Path::from("raw/events")
}

/// `raw/events/YYYY/MM/DD/`: the event files of one day.
pub fn raw_events_day(night: Night) -> Path {
    Path::from(format!("raw/events/{}", night.path_segment()))
}

/// The day a raw event file belongs to, from its path `raw/events/YYYY/MM/DD/<name>` or
/// `raw/events/YYYY/MM/DD/HH/<name>` (Firehose's arrival-hour folders).
///
/// Returns `None` for any object that is not a file directly inside a day or hour folder.
pub fn raw_event_file_day(path: &Path) -> Option<Night> {
    raw_file_day(&raw_events_root(), path)
}

/// The arrival day of a file under a raw prefix (`<root>/YYYY/MM/DD/<name>` or
/// `<root>/YYYY/MM/DD/HH/<name>`), `None` for any other object under it.
pub fn raw_file_day(root: &Path, path: &Path) -> Option<Night> {
    let root_parts = root.parts().count();
    let parts: Vec<_> = path.parts().collect();
    if parts.len() <= root_parts || !path.prefix_matches(root) {
        return None;
    }
    let hour = |h: &str| h.len() == 2 && h.parse::<u8>().is_ok_and(|h| h < 24);
    match &parts[root_parts..] {
        [y, m, d, _file] => Night::from_path_segments(y.as_ref(), m.as_ref(), d.as_ref()),
        [y, m, d, h, _file] if hour(h.as_ref()) => {
            Night::from_path_segments(y.as_ref(), m.as_ref(), d.as_ref())
        }
        _ => None,
    }
}

/// `raw/items/`: item metadata files (id, title, genres).
pub fn raw_items_root() -> Path {
    Path::from("raw/items")
}

/// `raw/availability/`: item availability files (item_id, available_from, available_to and
/// optional region, segment), CSV with a header.
pub fn raw_availability_root() -> Path {
    Path::from("raw/availability")
}

/// `governance/salt.json`: the lake's secret salt of erased-user hashes (layout 2). Restrict
/// who may read it: with the salt, a hash can be checked against a guessed id.
pub fn erasure_salt() -> Path {
    Path::from("governance/salt.json")
}

/// The warehouse's Delta tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Every loaded event, partitioned by `event_date`.
    Events,
    /// Item metadata (the dimension table).
    Items,
    /// The load ledger: one row per loaded raw file.
    Loads,
    /// Rows rejected by loads, with file, line and reason.
    Rejects,
    /// Erasure requests: salted hashes of forgotten users, what was removed (layout 2).
    Erasures,
    /// Item availability windows, for offer rules (layout 2).
    Availability,
    /// The id dictionary: the internal id of every external id that is not its own (layout 3).
    Ids,
    /// Item attributes observed on events (`[items] from_events`): one row per item, attribute
    /// and load; the latest observation wins.
    ItemAttributes,
}

impl Table {
    /// All tables, in creation order.
    pub const ALL: [Table; 8] = [
        Table::Events,
        Table::Items,
        Table::Loads,
        Table::Rejects,
        Table::Erasures,
        Table::Availability,
        Table::Ids,
        Table::ItemAttributes,
    ];

    /// Whether `warehouse restore` brings the table back to a snapshot's version. Erasure
    /// requests are never rolled back: a restore must not bring a forgotten user back; nor is
    /// the id dictionary: an id once given is never given to another external id.
    pub fn restorable(self) -> bool {
        !matches!(self, Table::Erasures | Table::Ids)
    }

    /// The table's name, as registered for SQL.
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Items => "items",
            Table::Loads => "loads",
            Table::Rejects => "rejects",
            Table::Erasures => "erasures",
            Table::Availability => "availability",
            Table::Ids => "ids",
            Table::ItemAttributes => "item_attributes",
        }
    }

    /// `warehouse/<name>`: the table's folder.
    pub fn path(self) -> Path {
        Path::from(format!("warehouse/{}", self.name()))
    }
}

/// `exports/training/YYYY/MM/DD/`: the prepared training input of one night.
pub fn training_export_dir(night: Night) -> Path {
    Path::from(format!("exports/training/{}", night.path_segment()))
}

/// `exports/training/YYYY/MM/DD/part-NNNNN.parquet`.
pub fn training_export_part(night: Night, part: usize) -> Path {
    training_export_dir(night).join(format!("part-{part:05}.parquet").as_str())
}

/// `exports/training/YYYY/MM/DD/seen-NNNNN.parquet`: pairs seen before the training window.
pub fn training_export_seen_part(night: Night, part: usize) -> Path {
    training_export_dir(night).join(format!("seen-{part:05}.parquet").as_str())
}

/// `exports/training/YYYY/MM/DD/unseen-NNNNN.parquet`: training pairs that may be offered again.
pub fn training_export_unseen_part(night: Night, part: usize) -> Path {
    training_export_dir(night).join(format!("unseen-{part:05}.parquet").as_str())
}

/// `exports/training/YYYY/MM/DD/item-rules-NNNNN.parquet`: items `[rules]` predicates mark.
pub fn training_export_item_rules_part(night: Night, part: usize) -> Path {
    training_export_dir(night).join(format!("item-rules-{part:05}.parquet").as_str())
}

/// `exports/training/YYYY/MM/DD/item-groups-NNNNN.parquet`: values of the capped columns.
pub fn training_export_item_groups_part(night: Night, part: usize) -> Path {
    training_export_dir(night).join(format!("item-groups-{part:05}.parquet").as_str())
}

/// `exports/training/YYYY/MM/DD/item-attributes-NNNNN.parquet`: latest item attributes.
pub fn training_export_item_attributes_part(night: Night, part: usize) -> Path {
    training_export_dir(night).join(format!("item-attributes-{part:05}.parquet").as_str())
}

/// `exports/training/YYYY/MM/DD/items-NNNNN.parquet`: item titles and genres, for serving.
pub fn training_export_items_part(night: Night, part: usize) -> Path {
    training_export_dir(night).join(format!("items-{part:05}.parquet").as_str())
}

/// `exports/training/YYYY/MM/DD/ids-NNNNN.parquet`: the id dictionary's entries (string ids).
pub fn training_export_ids_part(night: Night, part: usize) -> Path {
    training_export_dir(night).join(format!("ids-{part:05}.parquet").as_str())
}

/// `exports/training/YYYY/MM/DD/availability-NNNNN.parquet`: item availability windows, for the
/// offer rules of the recommend step.
pub fn training_export_availability_part(night: Night, part: usize) -> Path {
    training_export_dir(night).join(format!("availability-{part:05}.parquet").as_str())
}

/// The path of a data file rewritten by erasure `tag`: `part-00000.parquet` becomes
/// `part-00000.TAG.parquet` (an earlier tag is replaced), in the same folder. New names let a
/// rewrite put every new file before its manifest names them.
pub fn erased_copy(path: &Path, tag: &str) -> Path {
    let text = path.as_ref();
    let (dir, file) = match text.rsplit_once('/') {
        Some((d, f)) => (Some(d), f),
        None => (None, text),
    };
    let stem = file.split('.').next().unwrap_or(file);
    let name = format!("{stem}.{tag}.parquet");
    match dir {
        Some(d) => Path::from(format!("{d}/{name}")),
        None => Path::from(name),
    }
}

/// `exports/training/YYYY/MM/DD/_manifest.json`, written last.
pub fn training_export_manifest(night: Night) -> Path {
    training_export_dir(night).join("_manifest.json")
}

/// `models/YYYY/MM/DD/`.
pub fn model_dir(night: Night) -> Path {
    Path::from(format!("models/{}", night.path_segment()))
}

/// `models/YYYY/MM/DD/user_factors.parquet`.
pub fn model_user_factors(night: Night) -> Path {
    model_dir(night).join("user_factors.parquet")
}

/// `models/YYYY/MM/DD/item_factors.parquet`.
pub fn model_item_factors(night: Night) -> Path {
    model_dir(night).join("item_factors.parquet")
}

/// `models/YYYY/MM/DD/model.json`, written last.
pub fn model_info(night: Night) -> Path {
    model_dir(night).join("model.json")
}

/// `recommendations/YYYY/MM/DD/`.
pub fn recommendations_dir(night: Night) -> Path {
    Path::from(format!("recommendations/{}", night.path_segment()))
}

/// `recommendations/YYYY/MM/DD/part-NNNNN.parquet`.
pub fn recommendations_part(night: Night, part: usize) -> Path {
    recommendations_dir(night).join(format!("part-{part:05}.parquet").as_str())
}

/// `recommendations/YYYY/MM/DD/_manifest.json`, written last.
pub fn recommendations_manifest(night: Night) -> Path {
    recommendations_dir(night).join("_manifest.json")
}

/// `recommendations/_LATEST`: names the newest published night; serving reads it.
pub fn recommendations_latest() -> Path {
    Path::from("recommendations/_LATEST")
}

/// `staging/spark/`: the Spark engine's staging folders (layout 2), one per night.
pub fn spark_staging_root() -> Path {
    Path::from("staging/spark")
}

/// `staging/spark/YYYY/MM/DD/`: what the Spark engine's job writes for night D before elastirec
/// checks it and publishes it into `models/` and `recommendations/`; deleted afterwards (and
/// whole by `forget`, which must not leave a forgotten user in a failed job's output).
/// Nothing else reads it.
pub fn spark_staging_dir(night: Night) -> Path {
    Path::from(format!("staging/spark/{}", night.path_segment()))
}

/// `evaluations/YYYY/MM/DD/horizon-Hd.json`: offline scores of night D's recommendations.
pub fn evaluation(night: Night, horizon_days: u32) -> Path {
    Path::from(format!(
        "evaluations/{}/horizon-{horizon_days}d.json",
        night.path_segment()
    ))
}

/// `evaluations/`: every evaluation report.
pub fn evaluations_root() -> Path {
    Path::from("evaluations")
}

/// `evaluations/YYYY/MM/DD/`: the evaluation reports of one night.
pub fn evaluations_dir(night: Night) -> Path {
    Path::from(format!("evaluations/{}", night.path_segment()))
}

/// The night and horizon of an evaluation report, from its path
/// `evaluations/YYYY/MM/DD/horizon-Hd.json`; `None` for any other object.
pub fn evaluation_of_path(path: &Path) -> Option<(Night, u32)> {
    let parts: Vec<_> = path.parts().collect();
    match parts.as_slice() {
        [root, y, m, d, file] if root.as_ref() == "evaluations" => {
            let night = Night::from_path_segments(y.as_ref(), m.as_ref(), d.as_ref())?;
            let horizon = file
                .as_ref()
                .strip_prefix("horizon-")?
                .strip_suffix("d.json")?
                .parse()
                .ok()?;
            Some((night, horizon))
        }
        _ => None,
    }
}

/// The night of a run record, from its path `runs/YYYY-MM-DD.json`; `None` for any other object
/// (such as `runs/_lease`).
pub fn run_record_night(path: &Path) -> Option<Night> {
    let parts: Vec<_> = path.parts().collect();
    match parts.as_slice() {
        [root, file] if root.as_ref() == "runs" => {
            file.as_ref().strip_suffix(".json")?.parse().ok()
        }
        _ => None,
    }
}

/// `runs/YYYY-MM-DD.json`: the run record of one night.
pub fn run_record(night: Night) -> Path {
    Path::from(format!("runs/{night}.json"))
}

/// `runs/`: every run record.
pub fn runs_root() -> Path {
    Path::from("runs")
}

/// `runs/_lease/`: the orchestrator's lease, one create-only object per epoch.
pub fn run_lease() -> Path {
    Path::from("runs/_lease")
}

/// `runs/_lease/EPOCH.json`: epoch `epoch` of the lease (zero-padded so names sort by epoch).
pub fn run_lease_epoch(epoch: u64) -> Path {
    run_lease().join(format!("{epoch:020}.json"))
}

/// The epoch of a lease object's path, if it is one.
pub fn run_lease_epoch_of(path: &Path) -> Option<u64> {
    let mut parts = path.parts();
    let (a, b, file) = (parts.next()?, parts.next()?, parts.next()?);
    if a.as_ref() != "runs" || b.as_ref() != "_lease" || parts.next().is_some() {
        return None;
    }
    file.as_ref().strip_suffix(".json")?.parse().ok()
}

/// The night of a dated path `ROOT…/YYYY/MM/DD/…` whose root has `root_parts` components
/// (1 for `models/`, 2 for `exports/training/`).
pub fn dated_night(path: &Path, root_parts: usize) -> Option<Night> {
    let mut parts = path.parts().skip(root_parts);
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    Night::from_path_segments(y.as_ref(), m.as_ref(), d.as_ref())
}

/// `snapshots/`: every warehouse snapshot record.
pub fn snapshots_root() -> Path {
    Path::from("snapshots")
}

/// `snapshots/NAME.json`: a warehouse snapshot record (table versions).
pub fn snapshot(name: &str) -> Path {
    snapshots_root().join(format!("{name}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_paths_use_the_night_folder() {
        let n: Night = "1998-03-05".parse().unwrap();
        assert_eq!(raw_events_day(n).as_ref(), "raw/events/1998/03/05");
        assert_eq!(
            training_export_part(n, 3).as_ref(),
            "exports/training/1998/03/05/part-00003.parquet"
        );
        assert_eq!(
            recommendations_manifest(n).as_ref(),
            "recommendations/1998/03/05/_manifest.json"
        );
        assert_eq!(model_info(n).as_ref(), "models/1998/03/05/model.json");
        assert_eq!(spark_staging_dir(n).as_ref(), "staging/spark/1998/03/05");
        assert!(spark_staging_dir(n).prefix_matches(&spark_staging_root()));
        assert_eq!(run_record(n).as_ref(), "runs/1998-03-05.json");
        assert_eq!(Table::Events.path().as_ref(), "warehouse/events");
        let lease = run_lease_epoch(42);
        assert_eq!(lease.as_ref(), "runs/_lease/00000000000000000042.json");
        assert_eq!(run_lease_epoch_of(&lease), Some(42));
        assert_eq!(run_lease_epoch_of(&run_record(n)), None);
        assert_eq!(snapshot("1998-03-05").as_ref(), "snapshots/1998-03-05.json");
        assert_eq!(dated_night(&training_export_part(n, 0), 2), Some(n));
        assert_eq!(dated_night(&model_info(n), 1), Some(n));
        assert_eq!(dated_night(&evaluation(n, 7), 1), Some(n));
        assert_eq!(dated_night(&run_record(n), 1), None);
        assert_eq!(
            training_export_items_part(n, 0).as_ref(),
            "exports/training/1998/03/05/items-00000.parquet"
        );
        let part = training_export_part(n, 2);
        let once = erased_copy(&part, "e1a2b");
        assert_eq!(
            once.as_ref(),
            "exports/training/1998/03/05/part-00002.e1a2b.parquet"
        );
        assert_eq!(
            erased_copy(&once, "e9").as_ref(),
            "exports/training/1998/03/05/part-00002.e9.parquet"
        );
        assert_eq!(Table::Erasures.path().as_ref(), "warehouse/erasures");
        assert!(!Table::Erasures.restorable() && Table::Events.restorable());
        assert!(!Table::Ids.restorable());
        let day = |p: &str| raw_event_file_day(&Path::from(p));
        let d: Night = "2024-03-05".parse().unwrap();
        assert_eq!(day("raw/events/2024/03/05/a.json.gz"), Some(d));
        assert_eq!(day("raw/events/2024/03/05/17/firehose-1"), Some(d));
        assert_eq!(day("raw/events/2024/03/05/24/x"), None);
        assert_eq!(day("raw/events/2024/03/x.csv"), None);
        assert_eq!(day("raw/events/2024/03/05/17/18/x"), None);
        let root = Path::from("firehose/prod");
        assert_eq!(
            raw_file_day(&root, &Path::from("firehose/prod/2024/03/05/09/x")),
            Some(d)
        );
        assert_eq!(raw_file_day(&root, &Path::from("other/2024/03/05/x")), None);
    }

    #[test]
    fn evaluation_and_run_paths_parse_back() {
        let n: Night = "1998-03-05".parse().unwrap();
        assert_eq!(evaluation_of_path(&evaluation(n, 7)), Some((n, 7)));
        assert!(
            evaluation(n, 7)
                .as_ref()
                .starts_with(evaluations_dir(n).as_ref())
        );
        assert_eq!(
            evaluation_of_path(&Path::from("evaluations/1998/03/05/notes.json")),
            None
        );
        assert_eq!(run_record_night(&run_record(n)), Some(n));
        assert_eq!(run_record_night(&run_lease()), None);
        assert_eq!(
            run_record_night(&Path::from("runs/x/1998-03-05.json")),
            None
        );
    }

    #[test]
    fn raw_file_day_comes_from_its_folder() {
        let n: Night = "1998-03-05".parse().unwrap();
        let p = raw_events_day(n).join("a.csv");
        assert_eq!(raw_event_file_day(&p), Some(n));
        assert_eq!(
            raw_event_file_day(&Path::from("raw/events/1998/03/a.csv")),
            None
        );
        assert_eq!(
            raw_event_file_day(&Path::from("raw/events/1998/03/05/x/a.csv")),
            None
        );
        assert_eq!(
            raw_event_file_day(&Path::from("raw/items/1998/03/05/a.csv")),
            None
        );
    }
}
