//! `elastirec.toml`: the validated configuration of a lake's nightly flow.
//!
//! Precedence, lowest first: built-in defaults, the config file, environment variables named
//! `ELASTIREC_<SECTION>__<KEY>` (for example `ELASTIREC_MODEL__FACTORS=64`), then command-line
//! flags (applied by the binary). Unknown sections or keys are errors, so a typo never silently
//! falls back to a default.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path as FsPath, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lake::DEFAULT_LAKE_ROOT;

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub lake: LakeConfig,
    pub events: EventsConfig,
    pub prepare: PrepareConfig,
    pub model: ModelConfig,
    pub recommend: RecommendConfig,
    pub rules: RulesConfig,
    pub evaluate: EvaluateConfig,
    pub publish: PublishConfig,
    pub run: RunConfig,
    pub schedule: ScheduleConfig,
    pub cost: CostConfig,
    pub hooks: HooksConfig,
    pub serve: ServeConfig,
    pub sink: SinkConfig,
    pub spark: SparkConfig,
}

/// `[lake]`: where the lake lives and how patiently elastirec talks to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    /// A local folder or an object store URL (`s3://bucket/prefix`).
    pub root: String,
    /// Object store options (`endpoint`, `region`, `allow_http`, `access_key_id`, ...), passed
    /// to the `object_store` crate and to delta-rs. `AWS_*` environment variables fill in what
    /// is not set here.
    pub options: HashMap<String, String>,
    /// Seconds one request to an object store may take before it fails (and is retried).
    pub timeout_seconds: u64,
    /// Seconds to wait for a connection to an object store.
    pub connect_timeout_seconds: u64,
    /// Retries of a request that failed transiently (5xx, throttling, a dropped connection).
    pub max_retries: usize,
    /// Seconds after a request's first attempt when it is no longer retried.
    pub retry_timeout_seconds: u64,
    /// Seconds the preflight check (one listing, never retried) may take before the lake is
    /// declared unreachable.
    pub preflight_timeout_seconds: u64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            root: DEFAULT_LAKE_ROOT.to_string(),
            options: HashMap::new(),
            timeout_seconds: 30,
            connect_timeout_seconds: 5,
            max_retries: 3,
            retry_timeout_seconds: 60,
            preflight_timeout_seconds: 10,
        }
    }
}

/// How timestamps in raw event files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// Seconds since 1970-01-01 UTC, as MovieLens writes them.
    UnixSeconds,
    /// Milliseconds since 1970-01-01 UTC.
    UnixMillis,
    /// RFC 3339, such as `2024-01-01T12:00:00Z`.
    Rfc3339,
}

/// `[events]`: the column mapping of raw event files (CSV with a header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Header name of the user id column (integer).
    pub user_column: String,
    /// Header name of the item id column (integer).
    pub item_column: String,
    /// Header name of the value column (a rating or an interaction strength); empty when the
    /// files have none (clickstreams): every event then has the value 1, and
    /// `[prepare] event_weights` tells the event types apart.
    pub value_column: String,
    /// Header name of the timestamp column.
    pub timestamp_column: String,
    /// How the timestamp is written.
    pub timestamp_format: TimestampFormat,
    /// Optional header name of an event type column (view, cart, purchase); null for ratings.
    pub event_type_column: Option<String>,
    /// Field delimiter, one ASCII character.
    pub delimiter: char,
    /// Values below this are rejected (the low end of a rating scale).
    pub value_min: Option<f32>,
    /// Values above this are rejected (the high end of a rating scale).
    pub value_max: Option<f32>,
    /// How far, in hours, an event's time may lie outside its folder's day before it is rejected.
    pub day_tolerance_hours: u32,
    /// Rows a load may reject (they go to `warehouse/rejects`) before it fails and loads nothing.
    pub max_errors: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        // MovieLens 20M's ratings.csv, which `import movielens` and `simulate` both write.
        EventsConfig {
            user_column: "userId".into(),
            item_column: "movieId".into(),
            value_column: "rating".into(),
            timestamp_column: "timestamp".into(),
            timestamp_format: TimestampFormat::UnixSeconds,
            event_type_column: None,
            delimiter: ',',
            value_min: None,
            value_max: None,
            day_tolerance_hours: 24,
            max_errors: 0,
        }
    }
}

