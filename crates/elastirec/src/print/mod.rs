//! What the commands print: one function per report (on stdout; progress lines on stderr),
//! grouped by command family, and the small formatters they share. `ingest` and `warehouse
//! vacuum` print their own reports, whose types belong to a crate this one does not depend on,
//! and `demo` prints its own numbered narrative.

mod lake;
mod quality;
mod runs;
mod serve;
mod steps;

use elastirec_core::manifest::{GateCheck, StepState};

pub use lake::*;
pub use quality::*;
pub use runs::*;
pub use serve::*;
pub use steps::*;

/// One check of the publish gate: `[ok] name: detail`.
fn gate_line(c: &GateCheck) -> String {
    let mark = if c.passed { "ok" } else { "FAILED" };
    format!("[{mark}] {}: {}", c.name, c.detail)
}

/// Table versions as `events v3, items v1`.
fn versions_line(v: &std::collections::BTreeMap<String, i64>) -> String {
    v.iter()
        .map(|(t, v)| format!("{t} v{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn state_name(s: StepState) -> &'static str {
    match s {
        StepState::Pending => "pending",
        StepState::Running => "running",
        StepState::Succeeded => "succeeded",
        StepState::Failed => "failed",
        StepState::Skipped => "skipped",
        StepState::Held => "held",
    }
}

/// A byte count in B, KiB, MiB or GiB.
fn mib(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
