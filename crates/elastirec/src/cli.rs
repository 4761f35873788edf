//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use elastirec_core::Night;
use elastirec_flow::tune::Grid;

/// Nightly recommendations from events in object storage.
///
/// Producers drop events under raw/events/YYYY/MM/DD/ in the lake; each night elastirec loads
/// them into Delta tables (ingest), prepares the training input with SQL (prepare), trains
/// implicit-feedback ALS (train) and writes every user's top-K (recommend). All state lives in
/// the lake: a local folder by default, or an object store URL.
///
/// Start with `elastirec demo`.
#[derive(Debug, Parser)]
#[command(name = "elastirec", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The lake root: a folder, or a URL such as s3://bucket/prefix [default: ./lake, or
    /// [lake] root in the config]
    #[arg(
        long,
        global = true,
        env = "ELASTIREC_LAKE",
        value_name = "PATH_OR_URL"
    )]
    pub lake: Option<String>,

    /// Configuration file (TOML with [lake], [events], [prepare], [model], [recommend]);
    /// ELASTIREC_<SECTION>__<KEY> variables override it, flags override both
    #[arg(long, global = true, env = "ELASTIREC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More log output on stderr (-v: info, -vv: debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lay out a MovieLens data set as daily raw event files in the lake
    #[command(subcommand)]
    Import(ImportCommand),

    /// Produce days of events from a planted preference model (a stand-in for applications);
    /// with --scale S, a data set shaped like MovieLens 20M (S = 1) or proportionally smaller
    Simulate(SimulateArgs),

    /// Load raw files of night DATE, and of any earlier day not loaded yet, into the warehouse
    Ingest(IngestArgs),

    /// Write night DATE's training export (window of history, one row per user-item pair)
    ///
    /// The export is made by SQL files users can read and override ([prepare] sql_dir; see
    /// `elastirec sql-files`). An existing export of the night is kept unless --overwrite.
    Prepare(PrepareArgs),

    /// Write the built-in SQL of `prepare` into a folder to read or override it
    ///
    /// Edit the files, then set [prepare] sql_dir to that folder: each file there replaces the
    /// built-in query of the same name. `${name}` parameters are filled in per night.
    SqlFiles(SqlFilesArgs),

    /// Train night DATE's model from its training export
    Train(TrainArgs),

    /// Write night DATE's top-K recommendations (`publish` makes them live)
    Recommend(RecommendArgs),

    /// Move recommendations/_LATEST to night DATE if it passes the publish gate
    Publish(PublishArgs),

    /// Run nights: ingest → prepare → snapshot → train → recommend → evaluate → publish
    ///
    /// Steps whose outputs are already current are skipped, so after a crash or a failure the
    /// same command continues from the first step that did not finish. Only transient failures
    /// (timeouts, throttling, 5xx) are retried, with backoff ([run] max_attempts). A lease in
    /// runs/_lease/ keeps two runners off one lake.
    Run(RunArgs),

    /// The run ledger: one line per night (state, steps, time, cost, publish decision)
    Runs(RunsArgs),

    /// One night's steps in detail: state, attempt, times, rows, CPU, memory, errors
    Status(StatusArgs),

    /// Run every night at [schedule] cron in [schedule] timezone, catching up missed nights;
    /// stops cleanly between steps on SIGTERM or Ctrl-C
    Schedule,

    /// Delete exports, models and recommendations of old nights (and, if asked, loaded raw
    /// files); never the live night
    Gc(GcArgs),

    /// What nights cost on an elastic machine against an always-on warehouse + cluster
    Cost(CostArgs),

    /// Warehouse snapshots: take one, list them, restore one
    #[command(subcommand)]
    Warehouse(WarehouseCommand),

    /// Read-only SQL over the warehouse tables (events, items, loads, rejects); without a
    /// query, an interactive shell reading statements ended by ';' from standard input
    Sql(SqlArgs),

    /// Score night DATE's stored recommendations against the events of the following days
    ///
    /// A temporal backtest: night DATE's lists come from the model trained on events up to DATE;
    /// the ground truth of a user is the items of their events on DATE+1..DATE+H that they had
    /// not seen and that were known at DATE. Users known at DATE with such items are scored, a
    /// user without a list counting 0. Prints NDCG, precision, recall, MAP and hit rate at K
    /// and catalog coverage for the model, each user's unseen popular items, and one
    /// most-popular list; writes evaluations/YYYY/MM/DD/horizon-Hd.json.
    Evaluate(EvaluateArgs),

    /// Pick ALS factors, regularization and alpha on an inner temporal split of night DATE
    ///
    /// Fits one model per point of a small grid on the training export of night DATE − H (made
    /// with `prepare` if missing), and scores each point's top-K lists against the events of
    /// days DATE−H+1..DATE exactly as `evaluate` scores a night. Nothing after DATE is read.
    /// Prints the grid with its scores and the choice (the highest NDCG@K; the first on ties),
    /// and keeps both in night DATE's run record (runs/YYYY-MM-DD.json, field "tuning"). The
    /// configuration is not changed: apply the choice with [model] in the config file or with
    /// --factors, --regularization and --alpha on `train` or `run`.
    Tune(TuneArgs),

    /// From nothing: simulate 30 days, run every night, evaluate, and say where outputs are
    Demo(DemoArgs),

    /// Serve the latest night's recommendations over HTTP, with a dashboard of the nightly runs
    Serve(ServeArgs),

    /// Show a user's history and recommendations (with titles) in the terminal
    Show(ShowArgs),

    /// Copy a night's lists into Redis or PostgreSQL ([sink] in the config)
    Sink(SinkArgs),

    /// Erase users everywhere: warehouse events and rejects, every night's exports, models and
    /// recommendations (serving drops them at its next poll), their Redis keys or PostgreSQL
    /// rows when [sink] target is set, and with --purge-raw the raw files
    ///
    /// The request is recorded in warehouse/erasures by salted hash only, never the id; later
    /// loads drop the users' events. Older Delta versions and the snapshots naming them keep
    /// the rows until `elastirec warehouse vacuum --erasures`; forget lists those snapshots.
    /// A forget that was killed is finished by running it again.
    Forget(ForgetArgs),

    /// Upgrade a lake written by an older elastirec to this one's layout, in place
    ///
    /// Other commands refuse an older lake until it is migrated, and every command refuses a
    /// newer one. Migration steps are rerunnable; lake.json is rewritten last.
    Migrate,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// A user id to erase, as producers sent it (`42`, `A3CIUOJXQ5VDQ2`); repeat for several
    /// users
    #[arg(
        long = "user",
        value_name = "ID",
        required_unless_present = "users_file"
    )]
    pub users: Vec<String>,
    /// A file of user ids, one per line, as producers sent them (each line trimmed; blank lines
    /// and lines starting with # are skipped)
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// Also rewrite the raw event files that hold the users' records, without them, in their
    /// own format and compression (CSV, JSON lines, Parquet; gzip, zstd, bzip2); the load
    /// ledger follows, so the files are neither reported as changed nor loaded again. A
    /// [events] raw_prefix outside the lake is only read, and is listed as left
    #[arg(long)]
    pub purge_raw: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// MovieLens ratings (ml-20m/25m/latest ratings.csv, ml-1m/10m ratings.dat, ml-100k u.data),
    /// detected by content; written as one CSV per UTC day under raw/events/YYYY/MM/DD/
    Movielens(MovielensArgs),
}

