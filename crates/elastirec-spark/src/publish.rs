//! Checks what the job staged and publishes it into `models/D/` and `recommendations/D/` with the
//! in-process engine's writers: the same column names and Arrow types (Spark writes factor
//! vectors as variable-length lists and every column as nullable; here they become fixed-size
//! lists and non-null columns), each folder's files first and its manifest last.
//!
//! With offer rules (`[rules]`), the job's lists are candidates: each user's best unseen items,
//! more than K of them ([`CandidateRules::candidates`]). They go through the recommend stage's
//! rules ([`CandidateRules::apply`]: the orchestrator passes the in-process engine's, with
//! promotions scored by the published model, exclusions, availability, genre cap, popularity
//! fill) before they are published, so both engines' lists obey the same rules while this crate
//! links no trainer.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use object_store::path::Path;

use elastirec_core::config::{FeedbackKind, ModelConfig};
use elastirec_core::ids::IdNames;
use elastirec_core::manifest::{
    self, ColumnSpec, ExportManifest, ModelInfo, RecommendationsManifest, columns, sources,
};
use elastirec_core::{Lake, Night, layout};
use elastirec_lake::io::{self, RecommendationRow};
use elastirec_lake::read_export_ids;

use crate::job::JobReport;
use crate::{Error, Result};

/// Staged rows by user: (rank, item, score, scored by the model).
pub type StagedLists = HashMap<i64, Vec<(i32, i64, f32, bool)>>;

/// The offer rules of the recommend stage, as the Spark engine applies them to its job's
/// candidates before publishing. The orchestrator implements it with the in-process engine's
/// rules, so both engines' lists come from the same code.
pub trait CandidateRules: Send + Sync {
    /// How many candidates per user the job writes so that usually `k` survive the rules.
    fn candidates(&self, k: usize) -> usize;

    /// The rules as the recommendations manifest records them.
    fn describe(&self) -> serde_json::Result<serde_json::Value>;

    /// Every user's list after the rules: the job's model candidates (best first) for users
    /// the published model covers, the rules' popularity fill for the others.
    fn apply(
        self,
        lake: &Lake,
        night: Night,
        export: &ExportManifest,
        staged: StagedLists,
        k: usize,
    ) -> impl Future<Output = elastirec_lake::Result<BTreeMap<i64, Vec<RecommendationRow>>>> + Send;
}

/// The `algorithm` of an implicit-feedback model the Spark engine made.
pub const ALGORITHM: &str = "spark_mllib_als_implicit";

/// The `algorithm` of an explicit-feedback model (`[model] feedback = "explicit"`, no biases).
pub const ALGORITHM_EXPLICIT: &str = "spark_mllib_als_explicit";

/// The `algorithm` a model made with these settings is recorded under.
pub fn algorithm(config: &ModelConfig) -> &'static str {
    match config.feedback {
        FeedbackKind::Implicit => ALGORITHM,
        FeedbackKind::Explicit => ALGORITHM_EXPLICIT,
    }
}

fn bad(path: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::BadOutput {
        path: path.into(),
        reason: reason.into(),
        job: None,
    }
}

