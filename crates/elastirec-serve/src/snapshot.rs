//! One published night, loaded whole into memory: lists, history, titles, item factors and the
//! id dictionary.
//!
//! Built from lake files only, in this order: `recommendations/_LATEST` names night D; its
//! recommendations manifest lists the ranked lists; D's training export gives the id dictionary
//! (`ids-*`: the external names of string ids, absent from exports with numeric ids only), each
//! user's history (`part-*`: pairs of the training window with value and event count; `seen-*`:
//! older pairs) and the item titles (`items-*`, absent from exports older than it); D's item
//! factors give the cosine similarities behind "similar items" and "because".
//!
//! **Ids.** Everything in a snapshot is keyed by internal ids (`i64`, as in the export and the
//! model); the lists, whose files hold external ids, are turned into internal ids through the
//! dictionary as they are read. [`Snapshot::ids`] turns ids back and forth at the API's edge,
//! where clients send and see external ids only (strings, such as `A3CIUOJXQ5VDQ2` or `42`).
//!
//! **`because`** of a recommended item: the (up to) [`BECAUSE`] items of the user's history
//! (both `part-*` and `seen-*` pairs, items the model has factors for) whose factor vectors have
//! the highest cosine similarity with the recommended item's, most similar first, ties by the
//! lower internal item id. It is computed once at load for every stored model list, and is empty
//! for popularity lists. **Similar items**: cosine similarity of item factor vectors, computed
//! per request over the normalised factors kept in memory.
//!
//! A snapshot never changes after it is built; serving swaps a new one in whole.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, Utc};
use object_store::path::Path;
use rayon::prelude::*;
use serde::Serialize;

use elastirec_core::config::RulesConfig;
use elastirec_core::foldin::{DEFAULT_PRIOR, EventValues, FoldIn, FoldInParams, mean_rows};
use elastirec_core::ids::IdDictionary;
use elastirec_core::manifest::{FileEntry, LatestPointer, ModelInfo, columns, sources};
use elastirec_core::{Lake, Night, layout};
use elastirec_lake::io;
use elastirec_lake::popularity::Popularity;
use elastirec_lake::rules::OfferRules;
use elastirec_lake::rules::read_item_values;
use elastirec_lake::{read_export_ids, read_export_manifest, read_recommendations_manifest};

use crate::{Error, Result};

/// History items named in `because`, per recommended item.
pub const BECAUSE: usize = 3;
/// The most similar items one request may ask for.
pub const MAX_SIMILAR: usize = 100;
/// The most history entries one request may ask for.
pub const MAX_HISTORY: usize = 1000;
/// The most items one fold-in request may give.
pub const MAX_FOLD_IN_ITEMS: usize = 1000;
/// The longest fold-in list one request may ask for.
pub const MAX_FOLD_IN_K: usize = 100;

/// Title and genres of an item.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ItemMeta {
    pub title: Option<String>,
    pub genres: Option<String>,
    /// Attributes (catalog feeds, `[items] from_events`), latest values as their types say:
    /// numbers, booleans and lists as JSON ones, the rest (timestamps too) as strings.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
}

/// One recommended item of a stored list.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub item_id: i64,
    pub score: f32,
    pub rank: u32,
    pub because: Vec<i64>,
    /// What placed it: `als`, `popular` or `promoted`.
    pub source: &'static str,
}

/// A user's stored list and where it came from (`als` or `popular`).
#[derive(Debug, Clone, PartialEq)]
pub struct UserList {
    pub source: &'static str,
    pub items: Vec<Rec>,
}

/// One item of a user's history up to the night.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub item_id: i64,
    /// The pair's training value (window pairs only).
    pub value: Option<f32>,
    /// The pair's events in the window (window pairs only).
    pub events: Option<i64>,
    /// Whether the pair is older than the training window (or was filtered out of it).
    pub before_window: bool,
    /// Whether the item may be offered to the user again: its event types do not make it seen
    /// (views), or its `repeat_after_days` have passed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub offered_again: bool,
}

/// Item factors normalised to unit length, row-major.
#[derive(Debug, Clone, Default)]
struct UnitFactors {
    ids: Vec<i64>,
    index: HashMap<i64, u32>,
    rows: Vec<f32>,
    dim: usize,
}

