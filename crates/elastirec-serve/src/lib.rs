//! Serving: the night named by `recommendations/_LATEST`, over HTTP, with the run ledger's
//! dashboard. Downstream of every other stage; reads lake files only (never the warehouse).
//!
//! ```text
//!  recommendations/_LATEST ─▶ recommendations/D/ (lists) ─┐
//!  exports/training/D/ (history, items-*: titles, ids-*) ─┼─▶ Snapshot (immutable, in memory)
//!  models/D/item_factors (cosine: similar, because) ──────┘        │ swapped whole (ArcSwap)
//!                                                                  ▼
//!  runs/*.json, evaluations/ (read per request) ──▶ axum Router ──▶ server (hyper) ──▶ clients
//!                                                       └──▶ dashboard (embedded HTML/JS/CSS)
//! ```
//!
//! A [`Snapshot`] is built completely before it is published to readers, and a request holds
//! one `Arc<Snapshot>` from start to end: a reader never sees half of a swap.
//! Copying a night's lists into Redis or PostgreSQL is `elastirec-sink`'s.

pub mod api;
pub mod metrics;
pub mod server;
pub mod snapshot;
pub mod state;

pub use api::router;
pub use snapshot::Snapshot;
pub use state::Served;

use elastirec_core::ErrorKind;

/// Errors of serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong (an id too long or with control characters, k out of range); the
    /// message says how.
    #[error("{0}")]
    BadRequest(String),
    /// One field of a request body is wrong: `field` names it (`items[3].item_id`, `k`, or
    /// `body` for the whole body), the message says how.
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    /// The request body is larger than the server accepts.
    #[error("{0}")]
    TooLarge(String),
    /// The user, item or night asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// No night has been published yet, or the lake is unreachable for now.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Artefact(#[from] elastirec_lake::Error),
    #[error(transparent)]
    Lake(#[from] elastirec_core::Error),
    /// A broken invariant.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whose fault this error is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadRequest(_) | Error::InvalidField { .. } | Error::TooLarge(_) => {
                ErrorKind::InvalidInput
            }
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Unavailable(_) => ErrorKind::Transient,
            Error::Artefact(e) => e.kind(),
            Error::Lake(e) => e.kind(),
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Result of serving.
pub type Result<T, E = Error> = std::result::Result<T, E>;
