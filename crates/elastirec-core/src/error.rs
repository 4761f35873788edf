//! Error kinds say whose fault a failure is, so the orchestrator knows what to do with it:
//! retry a transient one, stop and tell the user to fix an invalid input, and so on.

use std::fmt;

/// Whose fault an error is. The orchestrator retries only [`ErrorKind::Transient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The user's input or configuration is wrong; retrying will not help.
    InvalidInput,
    /// Something the step needs does not exist (yet), such as an earlier night's output.
    NotFound,
    /// A failure that may pass by itself: a timeout, throttling, a 5xx from object storage.
    Transient,
    /// A bug or broken invariant in elastirec itself.
    Internal,
}

impl ErrorKind {
    /// A short lowercase name, as written into run records.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Transient => "transient",
            ErrorKind::Internal => "internal",
        }
    }

    /// Classifies an object store error.
    pub fn of_store_error(err: &object_store::Error) -> ErrorKind {
        use object_store::Error as E;
        match err {
            E::NotFound { .. } => ErrorKind::NotFound,
            E::InvalidPath { .. } | E::NotSupported { .. } | E::UnknownConfigurationKey { .. } => {
                ErrorKind::InvalidInput
            }
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => ErrorKind::InvalidInput,
            E::AlreadyExists { .. } | E::Precondition { .. } | E::NotModified { .. } => {
                ErrorKind::Internal
            }
            // Generic covers network failures and 5xx answers after the client's own retries.
            _ => ErrorKind::Transient,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the shared layer: configuration, lake access and manifests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting or argument is wrong; the message names it and what to do.
    #[error("{0}")]
    Config(String),
    /// Input data is malformed; the message names the file and line.
    #[error("{0}")]
    InvalidInput(String),
    /// An expected lake object is missing.
    #[error("{what} not found at {path} ({hint})")]
    NotFound {
        what: String,
        path: String,
        hint: String,
    },
    /// Reading or writing object storage failed.
    #[error("object store: {source} (path {path})")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// A JSON document in the lake does not parse.
    #[error("{path} is not a valid {what}: {source}")]
    Json {
        path: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A write that matters was refused because this process no longer holds the lake's lease
    /// (see [`crate::fence`]).
    #[error(
        "refused to write: this runner no longer holds the lake's lease ({0}); another runner \
         may be writing the lake. Nothing was written; the next run redoes the work"
    )]
    Fenced(String),
    /// A broken invariant inside elastirec.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whose fault this error is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Store { source, .. } => ErrorKind::of_store_error(source),
            Error::Json { .. } => ErrorKind::InvalidInput,
            Error::Fenced(_) => ErrorKind::Transient,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn store(path: impl fmt::Display, source: object_store::Error) -> Self {
        Error::Store {
            path: path.to_string(),
            source,
        }
    }
}

/// An error and its causes on one line, as `{:#}` prints them with anyhow (a cause already
/// quoted by its parent is not repeated).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

/// Result of the shared layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
