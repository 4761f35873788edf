//! Copies a night's lists where applications usually read nightly recommendations from.
//!
//! - **Redis**: one hash per user, key `<redis_key_prefix><user_id>`, fields `night`, `source`
//!   and `items` (a JSON array of `{item_id, score, rank}`, `item_id` a JSON string), expiring
//!   after `ttl_seconds`. Each
//!   user's key is replaced in one `MULTI`/`EXEC` (`DEL`, `HSET`, `EXPIRE`), so a reader sees the
//!   user's old list or the new one; users move to the new night one by one while it runs.
//!   Commands are pipelined in batches. Spoken over RESP directly (a few lines, no client crate).
//! - **PostgreSQL**: the rows go into a staging table with `COPY`, which then replaces the table
//!   in the same transaction (drop, rename): readers see the old night or the new one, whole.
//!   `user_id` and `item_id` are `text`. The table is created anew on every copy, so a table
//!   an older elastirec made (with `bigint` ids) is replaced by the first copy, with no step to
//!   run; readers that compared the ids with numbers compare them with text from then on.
//!
//! Ids are the external ids consumers know (what producers sent: a numeric id as its decimal
//! digits, a string id as it came), as the recommendation files hold them, also in Redis keys.
//! Both read the lists from the lake (the recommendations manifest of the night), never from a
//! running server.

use std::time::Instant;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use elastirec_core::config::{SinkConfig, SinkTarget};
use elastirec_core::{Lake, Night};
use elastirec_lake::io::{ExternalLists, read_recommendations};
use elastirec_lake::read_recommendations_manifest;

use elastirec_core::ErrorKind;

