//! Orchestrator tests on real lakes in temporary folders: retries through a store that fails on
//! purpose, the publish gate, the lease and the scheduler under a fake clock.

mod faults;
mod gate;
mod hooks;
mod lease;
mod schedule;

use elastirec_core::{Config, Lake, Night};
use elastirec_flow::Pipeline;
use elastirec_sources::simulate::{SimulateOptions, simulate};

/// A new lake in a temporary folder.
pub async fn lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(
        dir.path().join("lake").to_str().unwrap(),
        Default::default(),
    )
    .await
    .unwrap();
    (dir, lake)
}

pub fn night(s: &str) -> Night {
    s.parse().unwrap()
}

/// Small simulated days starting 2024-01-01.
pub async fn simulate_days(lake: &Lake, days: u32) {
    let opts = SimulateOptions {
        start: night("2024-01-01"),
        days,
        users: 300,
        items: 150,
        events_per_day: 3_000,
        seed: 7,
        ..SimulateOptions::default()
    };
    simulate(lake, &opts).await.unwrap();
}

/// A configuration that runs fast and retries without waiting long.
pub fn config() -> Config {
    let mut c = Config::default();
    c.model.factors = 8;
    c.model.iterations = 4;
    c.run.backoff_initial_ms = 10;
    c.run.backoff_max_ms = 50;
    c
}

pub fn pipeline(lake: &Lake) -> Pipeline {
    Pipeline::new(lake.clone(), config())
}
