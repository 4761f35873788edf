//! Offline evaluation, a temporal backtest: the lists of night D (made by the model trained on
//! events up to D) are scored against what users did on the following days, next to
//! most-popular lists, without retraining.
//!
//! ```text
//!  exports/training/D/ (training + seen pairs) ──┐
//!  recommendations/D/part-*.parquet ─────────────┼──▶ GroundTruth + lists ──▶ RankingScores
//!  events of D+1..D+H (the caller reads them) ───┘        evaluations/D/horizon-Hd.json
//! ```
//!
//! The ground truth of a user is the items of their later events that they had not seen up to D
//! and that were known at D (in the night's training data, so some list-maker could have
//! recommended them). Users known at D (with events up to D) and with at least one such item
//! are scored; a scored user without a list scores 0 rather than being dropped. Later pairs on
//! unknown items and users unknown at D are counted in the report, not scored.
//!
//! Two baselines are scored beside the model: `popularity`, each user's most popular unseen
//! items (what the fallback serves, the fair comparison), and `most_popular`, one list for
//! everyone with seen items left in (the classic "MostPop", weaker since seen items can never
//! be relevant). When the stored lists had offer rules applied (`[rules]`), the model's own
//! lists without them are rebuilt from the night's model and scored too
//! (`model_without_rules`), so the cost of the business rules is visible. Metrics are defined
//! in [`crate::metrics`].

use std::collections::{BTreeMap, HashMap, HashSet};

use elastirec_core::layout;
use elastirec_core::manifest::{EvaluationReport, RankingScores};
use elastirec_core::{Lake, Night};

use crate::Result;
use crate::metrics::{UserScores, catalog_coverage, score_list};
use crate::popularity::Popularity;
use crate::stage::night_lists;
use elastirec_lake::io;
use elastirec_lake::{
    SeenByUser, SeenPairs, read_export_ids, read_export_manifest, read_recommendations_manifest,
};

/// Later (user, item) pairs to score against, and the last day they cover.
#[derive(Debug, Clone, Default)]
pub struct Holdout {
    pub user_ids: Vec<i64>,
    pub item_ids: Vec<i64>,
    pub last_day: Option<Night>,
}

/// What each scored user should have been recommended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroundTruth {
    /// Scored users (known at the night, with at least one relevant item) → relevant items.
    pub relevant: BTreeMap<i64, HashSet<i64>>,
    /// Number of (user, item) relevant pairs.
    pub relevant_items: u64,
    /// Later pairs of known users on items unknown at the night (left out).
    pub unknown_item_pairs: u64,
    /// Users with later events who were unknown at the night (not scored).
    pub unknown_users: u64,
}

impl GroundTruth {
    /// Relevant pairs of `holdout`: users in `seen` (everything seen up to the night, by user),
    /// items in `catalog` (items known at the night) that the user had not seen.
    pub fn new(holdout: &Holdout, seen: &SeenByUser, catalog: &HashSet<i64>) -> GroundTruth {
        let mut truth = GroundTruth::default();
        let mut unknown_users: HashSet<i64> = HashSet::new();
        for (&u, &i) in holdout.user_ids.iter().zip(&holdout.item_ids) {
            let Some(s) = seen.get(&u) else {
                unknown_users.insert(u);
                continue;
            };
            if s.contains(&i) {
                continue;
            }
            if !catalog.contains(&i) {
                truth.unknown_item_pairs += 1;
                continue;
            }
            if truth.relevant.entry(u).or_default().insert(i) {
                truth.relevant_items += 1;
            }
        }
        truth.unknown_users = unknown_users.len() as u64;
        truth
    }

    /// Number of scored users.
    pub fn users(&self) -> usize {
        self.relevant.len()
    }

    /// Means of the metrics at `k` over the scored users; `list_of(user)` gives a user's list,
    /// best first (`None`: the user has no list and scores 0). Catalog coverage is left at 0:
    /// it is a property of everyone's lists, see [`catalog_coverage`].
    pub fn score(
        &self,
        k: usize,
        mut list_of: impl FnMut(i64) -> Option<Vec<i64>>,
    ) -> RankingScores {
        let mut scores = Vec::with_capacity(self.relevant.len());
        let mut without = 0u64;
        for (&u, rel) in &self.relevant {
            match list_of(u) {
                Some(list) if !list.is_empty() => scores.push(score_list(&list, rel, k)),
                _ => {
                    without += 1;
                    scores.push(UserScores::default());
                }
            }
        }
        let mut out = mean(&scores);
        out.users_without_list = without;
        out
    }
}

fn mean(scores: &[UserScores]) -> RankingScores {
    let n = scores.len().max(1) as f64;
    let avg = |f: fn(&UserScores) -> f64| scores.iter().map(f).sum::<f64>() / n;
    RankingScores {
        ndcg: avg(|s| s.ndcg),
        precision: avg(|s| s.precision),
        recall: avg(|s| s.recall),
        hit_rate: avg(|s| s.hit),
        map: avg(|s| s.average_precision),
        catalog_coverage: 0.0,
        users_without_list: 0,
    }
}

/// Each user's `k` most popular unseen items, for every user of `seen`.
pub fn popularity_lists(
    popularity: &Popularity,
    seen: &SeenByUser,
    k: usize,
) -> HashMap<i64, Vec<i64>> {
    seen.iter()
        .map(|(&u, s)| {
            let list = popularity
                .top(k, |i| s.contains(&i))
                .into_iter()
                .map(|(i, _)| i)
                .collect();
            (u, list)
        })
        .collect()
}

