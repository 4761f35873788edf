//! Copies a night's lists where applications usually read nightly recommendations from, and
//! deletes erased users from there (`forget`).
//!
//! ```text
//!  recommendations manifest of night D ──▶ lists (external ids) ──┬─▶ Redis: a hash per user
//!  (read from the lake, never a server)                            └─▶ PostgreSQL: one table
//!  forget --user ID ──▶ forget_users ──▶ the users' keys / rows deleted
//! ```
//!
//! - **Redis** (the `redis` crate: `redis://` or `rediss://` with TLS, `user:password@` sent as
//!   `AUTH`): one hash per user, key `<redis_key_prefix><user_id>`, fields `night`, `source` and
//!   `items` (a JSON array of `{item_id, score, rank}`, `item_id` a JSON string), expiring after
//!   `ttl_seconds`. Each user's key is replaced in one `MULTI`/`EXEC` (`DEL`, `HSET`, `EXPIRE`),
//!   so a reader sees the user's old list or the new one; users move to the new night one by one
//!   while it runs. Commands are pipelined in batches of [`REDIS_BATCH`] users.
//! - **PostgreSQL** (`tokio-postgres`, TLS with rustls per the URL's `sslmode`): the rows go
//!   into a staging table with `COPY`, which then replaces the table in the same transaction
//!   (drop, rename): readers see the old night or the new one, whole. `user_id` and `item_id`
//!   are `text`. The table is created anew on every copy, so a table an older elastirec made
//!   (with `bigint` ids) is replaced by the first copy, with no step to run; readers that
//!   compared the ids with numbers compare them with text from then on.
//!
//! Connecting (TCP, TLS, authentication) and every reply are bounded by `[sink]
//! timeout_seconds`; a timeout or a refused connection is transient (the orchestrator retries
//! it), a wrong password or certificate is not. Errors name the target by its URL with the
//! password hidden ([`redact_url`]); text a client library wrote is scrubbed of it too.
//!
//! Ids are the external ids consumers know (what producers sent: a numeric id as its decimal
//! digits, a string id as it came), as the recommendation files hold them, also in Redis keys.

use std::time::{Duration, Instant};

use serde::Serialize;

use elastirec_core::config::{SinkConfig, SinkTarget};
use elastirec_core::{Lake, Night};
use elastirec_lake::io::read_recommendations;
use elastirec_lake::read_recommendations_manifest;

use elastirec_core::ErrorKind;

mod postgres_sink;
mod redis_sink;
mod url;

pub use url::{redact_url, scrub};

/// Errors of copying a night's lists to a target.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `[sink]` settings are wrong; the message names the setting and what to do.
    #[error("{0}")]
    Config(String),
    /// A target database refused or failed a copy; `endpoint` is its URL without password.
    #[error("sink {target} ({endpoint}): {reason}")]
    Sink {
        target: &'static str,
        endpoint: String,
        reason: String,
        /// Whether trying again may succeed (a timeout, a lost connection), rather than a
        /// refusal that needs a change of settings (a wrong password, an untrusted certificate).
        transient: bool,
    },
    /// The night's lists could not be read from the lake.
    #[error(transparent)]
    Artefact(#[from] elastirec_lake::Error),
    /// A broken invariant.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whose fault this error is: a target that failed is transient (retried), one that refused
    /// our credentials or certificate is invalid input.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::InvalidInput,
            Error::Sink {
                transient: true, ..
            } => ErrorKind::Transient,
            Error::Sink { .. } => ErrorKind::InvalidInput,
            Error::Artefact(e) => e.kind(),
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Result of a copy.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Users per pipelined batch of Redis commands.
pub const REDIS_BATCH: usize = 500;

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkReport {
    pub target: &'static str,
    pub night: Night,
    pub users: u64,
    pub rows: u64,
    pub seconds: f64,
}

/// What [`forget_users`] deleted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkErasure {
    pub target: &'static str,
    /// Redis keys or PostgreSQL rows deleted.
    pub deleted: u64,
}

/// Copies night `night`'s lists to the configured target.
pub async fn copy_night(lake: &Lake, config: &SinkConfig, night: Night) -> Result<SinkReport> {
    let started = Instant::now();
    let manifest = read_recommendations_manifest(lake, night).await?;
    let lists = read_recommendations(lake, &manifest.files).await?;
    let rows = lists.values().map(|l| l.len() as u64).sum();
    let target = match config.target {
        SinkTarget::None => return Err(no_target()),
        SinkTarget::Redis => {
            redis_sink::copy(config, night, &lists).await?;
            "redis"
        }
        SinkTarget::Postgres => {
            postgres_sink::copy(config, night, &lists).await?;
            "postgres"
        }
    };
    Ok(SinkReport {
        target,
        night,
        users: lists.len() as u64,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Deletes `users` (external ids) from the configured target: their Redis keys, or their rows
/// of the PostgreSQL table (none if the table was never made). `None` when no target is set.
/// Running it again deletes nothing more and succeeds.
pub async fn forget_users(config: &SinkConfig, users: &[String]) -> Result<Option<SinkErasure>> {
    Ok(match config.target {
        SinkTarget::None => None,
        SinkTarget::Redis => Some(SinkErasure {
            target: "redis",
            deleted: redis_sink::delete_users(config, users).await?,
        }),
        SinkTarget::Postgres => Some(SinkErasure {
            target: "postgres",
            deleted: postgres_sink::delete_users(config, users).await?,
        }),
    })
}

fn no_target() -> Error {
    Error::Config(
        "[sink] target is \"none\": set it to \"redis\" or \"postgres\" \
         (or ELASTIREC_SINK__TARGET)"
            .into(),
    )
}

/// `[sink] timeout_seconds` as a duration (validated by the configuration; at least 1 s).
fn timeout_of(config: &SinkConfig) -> Duration {
    Duration::from_secs(config.timeout_seconds.max(1))
}

/// `fut`, failed with `timed_out` if it takes longer than `limit`.
async fn within<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T>>,
    timed_out: impl FnOnce() -> Error,
) -> Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

/// The process's rustls crypto provider, set once to `ring` (the one the workspace builds): a
/// library that calls `ClientConfig::builder()` (the Redis client does) finds no default when
/// more than one provider is compiled in.
fn install_crypto_provider() {
    // An error means a provider is installed already, which is all that is needed.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// A value in `COPY`'s text format: backslash, tab, newline and carriage return escaped (ids are
/// free UTF-8 without control characters, but a tab or a backslash is neither).
fn copy_text(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '\t', '\n', '\r']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::copy_text;

    #[test]
    fn copy_text_escapes_what_the_text_format_reads_specially() {
        assert_eq!(copy_text("u-alice"), "u-alice");
        assert_eq!(copy_text(r"a\b"), r"a\\b");
        assert_eq!(copy_text("a\tb"), r"a\tb");
    }
}
