//! Named crash points for tests of crash safety.
//!
//! `ELASTIREC_FAILPOINTS=name=action[,name=action…]` makes the process act when it reaches a
//! named point: `kill` sends itself SIGKILL (no destructors, no flushing: the same as a power
//! cut for the lake), `sleep-MS` pauses for MS milliseconds (to hold a point open while a test
//! starts a second process), `pause` prints `elastirec: paused at NAME` on stderr and waits
//! for ever (so a test can send the SIGKILL itself, at a moment it knows). Unset, a point
//! costs one lookup in a map built once. Points are named `STEP.where`, for example
//! `prepare.after-parts`; [`POINTS`] and [`OTHER_POINTS`] list them all. The variable has no
//! `__`, so configuration loading ignores it.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable read once per process.
pub const ENV: &str = "ELASTIREC_FAILPOINTS";

/// Every point elastirec passes, in the order a night passes them.
pub const POINTS: &[&str] = &[
    "ingest.before",
    "ingest.before-events-commit",
    "ingest.after-events-commit",
    "ingest.done",
    "prepare.before",
    "prepare.after-parts",
    "prepare.done",
    "snapshot.before",
    "snapshot.done",
    "train.before",
    "train.after-factors",
    "train.done",
    "recommend.before",
    "recommend.after-parts",
    "recommend.done",
    "evaluate.before",
    "evaluate.done",
    "publish.before",
    "publish.done",
];

/// Points of commands other than a night's run: `forget`, after the warehouse deletes and
/// before the outputs are rewritten.
pub const OTHER_POINTS: &[&str] = &["forget.after-warehouse"];

#[derive(Debug, Clone, Copy)]
enum Action {
    Kill,
    Sleep(u64),
    Pause,
}

fn actions() -> &'static HashMap<String, Action> {
    static ACTIONS: OnceLock<HashMap<String, Action>> = OnceLock::new();
    ACTIONS.get_or_init(|| {
        let Ok(spec) = std::env::var(ENV) else {
            return HashMap::new();
        };
        spec.split(',')
            .filter_map(|entry| {
                let (name, action) = entry.trim().split_once('=')?;
                let action = match action.trim() {
                    "kill" => Action::Kill,
                    "pause" => Action::Pause,
                    other => Action::Sleep(other.strip_prefix("sleep-")?.parse().ok()?),
                };
                Some((name.trim().to_string(), action))
            })
            .collect()
    })
}

/// Passes the point `name`: acts if `ELASTIREC_FAILPOINTS` names it.
pub fn hit(name: &str) {
    let Some(action) = actions().get(name) else {
        return;
    };
    match *action {
        Action::Kill => {
            eprintln!("failpoint {name}: killing the process ({ENV})");
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            // `kill` was not available: abort is as abrupt for the lake.
            std::process::abort();
        }
        Action::Sleep(ms) => std::thread::sleep(Duration::from_millis(ms)),
        Action::Pause => {
            eprintln!("elastirec: paused at {name} ({ENV})");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}
