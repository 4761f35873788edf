//! The Redis target, through the `redis` crate: a multiplexed connection from `[sink]
//! redis_url` (`redis://` or `rediss://`; a user and password in the URL are sent as `AUTH`,
//! a `/db` as `SELECT`), bounded by `[sink] timeout_seconds` for connecting and for every reply.
//!
//! A copy pipelines [`REDIS_BATCH`] users per round trip, each user's key replaced in its own
//! `MULTI`/`EXEC`; [`delete_users`] deletes keys with one `DEL` per batch.

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use serde::Serialize;

use elastirec_core::Night;
use elastirec_core::config::SinkConfig;
use elastirec_lake::io::ExternalLists;

use crate::url::{redact_url, scrub};
use crate::{Error, REDIS_BATCH, Result, install_crypto_provider, timeout_of, within};

/// An error of the Redis target, its text scrubbed of the URL's password.
fn redis_error(config: &SinkConfig, reason: impl std::fmt::Display, transient: bool) -> Error {
    Error::Sink {
        target: "redis",
        endpoint: redact_url(&config.redis_url),
        reason: scrub(reason, &config.redis_url),
        transient,
    }
}

/// A client error, classified: a refused password is not worth retrying; a lost or refused
/// connection, a timeout or a server that is busy or loading is.
fn from_redis(config: &SinkConfig, what: &str, e: &redis::RedisError) -> Error {
    let refused = e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"));
    redis_error(config, format!("{what}: {e}"), !refused)
}

fn timed_out(config: &SinkConfig, what: &str) -> Error {
    redis_error(
        config,
        format!(
            "{what}: no answer within {} s ([sink] timeout_seconds)",
            config.timeout_seconds
        ),
        true,
    )
}

/// A connection to `[sink] redis_url`, authenticated, with `[sink] timeout_seconds` as the
/// connection and response timeouts.
async fn connect(config: &SinkConfig) -> Result<MultiplexedConnection> {
    install_crypto_provider();
    let client = redis::Client::open(config.redis_url.as_str()).map_err(|e| {
        Error::Config(format!(
            "[sink] redis_url = '{}' is not a Redis URL: use redis://[user][:password@]host\
             [:port][/db] or rediss://… for TLS ({})",
            redact_url(&config.redis_url),
            scrub(e, &config.redis_url)
        ))
    })?;
    let limit = timeout_of(config);
    let settings = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(limit))
        .set_response_timeout(Some(limit));
    // The client's own timeouts apply per step; the outer one bounds the whole handshake
    // (TCP, TLS, HELLO/AUTH, SELECT) whatever the client does inside.
    within(
        limit,
        async {
            client
                .get_multiplexed_async_connection_with_config(&settings)
                .await
                .map_err(|e| from_redis(config, "cannot connect", &e))
        },
        || timed_out(config, "cannot connect"),
    )
    .await
}

/// Sends `pipe` and waits for all its replies; an error reply anywhere (inside an `EXEC` too)
/// fails it.
async fn send(
    config: &SinkConfig,
    con: &mut MultiplexedConnection,
    pipe: &redis::Pipeline,
    what: &str,
) -> Result<redis::Value> {
    within(
        timeout_of(config),
        async {
            pipe.query_async::<redis::Value>(con)
                .await
                .map_err(|e| from_redis(config, what, &e))
        },
        || timed_out(config, what),
    )
    .await
}

#[derive(Serialize)]
struct PublishedItem<'a> {
    item_id: &'a str,
    score: f32,
    rank: i32,
}

/// Writes every user's hash (see the crate documentation for the layout).
pub(crate) async fn copy(config: &SinkConfig, night: Night, lists: &ExternalLists) -> Result<()> {
    let mut con = connect(config).await?;
    let ttl = config.ttl_seconds.max(1);
    let night_text = night.to_string();
    let users: Vec<_> = lists.iter().collect();
    for batch in users.chunks(REDIS_BATCH) {
        let mut pipe = redis::pipe();
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
            pipe.cmd("MULTI")
                .cmd("DEL")
                .arg(&key)
                .cmd("HSET")
                .arg(&key)
                .arg("night")
                .arg(&night_text)
                .arg("source")
                .arg(source)
                .arg("items")
                .arg(items)
                .cmd("EXPIRE")
                .arg(&key)
                .arg(ttl)
                .cmd("EXEC");
        }
        send(config, &mut con, &pipe, "copying lists").await?;
    }
    Ok(())
}

/// Deletes the keys of `users`; returns how many existed.
pub(crate) async fn delete_users(config: &SinkConfig, users: &[String]) -> Result<u64> {
    if users.is_empty() {
        return Ok(0);
    }
    let mut con = connect(config).await?;
    let mut deleted = 0;
    for batch in users.chunks(REDIS_BATCH) {
        let keys: Vec<String> = batch
            .iter()
            .map(|u| format!("{}{u}", config.redis_key_prefix))
            .collect();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(keys);
        let reply = send(config, &mut con, &pipe, "deleting erased users' keys").await?;
        deleted += deleted_count(&reply).ok_or_else(|| {
            redis_error(
                config,
                format!("DEL answered {reply:?}, not a count of keys"),
                false,
            )
        })?;
    }
    Ok(deleted)
}

/// The count a pipeline of one `DEL` answered.
fn deleted_count(reply: &redis::Value) -> Option<u64> {
    match reply {
        redis::Value::Array(replies) => match replies.as_slice() {
            [redis::Value::Int(n)] => u64::try_from(*n).ok(),
            _ => None,
        },
        _ => None,
    }
}
