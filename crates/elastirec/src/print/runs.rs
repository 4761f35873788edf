//! Reports of nights run and of the run ledger: `run`, `schedule`, `runs`, `status`, `cost`.

use anyhow::Result;

use elastirec_core::config::ScheduleConfig;
use elastirec_core::manifest::{RunRecord, StepState};
use elastirec_core::{Config, Night};
use elastirec_flow::cost;
use elastirec_flow::lease::LeaseState;
use elastirec_flow::schedule::Tick;

use super::{gate_line, mib, state_name};

/// `run`: a night's state and one line per step.
pub fn print_record(record: &RunRecord) {
    // A rerun that failed before reaching its publish step keeps the earlier run's publish
    // record: those lists stay live, this run's were not published.
    let position =
        |f: &dyn Fn(&elastirec_core::manifest::StepRecord) -> bool| record.steps.iter().position(f);
    let failed_before_publish = record.state == StepState::Failed
        && position(&|s| s.state == StepState::Failed) < position(&|s| s.name == "publish");
    let publish = match &record.publish {
        Some(p) if p.published && failed_before_publish => {
            ", not published (an earlier run's lists stay live)".to_string()
        }
        Some(p) if p.published => ", published".to_string(),
        Some(p) if p.reason.is_some() => ", held".to_string(),
        _ => String::new(),
    };
    println!(
        "night {}: {}{publish}",
        record.night,
        state_name(record.state)
    );
    for s in &record.steps {
        let secs = s.seconds().map_or("-".into(), |x| format!("{x:.1} s"));
        println!(
            "  {:<10} {:<10} {:>8}  {}",
            s.name,
            state_name(s.state),
            secs,
            s.outcome.as_deref().unwrap_or("")
        );
    }
}

/// `run --missing` when every night is done.
pub fn print_nothing_to_run(until: Night) {
    println!("nothing to run: every night up to {until} succeeded");
}

/// A backfill that stopped at a failed night.
pub fn print_backfill_stopped(not_run: usize) {
    println!(
        "stopped after a failed night: {not_run} later nights not run (--keep-going runs \
         them)"
    );
}

/// `schedule`: the schedule it follows.
pub fn print_schedule(schedule: &ScheduleConfig) {
    println!(
        "scheduling nights at '{}' ({}), catch-up {}",
        schedule.cron,
        schedule.timezone,
        if schedule.catch_up { "on" } else { "off" }
    );
}

/// `schedule`: the nights of one firing and the next firing.
pub fn print_tick(t: &Tick) {
    for (night, ok) in &t.nights {
        println!(
            "night {night}: {}",
            if *ok { "succeeded" } else { "FAILED" }
        );
    }
    if let Some(next) = t.next {
        println!("next run at {next}");
    }
}

/// `schedule`: why it stopped.
pub fn print_stopped(reason: &str) {
    println!("stopped: {reason}");
}

/// `runs --json`: the run records as JSON.
pub fn print_records_json(records: &[RunRecord]) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(records)?);
    Ok(())
}

/// `status --json`: one run record as JSON.
pub fn print_record_json(record: &RunRecord) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(record)?);
    Ok(())
}

/// `status`: a night's steps in detail.
pub fn print_status(record: &RunRecord) {
    print_record(record);
    println!();
    println!(
        "  {:<10} {:>7} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "step", "attempt", "rows in", "rows out", "bytes out", "CPU s", "peak mem*"
    );
    for s in &record.steps {
        let opt = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
        println!(
            "  {:<10} {:>7} {:>10} {:>10} {:>10} {:>8} {:>10}",
            s.name,
            s.attempt,
            opt(s.rows_in),
            opt(s.rows_out),
            s.bytes_out.map_or("-".into(), mib),
            s.cpu_seconds.map_or("-".into(), |c| format!("{c:.1}")),
            s.peak_memory_bytes.map_or("-".into(), mib)
        );
        if let (StepState::Failed, Some(kind)) = (s.state, &s.error_kind) {
            println!(
                "  {:<10} error ({kind}): {}",
                "",
                s.outcome.as_deref().unwrap_or("")
            );
        }
    }
    println!("  * the process's peak resident memory (VmHWM) when the step ended");
    if let Some(p) = &record.publish {
        for c in &p.checks {
            println!("  gate {}", gate_line(c));
        }
    }
    if let Some(c) = &record.cost {
        println!(
            "  cost: {:.1} s of compute = {:.4} {} elastic vs {:.2} {} for a day always on",
            c.compute_seconds, c.elastic_cost, c.currency, c.always_on_cost, c.currency
        );
    }
    if let Some(t) = &record.tuning
        && let Some(c) = t.choice()
    {
        println!(
            "  tuning ({} points, trained on night {}, validated to {}): factors {}, \
             regularization {}, alpha {} with NDCG@{} {:.4} (popularity {:.4})",
            t.grid.len(),
            t.train_night,
            t.validation_end,
            c.factors,
            c.regularization,
            c.alpha,
            t.k,
            c.scores.ndcg,
            t.popularity.ndcg
        );
    }
}

