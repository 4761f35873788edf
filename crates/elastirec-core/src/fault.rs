//! Named pause points, so crash tests can kill a process at a chosen place.
//!
//! With `ELASTIREC_TEST_PAUSE_AT=<point>` in its environment, a process that reaches the pause
//! point of that name prints `elastirec: paused at <point>` on stderr and waits forever; the
//! test then kills it with SIGKILL. The kill is real (no cleanup code runs, nothing is flushed);
//! the pause only makes its moment deterministic. Without the variable a point costs one
//! environment lookup. The variable has no `__`, so configuration loading ignores it.

use std::time::Duration;

/// The environment variable naming the point to pause at.
pub const PAUSE_ENV: &str = "ELASTIREC_TEST_PAUSE_AT";

/// Pauses forever if `PAUSE_ENV` names this point; returns at once otherwise.
pub async fn pause_point(name: &str) {
    if std::env::var(PAUSE_ENV).is_ok_and(|v| v == name) {
        eprintln!("elastirec: paused at {name} ({PAUSE_ENV})");
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
}
