//! The sections about running and exposing the flow: `[run]`, `[schedule]`, `[cost]`,
//! `[hooks]`, `[serve]`, `[sink]` and `[spark]` (how the Spark engine submits its job).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[run]`: retries and the lease of the orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Attempts of a step after a transient failure (1 = no retry).
    pub max_attempts: u32,
    /// Base wait before a retry: the retry after `n` earlier ones waits a random time ("full
    /// jitter") between 0 and `backoff_initial_ms · 2^n`, at most `backoff_max_ms`. A stop request
    /// (SIGTERM, Ctrl-C) ends the wait and stops the night instead of retrying.
    pub backoff_initial_ms: u64,
    /// The cap of the random wait between retries.
    pub backoff_max_ms: u64,
    /// How long a lease lasts without a heartbeat (a crashed runner's lease expires after this).
    pub lease_seconds: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            max_attempts: 4,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
            lease_seconds: 300,
        }
    }
}

/// `[schedule]`: when `elastirec schedule` starts the nightly run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Cron expression: five fields (minute hour day-of-month month day-of-week) with names
    /// (`MON-FRI`, `JAN`), or a shorthand (`@daily`, `@hourly`, `@weekly`, `@monthly`,
    /// `@yearly`). When both day fields are restricted a day matches if either does (Vixie
    /// cron): `0 0 1 * MON` fires on the 1st and on every Monday. Parsed by the `croner` crate.
    pub cron: String,
    /// IANA time zone of the cron expression, such as `Europe/Paris`.
    pub timezone: String,
    /// Run every night missed since the last succeeded one (after downtime), oldest first.
    pub catch_up: bool,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            cron: "30 2 * * *".into(),
            timezone: "UTC".into(),
            catch_up: true,
        }
    }
}

/// `[cost]`: prices for the elastic-versus-always-on comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostConfig {
    /// Price per hour of the machine the nightly run uses (billed only while it runs).
    pub price_per_hour: f64,
    /// Price per hour of the always-on warehouse and cluster it replaces.
    pub always_on_price_per_hour: f64,
    pub currency: String,
}

impl Default for CostConfig {
    fn default() -> Self {
        // On-demand list prices in us-east-1 as assumptions, not measurements: a 2-vCPU, 8 GiB
        // machine (m5.large, 0.096/h) against the reference design's always-on pair, a 2-node
        // Redshift dc2.large cluster (2 × 0.25/h) plus a 3-node EMR m5.xlarge cluster
        // (3 × (0.192 + 0.048)/h).
        CostConfig {
            price_per_hour: 0.096,
            always_on_price_per_hour: 1.22,
            currency: "USD".into(),
        }
    }
}

/// `[hooks]`: commands called when a night ends, with a JSON summary on standard input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// Shell command run after a night succeeds.
    pub on_success: Option<String>,
    /// Shell command run after a night fails or is held.
    pub on_failure: Option<String>,
    /// URL that receives the same JSON summary as an HTTP POST (`http://` or `https://`; the
    /// server's certificate is checked against the system's roots, or `webhook_ca_file`). Logs
    /// and errors show only its scheme and host: such URLs often carry a secret in their path.
    pub webhook_url: Option<String>,
    /// PEM file of the certificate authority an `https://` webhook's certificate is checked
    /// against, for an endpoint signed by a private CA (beside the system's roots).
    pub webhook_ca_file: Option<std::path::PathBuf>,
    /// Seconds a hook command may run before it (and its children) are killed.
    pub timeout_seconds: u64,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            on_success: None,
            on_failure: None,
            webhook_url: None,
            webhook_ca_file: None,
            timeout_seconds: 60,
        }
    }
}