#[derive(Debug, Args)]
pub struct MovielensArgs {
    /// The ratings file
    #[arg(long, value_name = "FILE")]
    pub ratings: PathBuf,
    /// The movies file (movies.csv, movies.dat or u.item), written to raw/items/
    #[arg(long, value_name = "FILE")]
    pub items: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// First simulated day (UTC)
    #[arg(long, default_value = "2024-01-01", value_name = "YYYY-MM-DD")]
    pub start: Night,
    /// Number of days
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Number of users
    #[arg(long, default_value_t = 2_000)]
    pub users: u32,
    /// Number of items
    #[arg(long, default_value_t = 1_000)]
    pub items: u32,
    /// Events per day
    #[arg(long, default_value_t = 10_000)]
    pub events_per_day: u32,
    /// Seed: the same seed always gives the same files
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// MovieLens 20M's shape times S (0.02 to 1): 138,493·S users, 27,278·S items,
    /// 20,000,263·S events from 1995-01-09 to 2015-03-31, at least 20 per user, half-star
    /// ratings; replaces --start, --days, --users, --items and --events-per-day
    #[arg(
        long,
        value_name = "S",
        conflicts_with_all = ["start", "days", "users", "items", "events_per_day"]
    )]
    pub scale: Option<f64>,
    /// How the events are written: `movielens` (CSV per day folder, integer ids, ratings) or
    /// `segment` (Segment track calls with UUID users and SKU items, view/cart/purchase by the
    /// planted rating, gzip JSON lines per arrival-hour folder `YYYY/MM/DD/HH/`, ~1% delivered
    /// twice; read with `[events] preset = "segment"`), or `segment-integer-ids` (the same
    /// files with integer ids, to compare the cost of string ids)
    #[arg(long, value_enum, default_value = "movielens")]
    pub format: SimulateFormatArg,
}

