//! Documents and schemas that stages leave for each other in the lake.
//!
//! A dated output folder is complete when, and only when, its manifest exists: writers put every
//! data file first and the manifest last, and readers take the file list from the manifest, never
//! from a listing (a listing may show files of an interrupted earlier attempt).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::night::Night;

/// Column names shared by the artefacts.
pub mod columns {
    pub const USER_ID: &str = "user_id";
    pub const ITEM_ID: &str = "item_id";
    pub const VALUE: &str = "value";
    pub const EVENTS: &str = "events";
    pub const FACTORS: &str = "factors";
    pub const RANK: &str = "rank";
    pub const SCORE: &str = "score";
    pub const SOURCE: &str = "source";
    pub const TITLE: &str = "title";
    pub const GENRES: &str = "genres";
    pub const AVAILABLE_FROM: &str = "available_from";
    pub const AVAILABLE_TO: &str = "available_to";
    pub const REGION: &str = "region";
    pub const SEGMENT: &str = "segment";
    pub const KIND: &str = "kind";
    pub const ID: &str = "id";
    pub const EXTERNAL: &str = "external";
}

/// `exports/training/…/part-*.parquet`: one row per (user, item) pair in the training window.
///
/// `value` is the strongest interaction of the pair in the window (the rating for MovieLens),
/// `events` how many events the pair had.
pub fn training_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(columns::USER_ID, DataType::Int64, false),
        Field::new(columns::ITEM_ID, DataType::Int64, false),
        Field::new(columns::VALUE, DataType::Float32, false),
        Field::new(columns::EVENTS, DataType::Int64, false),
    ]))
}

/// `exports/training/…/seen-*.parquet`: pairs seen up to the night but absent from `part-*`
/// (older than the window, or filtered out). Together they are everything "already seen".
pub fn seen_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(columns::USER_ID, DataType::Int64, false),
        Field::new(columns::ITEM_ID, DataType::Int64, false),
    ]))
}

/// `exports/training/…/items-*.parquet`: the item dimension as it stood when the night was
/// prepared (title and `|`-separated genres; both may be null), for serving.
pub fn items_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(columns::ITEM_ID, DataType::Int64, false),
        Field::new(columns::TITLE, DataType::Utf8, true),
        Field::new(columns::GENRES, DataType::Utf8, true),
    ]))
}

/// `exports/training/…/ids-*.parquet`: the id dictionary as it stood when the night was prepared
/// (`kind` is `user` or `item`; `id` the internal id ≥ [`crate::ids::DICTIONARY_BASE`] that the
/// export, the model and the engines use; `external` the id the producer sent). Numeric external
/// ids are their own internal ids and have no row.
pub fn ids_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(columns::KIND, DataType::Utf8, false),
        Field::new(columns::ID, DataType::Int64, false),
        Field::new(columns::EXTERNAL, DataType::Utf8, false),
    ]))
}

/// `exports/training/…/availability-*.parquet` and `warehouse/availability`: an item is available
/// from `available_from` to `available_to` (both days included; null: open-ended), in `region`
/// and `segment` (null: everywhere). See `[rules]` for how rows combine.
pub fn availability_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(columns::ITEM_ID, DataType::Int64, false),
        Field::new(columns::AVAILABLE_FROM, DataType::Date32, true),
        Field::new(columns::AVAILABLE_TO, DataType::Date32, true),
        Field::new(columns::REGION, DataType::Utf8, true),
        Field::new(columns::SEGMENT, DataType::Utf8, true),
    ]))
}

/// `models/…/{user,item}_factors.parquet`: an id and its factor vector.
pub fn factors_schema(id_column: &str, factors: usize) -> SchemaRef {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    Arc::new(Schema::new(vec![
        Field::new(id_column, DataType::Int64, false),
        Field::new(
            columns::FACTORS,
            DataType::FixedSizeList(item, factors as i32),
            false,
        ),
    ]))
}

/// `recommendations/…/part-*.parquet`: ranked lists, one row per (user, rank), with the ids
/// producers sent (strings; a numeric id as its decimal digits). Files written before layout 3
/// hold Int64 ids; the readers of `elastirec-lake` accept both.
pub fn recommendations_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(columns::USER_ID, DataType::Utf8, false),
        Field::new(columns::ITEM_ID, DataType::Utf8, false),
        Field::new(columns::RANK, DataType::Int32, false),
        Field::new(columns::SCORE, DataType::Float32, false),
        Field::new(columns::SOURCE, DataType::Utf8, false),
    ]))
}

