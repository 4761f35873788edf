//! The train and recommend steps of a night, from lake files to lake files.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rayon::prelude::*;

use elastirec_core::config::{ConfidenceKind, FeedbackKind, ModelConfig, RulesConfig, SolverKind};
use elastirec_core::layout;
use elastirec_core::manifest::{
    self, ColumnSpec, ExportManifest, ModelInfo, RecommendationsManifest, sources,
};
use elastirec_core::{Lake, Night};

use crate::data::{Csr, Interactions};
use crate::explicit::ExplicitAls;
use crate::implicit::{Confidence, Factors, ImplicitAls, Solver};
use crate::model::Model;
use crate::popularity::Popularity;
use crate::rules::OfferRules;
use crate::{Error, Result};
use elastirec_lake::io::{self, RecommendationRow};
use elastirec_lake::{IdSet, SeenPairs, read_export_ids, read_export_manifest};

/// The implicit-feedback fit a `[model]` section describes.
pub fn implicit_als(config: &ModelConfig) -> ImplicitAls {
    ImplicitAls {
        factors: config.factors,
        iterations: config.iterations,
        regularization: config.regularization,
        alpha: config.alpha,
        seed: config.seed,
        solver: match config.solver {
            SolverKind::Cg => Solver::ConjugateGradient {
                steps: config.cg_steps,
            },
            SolverKind::Cholesky => Solver::Cholesky,
        },
        confidence: match config.confidence {
            ConfidenceKind::Linear => Confidence::Linear,
            ConfidenceKind::Log => Confidence::Log {
                epsilon: config.epsilon,
            },
        },
        tolerance: config.tolerance,
        simd: true,
    }
}

/// The explicit-feedback fit a `[model]` section describes.
pub fn explicit_als(config: &ModelConfig) -> ExplicitAls {
    ExplicitAls {
        factors: config.factors,
        iterations: config.iterations,
        regularization: config.regularization,
        seed: config.seed,
        biases: config.biases,
        tolerance: config.tolerance,
    }
}

/// The `train` step: fits ALS (implicit or explicit feedback, per `[model] feedback`) on the
/// night's export and writes `models/D/`.
///
/// Explicit models are written with their biases folded into the factors (see
/// [`crate::explicit::ExplicitModel::serving_factors`]): a dot product is a predicted rating.
pub async fn train_night(
    lake: &Lake,
    night: Night,
    config: &ModelConfig,
    on_iteration: impl FnMut(usize, f64) + Send + 'static,
) -> Result<ModelInfo> {
    let export = read_export_manifest(lake, night).await?;
    let pairs = io::read_pairs(lake, &export.files, true).await?;
    let algorithm = match (config.feedback, config.solver) {
        (FeedbackKind::Explicit, _) => "explicit_als_wr",
        (FeedbackKind::Implicit, SolverKind::Cg) => "implicit_als_cg",
        (FeedbackKind::Implicit, SolverKind::Cholesky) => "implicit_als_cholesky",
    };
    let implicit = implicit_als(config);
    let explicit = explicit_als(config);
    let feedback = config.feedback;
    let (data, factors, report) = tokio::task::spawn_blocking(move || {
        let data = Interactions::from_columns(&pairs.user_ids, &pairs.item_ids, &pairs.values);
        drop(pairs);
        let (factors, report) = match feedback {
            FeedbackKind::Implicit => implicit.fit(&data, on_iteration)?,
            FeedbackKind::Explicit => {
                let (model, report) = explicit.fit(&data, on_iteration)?;
                let (users, items, factors) = model.serving_factors();
                (
                    Factors {
                        factors,
                        users,
                        items,
                    },
                    report,
                )
            }
        };
        Ok::<_, Error>((data, factors, report))
    })
    .await
    .map_err(|e| Error::Internal(format!("training task failed: {e}")))??;

    let k = factors.factors;
    let (files, generation) = io::write_model_factors(
        lake,
        night,
        data.users.ids(),
        &factors.users,
        data.items.ids(),
        &factors.items,
        k,
    )
    .await?;
    let info = ModelInfo {
        night,
        created_at: chrono::Utc::now(),
        algorithm: algorithm.into(),
        params: serde_json::to_value(config)
            .map_err(|e| Error::Internal(format!("model params: {e}")))?,
        users: data.users.len() as u64,
        items: data.items.len() as u64,
        interactions: data.nnz() as u64,
        factors: k,
        loss: report.loss,
        train_seconds: report.seconds,
        export_manifest: layout::training_export_manifest(night).to_string(),
        table_versions: export.table_versions.clone(),
        files,
    };
    elastirec_core::failpoint::hit("train.after-factors");
    lake.put_json(&layout::model_info(night), &info).await?;
    generation.finish(lake, &info.files).await?;
    Ok(info)
}