/// `simulate --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimulateFormatArg {
    Movielens,
    Segment,
    SegmentIntegerIds,
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// The night, a UTC calendar day
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Night,
    /// Replace the night's export if it exists (it is rewritten whole; readers never see a
    /// half-written one)
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct SqlFilesArgs {
    /// Folder to write training.sql, seen.sql, items.sql and availability.sql into (created if
    /// missing); without it, the queries in effect (built-in or from [prepare] sql_dir) are
    /// printed
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
    /// Replace files that already exist in DIR
    #[arg(long, requires = "write")]
    pub overwrite: bool,
    /// Print the queries of night DATE with their parameters filled in
    #[arg(long, value_name = "YYYY-MM-DD", conflicts_with = "write")]
    pub date: Option<Night>,
}

#[derive(Debug, Args)]
pub struct DateArg {
    /// The night, a UTC calendar day
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Night,
}

/// Overrides of [model] settings.
#[derive(Debug, Args, Default)]
pub struct ModelArgs {
    /// Latent factors [config: model.factors, default 32]
    #[arg(long)]
    pub factors: Option<usize>,
    /// ALS iterations [config: model.iterations, default 15]
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Regularization λ [config: model.regularization, default 0.05]
    #[arg(long)]
    pub regularization: Option<f32>,
    /// Confidence scale α in c = 1 + α·value [config: model.alpha, default 1]
    #[arg(long)]
    pub alpha: Option<f32>,
    /// Worker threads, 0 for one per core [config: model.threads]
    #[arg(long)]
    pub threads: Option<usize>,
    /// Who trains and recommends: als (in this process) or spark (one Spark MLlib job, submitted
    /// with [spark] submit; see docs/spark.md) [config: model.engine, default als]
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
}

/// Values of `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// elastirec's own ALS, in this process
    Als,
    /// One Spark job (MLlib ALS) for the train and recommend steps
    Spark,
}

/// Load settings.
#[derive(Debug, Args, Default)]
pub struct LoadArgs {
    /// Rows a load may reject into warehouse/rejects before it fails and loads nothing
    /// [config: events.max_errors, default 0]
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub date: DateArg,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Parse and validate the files a load would take, report rows and rejects, commit nothing
    #[arg(long, conflicts_with = "reload")]
    pub dry_run: bool,
    /// Replace the rows of a loaded raw file whose content changed (its lake path, such as
    /// raw/events/2024/01/05/app.csv); repeat for several files
    #[arg(long, value_name = "FILE")]
    pub reload: Vec<String>,
    /// Never load a raw event file (its lake path): one that cannot be read at all and that you
    /// cannot fix or move; it is recorded in the load ledger with no rows. Repeat for several
    #[arg(long, value_name = "FILE", conflicts_with = "dry_run")]
    pub skip_file: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub date: DateArg,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    #[command(flatten)]
    pub date: DateArg,
    /// Items per user [config: recommend.k, default 10]
    #[arg(long)]
    pub k: Option<usize>,
    /// Lists for the users of this file instead of the night's, folded in against night DATE's
    /// model (users it never saw, such as the day's sign-ups, or what a user did since): one
    /// JSON object per line, {"user_id": "…", "items": [{"item_id": "…", "event_type":
    /// "purchase", "value": 1}]}; the same code as POST /v1/recommendations
    #[arg(long, value_name = "FILE.jsonl")]
    pub fold_in: Option<PathBuf>,
    /// With --fold-in: write the lists (JSON lines) to this file instead of standard output
    #[arg(long, value_name = "FILE", requires = "fold_in")]
    pub out: Option<PathBuf>,
}

