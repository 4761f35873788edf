//! Fold-in against a night's model: lists for users the night never saw, and for what a known
//! user did since, without retraining.
//!
//! ```text
//!  (item id, value) pairs ──▶ item indices of the model (unknown ids counted, left out)
//!                                  │
//!                                  ▼
//!        elastirec_core::foldin::FoldIn::solve: one k×k Cholesky solve against the
//!        night's item factors, training's confidence and λ, + prior β towards the mean user
//!                                  │
//!                                  ▼
//!        scores of every item, given and excluded items left out, top-n (source `fold-in`)
//! ```
//!
//! The math (and why it lives in `elastirec-core`: serving folds users in too and must not link
//! the trainer) is in [`elastirec_core::foldin`]. With `prior = 0` it is exactly the trainer's
//! user half-step (`crate::implicit`, eq. 4 of Hu et al.), so folding in a user's whole training
//! history gives back the night's factors of that user; the `foldin` integration tests check it
//! on MovieLens 100K, and against the dense reference ([`crate::reference::fold_in`]).
//!
//! A request whose items the model knows none of gets the popularity list (source `popular`),
//! as a user the model does not cover does in the nightly lists.

use std::collections::HashSet;

use elastirec_core::config::{FeedbackKind, ModelConfig};
use elastirec_core::foldin::{FoldIn, FoldInParams, dot, mean_rows};
use elastirec_core::manifest::sources;

use crate::data::IdMap;
use crate::model::{Model, Scored};
use crate::popularity::Popularity;
use crate::rules::OfferRules;
use crate::{Error, Result};

pub use elastirec_core::foldin::DEFAULT_PRIOR;

/// A list folded in for one user.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedList {
    /// Best first; `fold-in` items when the model knew any of the given items, else `popular`.
    pub items: Vec<Scored>,
    /// Given items the model has factors for (distinct).
    pub known: usize,
    /// Given items the model does not know (distinct): left out of the solve.
    pub unknown: usize,
}

/// A night's model, ready to fold users in.
#[derive(Debug, Clone)]
pub struct ModelFoldIn {
    items: IdMap,
    fold: FoldIn,
}

impl ModelFoldIn {
    /// Fold-ins against `model`, with the confidence and regularization it was trained with
    /// (`model.json`'s params) and prior strength `prior`.
    pub fn new(model: &Model, prior: f32) -> Result<ModelFoldIn> {
        let params = FoldInParams::from_recorded(&model.info.params, prior).map_err(|e| {
            Error::BadInput {
                path: elastirec_core::layout::model_info(model.info.night).to_string(),
                reason: e.to_string(),
            }
        })?;
        ModelFoldIn::with_params(model, params)
    }

    /// Fold-ins against `model` trained with `config`.
    pub fn with_config(model: &Model, config: &ModelConfig, prior: f32) -> Result<ModelFoldIn> {
        if config.feedback != FeedbackKind::Implicit {
            return Err(Error::Internal(format!(
                "night {}'s model is explicit-feedback (ratings); fold-in solves implicit \
                 feedback only: train with [model] feedback = \"implicit\"",
                model.info.night
            )));
        }
        ModelFoldIn::with_params(model, FoldInParams::of_model(config, prior))
    }

    fn with_params(model: &Model, params: FoldInParams) -> Result<ModelFoldIn> {
        let k = model.factors;
        let mean = mean_rows(&model.user_factors, k);
        let fold = FoldIn::new(model.item_factors.clone(), k, params, Some(&mean))
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(ModelFoldIn {
            items: model.items.clone(),
            fold,
        })
    }

    /// The underlying solver (item indices are the model's).
    pub fn solver(&self) -> &FoldIn {
        &self.fold
    }

    /// The model's item ids, by index.
    pub fn item_ids(&self) -> &IdMap {
        &self.items
    }

    /// The user's factors from `(item id, value)` pairs, with the number of distinct given
    /// items the model knows and does not know.
    pub fn user_factors(&self, history: &[(i64, f32)]) -> Result<(Vec<f32>, usize, usize)> {
        let mut unknown: Vec<i64> = Vec::new();
        let observed: Vec<(u32, f32)> = history
            .iter()
            .filter_map(|&(id, v)| match self.items.index(id) {
                Some(i) => Some((i, v)),
                None => {
                    unknown.push(id);
                    None
                }
            })
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        let known: HashSet<u32> = observed.iter().map(|p| p.0).collect();
        let x = self
            .fold
            .solve(&observed)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok((x, known.len(), unknown.len()))
    }

