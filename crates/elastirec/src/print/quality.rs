//! Reports of model quality: `evaluate` (a night's lists against the following days) and `tune`
//! (the grid of an inner temporal split and its choice).

use elastirec_core::manifest::{EvaluationReport, TuningPoint, TuningRecord};
use elastirec_core::{Lake, Night};

/// `tune`: what the grid is trained and scored on.
pub fn print_tuning_start(night: Night, points: usize, horizon_days: u32) {
    println!(
        "tuning night {night}: {points} grid points, each trained on night {}'s export \
         and scored on {} to {night}",
        night.minus_days(u64::from(horizon_days)),
        night.minus_days(u64::from(horizon_days)).next()
    );
}

/// `tune`: one grid point done, on stderr.
pub fn print_tuning_point(done: usize, total: usize, pt: &TuningPoint) {
    eprintln!(
        "  {done}/{total}: factors {}, regularization {}, alpha {}: NDCG {:.4} \
         ({:.1} s)",
        pt.factors, pt.regularization, pt.alpha, pt.scores.ndcg, pt.seconds
    );
}

/// `tune`: the grid with its scores, and the choice.
pub fn print_tuning(r: &TuningRecord, lake: &Lake, night: Night) {
    println!(
        "validation: {} to {} (last day with events: {}), {} users known at {} with {} new \
         relevant items",
        r.train_night.next(),
        r.validation_end,
        r.last_event_day.map_or("none".into(), |d| d.to_string()),
        r.users_scored,
        r.train_night,
        r.relevant_items
    );
    println!(
        "  {:>7} {:>14} {:>7} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8} {:>7}",
        "factors",
        "regularization",
        "alpha",
        format!("NDCG@{}", r.k),
        "precision",
        "recall",
        "MAP",
        "hit rate",
        "coverage",
        "seconds"
    );
    for (i, pt) in r.grid.iter().enumerate() {
        let s = &pt.scores;
        println!(
            "{} {:>7} {:>14} {:>7} {:>9.4} {:>9.4} {:>7.4} {:>7.4} {:>8.4} {:>8.4} {:>7.1}",
            if i == r.chosen { "*" } else { " " },
            pt.factors,
            pt.regularization,
            pt.alpha,
            s.ndcg,
            s.precision,
            s.recall,
            s.map,
            s.hit_rate,
            s.catalog_coverage,
            pt.seconds
        );
    }
    let p = &r.popularity;
    println!(
        "  {:<30} {:>9.4} {:>9.4} {:>7.4} {:>7.4} {:>8.4} {:>8.4}",
        "popularity (unseen, per user)",
        p.ndcg,
        p.precision,
        p.recall,
        p.map,
        p.hit_rate,
        p.catalog_coverage
    );
    if let Some(c) = r.choice() {
        println!(
            "chosen: factors {}, regularization {}, alpha {} (NDCG@{} {:.4}{}), recorded in {} \
             (field \"tuning\")",
            c.factors,
            c.regularization,
            c.alpha,
            r.k,
            c.scores.ndcg,
            if p.ndcg > 0.0 {
                format!(", {:.2}× popularity", c.scores.ndcg / p.ndcg)
            } else {
                String::new()
            },
            lake.url_of(&elastirec_core::layout::run_record(night))
        );
        println!(
            "the configuration is unchanged; to use the choice set [model] factors = {}, \
             regularization = {}, alpha = {} or pass --factors {} --regularization {} --alpha {} \
             to `train` or `run`",
            c.factors, c.regularization, c.alpha, c.factors, c.regularization, c.alpha
        );
    }
}

/// `evaluate` (and the demo): the scores of the model and of the popularity baselines.
pub fn print_evaluation(r: &EvaluationReport) {
    println!(
        "night {} evaluated against days {} to {} (last day with events: {})",
        r.night,
        r.night.next(),
        r.night.plus_days(u64::from(r.horizon_days)),
        r.last_event_day.map_or("none".into(), |d| d.to_string())
    );
    println!(
        "users scored: {} (known at {}, with {} new relevant items among the {} items known \
         then); left out: {} later pairs on new items, {} new users",
        r.users_scored,
        r.night,
        r.relevant_items,
        r.catalog_items,
        r.unknown_item_pairs,
        r.unknown_users
    );
    println!(
        "{:<12} {:>9} {:>10} {:>8} {:>8} {:>9} {:>9} {:>8}",
        "",
        format!("NDCG@{}", r.k),
        "precision",
        "recall",
        "MAP",
        "hit rate",
        "coverage",
        "no list"
    );
    for (name, s) in [
        ("model", &r.model),
        ("popularity", &r.popularity),
        ("most popular", &r.most_popular),
    ] {
        println!(
            "{:<12} {:>9.4} {:>10.4} {:>8.4} {:>8.4} {:>9.4} {:>9.4} {:>8}",
            name,
            s.ndcg,
            s.precision,
            s.recall,
            s.map,
            s.hit_rate,
            s.catalog_coverage,
            s.users_without_list
        );
    }
    if r.popularity.ndcg > 0.0 && r.most_popular.ndcg > 0.0 {
        println!(
            "model NDCG: {:.2}× popularity (each user's unseen popular items), {:.2}× most \
             popular (one list for all)",
            r.model.ndcg / r.popularity.ndcg,
            r.model.ndcg / r.most_popular.ndcg
        );
    }
}