/// Which nights a command covers.
#[derive(Debug, Args, Default)]
#[group(required = true, multiple = true)]
pub struct NightsArg {
    /// One night, a UTC calendar day
    #[arg(long, value_name = "YYYY-MM-DD", conflicts_with_all = ["from", "missing"])]
    pub date: Option<Night>,
    /// First night of a backfill (with --to), run in date order
    #[arg(
        long,
        value_name = "YYYY-MM-DD",
        requires = "to",
        conflicts_with = "missing"
    )]
    pub from: Option<Night>,
    /// Last night of a backfill
    #[arg(long, value_name = "YYYY-MM-DD", requires = "from")]
    pub to: Option<Night>,
    /// Every night from the one after the last succeeded night to the last complete UTC day
    #[arg(long)]
    pub missing: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub nights: NightsArg,
    /// In a backfill, go on with later nights after one fails (they may lack its events)
    #[arg(long)]
    pub keep_going: bool,
    /// Publish even if the gate's checks fail
    #[arg(long)]
    pub force_publish: bool,
    /// Run every step even if its outputs are current
    #[arg(long)]
    pub rerun: bool,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Items per user [config: recommend.k, default 10]
    #[arg(long)]
    pub k: Option<usize>,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub date: DateArg,
    /// Publish even if the gate's checks fail
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only the newest N nights
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
    /// Print JSON (the run records) instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The night [default: the newest night with a run record]
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<Night>,
    /// Print the run record as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep the outputs of the newest N nights (the live night is always kept)
    #[arg(long, value_name = "N")]
    pub keep_nights: usize,
    /// Also delete raw event files of days more than DAYS before today that were loaded
    #[arg(long, value_name = "DAYS")]
    pub raw_older_than: Option<u64>,
    /// Say what would be deleted, delete nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CostArgs {
    /// First night [default: the oldest night with a run record]
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub from: Option<Night>,
    /// Last night [default: the newest]
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub to: Option<Night>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum WarehouseCommand {
    /// Record the version of every table (with a Delta checkpoint) as snapshots/NAME.json
    Snapshot(SnapshotArgs),
    /// List the snapshots
    Snapshots,
    /// Bring every table back to snapshot NAME (a Delta restore: history is kept)
    Restore(RestoreArgs),
    /// Delete what old table versions keep: with --keep N, data files that neither the newest N
    /// snapshots nor the current tables read; with --erasures, every snapshot, Delta file and
    /// log entry that still holds rows of users erased by `elastirec forget`
    ///
    /// Give --keep, --erasures or both. With both, the erasure vacuum runs first and --keep N
    /// then keeps the newest N of the snapshots left. Snapshot records are deleted before the
    /// files they need (a deleted snapshot can no longer be restored). With --dry-run each part
    /// reports on the lake as it is now and nothing is deleted.
    Vacuum(VacuumArgs),
    /// Serve the tables (events, items, loads, rejects, erasures, availability) read-only over
    /// the PostgreSQL wire protocol, for psql and BI tools: `psql -h 127.0.0.1 -p 5433 -c
    /// 'SELECT ...'`
    ///
    /// Stops on SIGTERM or Ctrl-C. Only read queries over the tables run; everything else is
    /// refused. Tables are reloaded within seconds when a nightly run commits to them. With
    /// [pgwire] password (better: ELASTIREC_PGWIRE__PASSWORD) clients log in as [pgwire] user
    /// with SCRAM-SHA-256; without one only a loopback --host is served. [pgwire] also sets
    /// TLS, max_connections, statement_timeout_secs and memory_limit_mb (per connection).
    Serve(PgServeArgs),
}