/// How the events of one (user, item) pair in the window become one training value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The sum of the event values: repeated interactions add up (views, purchases).
    Sum,
    /// The largest value.
    Max,
    /// The value of the latest event (a re-rating replaces the old rating).
    Last,
    /// The number of events, whatever their values.
    Count,
}

impl Aggregate {
    /// The SQL aggregate over the `events` table's columns.
    pub fn sql(self) -> &'static str {
        match self {
            Aggregate::Sum => "SUM(value)",
            Aggregate::Max => "MAX(value)",
            Aggregate::Last => "last_value(value ORDER BY event_time)",
            Aggregate::Count => "CAST(COUNT(*) AS REAL)",
        }
    }
}

/// `[prepare]`: how the warehouse prepares the recommender's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrepareConfig {
    /// Days of history, ending with the night itself, that training sees.
    pub window_days: u32,
    /// Events with a value below this are left out of training (they still count as seen).
    pub min_value: Option<f32>,
    /// How a pair's events become its training value.
    pub aggregate: Aggregate,
    /// Users with fewer distinct events in the window are left out of training (they still get
    /// recommendations: the popularity fallback, `source = popular`).
    pub min_user_events: u32,
    /// Items with fewer distinct events in the window are left out of training (and so are
    /// never recommended by the model that night).
    pub min_item_events: u32,
    /// Weight of each event type for implicit feedback (`{ view = 1, cart = 3, purchase = 5 }`):
    /// an event's value is multiplied by its type's weight before aggregation. Types not listed,
    /// and events without a type, weigh 1.
    pub event_weights: BTreeMap<String, f32>,
    /// A folder whose `training.sql`, `seen.sql`, `items.sql` or `availability.sql` replace the
    /// built-in queries (`elastirec sql-files --write DIR` writes them to start from). Relative
    /// to the config file's folder.
    pub sql_dir: Option<PathBuf>,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        PrepareConfig {
            window_days: 365,
            min_value: None,
            aggregate: Aggregate::Sum,
            min_user_events: 1,
            min_item_events: 1,
            event_weights: BTreeMap::new(),
            sql_dir: None,
        }
    }
}

/// How ALS solves each row's least-squares problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SolverKind {
    /// A few conjugate-gradient steps, warm-started from the previous iteration (fast).
    Cg,
    /// An exact Cholesky solve per row (slow, for checking).
    Cholesky,
}

/// What the values of the training export mean to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    /// Values are confidences of a preference (clicks, plays): implicit-feedback ALS, which
    /// ranks items.
    Implicit,
    /// Values are ratings to predict: ALS-WR (regularization scaled by each row's count), with
    /// optional user and item biases; reports RMSE.
    Explicit,
}

/// How implicit feedback turns a value into a confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfidenceKind {
    /// c = 1 + alpha·value.
    Linear,
    /// c = 1 + alpha·ln(1 + value/epsilon).
    Log,
}

/// Which engine trains the model and writes the lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// elastirec's own ALS, in this process (the default and the fastest on one machine).
    #[default]
    Als,
    /// One Apache Spark job (MLlib ALS) does the train and recommend steps (`[spark]`).
    Spark,
}

impl Engine {
    /// The engine's name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Als => "als",
            Engine::Spark => "spark",
        }
    }
}

/// `[model]`: the ALS model: implicit feedback (Hu, Koren, Volinsky 2008) or explicit ratings
/// (ALS-WR, Zhou et al. 2008).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Implicit (confidences, ranking) or explicit (ratings, RMSE).
    pub feedback: FeedbackKind,
    /// Number of latent factors.
    pub factors: usize,
    /// Alternating sweeps (implicit: items, then users; explicit: users, then items).
    pub iterations: usize,
    /// L2 regularization λ.
    pub regularization: f32,
    /// Confidence scale α: c = 1 + α·value.
    pub alpha: f32,
    /// Seed of the initial factors.
    pub seed: u64,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Row solver.
    pub solver: SolverKind,
    /// Conjugate-gradient steps per row and iteration (with `solver = "cg"`).
    pub cg_steps: usize,
    /// Confidence of implicit feedback: linear or log.
    pub confidence: ConfidenceKind,
    /// Scale ε of `confidence = "log"`.
    pub epsilon: f32,
    /// Stop early once an iteration lowers the loss by less than this fraction (0: never).
    pub tolerance: f64,
    /// Explicit feedback: learn a global mean and user and item biases beside the factors.
    pub biases: bool,
    /// `als` (in process) or `spark` (one Spark job for train and recommend, see `[spark]`).
    pub engine: Engine,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            factors: 32,
            iterations: 15,
            regularization: 0.05,
            alpha: 1.0,
            seed: 42,
            threads: 0,
            solver: SolverKind::Cg,
            cg_steps: 3,
            feedback: FeedbackKind::Implicit,
            confidence: ConfidenceKind::Linear,
            epsilon: 1.0,
            tolerance: 0.0,
            biases: true,
            engine: Engine::Als,
        }
    }
}