/// Where a recommendation came from.
pub mod sources {
    /// Scored by the collaborative filtering model.
    pub const ALS: &str = "als";
    /// The popularity ranking: the fallback for users the model does not cover, and the fill
    /// of lists that offer rules left shorter than K.
    pub const POPULAR: &str = "popular";
    /// Placed by an offer rule (`[rules] promoted_items`).
    pub const PROMOTED: &str = "promoted";
    /// Scored by factors folded in at request time from the interactions a request (or a
    /// fold-in file) gave, against the night's item factors (see [`crate::foldin`]).
    pub const FOLD_IN: &str = "fold-in";
}

/// One data file listed by a manifest; `path` is relative to the lake root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// A column of a data file set, as written in manifests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

impl ColumnSpec {
    /// The columns of an Arrow schema.
    pub fn of_schema(schema: &Schema) -> Vec<ColumnSpec> {
        schema
            .fields()
            .iter()
            .map(|f| ColumnSpec {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
                nullable: f.is_nullable(),
            })
            .collect()
    }
}

/// `exports/training/YYYY/MM/DD/_manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportManifest {
    pub night: Night,
    pub created_at: DateTime<Utc>,
    /// Training pairs (`part-*.parquet`).
    pub files: Vec<FileEntry>,
    pub rows: u64,
    pub schema: Vec<ColumnSpec>,
    /// Pairs seen up to the night but not in `files` (`seen-*.parquet`).
    pub seen_files: Vec<FileEntry>,
    pub seen_rows: u64,
    /// Pairs of `files` the user may be offered again (`unseen-*.parquet`): every event of the
    /// pair is of a type that does not make its item seen, or is past its type's
    /// `repeat_after_days`. Empty when every event type makes its items seen for ever.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unseen_files: Vec<FileEntry>,
    /// Items the `[rules]` predicates exclude or promote (`item-rules-*.parquet`: `item_id`,
    /// `excluded`, `promoted`); empty without such rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub item_rule_files: Vec<FileEntry>,
    /// Values of the `[rules] max_per` columns (`item-groups-*.parquet`: `item_id`,
    /// `attribute`, `value`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub item_group_files: Vec<FileEntry>,
    /// Item attributes (catalog feeds, `[items] from_events`), latest values
    /// (`item-attributes-*.parquet`: `item_id`, `attribute`, `value`), for serving.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub item_attribute_files: Vec<FileEntry>,
    /// The type of each item attribute (`[items.attributes]`, else inferred from its values).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub item_attribute_types: std::collections::BTreeMap<String, crate::config::AttributeType>,
    /// Item metadata (`items-*.parquet`); absent from exports written before it existed.
    #[serde(default)]
    pub item_files: Vec<FileEntry>,
    #[serde(default)]
    pub item_rows: u64,
    /// Item availability windows (`availability-*.parquet`, layout 2); absent before.
    #[serde(default)]
    pub availability_files: Vec<FileEntry>,
    /// The id dictionary's entries (`ids-*.parquet`, layout 3): how internal ids map to the
    /// producers' string ids. Absent before; an export without them has numeric ids only.
    #[serde(default)]
    pub id_files: Vec<FileEntry>,
    pub users: u64,
    pub items: u64,
    /// Version of each warehouse table that was read, by table name.
    pub table_versions: BTreeMap<String, i64>,
    /// First and last event day in the training window.
    pub window_start: Night,
    pub window_end: Night,
    /// The `[prepare]` settings used.
    pub params: serde_json::Value,
    /// SHA-256 of the rendered SQL that made the export (absent from exports written before
    /// the SQL was kept in files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_hash: Option<String>,
}

impl ExportManifest {
    /// The training window as people read it: `2014-04-01 to 2015-03-31`, or `the whole
    /// history to 2015-03-31` (`[prepare] window_days = 0`).
    pub fn window_text(&self) -> String {
        if self.window_start == Night::beginning() {
            format!("the whole history to {}", self.window_end)
        } else {
            format!("{} to {}", self.window_start, self.window_end)
        }
    }
}

/// `models/YYYY/MM/DD/model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub night: Night,
    pub created_at: DateTime<Utc>,
    pub algorithm: String,
    /// The `[model]` settings used.
    pub params: serde_json::Value,
    pub users: u64,
    pub items: u64,
    pub interactions: u64,
    pub factors: usize,
    /// Training loss after each iteration.
    pub loss: Vec<f64>,
    pub train_seconds: f64,
    /// The export this model was trained on, and the table versions that export read.
    pub export_manifest: String,
    pub table_versions: BTreeMap<String, i64>,
    pub files: Vec<FileEntry>,
}