/// Errors of copying a night's lists to a target.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `[sink]` settings are wrong; the message names the setting and what to do.
    #[error("{0}")]
    Config(String),
    /// A target database refused or failed a copy.
    #[error("sink {target}: {reason}")]
    Sink {
        target: &'static str,
        reason: String,
    },
    /// The night's lists could not be read from the lake.
    #[error(transparent)]
    Artefact(#[from] elastirec_lake::Error),
    /// A broken invariant.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whose fault this error is: a target that refused or failed is transient (retried).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::InvalidInput,
            Error::Sink { .. } => ErrorKind::Transient,
            Error::Artefact(e) => e.kind(),
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Result of a copy.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Users per pipelined batch of Redis commands.
const REDIS_BATCH: usize = 500;

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkReport {
    pub target: &'static str,
    pub night: Night,
    pub users: u64,
    pub rows: u64,
    pub seconds: f64,
}

/// Copies night `night`'s lists to the configured target.
pub async fn copy_night(lake: &Lake, config: &SinkConfig, night: Night) -> Result<SinkReport> {
    let started = Instant::now();
    let manifest = read_recommendations_manifest(lake, night).await?;
    let lists = read_recommendations(lake, &manifest.files).await?;
    let rows = lists.values().map(|l| l.len() as u64).sum();
    let target = match config.target {
        SinkTarget::None => {
            return Err(Error::Config(
                "[sink] target is \"none\": set it to \"redis\" or \"postgres\" \
                 (or ELASTIREC_SINK__TARGET)"
                    .into(),
            ));
        }
        SinkTarget::Redis => {
            copy_redis(config, night, &lists).await?;
            "redis"
        }
        SinkTarget::Postgres => {
            copy_postgres(config, night, &lists).await?;
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

fn redis_error(reason: impl std::fmt::Display) -> Error {
    Error::Sink {
        target: "redis",
        reason: reason.to_string(),
    }
}

/// A Redis connection speaking RESP2.
pub struct Redis {
    stream: BufReader<TcpStream>,
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Redis {
    /// Connects to `redis://host:port[/db]`.
    pub async fn connect(url: &str) -> Result<Redis> {
        let rest = url.strip_prefix("redis://").ok_or_else(|| {
            Error::Config(format!(
                "[sink] redis_url = '{url}' must look like redis://host:port[/db]"
            ))
        })?;
        let (addr, db) = match rest.split_once('/') {
            Some((a, d)) if !d.is_empty() => (a, Some(d)),
            Some((a, _)) => (a, None),
            None => (rest, None),
        };
        let addr = if addr.contains(':') {
            addr.to_string()
        } else {
            format!("{addr}:6379")
        };
        let stream = TcpStream::connect(&addr)
            .await
            .map_err(|e| redis_error(format!("cannot connect to {addr}: {e}")))?;
        stream.set_nodelay(true).ok();
        let mut redis = Redis {
            stream: BufReader::new(stream),
        };
        if let Some(db) = db {
            redis.command(&[b"SELECT", db.as_bytes()]).await?;
        }
        Ok(redis)
    }

    fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Sends one command and returns its reply; an error reply is an error.
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Reply> {
        let mut out = Vec::new();
        Redis::encode(&mut out, args);
        self.stream
            .get_mut()
            .write_all(&out)
            .await
            .map_err(redis_error)?;
        match self.read_reply().await? {
            Reply::Error(e) => Err(redis_error(e)),
            r => Ok(r),
        }
    }

    /// Sends commands in one write and reads every reply; fails on the first error reply.
    async fn pipeline(&mut self, out: &[u8], replies: usize) -> Result<()> {
        self.stream
            .get_mut()
            .write_all(out)
            .await
            .map_err(redis_error)?;
        let mut first_error = None;
        for _ in 0..replies {
            if let Reply::Error(e) = self.read_reply().await? {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(redis_error(e)),
            None => Ok(()),
        }
    }

    async fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        let n = self
            .stream
            .read_line(&mut line)
            .await
            .map_err(redis_error)?;
        if n == 0 {
            return Err(redis_error("the server closed the connection"));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    fn read_reply(&mut self) -> futures::future::BoxFuture<'_, Result<Reply>> {
        Box::pin(async move {
            let line = self.read_line().await?;
            let (kind, rest) = line.split_at(line.len().min(1));
            let int = |s: &str| {
                s.parse::<i64>()
                    .map_err(|_| redis_error(format!("bad reply line '{line}'")))
            };
            Ok(match kind {
                "+" => Reply::Simple(rest.to_string()),
                "-" => Reply::Error(rest.to_string()),
                ":" => Reply::Integer(int(rest)?),
                "$" => {
                    let n = int(rest)?;
                    if n < 0 {
                        Reply::Bulk(None)
                    } else {
                        let mut data = vec![0u8; n as usize + 2];
                        self.stream
                            .read_exact(&mut data)
                            .await
                            .map_err(redis_error)?;
                        data.truncate(n as usize);
                        Reply::Bulk(Some(data))
                    }
                }
                "*" => {
                    let n = int(rest)?;
                    if n < 0 {
                        Reply::Array(None)
                    } else {
                        let mut items = Vec::with_capacity(n as usize);
                        for _ in 0..n {
                            items.push(self.read_reply().await?);
                        }
                        Reply::Array(Some(items))
                    }
                }
                _ => return Err(redis_error(format!("unexpected reply line '{line}'"))),
            })
        })
    }
}

#[derive(Serialize)]
struct PublishedItem<'a> {
    item_id: &'a str,
    score: f32,
    rank: i32,
}

async fn copy_redis(config: &SinkConfig, night: Night, lists: &ExternalLists) -> Result<()> {
    let mut redis = Redis::connect(&config.redis_url).await?;
    let ttl = config.ttl_seconds.max(1).to_string();
    let night_text = night.to_string();
    let users: Vec<_> = lists.iter().collect();
    for batch in users.chunks(REDIS_BATCH) {
        let mut out = Vec::new();
        for (user, list) in batch {
            let key = format!("{}{user}", config.redis_key_prefix);
            let items: Vec<PublishedItem> = list
                .iter()
                .map(|(item_id, rank, score, _)| PublishedItem {
                    item_id: item_id.as_str(),
                    score: *score,
                    rank: *rank,
                })
                .collect();
            let items = serde_json::to_vec(&items)
                .map_err(|e| Error::Internal(format!("list of user {user}: {e}")))?;
            let source = list.first().map_or("", |r| r.3.as_str());
            Redis::encode(&mut out, &[b"MULTI"]);
            Redis::encode(&mut out, &[b"DEL", key.as_bytes()]);
            Redis::encode(
                &mut out,
                &[
                    b"HSET",
                    key.as_bytes(),
                    b"night",
                    night_text.as_bytes(),
                    b"source",
                    source.as_bytes(),
                    b"items",
                    &items,
                ],
            );
            Redis::encode(&mut out, &[b"EXPIRE", key.as_bytes(), ttl.as_bytes()]);
            Redis::encode(&mut out, &[b"EXEC"]);
        }
        redis.pipeline(&out, batch.len() * 5).await?;
    }
    Ok(())
}

fn postgres_error(reason: impl std::fmt::Display) -> Error {
    Error::Sink {
        target: "postgres",
        reason: reason.to_string(),
    }
}

async fn copy_postgres(config: &SinkConfig, night: Night, lists: &ExternalLists) -> Result<()> {
    use futures::SinkExt;

    let (mut client, connection) =
        tokio_postgres::connect(&config.postgres_url, tokio_postgres::NoTls)
            .await
            .map_err(|e| postgres_error(format!("cannot connect: {e}")))?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection ended");
        }
    });
    // The name was checked by Config::validate: letters, digits and _.
    let table = &config.postgres_table;
    let next = format!("{table}_next");
    let tx = client.transaction().await.map_err(postgres_error)?;
    tx.batch_execute(&format!(
        "DROP TABLE IF EXISTS {next}; \
         CREATE TABLE {next} (user_id text NOT NULL, rank integer NOT NULL, \
         item_id text NOT NULL, score real NOT NULL, source text NOT NULL, night date NOT NULL)"
    ))
    .await
    .map_err(postgres_error)?;
    let copy = format!("COPY {next} (user_id, rank, item_id, score, source, night) FROM STDIN");
    let sink: tokio_postgres::CopyInSink<bytes::Bytes> =
        tx.copy_in(copy.as_str()).await.map_err(postgres_error)?;
    futures::pin_mut!(sink);
    let mut buf = String::new();
    for (user, list) in lists {
        let user = copy_text(user);
        for (item, rank, score, source) in list {
            // Text format: tab-separated, ids escaped (they may hold a tab or a backslash).
            let item = copy_text(item);
            buf.push_str(&format!(
                "{user}\t{rank}\t{item}\t{score}\t{source}\t{night}\n"
            ));
        }
        if buf.len() > 1 << 20 {
            sink.send(bytes::Bytes::from(std::mem::take(&mut buf)))
                .await
                .map_err(postgres_error)?;
        }
    }
    if !buf.is_empty() {
        sink.send(bytes::Bytes::from(buf))
            .await
            .map_err(postgres_error)?;
    }
    sink.as_mut().finish().await.map_err(postgres_error)?;
    tx.batch_execute(&format!(
        "ALTER TABLE {next} ADD CONSTRAINT {next}_pkey PRIMARY KEY (user_id, rank); \
         DROP TABLE IF EXISTS {table}; \
         ALTER TABLE {next} RENAME TO {table}; \
         ALTER INDEX {next}_pkey RENAME TO {table}_pkey"
    ))
    .await
    .map_err(postgres_error)?;
    tx.commit().await.map_err(postgres_error)?;
    drop(client);
    driver.await.ok();
    Ok(())
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