    /// The best `n` items for a user who did `history` (item id, value): folded in when the
    /// model knows any of the items, else the popularity list. Given items and `exclude` are
    /// left out. No offer rules: see [`ModelFoldIn::recommend_with_rules`].
    pub fn recommend(
        &self,
        history: &[(i64, f32)],
        n: usize,
        exclude: &HashSet<i64>,
        popularity: &Popularity,
    ) -> Result<FoldedList> {
        let rules = OfferRules::inactive();
        let mut skip = exclude.clone();
        skip.extend(history.iter().map(|p| p.0));
        self.recommend_with_rules(history, n, &skip, popularity, &rules)
    }

    /// [`ModelFoldIn::recommend`] under the night's `[rules]`, as the recommend step applies
    /// them: promotions pinned or boosted, excluded and unavailable items left out, genre caps,
    /// the fill from popularity under the same rules. Items the model placed say `fold-in`.
    /// Only `exclude` is left out: the caller adds the history items the user has seen (a
    /// viewed item, `[events.types.view] seen = false`, may be offered).
    pub fn recommend_with_rules(
        &self,
        history: &[(i64, f32)],
        n: usize,
        exclude: &HashSet<i64>,
        popularity: &Popularity,
        rules: &OfferRules,
    ) -> Result<FoldedList> {
        let (x, known, unknown) = self.user_factors(history)?;
        let seen = |item: i64| exclude.contains(&item);
        let candidates: Vec<(i64, f32)> = if known == 0 {
            Vec::new()
        } else {
            let skip: Vec<u32> = exclude
                .iter()
                .filter_map(|&id| self.items.index(id))
                .collect();
            self.fold
                .top(&x, rules.candidates(n), &skip)
                .into_iter()
                .map(|(i, score)| (self.items.id(i), score))
                .collect()
        };
        let model_score = |item: i64| {
            if known == 0 {
                return None;
            }
            self.items.index(item).map(|i| dot(&x, self.fold.item(i)))
        };
        let items = rules
            .apply(n, &candidates, &model_score, &seen, popularity)
            .into_iter()
            .map(|p| Scored {
                item_id: p.item_id,
                score: p.score,
                source: if p.source == sources::ALS {
                    sources::FOLD_IN
                } else {
                    p.source
                },
            })
            .collect();
        Ok(FoldedList {
            items,
            known,
            unknown,
        })
    }
}

/// One line of a fold-in file (`recommend --fold-in FILE.jsonl`): a user (known to the night or
/// not) and what they did, as `POST /v1/recommendations` takes it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoldInLine {
    pub user_id: String,
    #[serde(default)]
    pub items: Vec<FoldInItem>,
}

/// One interaction of a [`FoldInLine`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoldInItem {
    pub item_id: String,
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub value: Option<f32>,
}

/// Reads a fold-in file: one JSON object per line (blank lines skipped); an error names the
/// line.
pub fn parse_fold_in_lines(path: &str, text: &str) -> Result<Vec<FoldInLine>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            let line: FoldInLine = serde_json::from_str(l).map_err(|e| Error::BadInput {
                path: format!("{path}:{}", n + 1),
                reason: format!(
                    "{e}; a line is {{\"user_id\": \"…\", \"items\": [{{\"item_id\": \"…\", \
                     \"event_type\": \"…\", \"value\": 1}}]}}"
                ),
            })?;
            let bad = |reason: String| Error::BadInput {
                path: format!("{path}:{}", n + 1),
                reason,
            };
            elastirec_core::ids::check_external(&line.user_id)
                .map_err(|why| bad(format!("user_id is not an id: {why}")))?;
            for item in &line.items {
                elastirec_core::ids::check_external(&item.item_id)
                    .map_err(|why| bad(format!("item_id is not an id: {why}")))?;
                if item.value.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                    return Err(bad(format!(
                        "item {}: value must be a finite number >= 0",
                        item.item_id
                    )));
                }
            }
            Ok(line)
        })
        .collect()
}