/// `recommendations/YYYY/MM/DD/_manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendationsManifest {
    pub night: Night,
    pub created_at: DateTime<Utc>,
    pub files: Vec<FileEntry>,
    pub rows: u64,
    pub schema: Vec<ColumnSpec>,
    pub users: u64,
    pub k: usize,
    /// Users per source (`als`, `popular`).
    pub users_by_source: BTreeMap<String, u64>,
    pub model: String,
    pub table_versions: BTreeMap<String, i64>,
    /// The `[rules]` applied, when any rule was active (absent: the model's lists as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<serde_json::Value>,
    /// Rows per source (`als`, `popular`, `promoted`).
    #[serde(default)]
    pub rows_by_source: BTreeMap<String, u64>,
}

/// `recommendations/_LATEST`: the newest published night.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestPointer {
    pub night: Night,
    pub manifest: String,
    pub published_at: DateTime<Utc>,
    /// The epoch of the lake's lease its writer held (absent when written without a lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_epoch: Option<u64>,
}

/// State of a step or a night in the run record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    /// The publish gate kept the night from going live (the reason is in the record).
    Held,
}

/// One step of a night in `runs/YYYY-MM-DD.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub state: StepState,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub rows_in: Option<u64>,
    pub rows_out: Option<u64>,
    /// What the step did, in a sentence, or why it failed.
    pub outcome: Option<String>,
    /// Whose fault the failure was (`invalid_input`, `not_found`, `transient`, `internal`).
    pub error_kind: Option<String>,
    /// Attempt number of this step in the night's run (1 for the first try; retries of
    /// transient failures and reruns after a crash count up).
    #[serde(default = "one")]
    pub attempt: u32,
    /// Bytes the step wrote to the lake (files it produced), where it knows them.
    #[serde(default)]
    pub bytes_out: Option<u64>,
    /// CPU time (user + system) the process spent in the step, all threads together.
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    /// The process's peak resident memory (VmHWM) when the step ended: a high-water mark since
    /// the process started, so it includes earlier steps run by the same process.
    #[serde(default)]
    pub peak_memory_bytes: Option<u64>,
    /// The external job that did the step's work (`[model] engine = "spark"`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobRecord>,
}

/// An external job run by a step (the Spark engine's `spark-submit`), as the run ledger keeps it.
/// One job may do the work of several steps (train and recommend); each step records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Which engine ran it (`spark`).
    pub engine: String,
    /// The command line, with the job's JSON argument shortened.
    pub command: String,
    /// The exit status, when the process exited by itself.
    pub exit_status: Option<i32>,
    /// The signal that ended it, when one did (a timeout ends it with SIGKILL).
    pub signal: Option<i32>,
    /// Whether elastirec ended it because it ran past `[spark] timeout_seconds`.
    pub timed_out: bool,
    /// Wall-clock seconds from start to exit.
    pub seconds: f64,
    /// The last lines of its standard output and error, together.
    pub log_tail: String,
}

fn one() -> u32 {
    1
}

impl StepRecord {
    /// Wall-clock seconds of the step, when it has started and ended.
    pub fn seconds(&self) -> Option<f64> {
        match (self.started_at, self.ended_at) {
            (Some(a), Some(b)) => Some((b - a).num_milliseconds().max(0) as f64 / 1000.0),
            _ => None,
        }
    }
}

/// `runs/YYYY-MM-DD.json`: the run record of one night.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub night: Night,
    pub state: StepState,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub steps: Vec<StepRecord>,
    /// Whether the publish step moved `recommendations/_LATEST` to this night, and why not.
    #[serde(default)]
    pub publish: Option<PublishDecision>,
    /// What the night's compute cost, elastically and on an always-on cluster.
    #[serde(default)]
    pub cost: Option<NightCost>,
    /// The newest `elastirec tune` of this night: grid, scores and chosen parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<TuningRecord>,
}

impl RunRecord {
    /// The record of the step named `name`, if the night has one.
    pub fn step(&self, name: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Wall-clock seconds of all steps of the night that ran.
    pub fn compute_seconds(&self) -> f64 {
        self.steps.iter().filter_map(StepRecord::seconds).sum()
    }
}

/// The publish gate's decision for a night.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishDecision {
    /// True when `_LATEST` was moved to this night.
    pub published: bool,
    /// `--force-publish` overrode a failed check.
    pub forced: bool,
    /// Each check and what it found, in a sentence (`"users: 1,930 vs 1,944 the night before"`).
    pub checks: Vec<GateCheck>,
    /// Why the night was held (the failed checks), or empty.
    pub reason: Option<String>,
    /// The night `_LATEST` names after the decision.
    pub latest: Option<Night>,
}