/// `[recommend]`: the published lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommendConfig {
    /// Items per user.
    pub k: usize,
}

impl Default for RecommendConfig {
    fn default() -> Self {
        RecommendConfig { k: 10 }
    }
}

/// How promoted items enter a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromoteMode {
    /// First in the list, in the configured order (up to `max_promoted`).
    Pin,
    /// Their model score is raised by `boost`; they compete with the other items.
    Boost,
}

/// `[rules]`: business rules the recommend step applies to every list; the model is unchanged.
/// Rules only remove or reorder items; a list they leave shorter than K is filled from the
/// popularity ranking (`source = popular`), under the same rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Leave out items that `warehouse/availability` (from `raw/availability/*.csv`) says are
    /// not available on the day the lists go live (the night after D). Items without any
    /// availability row are available.
    pub exclude_unavailable: bool,
    /// Availability rows of this region apply besides rows without a region (unset: only rows
    /// without a region apply).
    pub region: Option<String>,
    /// Availability rows of this segment apply besides rows without a segment.
    pub segment: Option<String>,
    /// Items never recommended.
    pub exclude_items: Vec<i64>,
    /// At most this many items of one genre in a list (genres of `warehouse/items`,
    /// `|`-separated; an item counts once for each of its genres); 0: no cap.
    pub max_per_genre: usize,
    /// Items the business promotes (`source = promoted` when a rule placed them).
    pub promoted_items: Vec<i64>,
    /// How promoted items enter a list.
    pub promote: PromoteMode,
    /// Added to a promoted item's score with `promote = "boost"`.
    pub boost: f32,
    /// Promoted items per list at most with `promote = "pin"`.
    pub max_promoted: usize,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            exclude_unavailable: true,
            region: None,
            segment: None,
            exclude_items: Vec::new(),
            max_per_genre: 0,
            promoted_items: Vec::new(),
            promote: PromoteMode::Pin,
            boost: 1.0,
            max_promoted: 1,
        }
    }
}

/// `[evaluate]`: the nightly evaluation step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluateConfig {
    /// Night D's run evaluates night D − horizon_days against the events of the days after it,
    /// which D's load completed.
    pub horizon_days: u32,
}

impl Default for EvaluateConfig {
    fn default() -> Self {
        EvaluateConfig { horizon_days: 7 }
    }
}

/// Which list-maker the publish gate compares the model with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateBaseline {
    /// Each user's most popular unseen items (the fallback the model replaces).
    Popularity,
    /// One most-popular list for everyone.
    MostPopular,
}

/// `[publish]`: the checks a night must pass before `recommendations/_LATEST` moves to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// Publish a night on which no events arrived.
    pub allow_empty_night: bool,
    /// Hold a night whose users with recommendations fall below this share of the published
    /// night's (0 turns the check off).
    pub min_users_ratio: f64,
    /// Hold a night when the newest evaluation of an earlier night found the model worse than
    /// the baseline.
    pub require_model_beats_baseline: bool,
    /// The baseline of that check.
    pub baseline: GateBaseline,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            allow_empty_night: false,
            min_users_ratio: 0.5,
            require_model_beats_baseline: true,
            baseline: GateBaseline::MostPopular,
        }
    }
}

/// `[run]`: retries and the lease of the orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Attempts of a step after a transient failure (1 = no retry).
    pub max_attempts: u32,
    /// Wait before the first retry; doubles each retry.
    pub backoff_initial_ms: u64,
    /// Longest wait between retries.
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
    /// Five-field cron expression (minute hour day-of-month month day-of-week).
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// Shell command run after a night succeeds.
    pub on_success: Option<String>,
    /// Shell command run after a night fails or is held.
    pub on_failure: Option<String>,
    /// URL that receives the same JSON summary as an HTTP POST (http:// only).
    pub webhook_url: Option<String>,
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
    /// unset means no token. Set it with `ELASTIREC_SERVE__TOKEN` rather than in a file.
    pub token: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            poll_seconds: 30,
            token: None,
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
    /// `redis://host:port[/db]`.
    pub redis_url: String,
    /// Key of user U is `<prefix>U`.
    pub redis_key_prefix: String,
    /// Seconds a user's key lives; a night that fails to copy leaves the previous lists
    /// readable until then.
    pub ttl_seconds: u64,
    /// A libpq connection string or URL.
    pub postgres_url: String,
    /// Table holding `(user_id, rank, item_id, score, night)`.
    pub postgres_table: String,
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
    /// Spark properties, each passed as `--conf KEY=VALUE`.
    pub conf: BTreeMap<String, String>,
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
            args: Vec::new(),
            timeout_seconds: 3600,
            output_files: 1,
            log_tail_lines: 40,
        }
    }
}

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "ELASTIREC_";