impl UnitFactors {
    fn new(ids: Vec<i64>, mut rows: Vec<f32>, dim: usize) -> Result<Self> {
        if dim == 0 || rows.len() != ids.len() * dim {
            if ids.is_empty() {
                return Ok(UnitFactors::default());
            }
            return Err(Error::Internal(format!(
                "item factors: {} values for {} items of {dim} factors",
                rows.len(),
                ids.len()
            )));
        }
        for row in rows.chunks_mut(dim) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            // A zero vector stays zero: its cosine with anything is 0.
            if norm > 0.0 && norm.is_finite() {
                row.iter_mut().for_each(|x| *x /= norm);
            }
        }
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32))
            .collect();
        Ok(UnitFactors {
            ids,
            index,
            rows,
            dim,
        })
    }

    fn row(&self, id: i64) -> Option<&[f32]> {
        let i = *self.index.get(&id)? as usize;
        Some(&self.rows[i * self.dim..(i + 1) * self.dim])
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The `n` best (item, similarity) pairs, best first, ties by the lower item id.
fn best(mut scored: Vec<(i64, f32)>, n: usize) -> Vec<(i64, f32)> {
    let order = |a: &(i64, f32), b: &(i64, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if scored.len() > n && n > 0 {
        scored.select_nth_unstable_by(n - 1, order);
        scored.truncate(n);
    }
    scored.sort_by(order);
    scored.truncate(n);
    scored
}

/// A published night in memory.
#[derive(Debug)]
pub struct Snapshot {
    /// The pointer this snapshot was loaded from.
    pub pointer: LatestPointer,
    /// When the lists were written (the recommendations manifest's `created_at`).
    pub generated_at: DateTime<Utc>,
    /// When this process finished loading the snapshot.
    pub loaded_at: DateTime<Utc>,
    /// Items per stored list: the largest `k` a request may ask for.
    pub k: usize,
    lists: HashMap<i64, UserList>,
    /// The fallback for users without a stored list: the window's most popular items under
    /// the night's `[rules]`, up to `k`.
    popular: Vec<(i64, u64)>,
    /// Items by users in the training window, most popular first, every one (the fill of
    /// fold-in lists).
    ranking: Popularity,
    /// The `[rules]` the night's lists were made with (its recommendations manifest), applied
    /// to the lists folded in for requests; inactive when the night had none.
    rules: OfferRules,
    items: HashMap<i64, ItemMeta>,
    history: HashMap<i64, Vec<HistoryEntry>>,
    factors: UnitFactors,
    /// External names of the night's string ids (internal ids ≥ `DICTIONARY_BASE`).
    ids: IdDictionary,
    /// Fold-ins against the night's item factors (rows in the order of `factors.ids`), or why
    /// this night cannot fold in.
    fold: std::result::Result<FoldIn, String>,
    /// How a request's events become values, as the night's export made them.
    events: EventValues,
}

/// One item of a list as served, with internal ids: (item, score, rank, `because` items).
pub type ServedItem<'a> = (i64, f32, u32, &'a [i64]);

/// One item of a list made for a request, with internal ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub item_id: i64,
    pub score: f32,
    pub rank: u32,
    /// `als`, `popular` or `promoted` (a stored list), `fold-in` (solved for this request) or
    /// `popular` (nothing to fold in).
    pub source: &'static str,
    pub because: Vec<i64>,
}

/// A list made for a request (`POST /v1/recommendations`).
#[derive(Debug, Clone, PartialEq)]
pub struct Made {
    /// `fold-in`, or the stored list's source, or `popular` when nothing was known.
    pub source: &'static str,
    /// The popularity list stands in: the user has no stored list and no given item has
    /// factors.
    pub fallback: bool,
    pub items: Vec<Placed>,
    /// Distinct given items the model has factors for (what the fold-in used beside the
    /// user's window history).
    pub items_in_model: usize,
}