/// Scores night `night`'s recommendations at cutoff `k` against `holdout`; writes the report to
/// `evaluations/YYYY/MM/DD/horizon-Hd.json` and returns it.
pub async fn evaluate_night(
    lake: &Lake,
    night: Night,
    horizon_days: u32,
    k: usize,
    holdout: &Holdout,
) -> Result<EvaluationReport> {
    let recs_manifest = read_recommendations_manifest(lake, night).await?;
    let export = read_export_manifest(lake, night).await?;
    let names = read_export_ids(lake, &export).await?;
    let lists = io::read_recommendations_internal(lake, &recs_manifest.files, &names).await?;
    let seen_pairs = SeenPairs::read(lake, &export).await?;
    let seen = seen_pairs.by_user();
    let popularity = Popularity::from_pairs(seen_pairs.training_items());
    let catalog: HashSet<i64> = seen_pairs.training.item_ids.iter().copied().collect();
    let truth = GroundTruth::new(holdout, &seen, &catalog);

    let model_lists: HashMap<i64, Vec<i64>> = lists
        .iter()
        .map(|(&u, l)| (u, l.iter().map(|r| r.0).collect()))
        .collect();
    let pop_lists = popularity_lists(&popularity, &seen, k);
    let global: Vec<i64> = popularity
        .top(k, |_| false)
        .into_iter()
        .map(|(i, _)| i)
        .collect();

    let mut model = truth.score(k, |u| model_lists.get(&u).cloned());
    model.catalog_coverage = catalog_coverage(model_lists.values().map(Vec::as_slice), &catalog, k);
    let mut pop = truth.score(k, |u| pop_lists.get(&u).cloned());
    pop.catalog_coverage = catalog_coverage(pop_lists.values().map(Vec::as_slice), &catalog, k);
    let mut most_popular = truth.score(k, |_| Some(global.clone()));
    most_popular.catalog_coverage = catalog_coverage([global.as_slice()], &catalog, k);
    // Stored lists that had offer rules applied are scored beside the model's own lists.
    let model_without_rules = if recs_manifest.rules.is_some() {
        let unruled: HashMap<i64, Vec<i64>> = night_lists(lake, night, &export, k, None)
            .await?
            .into_iter()
            .map(|(u, l)| (u, l.iter().map(|r| r.item_id).collect()))
            .collect();
        let mut scores = truth.score(k, |u| unruled.get(&u).cloned());
        scores.catalog_coverage =
            catalog_coverage(unruled.values().map(Vec::as_slice), &catalog, k);
        Some(scores)
    } else {
        None
    };

    let report = EvaluationReport {
        night,
        created_at: chrono::Utc::now(),
        horizon_days,
        last_event_day: holdout.last_day,
        k,
        users_scored: truth.users() as u64,
        relevant_items: truth.relevant_items,
        model,
        popularity: pop,
        most_popular,
        catalog_items: catalog.len() as u64,
        unknown_item_pairs: truth.unknown_item_pairs,
        unknown_users: truth.unknown_users,
        model_without_rules,
    };
    lake.put_json(&layout::evaluation(night, horizon_days), &report)
        .await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[i64]) -> HashSet<i64> {
        items.iter().copied().collect()
    }

    /// Users 1 and 2 are known; user 3 is not. Item 50 is unknown at the night.
    #[test]
    fn ground_truth_keeps_known_users_unseen_known_items() {
        let seen: SeenByUser = [(1, set(&[10, 11])), (2, set(&[10]))]
            .into_iter()
            .map(|(u, items)| (u, items.into_iter().collect()))
            .collect();
        let catalog = set(&[10, 11, 12, 13]);
        let holdout = Holdout {
            // (1,10) was seen; (1,12) counts; (1,50) unknown item; (2,12),(2,13) count, (2,13)
            // twice counts once; (3,12) unknown user.
            user_ids: vec![1, 1, 1, 2, 2, 2, 3],
            item_ids: vec![10, 12, 50, 12, 13, 13, 12],
            last_day: None,
        };
        let t = GroundTruth::new(&holdout, &seen, &catalog);
        assert_eq!(t.relevant[&1], set(&[12]));
        assert_eq!(t.relevant[&2], set(&[12, 13]));
        assert_eq!(
            (
                t.users(),
                t.relevant_items,
                t.unknown_item_pairs,
                t.unknown_users
            ),
            (2, 3, 1, 1)
        );
    }

    /// A scored user without a list counts as 0 in every mean.
    #[test]
    fn users_without_a_list_score_zero() {
        let truth = GroundTruth {
            relevant: [(1, set(&[5])), (2, set(&[6]))].into_iter().collect(),
            relevant_items: 2,
            ..GroundTruth::default()
        };
        // User 1's list hits at rank 1 (NDCG 1, AP 1, precision 1/2, recall 1); user 2 has none:
        // means are halved.
        let s = truth.score(2, |u| (u == 1).then(|| vec![5, 7]));
        assert_eq!((s.ndcg, s.map, s.hit_rate, s.recall), (0.5, 0.5, 0.5, 0.5));
        assert_eq!(s.precision, 0.25);
        assert_eq!(s.users_without_list, 1);
        let empty = truth.score(2, |_| Some(Vec::new()));
        assert_eq!((empty.ndcg, empty.users_without_list), (0.0, 2));
    }
}
