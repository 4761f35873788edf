//! What the commands share: the configuration from file, environment and flags, a pipeline
//! that reports progress and stops on signals, the lake's lease around a piece of work, and the
//! nights a `--date`/`--from --to`/`--missing` flag names.

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};

use elastirec_core::{Config, Night};
use elastirec_flow::lease::Lease;
use elastirec_flow::{Pipeline, StopFlag};

use crate::cli::{Cli, EngineArg, ModelArgs, NightsArg};
use crate::progress::NightProgress;

/// The configuration file and `ELASTIREC_*` variables, with `--lake` applied.
pub fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = Config::load(cli.global.config.as_deref(), std::env::vars())?;
    if let Some(lake) = &cli.global.lake {
        config.lake.root = lake.clone();
    }
    Ok(config)
}

/// Applies the `[model]` flags of `train` and `run`.
pub fn apply_model_args(config: &mut Config, args: &ModelArgs) -> Result<()> {
    if let Some(v) = args.factors {
        config.model.factors = v;
    }
    if let Some(v) = args.iterations {
        config.model.iterations = v;
    }
    if let Some(v) = args.regularization {
        config.model.regularization = v;
    }
    if let Some(v) = args.alpha {
        config.model.alpha = v;
    }
    if let Some(v) = args.threads {
        config.model.threads = v;
    }
    if let Some(e) = args.engine {
        config.model.engine = match e {
            EngineArg::Als => elastirec_core::config::Engine::Als,
            EngineArg::Spark => elastirec_core::config::Engine::Spark,
        };
    }
    Ok(())
}

/// Validates the configuration once every flag is applied and sizes the worker pool.
pub fn finish_config(config: Config) -> Result<Config> {
    config.validate()?;
    if config.model.threads > 0 {
        // Only the first pool configuration of a process takes effect; one command, one pool.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(config.model.threads)
            .build_global();
    }
    Ok(config)
}

/// Opens the pipeline with a progress spinner on stderr and a stop flag raised by signals.
pub async fn pipeline(config: Config) -> Result<Pipeline> {
    let progress = NightProgress::new();
    Ok(Pipeline::open(config)
        .await?
        .with_progress(move |p| progress.update(p))
        .with_stop(stop_on_signals()))
}

/// [`pipeline`] for a command that only reads the lake: a lake that does not exist is an
/// error, not created.
pub async fn pipeline_existing(config: Config) -> Result<Pipeline> {
    let progress = NightProgress::new();
    Ok(Pipeline::open_existing(config)
        .await?
        .with_progress(move |p| progress.update(p))
        .with_stop(stop_on_signals()))
}

/// A stop flag raised by SIGTERM or Ctrl-C: the run ends between steps, its record consistent.
pub fn stop_on_signals() -> StopFlag {
    let stop = StopFlag::new();
    let flag = stop.clone();
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "Ctrl-C",
        };
        eprintln!("{name}: stopping after the current step (again to abort now)");
        flag.raise(format!("{name} received"));
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        std::process::exit(130);
    });
    stop
}

/// Resolves at the first SIGTERM or Ctrl-C (servers drain then); a second one exits at once.
pub async fn interrupted() {
    let stop = stop_on_signals();
    stop.raised().await;
}

/// Runs `work` holding the lake's lease, renewed in the background and released afterwards.
pub async fn leased<T, Fut>(p: &Pipeline, purpose: &str, work: impl FnOnce() -> Fut) -> Result<T>
where
    Fut: Future<Output = Result<T>>,
{
    let ttl = Duration::from_secs(p.config().run.lease_seconds);
    let lease = Lease::acquire(p.lake(), purpose, ttl).await?;
    let keep = lease.keep_alive(p.stop_flag().clone());
    let out = work().await;
    keep.released();
    lease.release().await?;
    out
}

/// The last complete UTC day.
pub fn yesterday_utc() -> Night {
    Night::new(chrono::Utc::now().date_naive()).minus_days(1)
}

/// The nights `--date`, `--from --to` or `--missing` name, in date order.
pub async fn nights_of(p: &Pipeline, arg: &NightsArg) -> Result<Vec<Night>> {
    Ok(match (arg.date, arg.from, arg.to, arg.missing) {
        (Some(d), _, _, _) => vec![d],
        (_, Some(a), Some(b), _) => {
            if a > b {
                bail!("--from {a} is after --to {b}");
            }
            a.through(b).collect()
        }
        (_, _, _, true) => p.missing_nights(yesterday_utc()).await?,
        _ => bail!("say which nights: --date D, --from D1 --to D2, or --missing"),
    })
}