impl Config {
    /// Loads the configuration: defaults, then `file` if given, then overrides from `env`.
    ///
    /// `env` is passed in (normally `std::env::vars()`) so tests do not touch the process.
    pub fn load(
        file: Option<&FsPath>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!("cannot read config file {}: {e}", path.display()))
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    Error::Config(format!(
                        "config file {} is not valid TOML: {e}",
                        path.display()
                    ))
                })?
            }
            None => toml::Table::new(),
        };
        let origin = file.map_or("defaults".to_string(), |p| p.display().to_string());
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section_table) = entry else {
                return Err(Error::Config(format!(
                    "{name}: [{section}] in {origin} is not a section"
                )));
            };
            // A secret is text even when it looks like a number.
            let value = if (section.as_str(), key.as_str()) == ("serve", "token") {
                toml::Value::String(value)
            } else {
                env_value(&value)
            };
            section_table.insert(key, value);
        }
        let mut config: Config = toml::Value::Table(table).try_into().map_err(|e| {
            Error::Config(format!(
                "invalid configuration ({origin} and ELASTIREC_* variables): {e}"
            ))
        })?;
        // Paths in the file are relative to the file's folder, not to the working directory.
        if let (Some(file), Some(dir)) = (file, config.prepare.sql_dir.as_mut())
            && dir.is_relative()
            && let Some(parent) = file.parent()
        {
            *dir = parent.join(&*dir);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges that the types cannot express.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.model.factors == 0 || self.model.factors > 1024 {
            return fail(format!(
                "[model] factors = {} is out of range: use 1 to 1024",
                self.model.factors
            ));
        }
        if self.model.solver == SolverKind::Cg && self.model.cg_steps == 0 {
            return fail("[model] cg_steps must be at least 1 with solver = \"cg\"".into());
        }
        if self.model.iterations == 0 {
            return fail("[model] iterations must be at least 1".into());
        }
        if !(self.model.regularization.is_finite() && self.model.regularization >= 0.0) {
            return fail("[model] regularization must be a finite number >= 0".into());
        }
        if !(self.model.alpha.is_finite() && self.model.alpha > 0.0) {
            return fail("[model] alpha must be a finite number > 0".into());
        }
        if !(self.model.epsilon.is_finite() && self.model.epsilon > 0.0) {
            return fail(format!(
                "[model] epsilon = {} must be a finite number > 0 (the scale of confidence = \
                 \"log\")",
                self.model.epsilon
            ));
        }
        if !(self.model.tolerance.is_finite() && (0.0..1.0).contains(&self.model.tolerance)) {
            return fail(format!(
                "[model] tolerance = {} is out of range: use 0 (never stop early) to below 1",
                self.model.tolerance
            ));
        }
        if self.recommend.k == 0 || self.recommend.k > 1000 {
            return fail(format!(
                "[recommend] k = {} is out of range: use 1 to 1000",
                self.recommend.k
            ));
        }
        for (kind, weight) in &self.prepare.event_weights {
            if !(weight.is_finite() && *weight >= 0.0) {
                return fail(format!(
                    "[prepare] event_weights: the weight of '{kind}' must be a finite number >= 0"
                ));
            }
        }
        if !self.rules.boost.is_finite() {
            return fail("[rules] boost must be a finite number".into());
        }
        if self.prepare.window_days == 0 {
            return fail("[prepare] window_days must be at least 1".into());
        }
        if self.run.max_attempts == 0 {
            return fail("[run] max_attempts must be at least 1 (1 means no retry)".into());
        }
        if self.run.lease_seconds < 5 {
            return fail("[run] lease_seconds must be at least 5".into());
        }
        if !(self.publish.min_users_ratio.is_finite() && self.publish.min_users_ratio >= 0.0) {
            return fail("[publish] min_users_ratio must be a number >= 0".into());
        }
        if !(self.cost.price_per_hour >= 0.0 && self.cost.always_on_price_per_hour >= 0.0) {
            return fail("[cost] prices must be numbers >= 0".into());
        }
        for (name, value) in [
            ("timeout_seconds", self.lake.timeout_seconds),
            ("connect_timeout_seconds", self.lake.connect_timeout_seconds),
            ("retry_timeout_seconds", self.lake.retry_timeout_seconds),
            (
                "preflight_timeout_seconds",
                self.lake.preflight_timeout_seconds,
            ),
        ] {
            if value == 0 || value > 3600 {
                return fail(format!(
                    "[lake] {name} = {value} is out of range: use 1 to 3600"
                ));
            }
        }
        if self.lake.max_retries > 100 {
            return fail(format!(
                "[lake] max_retries = {} is out of range: use 0 to 100",
                self.lake.max_retries
            ));
        }
        if self.serve.poll_seconds == 0 {
            return fail("[serve] poll_seconds must be at least 1".into());
        }
        if self
            .serve
            .token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return fail("[serve] token is empty: unset it, or give a non-empty token".into());
        }
        let table = &self.sink.postgres_table;
        if table.is_empty()
            || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || table.starts_with(|c: char| c.is_ascii_digit())
        {
            return fail(format!(
                "[sink] postgres_table = '{table}' is not a plain SQL name: use letters, \
                 digits and _"
            ));
        }
        if self.spark.submit.split_whitespace().next().is_none() {
            return fail(
                "[spark] submit is empty: give the submit command, such as \"spark-submit \
                 --master local[2]\""
                    .into(),
            );
        }
        if self.spark.timeout_seconds == 0 || self.spark.timeout_seconds > 7 * 24 * 3600 {
            return fail(format!(
                "[spark] timeout_seconds = {} is out of range: use 1 to 604800",
                self.spark.timeout_seconds
            ));
        }
        if self.spark.output_files == 0 || self.spark.output_files > 10_000 {
            return fail(format!(
                "[spark] output_files = {} is out of range: use 1 to 10000",
                self.spark.output_files
            ));
        }
        for (key, value) in &self.spark.conf {
            if key.trim().is_empty() || key.contains(['=', ' ', '\n']) || value.contains('\n') {
                return fail(format!(
                    "[spark] conf: '{key}' = '{value}' is not a Spark property: use keys such \
                     as \"spark.sql.shuffle.partitions\" without '=' or spaces"
                ));
            }
        }
        if self.model.engine == Engine::Spark {
            // What MLlib's ALS cannot do is refused here rather than silently trained otherwise
            // (docs/spark.md, "Parameters").
            if self.model.feedback == FeedbackKind::Implicit
                && self.model.confidence != ConfidenceKind::Linear
            {
                return fail(
                    "[model] confidence = \"log\" is not available with engine = \"spark\": \
                     MLlib's implicit ALS only has c = 1 + alpha·value; set confidence = \
                     \"linear\", or engine = \"als\""
                        .into(),
                );
            }
            if self.model.feedback == FeedbackKind::Explicit && self.model.biases {
                return fail(
                    "[model] biases = true is not available with engine = \"spark\": MLlib's \
                     explicit ALS (ALS-WR) has no global mean or user and item biases; set \
                     biases = false, or engine = \"als\""
                        .into(),
                );
            }
            if self.model.tolerance > 0.0 {
                return fail(format!(
                    "[model] tolerance = {} is not available with engine = \"spark\": MLlib \
                     runs every iteration; set tolerance = 0, or engine = \"als\"",
                    self.model.tolerance
                ));
            }
        }
        if !self.events.delimiter.is_ascii() {
            return fail("[events] delimiter must be one ASCII character".into());
        }
        Ok(())
    }
}

