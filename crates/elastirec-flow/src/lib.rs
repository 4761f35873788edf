//! Runs the steps of one night in order and records each in the run ledger.
//!
//! ```text
//!  ingest ──▶ prepare ──▶ train ──▶ recommend        (run --date D)
//!                                        └──▶ evaluate  (later, once days D+1..D+H are loaded)
//! ```
//!
//! Each step reads and writes only lake files (through the warehouse and trainer crates); the
//! run record `runs/YYYY-MM-DD.json` is rewritten whole after every state change, so a reader
//! sees a consistent record at any time.

mod ledger;
mod pipeline;

pub use ledger::RunLedger;
pub use pipeline::{Pipeline, Progress, Step};

use elastirec_core::ErrorKind;

/// Errors of a night's steps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Warehouse(#[from] elastirec_warehouse::Error),
    #[error(transparent)]
    Als(#[from] elastirec_als::Error),
    #[error(transparent)]
    Lake(#[from] elastirec_core::Error),
    /// A step failed; wraps its error with the night and step (the cause follows in `{:#}`).
    #[error("night {night}, step {step}")]
    Step {
        night: elastirec_core::Night,
        step: Step,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Whose fault this error is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Warehouse(e) => e.kind(),
            Error::Als(e) => e.kind(),
            Error::Lake(e) => e.kind(),
            Error::Step { source, .. } => source.kind(),
        }
    }
}

/// Result of the flow.
pub type Result<T, E = Error> = std::result::Result<T, E>;