/// A list written for one line of a fold-in file, with the producers' ids.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FoldInOutput {
    pub user_id: String,
    pub items: Vec<FoldInOutputItem>,
    /// `fold-in`, or `popular` when nothing given or had was known to the model.
    pub source: &'static str,
    pub items_given: usize,
    /// Given items the night does not know: ignored.
    pub items_unknown: usize,
}

/// One item of a [`FoldInOutput`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FoldInOutputItem {
    pub item_id: String,
    pub rank: usize,
    pub score: f32,
    pub source: &'static str,
}

/// Lists for the users of a fold-in file against night `night`'s model, with the code
/// `POST /v1/recommendations` uses: each user's window history (a user the night knows) merged
/// with the given items as the export aggregates a pair, folded in with [`DEFAULT_PRIOR`]; the
/// user's history and the given items left out, under `rules` as the recommend step applies
/// them.
pub async fn fold_in_night(
    lake: &elastirec_core::Lake,
    night: elastirec_core::Night,
    lines: Vec<FoldInLine>,
    k: usize,
    rules: &elastirec_core::config::RulesConfig,
) -> Result<Vec<FoldInOutput>> {
    use elastirec_core::foldin::EventValues;
    let export = elastirec_lake::read_export_manifest(lake, night).await?;
    let model = Model::load(lake, night).await?;
    let names = elastirec_lake::read_export_ids(lake, &export).await?;
    let window = elastirec_lake::io::read_pairs(lake, &export.files, true).await?;
    let seen = elastirec_lake::SeenPairs::read(lake, &export).await?;
    let events = EventValues::from_recorded(&export.params);
    let rules = OfferRules::load(lake, &export, night, rules)
        .await?
        .unwrap_or_else(OfferRules::inactive);
    tokio::task::spawn_blocking(move || {
        let fold = ModelFoldIn::new(&model, DEFAULT_PRIOR)?;
        let popularity = Popularity::from_pairs(seen.training_items());
        let asked: HashSet<i64> = lines
            .iter()
            .filter_map(|l| names.users.internal(&l.user_id))
            .collect();
        let mut had: std::collections::HashMap<i64, Vec<(i64, f32)>> = Default::default();
        for ((&u, &i), &v) in window
            .user_ids
            .iter()
            .zip(&window.item_ids)
            .zip(&window.values)
        {
            if asked.contains(&u) {
                had.entry(u).or_default().push((i, v));
            }
        }
        let mut by_user = seen.by_user();
        by_user.retain(|u, _| asked.contains(u));
        let none = elastirec_lake::IdSet::default();
        lines
            .into_iter()
            .map(|line| {
                let user = names.users.internal(&line.user_id);
                let mut unknown = 0;
                let given: Vec<(i64, f32)> = line
                    .items
                    .iter()
                    .filter_map(|it| {
                        let id = names.items.internal(&it.item_id);
                        if id.is_none_or(|i| model.items.index(i).is_none()) {
                            unknown += 1;
                        }
                        Some((id?, events.value(it.event_type.as_deref(), it.value)))
                    })
                    .collect();
                let window = user
                    .and_then(|u| had.get(&u))
                    .map_or(&[][..], Vec::as_slice);
                let merged = events.merge(window, &given);
                // What the user has seen (the export's seen pairs, which leave out what may be
                // offered again) and the given items whose event type makes them seen.
                let mut exclude: HashSet<i64> = user
                    .and_then(|u| by_user.get(&u))
                    .unwrap_or(&none)
                    .iter()
                    .copied()
                    .collect();
                exclude.extend(line.items.iter().filter_map(|it| {
                    let id = names.items.internal(&it.item_id)?;
                    events.makes_seen(it.event_type.as_deref()).then_some(id)
                }));
                let list = fold.recommend_with_rules(&merged, k, &exclude, &popularity, &rules)?;
                let source = list.items.first().map_or(sources::POPULAR, |s| s.source);
                Ok(FoldInOutput {
                    user_id: line.user_id,
                    items: list
                        .items
                        .iter()
                        .enumerate()
                        .map(|(r, s)| FoldInOutputItem {
                            item_id: names.items.external(s.item_id).into_owned(),
                            rank: r + 1,
                            score: s.score,
                            source: s.source,
                        })
                        .collect(),
                    source,
                    items_given: line.items.len(),
                    items_unknown: unknown,
                })
            })
            .collect()
    })
    .await
    .map_err(|e| Error::Internal(format!("fold-in task failed: {e}")))?
}