/// The recommendations of one user, as served.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendations<'a> {
    pub user_id: i64,
    /// `als` or `popular` (stored popularity lists and the fallback).
    pub source: &'static str,
    /// The user has no stored list: the items are the night's most popular.
    pub fallback: bool,
    pub items: Vec<ServedItem<'a>>,
}

impl Snapshot {
    /// The night these lists belong to.
    pub fn night(&self) -> Night {
        self.pointer.night
    }

    /// Loads the night `recommendations/_LATEST` names; `None` when nothing is published yet.
    pub async fn load_latest(lake: &Lake) -> Result<Option<Snapshot>> {
        match elastirec_lake::read_latest(lake).await? {
            Some(pointer) => Ok(Some(Snapshot::load(lake, pointer).await?)),
            None => Ok(None),
        }
    }

    /// Loads night D of a lake, whether or not `_LATEST` names it (for `show --date`).
    pub async fn load_night(lake: &Lake, night: Night) -> Result<Snapshot> {
        let pointer = LatestPointer {
            night,
            manifest: layout::recommendations_manifest(night).to_string(),
            published_at: Utc::now(),
            lease_epoch: None,
        };
        Snapshot::load(lake, pointer).await
    }

    /// Loads the night a pointer names.
    pub async fn load(lake: &Lake, pointer: LatestPointer) -> Result<Snapshot> {
        let night = pointer.night;
        let manifest = read_recommendations_manifest(lake, night).await?;
        let export = read_export_manifest(lake, night).await?;
        let ids = read_export_ids(lake, &export).await?;
        let ranked = io::read_recommendations_internal(lake, &manifest.files, &ids).await?;
        let mut window = read_history(lake, &export.files, true).await?;
        let again = elastirec_lake::read_again(lake, &export).await?;
        if !again.is_empty() {
            for (user, entry) in &mut window {
                entry.offered_again = again.contains(&(*user, entry.item_id));
            }
        }
        let older = read_history(lake, &export.seen_files, false).await?;
        let mut items = read_items(lake, &export.item_files).await?;
        // Attributes observed on events (none in exports made without `[items] from_events`).
        let attributes = read_item_values(lake, &export.item_attribute_files).await?;
        for (item, name, value) in attributes {
            let value = attribute_json(export.item_attribute_types.get(&name).copied(), value);
            items
                .entry(item)
                .or_default()
                .attributes
                .insert(name, value);
        }
        // The item factors model.json names (a night trained again writes them under new
        // names); the plain name when there is no model.json.
        let info = lake
            .get_json::<ModelInfo>(&layout::model_info(night), "model")
            .await?;
        let factors_path = match &info {
            Some(info) => io::model_factor_file(info, "item_factors"),
            None => layout::model_item_factors(night),
        };
        let (factor_ids, rows, dim) =
            io::read_factors(lake, &factors_path, columns::ITEM_ID).await?;
        // Fold-in needs the raw item factors, the model's settings and the mean user (the
        // prior's centre): a night without model.json, or with an explicit model, serves its
        // lists but cannot fold in.
        let fold_params = match &info {
            None => Err(format!(
                "night {night} has no {}: fold-in needs the model's settings",
                layout::model_info(night)
            )),
            Some(info) => FoldInParams::from_recorded(&info.params, DEFAULT_PRIOR)
                .map_err(|e| format!("night {night}: {e}")),
        };
        // The mean user is read once here; a night whose user factors cannot be read still
        // serves its lists.
        let mean_user = match (&info, &fold_params) {
            (Some(info), Ok(_)) => {
                let path = io::model_factor_file(info, "user_factors");
                match io::read_factors(lake, &path, columns::USER_ID).await {
                    Ok((_, users, ku)) => {
                        Ok(mean_rows(&users, if users.is_empty() { dim } else { ku }))
                    }
                    Err(e) => Err(format!("night {night}: the user factors: {e}")),
                }
            }
            _ => Ok(Vec::new()),
        };
        let fold_params = fold_params.and_then(|p| mean_user.map(|m| (p, m)));
        let events = EventValues::from_recorded(&export.params);
        // The rules the night's lists obey, so that a list folded in for a request obeys them
        // too (same availability day, genres and excluded/promoted items).
        // A night whose recorded rules this elastirec cannot read (written by a newer one)
        // still serves its stored lists; only fold-in, which would not obey them, is refused.
        let (rules, unreadable) = match &manifest.rules {
            None => (None, None),
            Some(recorded) => match serde_json::from_value::<RulesConfig>(recorded.clone()) {
                Ok(config) => (OfferRules::load(lake, &export, night, &config).await?, None),
                Err(e) => (
                    None,
                    Some(format!(
                        "{}: the recorded [rules] do not read ({e}), and a folded-in list must \
                         obey them: serve this night with the elastirec that made it",
                        layout::recommendations_manifest(night)
                    )),
                ),
            },
        };
        let fold_params = match unreadable {
            Some(why) => Err(why),
            None => fold_params,
        };
        let rules = rules.unwrap_or_else(OfferRules::inactive);
        let generated_at = manifest.created_at;
        let k = manifest.k;
        tokio::task::spawn_blocking(move || {
            let fold = fold_params.and_then(|(params, mean)| {
                FoldIn::new(rows.clone(), dim, params, Some(&mean))
                    .map_err(|e| format!("night {night}: {e}"))
            });
            let factors = UnitFactors::new(factor_ids, rows, dim)?;
            Ok::<_, Error>(Snapshot::build(
                pointer,
                generated_at,
                k,
                ranked,
                window,
                older,
                items,
                factors,
                ids,
                fold,
                events,
                rules,
            ))
        })
        .await
        .map_err(|e| Error::Internal(format!("snapshot task failed: {e}")))?
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        pointer: LatestPointer,
        generated_at: DateTime<Utc>,
        k: usize,
        ranked: io::RankedLists,
        window: Vec<(i64, HistoryEntry)>,
        older: Vec<(i64, HistoryEntry)>,
        items: HashMap<i64, ItemMeta>,
        factors: UnitFactors,
        ids: IdDictionary,
        fold: std::result::Result<FoldIn, String>,
        events: EventValues,
        rules: OfferRules,
    ) -> Snapshot {
        let ranking = Popularity::from_pairs(window.iter().map(|(_, h)| h.item_id));
        let popular: Vec<(i64, u64)> = rules
            .apply(k, &[], &|_| None, &|_| false, &ranking)
            .into_iter()
            .map(|p| (p.item_id, ranking.count(p.item_id)))
            .collect();

        let mut history: HashMap<i64, Vec<HistoryEntry>> = HashMap::new();
        for (user, entry) in window.into_iter().chain(older) {
            history.entry(user).or_default().push(entry);
        }
        for entries in history.values_mut() {
            entries.sort_by(|a, b| {
                a.before_window
                    .cmp(&b.before_window)
                    .then(b.value.unwrap_or(0.0).total_cmp(&a.value.unwrap_or(0.0)))
                    .then(b.events.cmp(&a.events))
                    .then(a.item_id.cmp(&b.item_id))
            });
        }

        let lists: HashMap<i64, UserList> = ranked
            .into_par_iter()
            .map(|(user, rows)| {
                let source = match rows.first().map(|r| r.3.as_str()) {
                    Some(sources::POPULAR) => sources::POPULAR,
                    _ => sources::ALS,
                };
                let seen: Vec<(i64, &[f32])> = if source == sources::ALS {
                    history
                        .get(&user)
                        .map(|h| {
                            h.iter()
                                .filter_map(|e| Some((e.item_id, factors.row(e.item_id)?)))
                                .collect()
                        })
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                let items = rows
                    .into_iter()
                    .map(|(item_id, rank, score, row_source)| {
                        let because = match factors.row(item_id) {
                            Some(v) if !seen.is_empty() => {
                                let scored = seen.iter().map(|(h, hv)| (*h, dot(v, hv))).collect();
                                best(scored, BECAUSE).into_iter().map(|(h, _)| h).collect()
                            }
                            _ => Vec::new(),
                        };
                        Rec {
                            item_id,
                            score,
                            rank: rank.max(0) as u32,
                            because,
                            source: match row_source.as_str() {
                                sources::POPULAR => sources::POPULAR,
                                sources::PROMOTED => sources::PROMOTED,
                                sources::FOLD_IN => sources::FOLD_IN,
                                _ => sources::ALS,
                            },
                        }
                    })
                    .collect();
                (user, UserList { source, items })
            })
            .collect();

        Snapshot {
            pointer,
            generated_at,
            loaded_at: Utc::now(),
            k,
            lists,
            popular,
            items,
            history,
            factors,
            ids,
            fold,
            events,
            ranking,
            rules,
        }
    }

    /// The night's id dictionary: [`IdDictionary::users`] and [`IdDictionary::items`] turn the
    /// snapshot's internal ids into the external ids clients see, and back.
    pub fn ids(&self) -> &IdDictionary {
        &self.ids
    }

    /// Users with a stored list.
    pub fn users(&self) -> usize {
        self.lists.len()
    }

    /// Items with a title or factors.
    pub fn item_count(&self) -> usize {
        self.items.len().max(self.factors.ids.len())
    }

    /// Title and genres of an item (empty when the export had no item file).
    pub fn item_meta(&self, item_id: i64) -> Option<&ItemMeta> {
        self.items.get(&item_id)
    }

    /// Users who had the item in the training window.
    pub fn item_users(&self, item_id: i64) -> u64 {
        self.ranking.count(item_id)
    }

    /// Whether the model has factors for the item.
    pub fn item_in_model(&self, item_id: i64) -> bool {
        self.factors.index.contains_key(&item_id)
    }

    /// Whether the item is known at all (titled or in the model).
    pub fn item_known(&self, item_id: i64) -> bool {
        self.items.contains_key(&item_id) || self.item_in_model(item_id)
    }

    /// The first `k` items of a user's stored list; a user without one gets the most popular
    /// items of the window (`fallback`). `k` must be 1 to [`Snapshot::k`].
    pub fn recommendations(&self, user_id: i64, k: usize) -> Result<Recommendations<'_>> {
        self.check_k(k)?;
        Ok(match self.lists.get(&user_id) {
            Some(list) => Recommendations {
                user_id,
                source: list.source,
                fallback: false,
                items: list
                    .items
                    .iter()
                    .take(k)
                    .map(|r| (r.item_id, r.score, r.rank, r.because.as_slice()))
                    .collect(),
            },
            None => Recommendations {
                user_id,
                source: sources::POPULAR,
                fallback: true,
                items: self.fallback(k)?,
            },
        })
    }

