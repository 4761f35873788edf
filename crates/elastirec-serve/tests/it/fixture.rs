//! A small lake whose answers are known: six titled items with 2-factor vectors chosen so that
//! cosine similarities order clearly, three users, one or two published nights.
//!
//! Item factors: 1 (1, 0), 2 (0.9, 0.1), 3 (0, 1), 4 (0.1, 0.9), 5 (1, 1), 6 (-1, 0).
//! User 7 had items 1 (value 5, 2 events) and 3 (value 4) in the window, and item 6 before it;
//! night 1 recommends 2, 4, 5 to user 7; user 8 has a popularity list; user 9 had item 1 only.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch, StringArray};
use chrono::Utc;

use elastirec_core::manifest::{
    self, ColumnSpec, EvaluationReport, ExportManifest, FileEntry, LatestPointer, RankingScores,
    RecommendationsManifest, RunRecord, StepRecord, StepState,
};
use elastirec_core::{Lake, Night, layout};
use elastirec_lake::io::{self, RecommendationRow};

pub const NIGHT1: &str = "2024-01-10";
pub const NIGHT2: &str = "2024-01-11";

pub fn night(s: &str) -> Night {
    s.parse().unwrap()
}

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub lake: Lake,
}

pub async fn lake() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap(), Default::default())
        .await
        .unwrap();
    Fixture { _dir: dir, lake }
}

/// A lake with night 1 written and published, two run records and one evaluation.
pub async fn published() -> Fixture {
    let f = lake().await;
    write_night(&f.lake, night(NIGHT1), &night1_lists()).await;
    publish(&f.lake, night(NIGHT1)).await;
    write_run(&f.lake, night("2024-01-09"), StepState::Succeeded).await;
    write_run(&f.lake, night(NIGHT1), StepState::Failed).await;
    write_evaluation(&f.lake, night("2024-01-09")).await;
    f
}

fn als(user_id: i64, items: &[i64]) -> Vec<RecommendationRow> {
    items
        .iter()
        .enumerate()
        .map(|(r, &item_id)| RecommendationRow {
            user_id,
            item_id,
            rank: r as i32 + 1,
            score: 1.0 - r as f32 * 0.25,
            source: manifest::sources::ALS,
        })
        .collect()
}

pub fn night1_lists() -> Vec<RecommendationRow> {
    let mut rows = als(7, &[2, 4, 5]);
    rows.push(RecommendationRow {
        user_id: 8,
        item_id: 1,
        rank: 1,
        score: 2.0,
        source: manifest::sources::POPULAR,
    });
    rows
}

/// Night 2 recommends 4 first to user 7: a reader can tell the nights apart by the first item.
pub fn night2_lists() -> Vec<RecommendationRow> {
    als(7, &[4, 2, 5])
}

fn pairs_batch(rows: &[(i64, i64, f32, i64)]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
        Arc::new(rows.iter().map(|r| r.1).collect::<Int64Array>()),
        Arc::new(rows.iter().map(|r| r.2).collect::<Float32Array>()),
        Arc::new(rows.iter().map(|r| r.3).collect::<Int64Array>()),
    ];
    RecordBatch::try_new(manifest::training_schema(), columns).unwrap()
}

async fn put(lake: &Lake, path: object_store::path::Path, batch: RecordBatch) -> FileEntry {
    io::write_parquet(lake, &path, batch.schema(), &[batch])
        .await
        .unwrap()
}

