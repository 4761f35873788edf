//! The orchestrator: runs the steps of a night in order, records each in the run ledger, and
//! schedules nights.
//!
//! ```text
//!  ingest ──▶ prepare ──▶ snapshot ──▶ train ──▶ recommend ──▶ evaluate ──▶ publish ──▶ sink
//!  (load)     (SQL export)  (versions)   (ALS)     (top-K)      (night D−H)   (gate,    (Redis or
//!                                                                              _LATEST)  PostgreSQL,
//!                                                                                        if set)
//! ```
//!
//! Each step reads and writes only lake files; a step whose outputs exist and are current is
//! skipped, so `run` after a crash continues where the night stopped. The run record
//! `runs/YYYY-MM-DD.json` is rewritten whole after every state change. Only transient failures
//! are retried. A lease (`runs/_lease/`) keeps two runners off one lake. With `[model] engine =
//! "spark"`, one Spark job (crate `elastirec-spark`) does the train and recommend steps, and both
//! records carry it.

pub mod cost;
pub mod cron;
pub mod gate;
pub mod governance;
pub mod hooks;
pub mod lease;
mod ledger;
mod pipeline;
pub mod resources;
pub mod retention;
pub mod schedule;
mod spark_steps;
pub mod tune;

pub use elastirec_warehouse::sql as prepare_sql;
pub use elastirec_warehouse::{OutputFormat, TableRestore, format_batches};
pub use ledger::RunLedger;
pub use pipeline::{Pipeline, Progress, RunOptions, Step};

use std::sync::{Arc, Mutex};

use elastirec_core::{ErrorKind, Fence};

/// Errors of a night's steps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Boxed: DataFusion's errors are large, and every result of the flow carries this type.
    #[error(transparent)]
    Warehouse(Box<elastirec_warehouse::Error>),
    #[error(transparent)]
    Als(#[from] elastirec_als::Error),
    #[error(transparent)]
    Lake(#[from] elastirec_core::Error),
    #[error(transparent)]
    Sink(#[from] elastirec_sink::Error),
    /// The Spark engine's job or its output.
    #[error(transparent)]
    Spark(#[from] elastirec_spark::Error),
    /// A step failed; wraps its error with the night and step (the cause follows in `{:#}`).
    #[error("night {night}, step {step}")]
    Step {
        night: elastirec_core::Night,
        step: Step,
        #[source]
        source: Box<Error>,
    },
    /// Another runner holds the lake's lease.
    #[error(
        "the lake is busy: its lease is held by {holder}; wait for that run to finish (a crashed \
         holder's lease expires by itself)"
    )]
    Busy { holder: String },
    /// The run was asked to stop (SIGTERM, or the lease was lost) and stopped between steps.
    #[error("stopped before night {night}'s {step} step: {reason}")]
    Interrupted {
        night: elastirec_core::Night,
        step: Step,
        reason: String,
    },
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
}

impl From<elastirec_warehouse::Error> for Error {
    fn from(e: elastirec_warehouse::Error) -> Self {
        Error::Warehouse(Box::new(e))
    }
}

impl Error {
    /// Whose fault this error is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Warehouse(e) => e.kind(),
            Error::Als(e) => e.kind(),
            Error::Lake(e) => e.kind(),
            Error::Sink(e) => e.kind(),
            Error::Spark(e) => e.kind(),
            Error::Step { source, .. } => source.kind(),
            Error::Busy { .. } | Error::Interrupted { .. } => ErrorKind::Transient,
            Error::Config(_) => ErrorKind::InvalidInput,
        }
    }

    /// The external job behind the error (the Spark engine's), for the step's record.
    pub fn job(&self) -> Option<&elastirec_core::manifest::JobRecord> {
        match self {
            Error::Spark(e) => e.job(),
            Error::Step { source, .. } => source.job(),
            _ => None,
        }
    }

    /// The step error's cause, without the night/step wrapper.
    pub fn root(&self) -> &Error {
        match self {
            Error::Step { source, .. } => source.root(),
            e => e,
        }
    }
}

/// Result of the flow.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A request to stop between steps, shared by the signal handler, the lease and the pipeline;
/// it also carries the lease this process holds, for the [`Fence`] of its writes.
#[derive(Debug, Clone, Default)]
pub struct StopFlag {
    inner: Arc<(Mutex<Option<String>>, tokio::sync::Notify)>,
    lease: Arc<Mutex<Option<HeldLease>>>,
}