    /// What a user without a stored list gets (also one whose external id the night's dictionary
    /// does not know): the first `k` of the window's most popular items, scored by their users,
    /// with no `because`. `k` must be 1 to [`Snapshot::k`].
    pub fn fallback(&self, k: usize) -> Result<Vec<ServedItem<'_>>> {
        self.check_k(k)?;
        Ok(self
            .popular
            .iter()
            .take(k)
            .enumerate()
            .map(|(r, &(item, users))| (item, users as f32, r as u32 + 1, &[][..]))
            .collect())
    }

    fn check_k(&self, k: usize) -> Result<()> {
        if k == 0 || k > self.k {
            return Err(Error::BadRequest(format!(
                "k = {k} is out of range: night {} stored {} items per user, ask for 1 to {}",
                self.night(),
                self.k,
                self.k
            )));
        }
        Ok(())
    }

    /// Whether this night can fold users in, and why not.
    pub fn fold_in_status(&self) -> std::result::Result<(), &str> {
        self.fold.as_ref().map(|_| ()).map_err(String::as_str)
    }

    /// How a request's events become values (the night's `[prepare]` weights and aggregate).
    pub fn event_values(&self) -> &EventValues {
        &self.events
    }

    /// The user's stored list with each item's source (`POST /v1/recommendations` with a
    /// `user_id` only); the popularity fallback for a user without one.
    pub fn stored(&self, user_id: Option<i64>, k: usize) -> Result<Made> {
        self.check_k(k)?;
        let list = user_id.and_then(|u| self.lists.get(&u));
        Ok(match list {
            Some(list) => Made {
                source: list.source,
                fallback: false,
                items: list
                    .items
                    .iter()
                    .take(k)
                    .map(|r| Placed {
                        item_id: r.item_id,
                        score: r.score,
                        rank: r.rank,
                        source: r.source,
                        because: r.because.clone(),
                    })
                    .collect(),
                items_in_model: 0,
            },
            None => Made {
                source: sources::POPULAR,
                fallback: true,
                items: self.popular_unseen(k, &|_| false),
                items_in_model: 0,
            },
        })
    }

    /// A list solved for a request: the user's window history (when `user_id` names a user
    /// with one) merged with `given` events ((item, value), internal ids, in time order) the
    /// way the export aggregates a pair, folded in against the night's item factors; what the
    /// user has seen (history pairs not `offered_again`, and `given_seen`: the given items
    /// whose event type makes them seen) is left out of the list. Given items without
    /// factors take no part; with none the model knows, and no history, the list is the most
    /// popular items not given (`popular`, `fallback`). `k` is 1 to [`MAX_FOLD_IN_K`].
    pub fn fold_in(
        &self,
        user_id: Option<i64>,
        given: &[(i64, f32)],
        given_seen: &[i64],
        k: usize,
    ) -> Result<Made> {
        if k == 0 || k > MAX_FOLD_IN_K {
            return Err(Error::BadRequest(format!(
                "k = {k} is out of range: ask for 1 to {MAX_FOLD_IN_K}"
            )));
        }
        let fold = self.fold.as_ref().map_err(|why| {
            Error::Unavailable(format!(
                "{why}; lists for known users stay available: POST with a user_id only, or GET \
                 /v1/users/{{id}}/recommendations"
            ))
        })?;
        let history = user_id.and_then(|u| self.history.get(&u));
        let window: Vec<(i64, f32)> = history
            .map(|h| {
                h.iter()
                    .filter_map(|e| Some((e.item_id, e.value?)))
                    .collect()
            })
            .unwrap_or_default();
        let mut skip: Vec<i64> = history
            .map(|h| {
                h.iter()
                    .filter(|e| !e.offered_again)
                    .map(|e| e.item_id)
                    .collect()
            })
            .unwrap_or_default();
        skip.extend_from_slice(given_seen);
        skip.sort_unstable();
        skip.dedup();
        let index = &self.factors.index;
        let mut in_model: Vec<u32> = given
            .iter()
            .filter_map(|g| index.get(&g.0).copied())
            .collect();
        in_model.sort_unstable();
        in_model.dedup();
        let observed: Vec<(u32, f32)> = self
            .events
            .merge(&window, given)
            .into_iter()
            .filter_map(|(item, v)| Some((*index.get(&item)?, v)))
            .collect();
        let seen = |i: i64| skip.binary_search(&i).is_ok();
        if observed.is_empty() {
            return Ok(Made {
                source: sources::POPULAR,
                fallback: true,
                items: self.popular_unseen(k, &seen),
                items_in_model: 0,
            });
        }
        let x = fold
            .solve(&observed)
            .map_err(|e| Error::BadRequest(format!("these items cannot be folded in: {e}")))?;
        let skip_rows: Vec<u32> = skip.iter().filter_map(|i| index.get(i).copied()).collect();
        let f = &self.factors;
        // The model's best candidates, enough of them that K usually remain after the night's
        // rules; the rules then pin or boost promotions, drop excluded and unavailable items,
        // cap genres and fill from popularity exactly as the recommend step does.
        let candidates: Vec<(i64, f32)> = fold
            .top(&x, self.rules.candidates(k), &skip_rows)
            .into_iter()
            .map(|(row, score)| (f.ids[row as usize], score))
            .collect();
        let model_score = |item: i64| index.get(&item).map(|&row| dot(&x, fold.item(row)));
        let unit = |row: u32| &f.rows[row as usize * f.dim..(row as usize + 1) * f.dim];
        let items = self
            .rules
            .apply(k, &candidates, &model_score, &seen, &self.ranking)
            .into_iter()
            .enumerate()
            .map(|(r, p)| {
                let source = if p.source == sources::ALS {
                    sources::FOLD_IN
                } else {
                    p.source
                };
                let because = match index.get(&p.item_id) {
                    Some(&row) if source != sources::POPULAR => {
                        let scored = observed
                            .iter()
                            .map(|&(h, _)| (f.ids[h as usize], dot(unit(row), unit(h))))
                            .collect();
                        best(scored, BECAUSE).into_iter().map(|(h, _)| h).collect()
                    }
                    _ => Vec::new(),
                };
                Placed {
                    item_id: p.item_id,
                    score: p.score,
                    rank: r as u32 + 1,
                    source,
                    because,
                }
            })
            .collect();
        Ok(Made {
            source: sources::FOLD_IN,
            fallback: false,
            items,
            items_in_model: in_model.len(),
        })
    }

    /// The `k` most popular items of the window that `seen` does not hold, under the night's
    /// rules (promotions pinned, excluded and unavailable items left out, genre caps).
    fn popular_unseen(&self, k: usize, seen: &dyn Fn(i64) -> bool) -> Vec<Placed> {
        self.rules
            .apply(k, &[], &|_| None, seen, &self.ranking)
            .into_iter()
            .enumerate()
            .map(|(r, p)| Placed {
                item_id: p.item_id,
                score: p.score,
                rank: r as u32 + 1,
                source: p.source,
                because: Vec::new(),
            })
            .collect()
    }

    /// The `k` items whose factors are most similar (cosine) to the item's, best first.
    pub fn similar(&self, item_id: i64, k: usize) -> Result<Vec<(i64, f32)>> {
        check_similar_k(k)?;
        let Some(v) = self.factors.row(item_id) else {
            let name = self.ids.items.external(item_id);
            return Err(if self.items.contains_key(&item_id) {
                Error::NotFound(format!(
                    "item {name} is not in night {}'s model (no interactions in the window)",
                    self.night()
                ))
            } else {
                Error::NotFound(format!("item {name} not found"))
            });
        };
        let f = &self.factors;
        let scored = f
            .ids
            .iter()
            .zip(f.rows.chunks(f.dim))
            .filter(|(id, _)| **id != item_id)
            .map(|(&id, row)| (id, dot(v, row)))
            .collect();
        Ok(best(scored, k))
    }

    /// The user's history up to the night: window pairs by value, then older pairs; `None` for a
    /// user with no history.
    pub fn history(&self, user_id: i64) -> Option<&[HistoryEntry]> {
        self.history.get(&user_id).map(Vec::as_slice)
    }
}