/// Writes a night's export, item factors and lists (manifests last), without publishing it.
pub async fn write_night(lake: &Lake, n: Night, lists: &[RecommendationRow]) {
    let part = pairs_batch(&[
        (7, 1, 5.0, 2),
        (7, 3, 4.0, 1),
        (8, 2, 3.0, 1),
        (8, 5, 1.0, 1),
        (9, 1, 2.0, 1),
    ]);
    let seen = RecordBatch::try_new(
        manifest::seen_schema(),
        vec![
            Arc::new(Int64Array::from(vec![7])) as ArrayRef,
            Arc::new(Int64Array::from(vec![6])),
        ],
    )
    .unwrap();
    let ids: Vec<i64> = (1..=6).collect();
    let items = RecordBatch::try_new(
        manifest::items_schema(),
        vec![
            Arc::new(Int64Array::from(ids.clone())) as ArrayRef,
            Arc::new(StringArray::from(
                ids.iter()
                    .map(|i| Some(format!("Item {i}")))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec![
                Some("A"),
                Some("A|B"),
                None,
                Some("B"),
                Some("C"),
                Some("D"),
            ])),
        ],
    )
    .unwrap();
    let files = vec![put(lake, layout::training_export_part(n, 0), part).await];
    let seen_files = vec![put(lake, layout::training_export_seen_part(n, 0), seen).await];
    let item_files = vec![put(lake, layout::training_export_items_part(n, 0), items).await];
    let export = ExportManifest {
        night: n,
        created_at: Utc::now(),
        rows: 5,
        files,
        schema: ColumnSpec::of_schema(&manifest::training_schema()),
        seen_rows: 1,
        seen_files,
        item_rows: 6,
        item_files,
        availability_files: Vec::new(),
        users: 3,
        items: 4,
        table_versions: BTreeMap::new(),
        window_start: n.minus_days(30),
        window_end: n,
        params: serde_json::json!({}),
        sql_hash: None,
    };
    lake.put_json(&layout::training_export_manifest(n), &export)
        .await
        .unwrap();

    let vectors: [f32; 12] = [1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9, 1.0, 1.0, -1.0, 0.0];
    let factors = io::factors_batch(manifest::columns::ITEM_ID, &ids, &vectors, 2).unwrap();
    io::write_parquet(
        lake,
        &layout::model_item_factors(n),
        factors.schema(),
        &[factors],
    )
    .await
    .unwrap();

    let batch = io::recommendations_batch(lists).unwrap();
    let recs = io::write_parquet(
        lake,
        &layout::recommendations_part(n, 0),
        manifest::recommendations_schema(),
        &[batch],
    )
    .await
    .unwrap();
    let manifest = RecommendationsManifest {
        night: n,
        created_at: Utc::now(),
        rows: recs.rows,
        files: vec![recs],
        schema: ColumnSpec::of_schema(&manifest::recommendations_schema()),
        users: 2,
        k: 3,
        users_by_source: BTreeMap::new(),
        model: layout::model_info(n).to_string(),
        table_versions: BTreeMap::new(),
        rules: None,
        rows_by_source: BTreeMap::new(),
    };
    lake.put_json(&layout::recommendations_manifest(n), &manifest)
        .await
        .unwrap();
}

/// Moves `_LATEST` to a night.
pub async fn publish(lake: &Lake, n: Night) {
    let pointer = LatestPointer {
        night: n,
        manifest: layout::recommendations_manifest(n).to_string(),
        published_at: Utc::now(),
    };
    lake.put_json(&layout::recommendations_latest(), &pointer)
        .await
        .unwrap();
}

pub async fn write_run(lake: &Lake, n: Night, last: StepState) {
    let start = Utc::now();
    let step = |name: &str, state| StepRecord {
        name: name.into(),
        state,
        started_at: Some(start),
        ended_at: Some(start + chrono::Duration::seconds(2)),
        rows_in: None,
        rows_out: Some(100),
        outcome: Some(format!("{name} done")),
        error_kind: (state == StepState::Failed).then(|| "transient".into()),
        attempt: 1,
        bytes_out: None,
        cpu_seconds: None,
        peak_memory_bytes: None,
        job: None,
    };
    let record = RunRecord {
        night: n,
        state: last,
        started_at: start,
        ended_at: Some(start),
        steps: vec![step("ingest", StepState::Succeeded), step("train", last)],
        publish: None,
        cost: None,
        tuning: None,
    };
    lake.put_json(&layout::run_record(n), &record)
        .await
        .unwrap();
}

pub async fn write_evaluation(lake: &Lake, n: Night) {
    let scores = |ndcg| RankingScores {
        ndcg,
        precision: 0.1,
        recall: 0.1,
        hit_rate: 0.5,
        ..RankingScores::default()
    };
    let report = EvaluationReport {
        night: n,
        created_at: Utc::now(),
        horizon_days: 7,
        last_event_day: Some(n.plus_days(7)),
        k: 10,
        users_scored: 3,
        relevant_items: 4,
        model: scores(0.3),
        popularity: scores(0.2),
        most_popular: scores(0.1),
        catalog_items: 0,
        unknown_item_pairs: 0,
        unknown_users: 0,
        model_without_rules: None,
    };
    lake.put_json(&layout::evaluation(n, 7), &report)
        .await
        .unwrap();
}