#[derive(Debug, Args)]
pub struct VacuumArgs {
    /// Snapshots to keep, newest first (by the time they were taken); older snapshot records
    /// and the data files only they read are deleted
    #[arg(long, value_name = "N", required_unless_present = "erasures")]
    pub keep: Option<usize>,
    /// The erasure policy: remove the snapshots naming table versions older than an erasure,
    /// the Delta files its deletes replaced and the log entries before it
    #[arg(long)]
    pub erasures: bool,
    /// With --keep: data files that left the tables less than H hours ago are kept, so that
    /// readers of recent versions (`warehouse serve`, a night in progress, a consumer reading
    /// the Delta tables) keep working; 0 deletes them at once
    #[arg(long, value_name = "H", default_value_t = 24.0)]
    pub retain_hours: f64,
    /// Say what would be deleted, delete nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PgServeArgs {
    /// Address to listen on; an address other than loopback needs [pgwire] password
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (PostgreSQL itself usually has 5432)
    #[arg(long, default_value_t = 5433)]
    pub port: u16,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The night the snapshot belongs to
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Night,
    /// Snapshot name [default: the night, as the nightly snapshot step names it]
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot to restore (see `elastirec warehouse snapshots`)
    pub name: String,
}

/// Output formats of `sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqlFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The statement, such as "SELECT event_date, COUNT(*) FROM events GROUP BY 1 ORDER BY 1"
    pub query: Option<String>,
    /// How to print results
    #[arg(long, value_enum, default_value = "table")]
    pub format: SqlFormat,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub date: DateArg,
    /// Days after DATE whose events are the ground truth
    #[arg(long, default_value_t = 7)]
    pub horizon_days: u32,
    /// Cutoff K of the metrics [default: recommend.k]
    #[arg(long)]
    pub k: Option<usize>,
}

#[derive(Debug, Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub date: DateArg,
    /// Validation days at the end of the split: train on night DATE−H's export, score on
    /// DATE−H+1..DATE [default: evaluate.horizon_days, 7]
    #[arg(long, value_name = "H")]
    pub horizon_days: Option<u32>,
    /// Latent factors to try, comma-separated
    #[arg(long, value_delimiter = ',', default_values_t = Grid::default().factors)]
    pub factors: Vec<usize>,
    /// Regularization λ values to try, comma-separated
    #[arg(long, value_delimiter = ',', default_values_t = Grid::default().regularization)]
    pub regularization: Vec<f32>,
    /// Confidence scales α (c = 1 + α·value) to try, comma-separated
    #[arg(long, value_delimiter = ',', default_values_t = Grid::default().alpha)]
    pub alpha: Vec<f32>,
    /// ALS iterations of every point [config: model.iterations, default 15]
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Cutoff K of the metrics [config: recommend.k, default 10]
    #[arg(long)]
    pub k: Option<usize>,
    /// Worker threads, 0 for one per core [config: model.threads]
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Night to evaluate (its next 7 days are the ground truth); the simulation starts 2024-01-01
    #[arg(long, default_value = "2024-01-23", value_name = "YYYY-MM-DD")]
    pub evaluate_night: Night,
    /// Where the demo lake goes, unless --lake is given
    #[arg(long, default_value = "./demo-lake", value_name = "PATH")]
    pub demo_lake: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on, 0 for any free one [config: serve.port, default 8080]
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to listen on [config: serve.host, default 127.0.0.1]
    #[arg(long)]
    pub host: Option<String>,
    /// File holding the bearer token every route but /healthz and the dashboard page requires
    /// (first line; keep it mode 0600) [config: serve.token; or ELASTIREC_SERVE__TOKEN]
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Refused: a token in the command line shows in `ps` to every user of the machine; use
    /// ELASTIREC_SERVE__TOKEN or --token-file
    #[arg(long, hide = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Serve a non-loopback address without a token (anyone who reaches the port reads every
    /// user's history and recommendations)
    #[arg(long)]
    pub insecure_no_token: bool,
    /// Seconds between two reads of recommendations/_LATEST [config: serve.poll_seconds, 30]
    #[arg(long)]
    pub poll_seconds: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The user id, as producers sent it (`42`, `A3CIUOJXQ5VDQ2`)
    #[arg(long)]
    pub user: String,
    /// The night whose lists to show [default: the night recommendations/_LATEST names]
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<Night>,
    /// Recommended items to show [default: the night's K]
    #[arg(long)]
    pub k: Option<usize>,
    /// History entries to show
    #[arg(long, default_value_t = 20)]
    pub history: usize,
}

#[derive(Debug, Args)]
pub struct SinkArgs {
    /// The night to copy [default: the night recommendations/_LATEST names]
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<Night>,
    /// Where to: redis or postgres [config: sink.target]
    #[arg(long)]
    pub target: Option<String>,
}