/// One check of the publish gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateCheck {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// The compute cost of one night (prices from `[cost]` in the configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NightCost {
    /// Wall-clock seconds the night's steps ran (what an elastic machine is billed for).
    pub compute_seconds: f64,
    /// CPU seconds of the night's steps, all threads together.
    pub cpu_seconds: f64,
    /// Price per hour of the machine that ran the night.
    pub price_per_hour: f64,
    /// `compute_seconds / 3600 * price_per_hour`.
    pub elastic_cost: f64,
    /// Price per hour of the always-on warehouse + cluster it replaces.
    pub always_on_price_per_hour: f64,
    /// `24 * always_on_price_per_hour`: one day of the always-on alternative.
    pub always_on_cost: f64,
    pub currency: String,
}

/// `snapshots/NAME.json`: the warehouse state a night ended with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub name: String,
    pub night: Night,
    pub created_at: DateTime<Utc>,
    /// Version of every warehouse table (`events`, `items`, `loads`, `rejects`).
    pub table_versions: BTreeMap<String, i64>,
}

/// Scores of one list-maker in an evaluation: means over the scored users of the metrics at K
/// (see `elastirec_als::metrics`), where a user without a list scores 0.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RankingScores {
    pub ndcg: f64,
    pub precision: f64,
    pub recall: f64,
    pub hit_rate: f64,
    /// Mean average precision at K.
    #[serde(default)]
    pub map: f64,
    /// Share of the catalog (items of the night's training data) in at least one user's list.
    #[serde(default)]
    pub catalog_coverage: f64,
    /// Scored users who had no list (counted as 0 in every mean).
    #[serde(default)]
    pub users_without_list: u64,
}

/// `evaluations/YYYY/MM/DD/horizon-Hd.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    pub night: Night,
    pub created_at: DateTime<Utc>,
    pub horizon_days: u32,
    /// Last event day that was in the lake and counted (≤ night + horizon).
    pub last_event_day: Option<Night>,
    pub k: usize,
    /// Users with at least one relevant item, who had events up to the night.
    pub users_scored: u64,
    pub relevant_items: u64,
    /// The stored lists of the night.
    pub model: RankingScores,
    /// Each user's most popular items among those they had not seen (the fallback's lists).
    pub popularity: RankingScores,
    /// One most-popular list for everyone, seen items included.
    pub most_popular: RankingScores,
    /// Items known at the night (in its training data): the catalog of coverage, and the only
    /// items that count as relevant.
    #[serde(default)]
    pub catalog_items: u64,
    /// Later (user, item) pairs of known users left out because the item was unknown at the
    /// night (no list-maker could have recommended it).
    #[serde(default)]
    pub unknown_item_pairs: u64,
    /// Users with later events who were unknown at the night (not scored).
    #[serde(default)]
    pub unknown_users: u64,
    /// The model's own lists before `[rules]` (only when the stored lists had rules applied),
    /// so the cost of the business rules can be read beside `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_without_rules: Option<RankingScores>,
}

/// One point of a tuning grid and what it scored on the validation days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuningPoint {
    pub factors: usize,
    pub regularization: f32,
    pub alpha: f32,
    /// The model's scores on the validation days.
    pub scores: RankingScores,
    /// Seconds to fit and score this point.
    pub seconds: f64,
}

/// `elastirec tune`: a grid search on an inner temporal split, kept in the run record of the
/// night it was run for. Configuration is never changed by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuningRecord {
    pub created_at: DateTime<Utc>,
    /// The night whose training export the grid was fitted on (the tuned night − horizon).
    pub train_night: Night,
    /// Validation days: `train_night + 1 ..= validation_end`.
    pub validation_end: Night,
    /// Last day with events among the validation days.
    pub last_event_day: Option<Night>,
    pub k: usize,
    /// What the grid's points share (`[model]` of the configuration: iterations, seed, solver).
    pub base_params: serde_json::Value,
    /// Users with at least one relevant item on the validation days.
    pub users_scored: u64,
    pub relevant_items: u64,
    /// Every point, in grid order.
    pub grid: Vec<TuningPoint>,
    /// Index in `grid` of the point with the highest validation NDCG (the first on ties).
    pub chosen: usize,
    /// Each user's most popular unseen items on the same validation days, for reference.
    pub popularity: RankingScores,
}

impl TuningRecord {
    /// The chosen point.
    pub fn choice(&self) -> Option<&TuningPoint> {
        self.grid.get(self.chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_name_their_columns() {
        let s = recommendations_schema();
        let names: Vec<_> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["user_id", "item_id", "rank", "score", "source"]);
        let cols = ColumnSpec::of_schema(&factors_schema("user_id", 8));
        assert_eq!(cols[1].name, "factors");
        assert!(cols[1].data_type.contains("FixedSizeList"), "{:?}", cols[1]);
    }
}
