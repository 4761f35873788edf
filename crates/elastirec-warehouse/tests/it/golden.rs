//! Golden tests of the SQL files of `prepare`: input rows → expected output, one folder a case.
//!
//! `tests/golden/CASE/` holds `case.toml` (the night, and `[events]` / `[prepare]` settings
//! over the defaults), raw event files `raw/YYYY-MM-DD/NAME.csv` (loaded by the real `ingest`
//! into a temporary lake), optional `items.csv` and `availability.csv` (raw item and availability
//! files), and `expected/{training,seen,items,availability}.csv`:
//! the rows of each unloaded output, sorted, as CSV. Regenerate the expected files after a
//! deliberate change of the SQL, then review them as a diff:
//!
//! ```text
//! scripts/bless-golden     # ELASTIREC_BLESS=1 cargo test --workspace --test it golden
//! git diff crates/elastirec-warehouse/tests/golden
//! ```

use std::path::{Path, PathBuf};

use elastirec_core::config::{EventsConfig, PrepareConfig};
use elastirec_core::layout;
use elastirec_core::manifest::FileEntry;
use elastirec_warehouse::{IngestOptions, OutputFormat, Warehouse, format_batches};

use crate::lake;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    night: String,
    #[serde(default)]
    events: EventsConfig,
    #[serde(default)]
    prepare: PrepareConfig,
}

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn blessing() -> bool {
    std::env::var_os("ELASTIREC_BLESS").is_some_and(|v| v == "1")
}

/// The rows of an output's Parquet files as CSV: header, then the rows sorted.
async fn csv_of(lake: &elastirec_core::Lake, files: &[FileEntry]) -> String {
    let batches = crate::read_files(lake, files).await;
    if batches.is_empty() {
        return String::new();
    }
    let text = format_batches(&batches, OutputFormat::Csv).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().to_string();
    let mut rows: Vec<&str> = lines.collect();
    rows.sort_unstable();
    let mut out = header;
    for r in rows {
        out.push('\n');
        out.push_str(r);
    }
    out.push('\n');
    out
}

/// Loads one case's raw files, runs `prepare`, and returns (output name, CSV) per output.
async fn run_case(dir: &Path) -> Vec<(&'static str, String)> {
    let case: Case = toml::from_str(&std::fs::read_to_string(dir.join("case.toml")).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join("case.toml").display()));
    let night = case.night.parse().unwrap();
    let (_tmp, lake) = lake().await;
    for day_dir in std::fs::read_dir(dir.join("raw")).unwrap() {
        let day_dir = day_dir.unwrap().path();
        let day = day_dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        for file in std::fs::read_dir(&day_dir).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_name().unwrap().to_str().unwrap();
            lake.put(
                &layout::raw_events_day(day).join(name),
                std::fs::read(&file).unwrap(),
            )
            .await
            .unwrap();
        }
    }
    if let Ok(items) = std::fs::read(dir.join("items.csv")) {
        lake.put(&layout::raw_items_root().join("items.csv"), items)
            .await
            .unwrap();
    }
    if let Ok(windows) = std::fs::read(dir.join("availability.csv")) {
        lake.put(
            &layout::raw_availability_root().join("availability.csv"),
            windows,
        )
        .await
        .unwrap();
    }
    let wh = Warehouse::open(&lake).await.unwrap();
    let report = wh
        .ingest(night, &case.events, IngestOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: ingest: {e}", dir.display()));
    assert_eq!(report.rows_rejected, 0, "{}: {report:?}", dir.display());
    let m = wh.prepare(night, &case.prepare).await.unwrap();
    assert!(m.sql_hash.is_some());
    vec![
        ("training", csv_of(&lake, &m.files).await),
        ("seen", csv_of(&lake, &m.seen_files).await),
        ("items", csv_of(&lake, &m.item_files).await),
        ("availability", csv_of(&lake, &m.availability_files).await),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sql_file_gives_its_expected_rows() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.toml").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "golden cases missing under tests/golden");
    let mut failures = Vec::new();
    let mut outputs_with_rows = std::collections::BTreeSet::new();
    for dir in &cases {
        for (name, actual) in run_case(dir).await {
            if actual.lines().count() > 1 {
                outputs_with_rows.insert(name);
            }
            let expected_path = dir.join("expected").join(format!("{name}.csv"));
            if blessing() {
                std::fs::create_dir_all(expected_path.parent().unwrap()).unwrap();
                std::fs::write(&expected_path, &actual).unwrap();
                continue;
            }
            let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
                panic!(
                    "{} is missing: run scripts/bless-golden and review the new file",
                    expected_path.display()
                )
            });
            if expected != actual {
                failures.push(format!(
                    "{}:\n--- expected\n{expected}--- actual\n{actual}",
                    expected_path.display()
                ));
            }
        }
    }
    // Every SQL file is pinned by at least one case with rows.
    assert_eq!(
        outputs_with_rows.into_iter().collect::<Vec<_>>(),
        ["availability", "items", "seen", "training"]
    );
    assert!(
        failures.is_empty(),
        "golden outputs differ (if the change is deliberate, run scripts/bless-golden and \
         review the diff):\n{}",
        failures.join("\n")
    );
}