/// The lease as its holder last wrote it, or why it is gone.
#[derive(Debug, Clone)]
struct HeldLease {
    epoch: u64,
    owner: String,
    expires_at: chrono::DateTime<chrono::Utc>,
    lost: Option<String>,
}

impl StopFlag {
    pub fn new() -> StopFlag {
        StopFlag::default()
    }

    /// Asks every holder of this flag to stop; the first reason is kept.
    pub fn raise(&self, reason: impl Into<String>) {
        if let Ok(mut r) = self.inner.0.lock()
            && r.is_none()
        {
            *r = Some(reason.into());
        }
        self.inner.1.notify_waiters();
    }

    /// Why a stop was asked for, if it was.
    pub fn reason(&self) -> Option<String> {
        self.inner.0.lock().ok().and_then(|r| r.clone())
    }

    /// Records the lease this process holds (after taking or renewing it).
    pub(crate) fn hold_lease(&self, state: &lease::LeaseState) {
        if let Ok(mut held) = self.lease.lock() {
            let lost = held
                .as_ref()
                .filter(|h| h.owner == state.owner)
                .and_then(|h| h.lost.clone());
            *held = Some(HeldLease {
                epoch: state.epoch,
                owner: state.owner.clone(),
                expires_at: state.expires_at,
                lost,
            });
        }
    }

    /// The lease is gone (taken over, or expired while renewals failed): writes are refused
    /// from now on and the run stops before its next step.
    pub(crate) fn lease_lost(&self, why: String) {
        if let Ok(mut held) = self.lease.lock()
            && let Some(h) = held.as_mut()
            && h.lost.is_none()
        {
            h.lost = Some(why.clone());
        }
        self.raise(why);
    }

    /// Forgets the lease once it was given back.
    pub(crate) fn drop_lease(&self) {
        if let Ok(mut held) = self.lease.lock() {
            *held = None;
        }
    }

    /// The fence of this process's writes: open without a lease; the lease epoch while it is
    /// held and unexpired; refused once it is lost or expired.
    pub fn fence(&self) -> Fence {
        let lease = Arc::clone(&self.lease);
        Fence::new(move || {
            let held = lease
                .lock()
                .map_err(|_| "the lease state is poisoned".to_string())?;
            let Some(h) = held.as_ref() else {
                return Ok(None);
            };
            if let Some(why) = &h.lost {
                return Err(why.clone());
            }
            if chrono::Utc::now() >= h.expires_at {
                return Err(format!(
                    "its lease (epoch {}) expired at {} without a renewal",
                    h.epoch,
                    h.expires_at.format("%Y-%m-%d %H:%M:%S%.3f UTC")
                ));
            }
            Ok(Some(h.epoch))
        })
    }

    /// [`StopFlag::fence`], then the lake itself: its newest lease epoch must still be this
    /// process's (a runner that took the lake over is seen even before a renewal fails).
    pub async fn fence_on(&self, lake: &elastirec_core::Lake) -> Result<Option<u64>> {
        let local = self.fence().check();
        let owner = self
            .lease
            .lock()
            .ok()
            .and_then(|h| h.as_ref().map(|h| h.owner.clone()));
        let Some(owner) = owner else {
            return Ok(local?);
        };
        // The lake is read even when the local check failed: the refusal then names who holds
        // the lake now, and the runner stops either way.
        let newest = lease::current(lake).await?;
        let why = match (local, newest) {
            (Ok(epoch), Some(s)) if s.owner == owner && !s.released => return Ok(epoch),
            (Err(e), Some(s)) if s.owner == owner && !s.released => match e {
                elastirec_core::Error::Fenced(why) => why,
                other => other.to_string(),
            },
            (_, Some(s)) => format!("the lake's lease is now {}", s.describe()),
            (_, None) => "the lake has no lease any more".to_string(),
        };
        self.lease_lost(why.clone());
        Err(elastirec_core::Error::Fenced(why).into())
    }

    /// Waits until the flag is raised.
    pub async fn raised(&self) {
        loop {
            let notified = self.inner.1.notified();
            if self.reason().is_some() {
                return;
            }
            notified.await;
        }
    }
}
