//! `demo`: from nothing, simulate 30 days of events, run every night, evaluate one, and say
//! where the outputs are. Its numbered narrative is printed here; the evaluation through
//! [`crate::print`].

use std::time::Instant;

use anyhow::Result;

use elastirec_core::manifest::StepState;
use elastirec_core::{Config, Lake};
use elastirec_sources::simulate;

use crate::cli::DemoArgs;
use crate::context::{finish_config, pipeline};
use crate::print::print_evaluation;

/// `demo`, in `--demo-lake` unless `--lake` (or `ELASTIREC_LAKE`) names a lake.
pub async fn demo(mut config: Config, args: &DemoArgs, lake_given: bool) -> Result<()> {
    if !lake_given {
        config.lake.root = args.demo_lake.clone();
    }
    let config = finish_config(config)?;
    let evaluate_night = args.evaluate_night;
    let started = Instant::now();
    let lake = Lake::open_config(&config.lake).await?;
    let opts = simulate::SimulateOptions::default();
    println!(
        "1. simulating {} days of events ({} users, {} items, {} events/day) into {}",
        opts.days,
        opts.users,
        opts.items,
        opts.events_per_day,
        lake.url_of(&elastirec_core::layout::raw_events_root())
    );
    let sim = simulate::simulate(&lake, &opts).await?;
    println!(
        "   {} events, {} to {}",
        sim.events, sim.first_day, sim.last_day
    );
    println!(
        "2. running every night: ingest → prepare → snapshot → train → recommend → evaluate \
         (night D−7) → publish (if the gate passes)"
    );
    let p = pipeline(config).await?;
    for night in sim.first_day.through(sim.last_day) {
        let record = p.run(night).await?;
        let summary: Vec<String> = record
            .steps
            .iter()
            .map(|s| {
                let secs = match (s.started_at, s.ended_at) {
                    (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
                    _ => 0.0,
                };
                format!("{} {:.1}s", s.name, secs)
            })
            .collect();
        let verdict = match (&record.state, &record.publish) {
            (StepState::Succeeded, Some(p)) if p.published => "published".to_string(),
            (StepState::Succeeded, Some(p)) if p.reason.is_some() => format!(
                "HELD ({})",
                p.checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| c.detail.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            (StepState::Succeeded, _) => "ok".to_string(),
            _ => "FAILED".to_string(),
        };
        println!("   {night} {}  {verdict}", summary.join(", "));
    }
    let horizon = 7;
    println!("3. evaluating night {evaluate_night} against the next {horizon} days");
    let report = p.evaluate(evaluate_night, horizon).await?;
    print_evaluation(&report);
    println!("4. outputs:");
    for (what, path) in [
        ("warehouse tables", "warehouse/"),
        ("training exports", "exports/training/"),
        ("models", "models/"),
        ("recommendations", "recommendations/"),
        ("run records", "runs/"),
        ("evaluations", "evaluations/"),
    ] {
        println!("   {what:<18} {}", lake.url_of(&path.into()));
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