/// `status`: who holds the lake's lease.
pub fn print_lease(lease: &LeaseState) {
    println!(
        "lease: held by {} ({}) until {}",
        lease.owner, lease.purpose, lease.expires_at
    );
}

/// `runs`: the ledger, one line per night.
pub fn print_runs(records: &[RunRecord], config: &Config) {
    if records.is_empty() {
        println!("no run records yet: run `elastirec run --date D`");
        return;
    }
    println!(
        "{:<11} {:<10} {:<9} {:>8} {:>10}  steps",
        "night", "state", "publish", "seconds", "cost"
    );
    for r in records {
        let publish = match &r.publish {
            Some(p) if p.published => "published",
            Some(p) if p.reason.is_some() => "held",
            Some(_) => "not moved",
            None => "-",
        };
        let c = cost::night_cost(r, &config.cost);
        let steps: Vec<String> = r
            .steps
            .iter()
            .map(|s| {
                let mark = match s.state {
                    StepState::Succeeded => "✓",
                    StepState::Skipped => "·",
                    StepState::Held => "H",
                    StepState::Failed => "✗",
                    StepState::Running => "…",
                    StepState::Pending => " ",
                };
                format!("{}{mark}", s.name)
            })
            .collect();
        println!(
            "{:<11} {:<10} {:<9} {:>8.1} {:>10.4}  {}",
            r.night.to_string(),
            state_name(r.state),
            publish,
            c.compute_seconds,
            c.elastic_cost,
            steps.join(" ")
        );
    }
}

/// `cost`: what the nights cost, elastic against always on, as a table or JSON.
pub fn print_cost(records: &[RunRecord], config: &Config, json: bool) -> Result<()> {
    let costs: Vec<(Night, elastirec_core::manifest::NightCost)> = records
        .iter()
        .map(|r| (r.night, cost::night_cost(r, &config.cost)))
        .collect();
    let elastic: f64 = costs.iter().map(|(_, c)| c.elastic_cost).sum();
    let always_on: f64 = costs.iter().map(|(_, c)| c.always_on_cost).sum();
    let seconds: f64 = costs.iter().map(|(_, c)| c.compute_seconds).sum();
    let cur = &config.cost.currency;
    if json {
        let nights: Vec<_> = costs
            .iter()
            .map(|(n, c)| serde_json::json!({"night": n, "cost": c}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "nights": nights,
                "total": {"compute_seconds": seconds, "elastic_cost": elastic,
                          "always_on_cost": always_on, "currency": cur},
            }))?
        );
        return Ok(());
    }
    println!(
        "prices: {:.3} {cur}/h elastic (billed per second, 60 s minimum), {:.3} {cur}/h always \
         on ([cost] in the config)",
        config.cost.price_per_hour, config.cost.always_on_price_per_hour
    );
    println!(
        "{:<11} {:>9} {:>8} {:>12} {:>12}",
        "night", "compute s", "CPU s", "elastic", "always on"
    );
    for (n, c) in &costs {
        println!(
            "{:<11} {:>9.1} {:>8.1} {:>12.4} {:>12.2}",
            n.to_string(),
            c.compute_seconds,
            c.cpu_seconds,
            c.elastic_cost,
            c.always_on_cost
        );
    }
    println!(
        "{:<11} {:>9.1} {:>8} {:>12.4} {:>12.2}",
        "total", seconds, "", elastic, always_on
    );
    if elastic > 0.0 {
        println!(
            "elastic costs {:.2}% of always-on ({:.0}× cheaper) over {} nights",
            elastic / always_on * 100.0,
            always_on / elastic,
            costs.len()
        );
    }
    Ok(())
}
