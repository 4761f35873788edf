//! Producers of raw events: they write into `raw/events/YYYY/MM/DD/` and `raw/items/` exactly as
//! an application dropping files into object storage would, and know nothing of the warehouse.
//!
//! - [`movielens`] splits a MovieLens ratings file (any of its published layouts) into one CSV
//!   per UTC day, in MovieLens 20M's columns.
//! - [`simulate`] generates days of events from a planted preference model, so that a model's
//!   quality can be checked against a known truth and scale can be tested without downloads;
//!   [`segment`] writes the same events as a Segment producer delivers them through Firehose.

pub mod movielens;
pub mod segment;
pub mod simulate;

use elastirec_core::ErrorKind;

/// Errors of the producers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A line of an input file is malformed; names the file, line and what was expected.
    #[error("{file}:{line}: {message}")]
    Malformed {
        file: String,
        line: u64,
        message: String,
    },
    /// An input file cannot be read.
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// An option is out of range.
    #[error("{0}")]
    Options(String),
    /// Writing to the lake failed.
    #[error(transparent)]
    Lake(#[from] elastirec_core::Error),
}

impl Error {
    /// Whose fault this error is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Malformed { .. } | Error::Options(_) => ErrorKind::InvalidInput,
            Error::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Read { .. } => ErrorKind::InvalidInput,
            Error::Lake(e) => e.kind(),
        }
    }
}

/// Result of the producers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The header of raw event files written by the producers (MovieLens 20M's `ratings.csv`).
pub const EVENTS_HEADER: &str = "userId,movieId,rating,timestamp";

/// The header of raw item files written by the producers (MovieLens 20M's `movies.csv`).
pub const ITEMS_HEADER: [&str; 3] = ["movieId", "title", "genres"];