/// Environment values are strings; read numbers and booleans as such so `FACTORS=64` works.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>() {
        return toml::Value::Float(f);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("elastirec.toml");
        std::fs::write(
            &file,
            "[model]\nfactors = 16\nalpha = 2.0\n[recommend]\nk = 20\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[("ELASTIREC_MODEL__FACTORS", "64"), ("OTHER", "x")]),
        )
        .unwrap();
        assert_eq!(c.model.factors, 64);
        assert_eq!(c.model.alpha, 2.0);
        assert_eq!(c.recommend.k, 20);
        assert_eq!(c.model.iterations, ModelConfig::default().iterations);
        assert_eq!(Config::load(None, env(&[])).unwrap(), Config::default());
    }

    #[test]
    fn the_example_file_parses_to_the_defaults() {
        let example = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../../elastirec.example.toml");
        assert_eq!(
            Config::load(Some(&example), env(&[])).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn a_token_from_the_environment_stays_text() {
        let c = Config::load(None, env(&[("ELASTIREC_SERVE__TOKEN", "123456")])).unwrap();
        assert_eq!(c.serve.token.as_deref(), Some("123456"));
        let e =
            Config::load(None, env(&[("ELASTIREC_SINK__POSTGRES_TABLE", "x; drop")])).unwrap_err();
        assert!(e.to_string().contains("postgres_table"), "{e}");
    }

    #[test]
    fn the_engine_and_spark_settings_are_read_and_checked() {
        let c = Config::load(
            None,
            env(&[
                ("ELASTIREC_MODEL__ENGINE", "spark"),
                ("ELASTIREC_SPARK__TIMEOUT_SECONDS", "60"),
            ]),
        )
        .unwrap();
        assert_eq!(c.model.engine, Engine::Spark);
        assert_eq!(c.spark.timeout_seconds, 60);
        assert_eq!(Config::default().model.engine, Engine::Als);
        let e = Config::load(None, env(&[("ELASTIREC_MODEL__ENGINE", "flink")])).unwrap_err();
        assert!(e.to_string().contains("flink"), "{e}");
        let e = Config::load(None, env(&[("ELASTIREC_SPARK__SUBMIT", " ")])).unwrap_err();
        assert!(e.to_string().contains("[spark] submit"), "{e}");
        let e = Config::load(None, env(&[("ELASTIREC_SPARK__OUTPUT_FILES", "0")])).unwrap_err();
        assert!(e.to_string().contains("[spark] output_files"), "{e}");
        // What MLlib cannot do is refused with the spark engine, and only with it.
        let spark = ("ELASTIREC_MODEL__ENGINE", "spark");
        let explicit = ("ELASTIREC_MODEL__FEEDBACK", "explicit");
        let e = Config::load(None, env(&[spark, explicit])).unwrap_err();
        assert!(e.to_string().contains("biases"), "{e}");
        let c = Config::load(
            None,
            env(&[spark, explicit, ("ELASTIREC_MODEL__BIASES", "false")]),
        )
        .unwrap();
        assert_eq!(c.model.feedback, FeedbackKind::Explicit);
        let log = ("ELASTIREC_MODEL__CONFIDENCE", "log");
        let e = Config::load(None, env(&[spark, log])).unwrap_err();
        assert!(e.to_string().contains("confidence"), "{e}");
        let e =
            Config::load(None, env(&[spark, ("ELASTIREC_MODEL__TOLERANCE", "0.01")])).unwrap_err();
        assert!(e.to_string().contains("tolerance"), "{e}");
        Config::load(None, env(&[log, explicit])).unwrap();
    }

    #[test]
    fn typos_and_bad_ranges_are_named() {
        let e = Config::load(None, env(&[("ELASTIREC_MODEL__FACTOR", "8")])).unwrap_err();
        assert!(e.to_string().contains("factor"), "{e}");
        let e = Config::load(None, env(&[("ELASTIREC_MODEL__TOLERANCE", "2")])).unwrap_err();
        assert!(e.to_string().contains("[model] tolerance = 2"), "{e}");
        let e = Config::load(None, env(&[("ELASTIREC_MODEL__EPSILON", "0")])).unwrap_err();
        assert!(e.to_string().contains("[model] epsilon"), "{e}");
        let e = Config::load(None, env(&[("ELASTIREC_MODEL__FEEDBACK", "ratings")])).unwrap_err();
        assert!(e.to_string().contains("explicit"), "{e}");
        let c = Config::load(None, env(&[("ELASTIREC_MODEL__FEEDBACK", "explicit")])).unwrap();
        assert_eq!(c.model.feedback, FeedbackKind::Explicit);
        let e = Config::load(None, env(&[("ELASTIREC_RECOMMEND__K", "0")])).unwrap_err();
        assert!(e.to_string().contains("[recommend] k"), "{e}");
        let e = Config::load(Some(FsPath::new("/nonexistent/x.toml")), env(&[])).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.toml"), "{e}");
    }
}
