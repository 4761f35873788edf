//! The warehouse: Delta Lake tables in the lake, loaded incrementally and queried with SQL.
//!
//! This is the only crate that depends on DataFusion and delta-rs. Its inputs are raw files
//! written by producers; its outputs are Delta tables and the training export, a set of Parquet
//! files with a manifest, which the trainer reads without knowing how it was made.
//!
//! ```text
//!  raw/events/YYYY/MM/DD/*.csv ─┐               ┌─▶ warehouse/events (by event_date)
//!  raw/items/*.csv ─────────────┼─ ingest ──────┼─▶ warehouse/items
//!                               │               └─▶ warehouse/loads  (one row per raw file)
//!                               │
//!  warehouse/events ── prepare (SQL: window, dedupe, seen pairs) ──▶ exports/training/YYYY/MM/DD/
//!                                                  part-*.parquet, seen-*.parquet, _manifest.json
//! ```

mod access;
mod availability;
mod erasure;
mod ingest;
mod pgwire;
mod prepare;
mod query;
mod rules;
mod snapshot;
pub mod sql;
mod tables;

pub use access::{OutputFormat, format_batches};
pub use erasure::{ErasedUser, ErasureVacuum, EventErasure, RawPurge, user_hash};
pub use ingest::{
    INGEST_APP, IngestOptions, IngestReport, Reject, UnknownItems, first_raw_event_day,
};
pub use pgwire::REFRESH as PG_REFRESH;
pub use prepare::PrepareOptions;
pub use query::EventPairs;
pub use snapshot::{TableRestore, TableVacuum, VacuumReport};
pub use sql::PrepareSql;
pub use tables::Warehouse;

use elastirec_core::ErrorKind;

/// Errors of the warehouse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A raw file holds a row that cannot be loaded; names the file, line and column.
    #[error("{file}:{line}: column '{column}': {reason}")]
    BadRow {
        file: String,
        line: u64,
        column: String,
        reason: String,
    },
    /// More rows were rejected than `max_errors` allows; nothing was committed.
    #[error(
        "{rejected} rows rejected, more than max_errors = {max_errors} allows; nothing was loaded. \
         First rejects: {}. Fix the files, or raise [events] max_errors / --max-errors to load the \
         good rows and keep the bad ones in warehouse/rejects",
        first.join("; ")
    )]
    TooManyRejects {
        rejected: u64,
        max_errors: u64,
        first: Vec<String>,
    },
    /// A raw file as a whole cannot be read as configured.
    #[error("{file}: {reason}")]
    BadFile { file: String, reason: String },
    /// A Delta table operation failed.
    #[error("delta table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
    /// A SQL query failed.
    #[error("query failed ({context}): {source}")]
    Query {
        context: String,
        #[source]
        source: deltalake::datafusion::error::DataFusionError,
    },
    /// A query an analyst wrote does not parse, names an unknown table or column, or is not
    /// read-only.
    #[error("query failed: {source} (in: {query})")]
    BadQuery {
        query: String,
        #[source]
        source: deltalake::datafusion::error::DataFusionError,
    },
    /// A query file of `prepare` (`[prepare] sql_dir`) cannot be read, has an unknown
    /// parameter, or fails to run or to produce the expected columns.
    #[error("{file}: {reason}")]
    BadSql { file: String, reason: String },
    /// The night's training export exists and replacing it was not asked for.
    #[error(
        "the training export of {night} already exists ({path}, written {created_at}); pass --overwrite to replace it"
    )]
    ExportExists {
        night: String,
        path: String,
        created_at: String,
    },
    /// The PostgreSQL endpoint cannot listen on its address.
    #[error(
        "cannot serve on {address}: {reason} (choose another with --port; PostgreSQL itself \
         usually has 5432)"
    )]
    Serve { address: String, reason: String },
    /// `warehouse serve` is not started as configured: no password on a non-loopback address,
    /// an unreadable TLS file.
    #[error("{0}")]
    ServeSetup(String),
    /// Writing Parquet failed.
    #[error("parquet {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: deltalake::parquet::errors::ParquetError,
    },
    /// Lake access failed.
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
            Error::BadRow { .. }
            | Error::BadFile { .. }
            | Error::TooManyRejects { .. }
            | Error::BadQuery { .. }
            | Error::BadSql { .. }
            | Error::ExportExists { .. }
            | Error::Serve { .. }
            | Error::ServeSetup(_) => ErrorKind::InvalidInput,
            Error::Delta { source, .. } => match source {
                deltalake::DeltaTableError::ObjectStore { source } => {
                    ErrorKind::of_store_error(source)
                }
                deltalake::DeltaTableError::VersionAlreadyExists(_) => ErrorKind::Transient,
                _ => ErrorKind::Internal,
            },
            Error::Query { .. } | Error::Parquet { .. } | Error::Internal(_) => ErrorKind::Internal,
            Error::Lake(e) => e.kind(),
        }
    }

    pub(crate) fn delta(
        table: impl Into<String>,
    ) -> impl FnOnce(deltalake::DeltaTableError) -> Error {
        let table = table.into();
        move |source| Error::Delta { table, source }
    }

    pub(crate) fn query(
        context: impl Into<String>,
    ) -> impl FnOnce(deltalake::datafusion::error::DataFusionError) -> Error {
        let context = context.into();
        move |source| Error::Query { context, source }
    }
}

/// Result of the warehouse.
pub type Result<T, E = Error> = std::result::Result<T, E>;