/// The `recommend` step: top-K per user from the night's model, popularity for users the model
/// does not cover; writes `recommendations/D/`. Publishing (moving `_LATEST`) is the
/// orchestrator's publish step, behind its gate.
pub async fn recommend_night(
    lake: &Lake,
    night: Night,
    k: usize,
) -> Result<RecommendationsManifest> {
    recommend_night_with(lake, night, k, None).await
}

/// The `recommend` step with offer rules (`[rules]`, see [`crate::rules`]): the model's lists
/// filtered, promoted and filled from popularity; the manifest records the rules applied.
pub async fn recommend_night_with(
    lake: &Lake,
    night: Night,
    k: usize,
    rules: Option<&RulesConfig>,
) -> Result<RecommendationsManifest> {
    let export = read_export_manifest(lake, night).await?;
    let model = Model::load(lake, night).await?;
    let table_versions = model.info.table_versions.clone();
    let offer = match rules {
        Some(config) => OfferRules::load(lake, &export, night, config).await?,
        None => None,
    };
    let applied = offer
        .as_ref()
        .map(|o| serde_json::to_value(o.config()))
        .transpose()
        .map_err(|e| Error::Internal(format!("rules: {e}")))?;
    let rows = model_lists(lake, &export, model, k, offer).await?;

    let mut users_by_source: BTreeMap<String, u64> = BTreeMap::new();
    let mut rows_by_source: BTreeMap<String, u64> = BTreeMap::new();
    for list in rows.values() {
        // A user counts under the model when it placed any item of their list.
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
    let flat: Vec<RecommendationRow> = rows.values().flatten().cloned().collect();
    // The night's output may be live (`_LATEST` names it): the new files go beside the old ones
    // and the manifest swaps them (see `elastirec_core::generation`).
    let generation = elastirec_lake::artefacts::begin_recommendations(lake, night).await?;
    // The files speak the producers' ids; the engines worked on internal ids.
    let names = read_export_ids(lake, &export).await?;
    let batch = io::recommendations_batch(&flat, &names)?;
    let file = io::write_parquet(
        lake,
        &generation.path(&layout::recommendations_part(night, 0)),
        manifest::recommendations_schema(),
        &[batch],
    )
    .await?;
    let manifest = RecommendationsManifest {
        night,
        created_at: chrono::Utc::now(),
        rows: file.rows,
        files: vec![file],
        schema: ColumnSpec::of_schema(&manifest::recommendations_schema()),
        users: rows.len() as u64,
        k,
        users_by_source,
        model: layout::model_info(night).to_string(),
        table_versions,
        rules: applied,
        rows_by_source,
    };
    elastirec_core::failpoint::hit("recommend.after-parts");
    lake.put_json(&layout::recommendations_manifest(night), &manifest)
        .await?;
    generation.finish(lake, &manifest.files).await?;
    Ok(manifest)
}

/// Every user's list of night `night`, as the recommend step makes it (without writing it):
/// the model's top-K of unseen items, popularity for users seen up to the night whom the model
/// does not cover, and `rules` applied when given. Evaluation uses it to score the model's own
/// lists beside stored lists that had rules applied.
pub async fn night_lists(
    lake: &Lake,
    night: Night,
    export: &ExportManifest,
    k: usize,
    rules: Option<OfferRules>,
) -> Result<BTreeMap<i64, Vec<RecommendationRow>>> {
    let model = Model::load(lake, night).await?;
    model_lists(lake, export, model, k, rules).await
}

/// [`night_lists`] with the night's model already loaded.
async fn model_lists(
    lake: &Lake,
    export: &ExportManifest,
    model: Model,
    k: usize,
    rules: Option<OfferRules>,
) -> Result<BTreeMap<i64, Vec<RecommendationRow>>> {
    let seen = SeenPairs::read(lake, export).await?;
    let popularity = Popularity::from_pairs(seen.training_items());

    tokio::task::spawn_blocking(move || {
        // Items no list may hold (excluded by the rules, unavailable) are not scored at all:
        // an `exclude_where` that leaves out thousands of items must not make every user's
        // top-n thousands deep.
        let allowed = model.items_without(&rules.as_ref().map(|r| r.blocked()).unwrap_or_default());
        let triples: Vec<(u32, u32, f32)> = seen
            .iter()
            .filter_map(|(u, i)| Some((model.users.index(u)?, allowed.index.index(i)?, 1.0)))
            .collect();
        let seen_csr = Csr::from_triples(model.users.len(), &triples);
        drop(triples);
        // With rules, score more candidates than K so that K usually survive them.
        let n = rules.as_ref().map_or(k, |r| {
            r.candidates_among_allowed(k)
                .min(allowed.index.len().max(k))
        });
        let lists = model.recommend_all_over(&allowed, &seen_csr, n);
        let user_ids = model.users.ids();
        let item_ids = allowed.index.ids();
        let seen_by_user = seen.by_user();
        let no_history = IdSet::default();
        // Users' lists are independent: the rules run on every core.
        let placed_lists: Vec<(i64, Vec<RecommendationRow>)> = lists
            .into_par_iter()
            .enumerate()
            .map(|(u, list)| {
                let user_id = user_ids[u];
                let placed: Vec<(i64, f32, &'static str)> = match &rules {
                    None => list
                        .into_iter()
                        .map(|(item, score)| (item_ids[item as usize], score, sources::ALS))
                        .collect(),
                    Some(r) => {
                        let candidates: Vec<(i64, f32)> = list
                            .into_iter()
                            .map(|(item, score)| (item_ids[item as usize], score))
                            .collect();
                        let score = |item: i64| model.score(user_id, item);
                        let history = seen_by_user.get(&user_id).unwrap_or(&no_history);
                        r.apply(
                            k,
                            &candidates,
                            &score,
                            &|i| history.contains(&i),
                            &popularity,
                        )
                        .into_iter()
                        .map(|p| (p.item_id, p.score, p.source))
                        .collect()
                    }
                };
                (user_id, ranked_rows(user_id, placed))
            })
            .collect();
        let mut rows: BTreeMap<i64, Vec<RecommendationRow>> = placed_lists.into_iter().collect();
        // Users seen up to the night whom the model does not cover get the popular items.
        for (user_id, items) in &seen_by_user {
            if rows.contains_key(user_id) {
                continue;
            }
            let placed: Vec<(i64, f32, &'static str)> = match &rules {
                None => crate::model::popular(k, items, &popularity)
                    .into_iter()
                    .map(|s| (s.item_id, s.score, s.source))
                    .collect(),
                Some(r) => r
                    .apply(k, &[], &|_| None, &|i| items.contains(&i), &popularity)
                    .into_iter()
                    .map(|p| (p.item_id, p.score, p.source))
                    .collect(),
            };
            rows.insert(*user_id, ranked_rows(*user_id, placed));
        }
        rows
    })
    .await
    .map_err(|e| Error::Internal(format!("recommend task failed: {e}")))
}

fn ranked_rows(user_id: i64, placed: Vec<(i64, f32, &'static str)>) -> Vec<RecommendationRow> {
    placed
        .into_iter()
        .enumerate()
        .map(|(r, (item_id, score, source))| RecommendationRow {
            user_id,
            item_id,
            rank: r as i32 + 1,
            score,
            source,
        })
        .collect()
}

/// Candidates of an external engine's job, by user: (rank, item, score, scored by the model).
pub type CandidateLists = HashMap<i64, Vec<(i32, i64, f32, bool)>>;

/// Every user's list after the offer rules, from candidates another engine made (the Spark
/// job): its model candidates (best first) for users the night's published model covers,
/// nothing but the rules' popularity fill for the others, exactly as [`recommend_night_with`]
/// makes them for the in-process engine.
pub async fn rank_candidates(
    lake: &Lake,
    night: Night,
    export: &ExportManifest,
    staged: CandidateLists,
    k: usize,
    rules: OfferRules,
) -> Result<BTreeMap<i64, Vec<RecommendationRow>>> {
    // The model published just before: it scores promoted items for `promote` rules.
    let model = Model::load(lake, night).await?;
    let seen = SeenPairs::read(lake, export).await?;
    tokio::task::spawn_blocking(move || {
        let popularity = Popularity::from_pairs(seen.training_items());
        let by_user = seen.by_user();
        let no_history = IdSet::default();
        let everyone: BTreeSet<i64> = by_user.keys().chain(staged.keys()).copied().collect();
        let mut out: BTreeMap<i64, Vec<RecommendationRow>> = BTreeMap::new();
        for user_id in everyone {
            let history = by_user.get(&user_id).unwrap_or(&no_history);
            let is_seen = |i: i64| history.contains(&i);
            let placed = if model.users.index(user_id).is_some() {
                let mut rows = staged.get(&user_id).cloned().unwrap_or_default();
                rows.sort_by_key(|r| r.0);
                let candidates: Vec<(i64, f32)> = rows
                    .into_iter()
                    .filter(|r| r.3)
                    .map(|r| (r.1, r.2))
                    .collect();
                let score = |item: i64| model.score(user_id, item);
                rules.apply(k, &candidates, &score, &is_seen, &popularity)
            } else {
                rules.apply(k, &[], &|_| None, &is_seen, &popularity)
            };
            let placed = placed
                .into_iter()
                .map(|p| (p.item_id, p.score, p.source))
                .collect();
            out.insert(user_id, ranked_rows(user_id, placed));
        }
        out
    })
    .await
    .map_err(|e| {
        Error::Internal(format!(
            "applying the offer rules to candidates failed: {e}"
        ))
    })
}
