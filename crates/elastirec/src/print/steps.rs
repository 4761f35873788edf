//! Reports of the commands that bring events into the lake (`import`, `simulate`) and of the
//! steps of one night run by hand (`prepare`, `sql-files`, `train`, `recommend`, `publish`).

use std::path::{Path, PathBuf};

use elastirec_core::manifest::{
    ExportManifest, ModelInfo, PublishDecision, RecommendationsManifest,
};
use elastirec_core::{Config, Lake, Night};
use elastirec_flow::prepare_sql::{PrepareSql, RenderedSql};
use elastirec_sources::movielens::ImportReport;
use elastirec_sources::simulate::{ScaledShape, SimulateReport};

use super::gate_line;

/// `import movielens`: what was laid out, and where.
pub fn print_import(r: &ImportReport, lake: &Lake, seconds: f64) {
    println!(
        "imported {} ratings of {} users ({}) into {} daily files, {} to {}, in {:.1} s",
        r.ratings,
        r.users,
        r.layout.describe(),
        r.days,
        r.first_day.map_or("-".into(), |d| d.to_string()),
        r.last_day.map_or("-".into(), |d| d.to_string()),
        seconds
    );
    if let Some(n) = r.items {
        println!("imported {n} items into raw/items/");
    }
    println!("lake: {}", lake.url());
}

/// `simulate --scale S`: the events written for a data set shaped like MovieLens 20M.
pub fn print_simulated_scaled(
    r: &SimulateReport,
    shape: &ScaledShape,
    scale: f64,
    seed: u64,
    seconds: f64,
    lake: &Lake,
) {
    println!(
        "simulated {} events on {} days ({} to {}) for {} users and {} items, scale \
         {scale}, seed {} in {:.1}s",
        r.events, r.days, r.first_day, r.last_day, shape.users, shape.items, seed, seconds
    );
    print_segment_files(r);
    println!("lake: {}", lake.url());
}

/// `simulate --format segment`: the hour files and redeliveries.
fn print_segment_files(r: &SimulateReport) {
    if r.redelivered > 0 || r.files != u64::from(r.days) {
        println!(
            "{} files in arrival-hour folders; {} lines delivered twice (read with [events] \
             preset = \"segment\")",
            r.files, r.redelivered
        );
    }
}

/// `simulate`: the events written.
pub fn print_simulated(r: &SimulateReport, users: u32, items: u32, seed: u64, lake: &Lake) {
    println!(
        "simulated {} events over {} days ({} to {}) for {} users and {} items, seed {}",
        r.events, r.days, r.first_day, r.last_day, users, items, seed
    );
    print_segment_files(r);
    println!("lake: {}", lake.url());
}

/// `prepare`: the night's training export.
pub fn print_prepared(night: Night, m: &ExportManifest) {
    println!(
        "night {}: exported {} pairs ({} users, {} items, window {}) in {} files, \
         plus {} older seen pairs",
        night,
        m.rows,
        m.users,
        m.items,
        m.window_text(),
        m.files.len(),
        m.seen_rows
    );
}

/// `sql-files --write DIR`: the files written.
pub fn print_sql_written(paths: &[PathBuf], dir: &Path) {
    for path in paths {
        println!("wrote {}", path.display());
    }
    println!(
        "edit them, then set [prepare] sql_dir = \"{}\" in the config",
        dir.display()
    );
}

/// `sql-files --date D`: the queries of night D, parameters filled in.
pub fn print_prepare_sql_of_night(sql: &PrepareSql, r: &RenderedSql, night: Night) {
    for (file, text) in [
        (&sql.training, Some(&r.training)),
        (&sql.seen, Some(&r.seen)),
        (&sql.unseen, r.unseen.as_ref()),
        (&sql.items, Some(&r.items)),
        (&sql.availability, Some(&r.availability)),
    ] {
        let Some(text) = text else {
            println!(
                "-- {} ({}): does not run (every event type makes its items seen for ever)\n",
                file.name, file.origin
            );
            continue;
        };
        println!(
            "-- {} ({}), night {night}\n{}\n",
            file.name,
            file.origin,
            text.trim_end()
        );
    }
    println!("-- sql hash {}", r.hash);
}

/// `sql-files`: the queries in effect.
pub fn print_prepare_sql(sql: &PrepareSql) {
    for file in [
        &sql.training,
        &sql.seen,
        &sql.unseen,
        &sql.items,
        &sql.availability,
    ] {
        println!(
            "-- {} ({})\n{}\n",
            file.name,
            file.origin,
            file.text.trim_end()
        );
    }
}

/// `train`: the model, its loss per iteration, and where a Spark job put its lists.
pub fn print_trained(night: Night, m: &ModelInfo, config: &Config) {
    let loss = if m.loss.is_empty() {
        format!("{} reports no loss", m.algorithm)
    } else {
        let steps: Vec<String> = m.loss.iter().map(|l| format!("{l:.5}")).collect();
        format!("loss {}", steps.join(" → "))
    };
    println!(
        "night {}: trained {} factors for {} users and {} items on {} pairs in {:.1} s; \
         {loss}",
        night, m.factors, m.users, m.items, m.interactions, m.train_seconds,
    );
    if config.model.engine == elastirec_core::config::Engine::Spark {
        println!(
            "night {night}: the spark job also wrote the top-{} lists \
             (recommendations/{}/); `elastirec publish --date {night}` makes them live",
            config.recommend.k,
            night.path_segment()
        );
    }
}

/// `recommend`: the lists written.
pub fn print_recommended(night: Night, m: &RecommendationsManifest) {
    println!(
        "night {night}: wrote top-{} for {} users ({} rows); `elastirec publish --date {night}` makes them live",
        m.k, m.users, m.rows
    );
}

/// `publish`: the gate's checks and whether `_LATEST` moved.
pub fn print_publish(night: Night, d: &PublishDecision) {
    for c in &d.checks {
        println!("  {}", gate_line(c));
    }
    match (d.published, &d.reason) {
        (true, Some(_)) => println!("night {night}: published despite failed checks"),
        (true, None) => println!("night {night}: published"),
        (false, Some(r)) => {
            println!(
                "night {night}: held; {} stays live: {r}",
                d.latest.map_or("no night".into(), |n| n.to_string())
            );
        }
        (false, None) => println!(
            "night {night}: not moved back; the later night {} is live",
            d.latest.map_or("?".into(), |n| n.to_string())
        ),
    }
}