/// The data files of a staged dataset (`part-*` with the extension), once Spark marked it
/// complete with `_SUCCESS`; sorted by name.
async fn staged_files(lake: &Lake, dir: &Path, extension: &str) -> Result<Vec<Path>> {
    let listing = lake.list(dir).await?;
    if !listing
        .iter()
        .any(|m| m.location.filename() == Some("_SUCCESS"))
    {
        return Err(bad(
            lake.display_path(dir),
            "no _SUCCESS: the spark job did not finish writing this dataset",
        ));
    }
    let mut files: Vec<Path> = listing
        .into_iter()
        .map(|m| m.location)
        .filter(|p| {
            p.filename()
                .is_some_and(|n| n.starts_with("part-") && n.ends_with(extension))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The job's report (`report/part-*.json`, one JSON line), which it writes last.
pub async fn read_report(lake: &Lake, staging: &Path) -> Result<JobReport> {
    let dir = staging.clone().join("report");
    for file in staged_files(lake, &dir, ".json").await? {
        let body = lake.get(&file).await?;
        let text = String::from_utf8_lossy(&body);
        if let Some(line) = text.lines().find(|l| !l.trim().is_empty()) {
            return serde_json::from_str(line)
                .map_err(|e| bad(lake.display_path(&file), format!("not a job report: {e}")));
        }
    }
    Err(bad(lake.display_path(&dir), "the job wrote no report"))
}

fn column<'a>(batch: &'a RecordBatch, name: &str, path: &str) -> Result<&'a ArrayRef> {
    let a = batch
        .column_by_name(name)
        .ok_or_else(|| bad(path, format!("no column '{name}'")))?;
    if a.null_count() > 0 {
        return Err(bad(path, format!("column '{name}' has nulls")));
    }
    Ok(a)
}

fn typed<'a, T: arrow_array::types::ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
    path: &str,
) -> Result<&'a arrow_array::PrimitiveArray<T>> {
    let a = column(batch, name, path)?;
    a.as_primitive_opt::<T>().ok_or_else(|| {
        bad(
            path,
            format!(
                "column '{name}' is {}, expected {}",
                a.data_type(),
                T::DATA_TYPE
            ),
        )
    })
}

/// Reads a staged factor dataset: ids sorted ascending, row-major factors.
async fn read_staged_factors(
    lake: &Lake,
    dir: &Path,
    id_column: &str,
    k: usize,
) -> Result<(Vec<i64>, Vec<f32>)> {
    let mut rows: Vec<(i64, Vec<f32>)> = Vec::new();
    for file in staged_files(lake, dir, ".parquet").await? {
        let name = lake.display_path(&file);
        for batch in io::read_parquet(lake, &file).await? {
            let ids = typed::<Int64Type>(&batch, id_column, &name)?;
            let list_col = column(&batch, columns::FACTORS, &name)?;
            let list = list_col.as_list_opt::<i32>().ok_or_else(|| {
                bad(
                    &name,
                    format!(
                        "column 'factors' is {}, expected a list of float",
                        list_col.data_type()
                    ),
                )
            })?;
            let values = list
                .values()
                .as_primitive_opt::<Float32Type>()
                .ok_or_else(|| bad(&name, "factor values are not float"))?;
            let offsets = list.value_offsets();
            for (row, id) in ids.values().iter().enumerate() {
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                if end - start != k {
                    return Err(bad(
                        &name,
                        format!("{id_column} {id} has {} factors, expected {k}", end - start),
                    ));
                }
                let v = &values.values()[start..end];
                if values.null_count() > 0 || v.iter().any(|x| !x.is_finite()) {
                    return Err(bad(
                        &name,
                        format!("{id_column} {id} has a factor that is not a finite number"),
                    ));
                }
                rows.push((*id, v.to_vec()));
            }
        }
    }
    rows.sort_by_key(|r| r.0);
    if let Some(w) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(bad(
            lake.display_path(dir),
            format!("{id_column} {} appears twice", w[0].0),
        ));
    }
    let ids = rows.iter().map(|r| r.0).collect();
    let flat = rows.into_iter().flat_map(|r| r.1).collect();
    Ok((ids, flat))
}

