//! Collaborative filtering for elastirec: implicit-feedback ALS, top-K and ranking metrics.
//!
//! Reads the training export (Parquet files listed by a manifest) with `arrow`/`parquet` only;
//! writes the model and the recommendations, each folder with its manifest written last.
//!
//! ```text
//!  exports/training/D/ ──▶ Interactions (sorted id maps, CSR by user and by item)
//!                               │
//!                               ▼
//!          ImplicitAls::fit (conjugate gradient or exact Cholesky per row, rayon)
//!          or ExplicitAls::fit (ALS-WR with biases, Cholesky per row)
//!                               │
//!                               ▼
//!  models/D/{user,item}_factors.parquet, model.json
//!                               │  (model::Model::load reads them back to score)
//!                               ▼
//!          top_k (blocked GEMM + bounded heap, seen items excluded)
//!                               │  offer rules ([rules]: availability, exclusions, genre
//!                               │  cap, promotions; fill from popularity)
//!                               ▼
//!  recommendations/D/part-*.parquet, _manifest.json, recommendations/_LATEST
//! ```

pub mod data;
pub mod erase;
pub mod evaluate;
pub mod explicit;
pub mod implicit;
pub mod io;
pub mod kernels;
pub mod metrics;
pub mod model;
pub mod popularity;
pub mod reference;
pub mod rules;
pub mod stage;
pub mod topk;
pub mod tune;

pub use data::Interactions;
pub use explicit::{ExplicitAls, ExplicitModel};
pub use implicit::{Confidence, Factors, ImplicitAls, Solver};
pub use model::Model;

use elastirec_core::ErrorKind;

/// Errors of the trainer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input the step needs is missing (such as the night's export).
    #[error("{0}")]
    Missing(String),
    /// An input file does not have the expected shape.
    #[error("{path}: {reason}")]
    BadInput { path: String, reason: String },
    /// Reading or writing Parquet failed.
    #[error("parquet {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Lake access failed.
    #[error(transparent)]
    Lake(#[from] elastirec_core::Error),
    /// A numerical or internal failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whose fault this error is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Missing(_) => ErrorKind::NotFound,
            Error::BadInput { .. } => ErrorKind::InvalidInput,
            Error::Parquet { .. } | Error::Internal(_) => ErrorKind::Internal,
            Error::Lake(e) => e.kind(),
        }
    }
}

/// Result of the trainer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
