//! Offline evaluation: scores the stored recommendations of night D against what users did on
//! the following days, next to a most-popular list, without retraining.
//!
//! Relevant items of a user are the items of their later events that they had not seen up to D.
//! Only users known at D (with events up to D) and with at least one relevant item are scored.
//! Two baselines are scored beside the model: `popularity`, each user's most popular unseen
//! items (what the fallback serves, the fair comparison), and `most_popular`, one list for
//! everyone with seen items left in (the classic "MostPop", weaker since seen items can never
//! be relevant).

use std::collections::{HashMap, HashSet};

use elastirec_core::layout;
use elastirec_core::manifest::{EvaluationReport, RankingScores};
use elastirec_core::{Lake, Night};

use crate::Result;
use crate::io;
use crate::metrics::{UserScores, score_list};
use crate::stage::{SeenPairs, read_export_manifest, read_recommendations_manifest};

/// Later (user, item) pairs to score against, and the last day they cover.
#[derive(Debug, Clone, Default)]
pub struct Holdout {
    pub user_ids: Vec<i64>,
    pub item_ids: Vec<i64>,
    pub last_day: Option<Night>,
}

fn mean(scores: &[UserScores]) -> RankingScores {
    let n = scores.len().max(1) as f64;
    RankingScores {
        ndcg: scores.iter().map(|s| s.ndcg).sum::<f64>() / n,
        precision: scores.iter().map(|s| s.precision).sum::<f64>() / n,
        recall: scores.iter().map(|s| s.recall).sum::<f64>() / n,
        hit_rate: scores.iter().map(|s| s.hit).sum::<f64>() / n,
    }
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
    let lists = io::read_recommendations(lake, &recs_manifest.files).await?;
    let seen_pairs = SeenPairs::read(lake, &export).await?;
    let seen = seen_pairs.by_user();
    let popularity = seen_pairs.popularity();

    let mut relevant: HashMap<i64, HashSet<i64>> = HashMap::new();
    for (&u, &i) in holdout.user_ids.iter().zip(&holdout.item_ids) {
        let Some(s) = seen.get(&u) else { continue };
        if !s.contains(&i) {
            relevant.entry(u).or_default().insert(i);
        }
    }
    let mut users: Vec<i64> = relevant.keys().copied().collect();
    users.sort_unstable();
    let mut model_scores = Vec::with_capacity(users.len());
    let mut pop_scores = Vec::with_capacity(users.len());
    let mut global_scores = Vec::with_capacity(users.len());
    let global: Vec<i64> = popularity
        .top(k, |_| false)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let mut relevant_items = 0u64;
    for u in &users {
        let rel = &relevant[u];
        relevant_items += rel.len() as u64;
        let model_list: Vec<i64> = lists
            .get(u)
            .map(|l| l.iter().map(|r| r.0).collect())
            .unwrap_or_default();
        model_scores.push(score_list(&model_list, rel, k));
        let s = &seen[u];
        let pop_list: Vec<i64> = popularity
            .top(k, |i| s.contains(&i))
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        pop_scores.push(score_list(&pop_list, rel, k));
        global_scores.push(score_list(&global, rel, k));
    }
    let report = EvaluationReport {
        night,
        created_at: chrono::Utc::now(),
        horizon_days,
        last_event_day: holdout.last_day,
        k,
        users_scored: users.len() as u64,
        relevant_items,
        model: mean(&model_scores),
        popularity: mean(&pop_scores),
        most_popular: mean(&global_scores),
    };
    lake.put_json(&layout::evaluation(night, horizon_days), &report)
        .await?;
    Ok(report)
}