/// Publishes the staged factors as `models/D/` (model.json last).
pub async fn publish_model(
    lake: &Lake,
    night: Night,
    export: &ExportManifest,
    staging: &Path,
    config: &ModelConfig,
    report: &JobReport,
) -> Result<ModelInfo> {
    let k = config.factors;
    let (user_ids, user_rows) = read_staged_factors(
        lake,
        &staging.clone().join("user_factors"),
        columns::USER_ID,
        k,
    )
    .await?;
    let (item_ids, item_rows) = read_staged_factors(
        lake,
        &staging.clone().join("item_factors"),
        columns::ITEM_ID,
        k,
    )
    .await?;
    if user_ids.len() as u64 != report.users || item_ids.len() as u64 != report.items {
        return Err(bad(
            lake.display_path(staging),
            format!(
                "the report says {} users and {} items, the factor files hold {} and {}",
                report.users,
                report.items,
                user_ids.len(),
                item_ids.len()
            ),
        ));
    }
    let (files, generation) =
        io::write_model_factors(lake, night, &user_ids, &user_rows, &item_ids, &item_rows, k)
            .await?;
    let info = ModelInfo {
        night,
        created_at: chrono::Utc::now(),
        algorithm: algorithm(config).into(),
        params: serde_json::to_value(config)
            .map_err(|e| Error::Config(format!("model params: {e}")))?,
        users: user_ids.len() as u64,
        items: item_ids.len() as u64,
        interactions: report.interactions,
        factors: k,
        // MLlib does not report its loss.
        loss: Vec::new(),
        train_seconds: report.train_seconds,
        export_manifest: layout::training_export_manifest(night).to_string(),
        table_versions: export.table_versions.clone(),
        files,
    };
    lake.put_json(&layout::model_info(night), &info).await?;
    generation.finish(lake, &info.files).await?;
    Ok(info)
}

