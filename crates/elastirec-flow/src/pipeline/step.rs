//! The steps of a night ([`Step`]: names, order, artefacts) and the pieces of their run
//! records: what a finished step reports ([`Outcome`]) and a fresh record of an attempt.

use std::fmt;

use chrono::Utc;

use elastirec_core::manifest::{FileEntry, JobRecord, StepRecord, StepState};

/// A step of the nightly flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Ingest,
    Prepare,
    Snapshot,
    Train,
    Recommend,
    Evaluate,
    Publish,
    /// Copies a published night's lists into Redis or PostgreSQL (only with `[sink] target`).
    Sink,
}

impl Step {
    /// The steps `run` performs, in order.
    pub const NIGHTLY: [Step; 7] = [
        Step::Ingest,
        Step::Prepare,
        Step::Snapshot,
        Step::Train,
        Step::Recommend,
        Step::Evaluate,
        Step::Publish,
    ];

    /// The step's name in run records and messages.
    pub fn name(self) -> &'static str {
        match self {
            Step::Ingest => "ingest",
            Step::Prepare => "prepare",
            Step::Snapshot => "snapshot",
            Step::Train => "train",
            Step::Recommend => "recommend",
            Step::Evaluate => "evaluate",
            Step::Publish => "publish",
            Step::Sink => "sink",
        }
    }

    /// What the step reads and writes in the lake, for `--help`, docs and the dashboard.
    pub fn artefacts(self) -> (&'static str, &'static str) {
        match self {
            Step::Ingest => (
                "raw/events/YYYY/MM/DD/*.csv up to the night, raw/items/",
                "warehouse/events, items, loads, rejects",
            ),
            Step::Prepare => (
                "warehouse/events",
                "exports/training/YYYY/MM/DD/ (_manifest.json last)",
            ),
            Step::Snapshot => ("warehouse/*", "snapshots/YYYY-MM-DD.json"),
            Step::Train => (
                "exports/training/YYYY/MM/DD/",
                "models/YYYY/MM/DD/ (model.json last)",
            ),
            Step::Recommend => (
                "models/YYYY/MM/DD/, exports/training/YYYY/MM/DD/seen-*",
                "recommendations/YYYY/MM/DD/ (_manifest.json last)",
            ),
            Step::Evaluate => (
                "recommendations of night D−H, warehouse/events D−H+1..D",
                "evaluations/…/horizon-Hd.json",
            ),
            Step::Publish => (
                "recommendations/YYYY/MM/DD/_manifest.json, the live night, evaluations",
                "recommendations/_LATEST",
            ),
            Step::Sink => (
                "recommendations/YYYY/MM/DD/",
                "[sink] target: a Redis hash per user, or a PostgreSQL table",
            ),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a finished step reports for its record.
pub(crate) struct Outcome {
    pub(crate) state: StepState,
    pub(crate) rows_in: Option<u64>,
    pub(crate) rows_out: Option<u64>,
    pub(crate) bytes_out: Option<u64>,
    pub(crate) message: String,
    /// The external job that did the work (the Spark engine's).
    pub(crate) job: Option<JobRecord>,
}

impl Outcome {
    pub(crate) fn ok(rows_in: Option<u64>, rows_out: Option<u64>, message: String) -> Outcome {
        Outcome {
            state: StepState::Succeeded,
            rows_in,
            rows_out,
            bytes_out: None,
            message,
            job: None,
        }
    }

    pub(crate) fn bytes(mut self, files: &[FileEntry]) -> Outcome {
        self.bytes_out = Some(files.iter().map(|f| f.bytes).sum());
        self
    }
}

pub(super) fn new_step_record(step: Step, attempt: u32) -> StepRecord {
    StepRecord {
        name: step.name().into(),
        state: StepState::Running,
        started_at: Some(Utc::now()),
        ended_at: None,
        rows_in: None,
        rows_out: None,
        outcome: None,
        error_kind: None,
        attempt,
        bytes_out: None,
        cpu_seconds: None,
        peak_memory_bytes: None,
        job: None,
    }
}