/// `[serve]`: the HTTP server of `elastirec serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on (0 picks a free one and prints it).
    pub port: u16,
    /// Seconds between two reads of `recommendations/_LATEST`.
    pub poll_seconds: u64,
    /// Bearer token required on every route but `/healthz` and the dashboard's static files;
    /// unset means no token. Set it with `ELASTIREC_SERVE__TOKEN` (or `serve --token-file`)
    /// rather than in a file others read. Serving a non-loopback address needs one unless
    /// `serve --insecure-no-token`.
    pub token: Option<String>,
    /// PEM certificate chain for HTTPS (with `tls_key`); unset serves plain HTTP.
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
    /// Connections served at once; the next one is answered 503 and closed.
    pub max_connections: usize,
    /// Seconds for a whole request head to arrive (also how long an idle keep-alive
    /// connection is kept).
    pub header_timeout_secs: u64,
    /// Seconds from a request head to its answer; 503 after.
    pub request_timeout_secs: u64,
    /// Seconds a write to a client may make no progress before the connection is closed.
    pub write_timeout_secs: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            poll_seconds: 30,
            token: None,
            tls_cert: None,
            tls_key: None,
            max_connections: 1024,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            write_timeout_secs: 10,
        }
    }
}

/// Where `elastirec sink` copies a night's lists for applications to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkTarget {
    /// Nowhere: applications call the HTTP API.
    None,
    /// One Redis hash per user, with a TTL.
    Redis,
    /// One PostgreSQL table, replaced in one transaction.
    Postgres,
}

/// `[sink]`: copying each user's top-K into an application database (`elastirec sink`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    pub target: SinkTarget,
    /// `redis://[user][:password@]host[:port][/db]`, or `rediss://…` for TLS (checked against
    /// the system's root certificates). Prefer the environment for a password:
    /// `ELASTIREC_SINK__REDIS_URL`.
    pub redis_url: String,
    /// Key of user U is `<prefix>U`.
    pub redis_key_prefix: String,
    /// Seconds a user's key lives; a night that fails to copy leaves the previous lists
    /// readable until then.
    pub ttl_seconds: u64,
    /// A libpq connection string or URL; `sslmode` is `disable`, `prefer` (the default),
    /// `require` or `verify-full` (with `sslrootcert=FILE`, or the system's roots).
    pub postgres_url: String,
    /// Table holding `(user_id, rank, item_id, score, night)`.
    pub postgres_table: String,
    /// Seconds to connect (TCP, TLS, authentication) and to wait for each reply before the
    /// copy fails as transient (1 to 3600).
    pub timeout_seconds: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            target: SinkTarget::None,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_key_prefix: "elastirec:recs:".into(),
            ttl_seconds: 2 * 24 * 3600,
            postgres_url: "postgresql://postgres@127.0.0.1:5432/test".into(),
            postgres_table: "elastirec_recommendations".into(),
            timeout_seconds: 10,
        }
    }
}

/// `[spark]`: how the Spark engine (`[model] engine = "spark"`) submits its job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SparkConfig {
    /// The submit command, split on whitespace; the job's settings, the program file and its
    /// argument follow. `spark-submit` not on `PATH` is looked up in pip's `pyspark`.
    pub submit: String,
    /// Spark properties, each passed as `--conf KEY=VALUE`, except secrets (a key naming a
    /// secret, password, token or credential, or listed in `secret_conf`): those reach
    /// spark-submit in a 0600 properties file, never its command line, and records show `***`.
    pub conf: BTreeMap<String, String>,
    /// More keys of `conf` to treat as secrets (e.g. `spark.hadoop.fs.s3a.access.key`).
    pub secret_conf: Vec<String>,
    /// More arguments for the submit command, before the program (one per element, so they may
    /// hold spaces).
    pub args: Vec<String>,
    /// Seconds the job may run before it is killed (a timeout counts as transient: retried).
    pub timeout_seconds: u64,
    /// Parquet files the job writes the lists into (one recommendations part file each).
    pub output_files: usize,
    /// Lines of the job's log kept in the run record.
    pub log_tail_lines: usize,
}

impl Default for SparkConfig {
    fn default() -> Self {
        SparkConfig {
            submit: "spark-submit --master local[2]".into(),
            conf: BTreeMap::new(),
            secret_conf: Vec::new(),
            args: Vec::new(),
            timeout_seconds: 3600,
            output_files: 1,
            log_tail_lines: 40,
        }
    }
}