/// Publishes the staged lists as `recommendations/D/` (one part per staged file, manifest last),
/// after checking types, nulls, ranks and sources. The job wrote up to `per_user` items per
/// user: `k`, or more candidates when `rules` are applied here (then one part file is written,
/// as the in-process engine does).
pub async fn publish_recommendations<R: CandidateRules>(
    lake: &Lake,
    night: Night,
    export: &ExportManifest,
    staging: &Path,
    k: usize,
    per_user: usize,
    rules: Option<R>,
) -> Result<RecommendationsManifest> {
    let schema = manifest::recommendations_schema();
    // The job worked on internal ids; the published files speak the producers' ids.
    let names = read_export_ids(lake, export).await?;
    // Per user: rows, highest rank, source of rank 1.
    let mut users: HashMap<i64, (u64, i32, String)> = HashMap::new();
    let mut rows_by_source: BTreeMap<String, u64> = BTreeMap::new();
    let mut parts: Vec<Vec<RecordBatch>> = Vec::new();
    // With rules: per user, (rank, item, score, scored by the model) of every staged row.
    let mut staged = StagedLists::new();
    for file in staged_files(lake, &staging.clone().join("recommendations"), ".parquet").await? {
        let name = lake.display_path(&file);
        let mut batches = Vec::new();
        for batch in io::read_parquet(lake, &file).await? {
            let user = typed::<Int64Type>(&batch, columns::USER_ID, &name)?;
            let item = typed::<Int64Type>(&batch, columns::ITEM_ID, &name)?;
            let rank = typed::<Int32Type>(&batch, columns::RANK, &name)?;
            let score = typed::<Float32Type>(&batch, columns::SCORE, &name)?;
            let source_col = column(&batch, columns::SOURCE, &name)?;
            let source = source_col.as_string_opt::<i32>().ok_or_else(|| {
                bad(
                    &name,
                    format!(
                        "column 'source' is {}, expected Utf8",
                        source_col.data_type()
                    ),
                )
            })?;
            for row in 0..batch.num_rows() {
                let (u, r, s) = (user.value(row), rank.value(row), source.value(row));
                if r < 1 || r as usize > per_user {
                    return Err(bad(
                        &name,
                        format!("user {u} has rank {r}, outside 1..={per_user}"),
                    ));
                }
                if !score.value(row).is_finite() {
                    return Err(bad(
                        &name,
                        format!("user {u} has a score that is not finite"),
                    ));
                }
                if s != sources::ALS && s != sources::POPULAR {
                    return Err(bad(&name, format!("unknown source '{s}'")));
                }
                let e = users.entry(u).or_insert((0, 0, String::new()));
                e.0 += 1;
                e.1 = e.1.max(r);
                if r == 1 {
                    e.2 = s.to_string();
                }
                if rules.is_some() {
                    staged.entry(u).or_default().push((
                        r,
                        item.value(row),
                        score.value(row),
                        s == sources::ALS,
                    ));
                } else {
                    *rows_by_source.entry(s.to_string()).or_default() += 1;
                }
            }
            if rules.is_none() {
                let external = |ids: &IdNames, a: &Int64Array| -> StringArray {
                    a.values().iter().map(|&i| Some(ids.external(i))).collect()
                };
                let arrays: Vec<ArrayRef> = vec![
                    Arc::new(external(&names.users, user)),
                    Arc::new(external(&names.items, item)),
                    Arc::new(rank.clone()),
                    Arc::new(score.clone()),
                    Arc::new(source.clone()),
                ];
                batches.push(
                    RecordBatch::try_new(schema.clone(), arrays)
                        .map_err(|e| bad(&name, format!("does not fit the schema: {e}")))?,
                );
            }
        }
        parts.push(batches);
    }
    if let Some((u, (n, max, _))) = users.iter().find(|(_, (n, max, _))| *n != *max as u64) {
        return Err(bad(
            lake.display_path(staging),
            format!("user {u} has {n} rows but ranks up to {max}: ranks must be 1..n once each"),
        ));
    }
    let mut users_by_source: BTreeMap<String, u64> = BTreeMap::new();
    let applied = rules
        .as_ref()
        .map(|r| r.describe())
        .transpose()
        .map_err(|e| Error::Config(format!("rules: {e}")))?;
    let (users_count, ruled) = match rules {
        None => {
            for (_, _, source) in users.values() {
                *users_by_source.entry(source.clone()).or_default() += 1;
            }
            (users.len() as u64, None)
        }
        Some(r) => {
            let lists = r.apply(lake, night, export, staged, k).await?;
            for list in lists.values() {
                // As the in-process engine counts: under the model when it placed any item.
                let source = if list.iter().any(|r| r.source == sources::ALS) {
                    sources::ALS
                } else {
                    list.first().map_or(sources::POPULAR, |r| r.source)
                };
                *users_by_source.entry(source.to_string()).or_default() += 1;
                for r in list {
                    *rows_by_source.entry(r.source.to_string()).or_default() += 1;
                }
            }
            let flat: Vec<RecommendationRow> = lists.values().flatten().cloned().collect();
            (
                lists.len() as u64,
                Some(io::recommendations_batch(&flat, &names)?),
            )
        }
    };
    // The night's output may be live: new files beside the old, the manifest swaps them.
    let generation = elastirec_lake::artefacts::begin_recommendations(lake, night).await?;
    let mut files = Vec::new();
    match ruled {
        Some(batch) => files.push(
            io::write_parquet(
                lake,
                &generation.path(&layout::recommendations_part(night, 0)),
                schema.clone(),
                &[batch],
            )
            .await?,
        ),
        None => {
            for (i, batches) in parts.iter().enumerate() {
                files.push(
                    io::write_parquet(
                        lake,
                        &generation.path(&layout::recommendations_part(night, i)),
                        schema.clone(),
                        batches,
                    )
                    .await?,
                );
            }
        }
    }
    let manifest = RecommendationsManifest {
        night,
        created_at: chrono::Utc::now(),
        rows: files.iter().map(|f| f.rows).sum(),
        files,
        schema: ColumnSpec::of_schema(&schema),
        users: users_count,
        k,
        users_by_source,
        model: layout::model_info(night).to_string(),
        table_versions: export.table_versions.clone(),
        rules: applied,
        rows_by_source,
    };
    lake.put_json(&layout::recommendations_manifest(night), &manifest)
        .await?;
    generation.finish(lake, &manifest.files).await?;
    Ok(manifest)
}
