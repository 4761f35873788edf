//! The artefacts stages leave for each other in the lake, read and written in one place.
//!
//! Every stage downstream of the warehouse meets the others only through these files; this crate
//! is their single owner, so no stage links another stage to read its output:
//!
//! ```text
//!  exports/training/D/ (part-*, seen-*, items-*, ids-*,             written by the warehouse
//!        │             _manifest.json)
//!        │ artefacts::read_export_manifest, io::read_pairs, artefacts::SeenPairs,
//!        │ artefacts::read_export_ids (string ids ↔ internal ids)
//!        ▼
//!  models/D/{user,item}_factors.parquet, model.json                io::write_model_factors,
//!        │                                                         io::read_factors
//!        ▼
//!  recommendations/D/part-*.parquet, _manifest.json                io::write_parquet,
//!        │ (external ids: what consumers see)                      io::read_recommendations
//!        ▼
//!  recommendations/_LATEST                                         artefacts::publish_latest,
//!                                                                  artefacts::read_latest
//! ```
//!
//! Paths come from `elastirec_core::layout`, schemas and manifests from
//! `elastirec_core::manifest`; this crate adds the Parquet encoding and the readers that check
//! what they read. Each folder's data files are written first and its manifest last, so a
//! reader that finds a manifest finds every file it lists.
//!
//! [`rules`] (the `[rules]` a night's lists obey, read from the export's items and availability)
//! and [`popularity`] (the fallback ranking) live here too: the recommend step and serving's
//! fold-in apply them alike, and serving must not link the trainer.

pub mod artefacts;
pub mod io;
pub mod popularity;
pub mod rules;

pub use artefacts::{
    IdSet, SeenByUser, SeenPairs, publish_latest, read_again, read_export_ids,
    read_export_manifest, read_latest, read_model_info, read_recommendations_manifest,
};

use elastirec_core::ErrorKind;

/// Errors of reading and writing artefacts, and of the stages that work on them (training,
/// ranking, evaluation share this type, so a missing input reads the same everywhere).
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

/// Result of artefact I/O.
pub type Result<T, E = Error> = std::result::Result<T, E>;