/// Whether `k` similar items may be asked for: 1 to [`MAX_SIMILAR`].
pub fn check_similar_k(k: usize) -> Result<()> {
    if k == 0 || k > MAX_SIMILAR {
        return Err(Error::BadRequest(format!(
            "k = {k} is out of range: ask for 1 to {MAX_SIMILAR} similar items"
        )));
    }
    Ok(())
}

fn bad_column(path: &str, name: &str, batch: &RecordBatch) -> Error {
    let found = batch
        .column_by_name(name)
        .map_or("missing".to_string(), |c| c.data_type().to_string());
    Error::Artefact(elastirec_lake::Error::BadInput {
        path: path.to_string(),
        reason: format!("column '{name}' is {found}"),
    })
}

/// History pairs of export files: with value and events (`part-*`) or without (`seen-*`).
async fn read_history(
    lake: &Lake,
    files: &[FileEntry],
    window: bool,
) -> Result<Vec<(i64, HistoryEntry)>> {
    let mut out = Vec::new();
    for f in files {
        for batch in io::read_parquet(lake, &Path::from(f.path.as_str())).await? {
            let ints = |name: &str| {
                batch
                    .column_by_name(name)
                    .and_then(|c| c.as_primitive_opt::<Int64Type>())
                    .ok_or_else(|| bad_column(&f.path, name, &batch))
            };
            let users = ints(columns::USER_ID)?;
            let items = ints(columns::ITEM_ID)?;
            let (values, events) = if window {
                let values = batch
                    .column_by_name(columns::VALUE)
                    .and_then(|c| c.as_primitive_opt::<Float32Type>())
                    .ok_or_else(|| bad_column(&f.path, columns::VALUE, &batch))?;
                (Some(values), Some(ints(columns::EVENTS)?))
            } else {
                (None, None)
            };
            for i in 0..batch.num_rows() {
                out.push((
                    users.value(i),
                    HistoryEntry {
                        item_id: items.value(i),
                        value: values.map(|v| v.value(i)),
                        events: events.map(|e| e.value(i)),
                        before_window: !window,
                        offered_again: false,
                    },
                ));
            }
        }
    }
    Ok(out)
}

