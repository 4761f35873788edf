//! A small lake whose answers are known: six titled items with 2-factor vectors chosen so that
//! cosine similarities order clearly, three users, one or two published nights.
//!
//! Item factors: 1 (1, 0), 2 (0.9, 0.1), 3 (0, 1), 4 (0.1, 0.9), 5 (1, 1), 6 (-1, 0).
//! User 7 had items 1 (value 5, 2 events) and 3 (value 4) in the window, and item 6 before it;
//! night 1 recommends 2, 4, 5 to user 7; user 8 has a popularity list; user 9 had item 1 only.
//!
//! [`Names::strings`] gives the same lake string ids (an `ids-*.parquet` dictionary in the
//! export, lists written with the external ids): the answers are the same, named differently.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch, StringArray};
use chrono::Utc;

use elastirec_core::ids::{DICTIONARY_BASE, IdDictionary, IdKind};
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

/// How the fixture's users (7, 8, 9) and items (1 to 6) are named in a lake: by themselves
/// (numeric ids, no dictionary) or by strings with dictionary ids.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// (kind, fixture id) → (internal id, external id).
    names: BTreeMap<(IdKind, i64), (i64, &'static str)>,
}

/// The external ids of [`Names::strings`]: users 7, 8, 9.
pub const USER7: &str = "A3CIUOJXQ5VDQ2";
pub const USER8: &str = "9b2f0c1e-5d4a-4f8e-9a51-0c6f1f0d2a77";
pub const USER9: &str = "user/9 ä";
/// Items 1, 2, 3, 5 and 6; item 4 keeps its numeric id "4".
pub const ITEM1: &str = "SKU/12 A";
pub const ITEM2: &str = "B00004U9V2";
pub const ITEM3: &str = "007";
pub const ITEM5: &str = "100%";
pub const ITEM6: &str = "ÉCLAIR-6";

impl Names {
    /// Numeric ids: every id is its own, no dictionary.
    pub fn numeric() -> Names {
        Names::default()
    }

    /// String ids for every user and every item but 4 (a lake may mix numeric and string ids).
    /// Dictionary ids follow the fixture's order, so ties break as with numeric ids.
    pub fn strings() -> Names {
        let mut names = BTreeMap::new();
        let entries = [
            (IdKind::User, 7, USER7),
            (IdKind::User, 8, USER8),
            (IdKind::User, 9, USER9),
            (IdKind::Item, 1, ITEM1),
            (IdKind::Item, 2, ITEM2),
            (IdKind::Item, 3, ITEM3),
            (IdKind::Item, 5, ITEM5),
            (IdKind::Item, 6, ITEM6),
        ];
        for (n, (kind, id, external)) in entries.into_iter().enumerate() {
            names.insert((kind, id), (DICTIONARY_BASE + n as i64, external));
        }
        Names { names }
    }

    fn internal(&self, kind: IdKind, id: i64) -> i64 {
        self.names.get(&(kind, id)).map_or(id, |e| e.0)
    }

    /// The internal id of fixture user `id`.
    pub fn user(&self, id: i64) -> i64 {
        self.internal(IdKind::User, id)
    }

    /// The internal id of fixture item `id`.
    pub fn item(&self, id: i64) -> i64 {
        self.internal(IdKind::Item, id)
    }

    /// The dictionary the export lists.
    pub fn dictionary(&self) -> IdDictionary {
        let mut d = IdDictionary::default();
        for ((kind, _), (id, external)) in &self.names {
            d.of_mut(*kind).insert(*id, external);
        }
        d
    }

    /// The dictionary as an `ids-*.parquet` batch.
    fn batch(&self) -> RecordBatch {
        let rows: Vec<_> = self.names.iter().collect();
        RecordBatch::try_new(
            manifest::ids_schema(),
            vec![
                Arc::new(StringArray::from(
                    rows.iter()
                        .map(|((k, _), _)| k.as_str())
                        .collect::<Vec<_>>(),
                )) as ArrayRef,
                Arc::new(Int64Array::from(
                    rows.iter().map(|(_, (id, _))| *id).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|(_, (_, e))| *e).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }
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
    published_with(&Names::numeric()).await
}

/// [`published`] with the ids named by `names`.
pub async fn published_with(names: &Names) -> Fixture {
    let f = lake().await;
    write_named_night(&f.lake, night(NIGHT1), &night1_lists(), names).await;
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
    write_named_night(lake, n, lists, &Names::numeric()).await;
}

/// [`write_night`] with the ids named by `names`: the export, the factors and the rows hold
/// internal ids, the export lists the dictionary and the recommendation files external ids.
/// `lists` are of fixture ids.
pub async fn write_named_night(lake: &Lake, n: Night, lists: &[RecommendationRow], names: &Names) {
    let (u, i) = (|id| names.user(id), |id| names.item(id));
    let part = pairs_batch(&[
        (u(7), i(1), 5.0, 2),
        (u(7), i(3), 4.0, 1),
        (u(8), i(2), 3.0, 1),
        (u(8), i(5), 1.0, 1),
        (u(9), i(1), 2.0, 1),
    ]);
    let seen = RecordBatch::try_new(
        manifest::seen_schema(),
        vec![
            Arc::new(Int64Array::from(vec![u(7)])) as ArrayRef,
            Arc::new(Int64Array::from(vec![i(6)])),
        ],
    )
    .unwrap();
    let fixture_ids: Vec<i64> = (1..=6).collect();
    let ids: Vec<i64> = fixture_ids.iter().map(|&id| i(id)).collect();
    let items = RecordBatch::try_new(
        manifest::items_schema(),
        vec![
            Arc::new(Int64Array::from(ids.clone())) as ArrayRef,
            Arc::new(StringArray::from(
                fixture_ids
                    .iter()
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
    let dictionary = names.dictionary();
    let id_files = if names.names.is_empty() {
        Vec::new()
    } else {
        vec![put(lake, layout::training_export_ids_part(n, 0), names.batch()).await]
    };
    let export = ExportManifest {
        night: n,
        created_at: Utc::now(),
        rows: 5,
        files,
        schema: ColumnSpec::of_schema(&manifest::training_schema()),
        seen_rows: 1,
        seen_files,
        unseen_files: Vec::new(),
        item_rule_files: Vec::new(),
        item_group_files: Vec::new(),
        item_attribute_files: Vec::new(),
        item_attribute_types: Default::default(),
        item_rows: 6,
        item_files,
        availability_files: Vec::new(),
        id_files,
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

    let rows: Vec<RecommendationRow> = lists
        .iter()
        .map(|r| RecommendationRow {
            user_id: u(r.user_id),
            item_id: i(r.item_id),
            ..r.clone()
        })
        .collect();
    let batch = io::recommendations_batch(&rows, &dictionary).unwrap();
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
        lease_epoch: None,
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
