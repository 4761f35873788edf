//! The publish gate: the checks a night passes before `recommendations/_LATEST` moves to it.

use elastirec_core::Night;
use elastirec_core::config::{GateBaseline, PublishConfig};
use elastirec_core::manifest::{EvaluationReport, GateCheck, RecommendationsManifest};

/// What the gate looks at.
#[derive(Debug, Clone)]
pub struct GateInput<'a> {
    pub night: Night,
    /// Events whose event day is the night.
    pub events_on_night: u64,
    /// The night's recommendations.
    pub candidate: &'a RecommendationsManifest,
    /// The recommendations `_LATEST` names now, if an earlier night is live.
    pub live: Option<&'a RecommendationsManifest>,
    /// The newest evaluation of a night before this one.
    pub evaluation: Option<&'a EvaluationReport>,
}

/// Runs every check; the night may go live when all pass.
pub fn checks(config: &PublishConfig, input: &GateInput<'_>) -> Vec<GateCheck> {
    let mut out = Vec::new();
    let events_ok = input.events_on_night > 0 || config.allow_empty_night;
    out.push(GateCheck {
        name: "events arrived".into(),
        passed: events_ok,
        detail: if input.events_on_night > 0 {
            format!("{} events on {}", input.events_on_night, input.night)
        } else if config.allow_empty_night {
            format!(
                "no events on {}, allowed by [publish] allow_empty_night",
                input.night
            )
        } else {
            format!(
                "no events on {}: did the producers write raw/events/{}/? \
                 ([publish] allow_empty_night = true publishes such nights)",
                input.night,
                input.night.path_segment()
            )
        },
    });
    match input.live {
        Some(live) if config.min_users_ratio > 0.0 && live.users > 0 => {
            let ratio = input.candidate.users as f64 / live.users as f64;
            out.push(GateCheck {
                name: "users did not collapse".into(),
                passed: ratio >= config.min_users_ratio,
                detail: format!(
                    "{} users with recommendations vs {} on the live night {} ({:.0}%, at least \
                     {:.0}% required by [publish] min_users_ratio)",
                    input.candidate.users,
                    live.users,
                    live.night,
                    ratio * 100.0,
                    config.min_users_ratio * 100.0
                ),
            });
        }
        _ => out.push(GateCheck {
            name: "users did not collapse".into(),
            passed: input.candidate.users > 0 || config.allow_empty_night,
            detail: format!(
                "{} users with recommendations; no earlier live night to compare with",
                input.candidate.users
            ),
        }),
    }
    if config.require_model_beats_baseline
        && let Some(eval) = input.evaluation
    {
        let (name, baseline) = match config.baseline {
            GateBaseline::Popularity => ("per-user popularity", eval.popularity.ndcg),
            GateBaseline::MostPopular => ("most popular", eval.most_popular.ndcg),
        };
        out.push(GateCheck {
            name: "model beats the baseline".into(),
            passed: eval.users_scored == 0 || eval.model.ndcg >= baseline,
            detail: format!(
                "evaluation of night {}: NDCG@{} model {:.4} vs {name} {:.4} over {} users",
                eval.night, eval.k, eval.model.ndcg, baseline, eval.users_scored
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use elastirec_core::manifest::RankingScores;
    use std::collections::BTreeMap;

    fn recs(night: &str, users: u64) -> RecommendationsManifest {
        RecommendationsManifest {
            night: night.parse().unwrap(),
            created_at: Utc::now(),
            files: vec![],
            rows: users * 10,
            schema: vec![],
            users,
            k: 10,
            users_by_source: BTreeMap::new(),
            model: String::new(),
            table_versions: BTreeMap::new(),
            rules: None,
            rows_by_source: BTreeMap::new(),
        }
    }

    fn scores(ndcg: f64) -> RankingScores {
        RankingScores {
            ndcg,
            precision: 0.0,
            recall: 0.0,
            hit_rate: 0.0,
            ..RankingScores::default()
        }
    }

    #[test]
    fn each_check_holds_what_it_should() {
        let config = PublishConfig::default();
        let live = recs("2024-01-04", 1000);
        let good = recs("2024-01-05", 990);
        let collapsed = recs("2024-01-05", 120);
        let eval = EvaluationReport {
            night: "2024-01-01".parse().unwrap(),
            created_at: Utc::now(),
            horizon_days: 3,
            last_event_day: None,
            k: 10,
            users_scored: 50,
            relevant_items: 100,
            model: scores(0.10),
            popularity: scores(0.12),
            most_popular: scores(0.05),
            catalog_items: 0,
            unknown_item_pairs: 0,
            unknown_users: 0,
            model_without_rules: None,
        };
        let input = |c, events, e| GateInput {
            night: "2024-01-05".parse().unwrap(),
            events_on_night: events,
            candidate: c,
            live: Some(&live),
            evaluation: e,
        };
        let passed = |v: &[GateCheck]| v.iter().all(|c| c.passed);
        assert!(passed(&checks(&config, &input(&good, 10, Some(&eval)))));
        let held = checks(&config, &input(&collapsed, 10, None));
        assert!(!passed(&held));
        assert!(held[1].detail.contains("120 users"), "{:?}", held[1]);
        assert!(!passed(&checks(&config, &input(&good, 0, None))));
        let empty_ok = PublishConfig {
            allow_empty_night: true,
            ..config.clone()
        };
        assert!(passed(&checks(&empty_ok, &input(&good, 0, None))));
        // Worse than per-user popularity, better than one most-popular list.
        let strict = PublishConfig {
            baseline: GateBaseline::Popularity,
            ..config.clone()
        };
        assert!(!passed(&checks(&strict, &input(&good, 10, Some(&eval)))));
        let off = PublishConfig {
            min_users_ratio: 0.0,
            ..config
        };
        assert!(passed(&checks(&off, &input(&collapsed, 10, None))));
    }
}