/// Titles and genres from the export's `items-*` files.
async fn read_items(lake: &Lake, files: &[FileEntry]) -> Result<HashMap<i64, ItemMeta>> {
    let mut out = HashMap::new();
    for f in files {
        for batch in io::read_parquet(lake, &Path::from(f.path.as_str())).await? {
            let ids = batch
                .column_by_name(columns::ITEM_ID)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| bad_column(&f.path, columns::ITEM_ID, &batch))?;
            let text = |name: &str| {
                batch
                    .column_by_name(name)
                    .and_then(|c| c.as_string_opt::<i32>())
                    .ok_or_else(|| bad_column(&f.path, name, &batch))
            };
            let titles = text(columns::TITLE)?;
            let genres = text(columns::GENRES)?;
            for i in 0..batch.num_rows() {
                let get =
                    |a: &arrow_array::StringArray| a.is_valid(i).then(|| a.value(i).to_string());
                out.insert(
                    ids.value(i),
                    ItemMeta {
                        title: get(titles),
                        genres: get(genres),
                        attributes: Default::default(),
                    },
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_orders_by_similarity_then_id() {
        let v = vec![(5, 0.5), (3, 0.9), (4, 0.5), (9, -1.0)];
        assert_eq!(best(v.clone(), 3), vec![(3, 0.9), (4, 0.5), (5, 0.5)]);
        assert_eq!(best(v, 10).len(), 4);
    }

    #[test]
    fn unit_factors_have_unit_length_and_zero_rows_stay_zero() {
        let f = UnitFactors::new(vec![1, 2], vec![3.0, 4.0, 0.0, 0.0], 2).unwrap();
        assert_eq!(f.row(1), Some(&[0.6, 0.8][..]));
        assert_eq!(f.row(2), Some(&[0.0, 0.0][..]));
        assert!(UnitFactors::new(vec![1], vec![1.0], 2).is_err());
    }
}

/// An attribute's text as JSON of its type; without a recorded type (exports made before
/// types were recorded), numbers as numbers and the rest as strings.
fn attribute_json(
    kind: Option<elastirec_core::config::AttributeType>,
    text: String,
) -> serde_json::Value {
    use elastirec_core::config::AttributeType as T;
    let number = |t: &str| {
        t.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map(serde_json::Value::Number)
    };
    let typed = match kind {
        Some(T::Number) | None => number(&text),
        Some(T::Boolean) => match text.to_ascii_lowercase().as_str() {
            "true" => Some(serde_json::Value::Bool(true)),
            "false" => Some(serde_json::Value::Bool(false)),
            _ => None,
        },
        Some(T::List) => serde_json::from_str::<Vec<serde_json::Value>>(&text)
            .ok()
            .map(serde_json::Value::Array),
        Some(T::String | T::Timestamp) => None,
    };
    typed.unwrap_or(serde_json::Value::String(text))
}

#[cfg(test)]
mod attribute_tests {
    use super::attribute_json;
    use elastirec_core::config::AttributeType as T;
    use serde_json::json;

    #[test]
    fn attributes_are_shown_as_their_types() {
        assert_eq!(attribute_json(Some(T::Number), "4.5".into()), json!(4.5));
        assert_eq!(attribute_json(None, "4.5".into()), json!(4.5));
        assert_eq!(attribute_json(Some(T::String), "007".into()), json!("007"));
        assert_eq!(attribute_json(Some(T::Boolean), "true".into()), json!(true));
        assert_eq!(
            attribute_json(Some(T::List), "[\"a\",\"b\"]".into()),
            json!(["a", "b"])
        );
        assert_eq!(
            attribute_json(Some(T::Timestamp), "2024-03-05T00:00:00Z".into()),
            json!("2024-03-05T00:00:00Z")
        );
    }
}
