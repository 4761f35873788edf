//! One function per command; each prints what it did on stdout.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use elastirec_core::manifest::{EvaluationReport, RunRecord, StepState, TuningPoint, TuningRecord};
use elastirec_core::{Config, ErrorKind, Lake, Night};
use elastirec_flow::lease::Lease;
use elastirec_flow::schedule::{Scheduler, SystemClock};
use elastirec_flow::{Pipeline, RunOptions, StopFlag, cost, retention, tune};
use elastirec_sources::{movielens, simulate};

use crate::cli::{
    Cli, Command, EngineArg, ImportCommand, ModelArgs, NightsArg, SqlArgs, SqlFilesArgs, SqlFormat,
    WarehouseCommand,
};
use crate::progress::NightProgress;

/// Exit codes by error kind.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let kind = err.chain().find_map(|e| {
        if let Some(e) = e.downcast_ref::<elastirec_flow::Error>() {
            Some(e.kind())
        } else if let Some(e) = e.downcast_ref::<elastirec_sources::Error>() {
            Some(e.kind())
        } else if let Some(e) = e.downcast_ref::<elastirec_serve::Error>() {
            Some(e.kind())
        } else {
            e.downcast_ref::<elastirec_core::Error>().map(|e| e.kind())
        }
    });
    match kind {
        Some(ErrorKind::InvalidInput) => 2,
        Some(ErrorKind::NotFound) => 3,
        Some(ErrorKind::Transient) => 4,
        Some(ErrorKind::Internal) | None => 1,
    }
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = Config::load(cli.global.config.as_deref(), std::env::vars())?;
    if let Some(lake) = &cli.global.lake {
        config.lake.root = lake.clone();
    }
    Ok(config)
}

fn apply_model_args(config: &mut Config, args: &ModelArgs) -> Result<()> {
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

fn finish_config(config: Config) -> Result<Config> {
    config.validate()?;
    if config.model.threads > 0 {
        // Only the first pool configuration of a process takes effect; one command, one pool.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(config.model.threads)
            .build_global();
    }
    Ok(config)
}

async fn pipeline(config: Config) -> Result<Pipeline> {
    let progress = NightProgress::new();
    Ok(Pipeline::open(config)
        .await?
        .with_progress(move |p| progress.update(p))
        .with_stop(stop_on_signals()))
}

/// A stop flag raised by SIGTERM or Ctrl-C: the run ends between steps, its record consistent.
fn stop_on_signals() -> StopFlag {
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

/// Runs `work` holding the lake's lease, renewed in the background and released afterwards.
async fn leased<T, Fut>(p: &Pipeline, purpose: &str, work: impl FnOnce() -> Fut) -> Result<T>
where
    Fut: Future<Output = Result<T>>,
{
    let ttl = Duration::from_secs(p.config().run.lease_seconds);
    let lease = Lease::acquire(p.lake(), purpose, ttl).await?;
    let keep = lease.keep_alive(p.stop_flag().clone());
    let out = work().await;
    drop(keep);
    lease.release().await?;
    out
}

/// The last complete UTC day.
fn yesterday_utc() -> Night {
    Night::new(chrono::Utc::now().date_naive()).minus_days(1)
}

async fn nights_of(p: &Pipeline, arg: &NightsArg) -> Result<Vec<Night>> {
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

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> Result<()> {
    let mut config = load_config(&cli)?;
    match &cli.command {
        Command::Import(ImportCommand::Movielens(args)) => {
            let lake = Lake::open_config(&config.lake).await?;
            let started = Instant::now();
            let r = movielens::import(&lake, &args.ratings, args.items.as_deref())
                .await
                .with_context(|| format!("importing {}", args.ratings.display()))?;
            println!(
                "imported {} ratings of {} users ({}) into {} daily files, {} to {}, in {:.1} s",
                r.ratings,
                r.users,
                r.layout.describe(),
                r.days,
                r.first_day.map_or("-".into(), |d| d.to_string()),
                r.last_day.map_or("-".into(), |d| d.to_string()),
                started.elapsed().as_secs_f64()
            );
            if let Some(n) = r.items {
                println!("imported {n} items into raw/items/");
            }
            println!("lake: {}", lake.url());
        }
        Command::Simulate(args) => {
            let lake = Lake::open_config(&config.lake).await?;
            if let Some(scale) = args.scale {
                let opts = simulate::ScaleOptions {
                    scale,
                    seed: args.seed,
                };
                let shape = opts.shape()?;
                let started = std::time::Instant::now();
                let r = simulate::simulate_scaled(&lake, &opts).await?;
                println!(
                    "simulated {} events on {} days ({} to {}) for {} users and {} items, scale \
                     {scale}, seed {} in {:.1}s",
                    r.events,
                    r.days,
                    r.first_day,
                    r.last_day,
                    shape.users,
                    shape.items,
                    args.seed,
                    started.elapsed().as_secs_f64()
                );
                println!("lake: {}", lake.url());
                return Ok(());
            }
            let opts = simulate::SimulateOptions {
                start: args.start,
                days: args.days,
                users: args.users,
                items: args.items,
                events_per_day: args.events_per_day,
                seed: args.seed,
            };
            let r = simulate::simulate(&lake, &opts).await?;
            println!(
                "simulated {} events over {} days ({} to {}) for {} users and {} items, seed {}",
                r.events, r.days, r.first_day, r.last_day, args.users, args.items, args.seed
            );
            println!("lake: {}", lake.url());
        }
        Command::Ingest(args) => {
            if let Some(n) = args.load.max_errors {
                config.events.max_errors = n;
            }
            let p = pipeline(finish_config(config)?).await?;
            let night = args.date.date;
            let r = if args.dry_run {
                p.ingest_dry_run(night).await?
            } else {
                leased(&p, &format!("ingest {night}"), || async {
                    for (path, removed) in p.forget_loaded(&args.reload).await? {
                        println!("{path}: removed its {removed} loaded events; loading it again");
                    }
                    Ok(p.ingest(night).await?)
                })
                .await?
            };
            let verb = if r.dry_run { "would load" } else { "loaded" };
            println!(
                "night {night}: {verb} {} rows from {} files, {} rows rejected ({} files already \
                 loaded, {} for later nights); events table version {}",
                r.rows_loaded,
                r.files_loaded,
                r.rows_rejected,
                r.files_already_loaded,
                r.files_for_later_nights,
                r.events_version
            );
            if r.rows_erased > 0 {
                println!(
                    "dropped {} events of users erased by `elastirec forget`",
                    r.rows_erased
                );
            }
            for reject in &r.first_rejects {
                println!("rejected: {reject}");
            }
            for f in &r.files_changed {
                println!(
                    "warning: {f} changed after it was loaded; it was not reloaded (`elastirec \
                     ingest --date {night} --reload {f}` replaces its rows)"
                );
            }
        }
        Command::Prepare(args) => {
            let p = pipeline(finish_config(config)?).await?;
            let m = leased(&p, &format!("prepare {}", args.date), || async {
                Ok(p.prepare(args.date, args.overwrite).await?)
            })
            .await?;
            println!(
                "night {}: exported {} pairs ({} users, {} items, window {} to {}) in {} files, \
                 plus {} older seen pairs",
                args.date,
                m.rows,
                m.users,
                m.items,
                m.window_start,
                m.window_end,
                m.files.len(),
                m.seen_rows
            );
        }
        Command::Train(args) => {
            apply_model_args(&mut config, &args.model)?;
            let p = pipeline(finish_config(config)?).await?;
            let night = args.date.date;
            let m = leased(&p, &format!("train {night}"), || async {
                Ok(p.train(night).await?)
            })
            .await?;
            let loss = if m.loss.is_empty() {
                format!("{} reports no loss", m.algorithm)
            } else {
                let steps: Vec<String> = m.loss.iter().map(|l| format!("{l:.5}")).collect();
                format!("loss {}", steps.join(" → "))
            };
            println!(
                "night {}: trained {} factors for {} users and {} items on {} pairs in {:.1} s; \
                 {loss}",
                args.date.date, m.factors, m.users, m.items, m.interactions, m.train_seconds,
            );
            if p.config().model.engine == elastirec_core::config::Engine::Spark {
                println!(
                    "night {night}: the spark job also wrote the top-{} lists \
                     (recommendations/{}/); `elastirec publish --date {night}` makes them live",
                    p.config().recommend.k,
                    night.path_segment()
                );
            }
        }
        Command::Recommend(args) => {
            if let Some(k) = args.k {
                config.recommend.k = k;
            }
            let p = pipeline(finish_config(config)?).await?;
            let night = args.date.date;
            let m = leased(&p, &format!("recommend {night}"), || async {
                Ok(p.recommend(night).await?)
            })
            .await?;
            println!(
                "night {night}: wrote top-{} for {} users ({} rows); `elastirec publish --date {night}` makes them live",
                m.k, m.users, m.rows
            );
        }
        Command::Publish(args) => {
            let p = pipeline(finish_config(config)?).await?;
            let night = args.date.date;
            let d = leased(&p, &format!("publish {night}"), || async {
                Ok(p.publish(night, args.force).await?)
            })
            .await?;
            for c in &d.checks {
                println!("  {}", gate_line(c));
            }
            match (d.published, &d.reason) {
                (true, Some(_)) => println!("night {night}: published despite failed checks"),
                (true, None) => println!("night {night}: published"),
                (false, Some(r)) => {
                    println!(
                        "night {night}: held; {} stays live: {r}",
                        d.latest.map_or("no night".into(), |n| n.to_string())
                    );
                }
                (false, None) => println!(
                    "night {night}: not moved back; the later night {} is live",
                    d.latest.map_or("?".into(), |n| n.to_string())
                ),
            }
        }
        Command::Run(args) => {
            apply_model_args(&mut config, &args.model)?;
            if let Some(n) = args.load.max_errors {
                config.events.max_errors = n;
            }
            if let Some(k) = args.k {
                config.recommend.k = k;
            }
            let p = pipeline(finish_config(config)?).await?;
            let nights = nights_of(&p, &args.nights).await?;
            if nights.is_empty() {
                println!(
                    "nothing to run: every night up to {} succeeded",
                    yesterday_utc()
                );
                return Ok(());
            }
            let options = RunOptions {
                force_publish: args.force_publish,
                rerun: args.rerun,
            };
            let purpose = match nights.as_slice() {
                [one] => format!("run {one}"),
                many => format!("run {} to {}", many[0], many[many.len() - 1]),
            };
            let results = leased(&p, &purpose, || async {
                Ok(p.run_nights(&nights, options, args.keep_going).await)
            })
            .await?;
            let ran = results.len();
            let mut first_error = None;
            for (night, result) in results {
                match result {
                    Ok(record) => print_record(&record),
                    Err(e) => {
                        if let Ok(Some(record)) = p.ledger().get(night).await {
                            print_record(&record);
                        }
                        first_error.get_or_insert(e);
                    }
                }
            }
            if ran < nights.len() {
                println!(
                    "stopped after a failed night: {} later nights not run (--keep-going runs \
                     them)",
                    nights.len() - ran
                );
            }
            if let Some(e) = first_error {
                return Err(e.into());
            }
        }
        Command::Runs(args) => {
            let lake = Lake::open_config(&config.lake).await?;
            let mut records = elastirec_flow::RunLedger::new(&lake).all().await?;
            if let Some(n) = args.last {
                let skip = records.len().saturating_sub(n);
                records.drain(..skip);
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                print_runs(&records, &config);
            }
        }
        Command::Status(args) => {
            let lake = Lake::open_config(&config.lake).await?;
            let ledger = elastirec_flow::RunLedger::new(&lake);
            let record = match args.date {
                Some(d) => ledger.get(d).await?,
                None => ledger.all().await?.pop(),
            };
            let Some(record) = record else {
                bail!(
                    "no run record{} in {}: run `elastirec run --date D` first",
                    args.date
                        .map_or(String::new(), |d| format!(" for night {d}")),
                    lake.url()
                );
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&record)?);
            } else {
                print_status(&record);
            }
            if let Some(lease) = elastirec_flow::lease::current(&lake).await?
                && !lease.released
                && lease.expires_at > chrono::Utc::now()
                && !args.json
            {
                println!(
                    "lease: held by {} ({}) until {}",
                    lease.owner, lease.purpose, lease.expires_at
                );
            }
        }
        Command::Schedule => {
            let config = finish_config(config)?;
            let schedule = config.schedule.clone();
            let p = pipeline(config).await?;
            let stop = p.stop_flag().clone();
            let scheduler = Scheduler::new(p, &schedule, Arc::new(SystemClock))?.on_tick(|t| {
                for (night, ok) in &t.nights {
                    println!(
                        "night {night}: {}",
                        if *ok { "succeeded" } else { "FAILED" }
                    );
                }
                if let Some(next) = t.next {
                    println!("next run at {next}");
                }
            });
            println!(
                "scheduling nights at '{}' ({}), catch-up {}",
                schedule.cron,
                schedule.timezone,
                if schedule.catch_up { "on" } else { "off" }
            );
            scheduler.run(&stop).await?;
            println!("stopped: {}", stop.reason().unwrap_or_default());
        }
        Command::Gc(args) => {
            let p = pipeline(finish_config(config)?).await?;
            let raw_before = args
                .raw_older_than
                .map(|d| Night::new(chrono::Utc::now().date_naive()).minus_days(d));
            let plan = leased(&p, "gc", || async {
                Ok(p.gc(args.keep_nights, raw_before, args.dry_run).await?)
            })
            .await?;
            print_gc(&plan, args.dry_run);
        }
        Command::Cost(args) => {
            let lake = Lake::open_config(&config.lake).await?;
            let records: Vec<RunRecord> = elastirec_flow::RunLedger::new(&lake)
                .all()
                .await?
                .into_iter()
                .filter(|r| args.from.is_none_or(|f| r.night >= f))
                .filter(|r| args.to.is_none_or(|t| r.night <= t))
                .collect();
            print_cost(&records, &config, args.json)?;
        }
        Command::Warehouse(cmd) => {
            let p = pipeline(finish_config(config)?).await?;
            match cmd {
                WarehouseCommand::Snapshot(args) => {
                    let name = args.name.clone().unwrap_or_else(|| args.date.to_string());
                    let s = leased(&p, &format!("snapshot {name}"), || async {
                        Ok(p.snapshot(&name, args.date).await?)
                    })
                    .await?;
                    println!(
                        "snapshot {} of night {}: {}",
                        s.name,
                        s.night,
                        versions_line(&s.table_versions)
                    );
                }
                WarehouseCommand::Snapshots => {
                    let all = p.snapshots().await?;
                    if all.is_empty() {
                        println!("no snapshots yet: `elastirec run` takes one each night");
                    }
                    for s in all {
                        println!(
                            "{:<24} night {}  taken {}  {}",
                            s.name,
                            s.night,
                            s.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                            versions_line(&s.table_versions)
                        );
                    }
                }
                WarehouseCommand::Vacuum(args) => {
                    let mut purpose = vec!["vacuum".to_string()];
                    if args.erasures {
                        purpose.push("erasures".into());
                    }
                    if let Some(n) = args.keep {
                        purpose.push(format!("keep {n}"));
                    }
                    let (erased, kept) = leased(&p, &purpose.join(" "), || async {
                        // The erasure vacuum first: --keep N then keeps N of the snapshots it
                        // left (and needs no version it deleted the log of).
                        let mut erased = None;
                        if args.erasures {
                            erased = Some(p.vacuum_erasures(args.dry_run).await?);
                        }
                        let mut kept = None;
                        if let Some(keep) = args.keep {
                            kept = Some(p.vacuum(keep, args.dry_run).await?);
                        }
                        Ok((erased, kept))
                    })
                    .await?;
                    if let Some(v) = erased {
                        let verb = if v.dry_run { "would remove" } else { "removed" };
                        if v.erasures == 0 {
                            println!("no erasure waits for a vacuum");
                        } else {
                            println!(
                                "erasure vacuum: {verb} {} snapshots ({}), {} Delta data files and {} \
                                 Delta log entries holding rows of {} erasure requests",
                                v.snapshots_removed.len(),
                                v.snapshots_removed.join(", "),
                                v.files_deleted,
                                v.log_entries_deleted,
                                v.erasures
                            );
                        }
                    }
                    if let Some(r) = kept {
                        let verb = if r.dry_run { "would delete" } else { "deleted" };
                        println!(
                            "snapshots kept: {}",
                            if r.snapshots_kept.is_empty() {
                                "none".to_string()
                            } else {
                                r.snapshots_kept.join(", ")
                            }
                        );
                        if !r.snapshots_dropped.is_empty() {
                            println!(
                                "snapshot records {verb}: {}",
                                r.snapshots_dropped.join(", ")
                            );
                        }
                        for t in &r.tables {
                            let versions: Vec<String> =
                                t.kept_versions.iter().map(|v| v.to_string()).collect();
                            println!(
                                "{}: {verb} {} data files (kept the files of versions {})",
                                t.table,
                                t.files_deleted,
                                versions.join(", ")
                            );
                        }
                    }
                }
                WarehouseCommand::Serve(args) => {
                    eprintln!(
                        "serving the warehouse read-only on postgresql://{}:{}/ (psql -h {} -p {}); Ctrl-C stops",
                        args.host, args.port, args.host, args.port
                    );
                    p.serve_postgres(&args.host, args.port).await?;
                }
                WarehouseCommand::Restore(args) => {
                    let done = leased(&p, &format!("restore {}", args.name), || async {
                        Ok(p.restore(&args.name).await?)
                    })
                    .await?;
                    for t in done {
                        if t.committed {
                            println!("{}: restored version {} (was {})", t.table, t.to, t.from);
                        } else {
                            println!("{}: already at version {}", t.table, t.to);
                        }
                    }
                }
            }
        }
        Command::SqlFiles(args) => sql_files(&finish_config(config)?, args)?,
        Command::Sql(args) => {
            let p = pipeline(finish_config(config)?).await?;
            sql(&p, args).await?;
        }
        Command::Evaluate(args) => {
            if let Some(k) = args.k {
                config.recommend.k = k;
            }
            let p = pipeline(finish_config(config)?).await?;
            let night = args.date.date;
            let r = leased(&p, &format!("evaluate {night}"), || async {
                Ok(p.evaluate(night, args.horizon_days).await?)
            })
            .await?;
            print_evaluation(&r);
        }
        Command::Tune(args) => {
            if let Some(k) = args.k {
                config.recommend.k = k;
            }
            if let Some(i) = args.iterations {
                config.model.iterations = i;
            }
            if let Some(t) = args.threads {
                config.model.threads = t;
            }
            let options = tune::TuneOptions {
                horizon_days: args.horizon_days.unwrap_or(config.evaluate.horizon_days),
                grid: tune::Grid {
                    factors: args.factors.clone(),
                    regularization: args.regularization.clone(),
                    alpha: args.alpha.clone(),
                },
                k: config.recommend.k,
            };
            let p = pipeline(finish_config(config)?).await?;
            let night = args.date.date;
            let total = options.grid.points().len();
            println!(
                "tuning night {night}: {total} grid points, each trained on night {}'s export \
                 and scored on {} to {night}",
                night.minus_days(u64::from(options.horizon_days)),
                night.minus_days(u64::from(options.horizon_days)).next()
            );
            let mut done = 0usize;
            let on_point = move |pt: &TuningPoint| {
                done += 1;
                eprintln!(
                    "  {done}/{total}: factors {}, regularization {}, alpha {}: NDCG {:.4} \
                     ({:.1} s)",
                    pt.factors, pt.regularization, pt.alpha, pt.scores.ndcg, pt.seconds
                );
            };
            let r = leased(&p, &format!("tune {night}"), || async {
                Ok(tune::tune(&p, night, &options, on_point).await?)
            })
            .await?;
            print_tuning(&r, p.lake(), night);
        }
        Command::Demo(args) => {
            if cli.global.lake.is_none() {
                config.lake.root = args.demo_lake.clone();
            }
            demo(finish_config(config)?, args.evaluate_night).await?;
        }
        Command::Serve(args) => {
            if let Some(port) = args.port {
                config.serve.port = port;
            }
            if let Some(host) = &args.host {
                config.serve.host = host.clone();
            }
            if let Some(token) = &args.token {
                config.serve.token = Some(token.clone());
            }
            if let Some(s) = args.poll_seconds {
                config.serve.poll_seconds = s;
            }
            serve(finish_config(config)?).await?;
        }
        Command::Show(args) => {
            let config = finish_config(config)?;
            let lake = Lake::open_config(&config.lake).await?;
            show(&lake, args).await?;
        }
        Command::Forget(args) => {
            let users = forget_users(&args.users, args.users_file.as_deref())?;
            let p = pipeline(finish_config(config)?).await?;
            let r = leased(&p, "forget", || async {
                Ok(p.forget(&users, args.purge_raw).await?)
            })
            .await?;
            print_forget(&r, users.len());
        }
        Command::Migrate => {
            let lake_config = config.lake.clone();
            let lake = Lake::open_for_migrate(&lake_config).await?;
            let ttl = Duration::from_secs(config.run.lease_seconds);
            let lease = Lease::acquire(&lake, "migrate", ttl).await?;
            let result = elastirec_flow::governance::migrate(&lake_config).await;
            lease.release().await?;
            let m = result?;
            if m.steps.is_empty() {
                println!(
                    "{}: layout version {} is current, nothing to do",
                    lake.url(),
                    m.to
                );
            } else {
                println!(
                    "{}: migrated layout version {} to {}",
                    lake.url(),
                    m.from,
                    m.to
                );
                for s in &m.steps {
                    println!("  {s}");
                }
            }
        }
        Command::Sink(args) => {
            if let Some(t) = &args.target {
                config.sink.target = match t.as_str() {
                    "redis" => elastirec_core::config::SinkTarget::Redis,
                    "postgres" => elastirec_core::config::SinkTarget::Postgres,
                    other => {
                        return Err(elastirec_core::Error::Config(format!(
                            "--target {other}: use redis or postgres"
                        ))
                        .into());
                    }
                };
            }
            let config = finish_config(config)?;
            let lake = Lake::open_config(&config.lake).await?;
            let night = match args.date {
                Some(n) => n,
                None => latest_night(&lake).await?,
            };
            let r = elastirec_serve::sink::copy_night(&lake, &config.sink, night).await?;
            println!(
                "night {}: copied {} users ({} rows) to {} in {:.1} s",
                r.night, r.users, r.rows, r.target, r.seconds
            );
        }
    }
    Ok(())
}

/// One check of the publish gate: `[ok] name: detail`.
fn gate_line(c: &elastirec_core::manifest::GateCheck) -> String {
    let mark = if c.passed { "ok" } else { "FAILED" };
    format!("[{mark}] {}: {}", c.name, c.detail)
}

fn versions_line(v: &std::collections::BTreeMap<String, i64>) -> String {
    v.iter()
        .map(|(t, v)| format!("{t} v{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn sql(p: &Pipeline, args: &SqlArgs) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    let format = match args.format {
        SqlFormat::Table => elastirec_flow::OutputFormat::Table,
        SqlFormat::Csv => elastirec_flow::OutputFormat::Csv,
        SqlFormat::Json => elastirec_flow::OutputFormat::Json,
    };
    let run = |query: String| async move {
        let batches = p.query(&query).await?;
        let text = elastirec_flow::format_batches(&batches, format)?;
        print!("{text}");
        if !text.is_empty() && !text.ends_with('\n') {
            println!();
        }
        Ok::<_, anyhow::Error>(())
    };
    if let Some(q) = &args.query {
        return run(q.clone()).await;
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "elastirec sql: tables events, items, loads, rejects, erasures, availability; end \
             statements with ';', \
             \\q or Ctrl-D to quit"
        );
    }
    let mut pending = String::new();
    let prompt = |pending: &str| {
        if interactive {
            eprint!(
                "{}",
                if pending.is_empty() {
                    "elastirec> "
                } else {
                    "       ...> "
                }
            );
            let _ = std::io::stderr().flush();
        }
    };
    prompt(&pending);
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading standard input")?;
        if pending.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            break;
        }
        pending.push_str(&line);
        pending.push('\n');
        if line.trim_end().ends_with(';') {
            let statement = std::mem::take(&mut pending);
            let statement = statement.trim().trim_end_matches(';').to_string();
            if let Err(e) = run(statement).await {
                // A bad statement in the shell is reported; the session goes on.
                eprintln!("error: {e:#}");
                if !interactive {
                    return Err(e);
                }
            }
        }
        prompt(&pending);
    }
    if !pending.trim().is_empty() {
        run(pending.trim().trim_end_matches(';').to_string()).await?;
    }
    Ok(())
}

fn state_name(s: StepState) -> &'static str {
    match s {
        StepState::Pending => "pending",
        StepState::Running => "running",
        StepState::Succeeded => "succeeded",
        StepState::Failed => "failed",
        StepState::Skipped => "skipped",
        StepState::Held => "held",
    }
}

fn print_record(record: &RunRecord) {
    let publish = match &record.publish {
        Some(p) if p.published => ", published".to_string(),
        Some(p) if p.reason.is_some() => ", held".to_string(),
        _ => String::new(),
    };
    println!(
        "night {}: {}{publish}",
        record.night,
        state_name(record.state)
    );
    for s in &record.steps {
        let secs = s.seconds().map_or("-".into(), |x| format!("{x:.1} s"));
        println!(
            "  {:<10} {:<10} {:>8}  {}",
            s.name,
            state_name(s.state),
            secs,
            s.outcome.as_deref().unwrap_or("")
        );
    }
}

fn mib(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn print_status(record: &RunRecord) {
    print_record(record);
    println!();
    println!(
        "  {:<10} {:>7} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "step", "attempt", "rows in", "rows out", "bytes out", "CPU s", "peak mem*"
    );
    for s in &record.steps {
        let opt = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
        println!(
            "  {:<10} {:>7} {:>10} {:>10} {:>10} {:>8} {:>10}",
            s.name,
            s.attempt,
            opt(s.rows_in),
            opt(s.rows_out),
            s.bytes_out.map_or("-".into(), mib),
            s.cpu_seconds.map_or("-".into(), |c| format!("{c:.1}")),
            s.peak_memory_bytes.map_or("-".into(), mib)
        );
        if let (StepState::Failed, Some(kind)) = (s.state, &s.error_kind) {
            println!(
                "  {:<10} error ({kind}): {}",
                "",
                s.outcome.as_deref().unwrap_or("")
            );
        }
    }
    println!("  * the process's peak resident memory (VmHWM) when the step ended");
    if let Some(p) = &record.publish {
        for c in &p.checks {
            println!("  gate {}", gate_line(c));
        }
    }
    if let Some(c) = &record.cost {
        println!(
            "  cost: {:.1} s of compute = {:.4} {} elastic vs {:.2} {} for a day always on",
            c.compute_seconds, c.elastic_cost, c.currency, c.always_on_cost, c.currency
        );
    }
    if let Some(t) = &record.tuning
        && let Some(c) = t.choice()
    {
        println!(
            "  tuning ({} points, trained on night {}, validated to {}): factors {}, \
             regularization {}, alpha {} with NDCG@{} {:.4} (popularity {:.4})",
            t.grid.len(),
            t.train_night,
            t.validation_end,
            c.factors,
            c.regularization,
            c.alpha,
            t.k,
            c.scores.ndcg,
            t.popularity.ndcg
        );
    }
}

fn print_runs(records: &[RunRecord], config: &Config) {
    if records.is_empty() {
        println!("no run records yet: run `elastirec run --date D`");
        return;
    }
    println!(
        "{:<11} {:<10} {:<9} {:>8} {:>10}  steps",
        "night", "state", "publish", "seconds", "cost"
    );
    for r in records {
        let publish = match &r.publish {
            Some(p) if p.published => "published",
            Some(p) if p.reason.is_some() => "held",
            Some(_) => "not moved",
            None => "-",
        };
        let c = cost::night_cost(r, &config.cost);
        let steps: Vec<String> = r
            .steps
            .iter()
            .map(|s| {
                let mark = match s.state {
                    StepState::Succeeded => "✓",
                    StepState::Skipped => "·",
                    StepState::Held => "H",
                    StepState::Failed => "✗",
                    StepState::Running => "…",
                    StepState::Pending => " ",
                };
                format!("{}{mark}", s.name)
            })
            .collect();
        println!(
            "{:<11} {:<10} {:<9} {:>8.1} {:>10.4}  {}",
            r.night.to_string(),
            state_name(r.state),
            publish,
            c.compute_seconds,
            c.elastic_cost,
            steps.join(" ")
        );
    }
}

fn print_gc(plan: &retention::GcPlan, dry_run: bool) {
    let verb = if dry_run { "would delete" } else { "deleted" };
    for o in &plan.outputs {
        println!(
            "{verb} {} of night {} ({} files, {})",
            o.what,
            o.night,
            o.files,
            mib(o.bytes)
        );
    }
    if !plan.raw_files.is_empty() {
        println!("{verb} {} loaded raw files", plan.raw_files.len());
    }
    if plan.raw_not_loaded > 0 {
        println!(
            "kept {} old raw files the load ledger does not record as loaded",
            plan.raw_not_loaded
        );
    }
    println!(
        "{verb} {} in all; kept the outputs of {} nights ({})",
        mib(plan.bytes()),
        plan.kept_nights.len(),
        plan.kept_nights
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn print_cost(records: &[RunRecord], config: &Config, json: bool) -> Result<()> {
    let costs: Vec<(Night, elastirec_core::manifest::NightCost)> = records
        .iter()
        .map(|r| (r.night, cost::night_cost(r, &config.cost)))
        .collect();
    let elastic: f64 = costs.iter().map(|(_, c)| c.elastic_cost).sum();
    let always_on: f64 = costs.iter().map(|(_, c)| c.always_on_cost).sum();
    let seconds: f64 = costs.iter().map(|(_, c)| c.compute_seconds).sum();
    let cur = &config.cost.currency;
    if json {
        let nights: Vec<_> = costs
            .iter()
            .map(|(n, c)| serde_json::json!({"night": n, "cost": c}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "nights": nights,
                "total": {"compute_seconds": seconds, "elastic_cost": elastic,
                          "always_on_cost": always_on, "currency": cur},
            }))?
        );
        return Ok(());
    }
    println!(
        "prices: {:.3} {cur}/h elastic (billed per second, 60 s minimum), {:.3} {cur}/h always \
         on ([cost] in the config)",
        config.cost.price_per_hour, config.cost.always_on_price_per_hour
    );
    println!(
        "{:<11} {:>9} {:>8} {:>12} {:>12}",
        "night", "compute s", "CPU s", "elastic", "always on"
    );
    for (n, c) in &costs {
        println!(
            "{:<11} {:>9.1} {:>8.1} {:>12.4} {:>12.2}",
            n.to_string(),
            c.compute_seconds,
            c.cpu_seconds,
            c.elastic_cost,
            c.always_on_cost
        );
    }
    println!(
        "{:<11} {:>9.1} {:>8} {:>12.4} {:>12.2}",
        "total", seconds, "", elastic, always_on
    );
    if elastic > 0.0 {
        println!(
            "elastic costs {:.2}% of always-on ({:.0}× cheaper) over {} nights",
            elastic / always_on * 100.0,
            always_on / elastic,
            costs.len()
        );
    }
    Ok(())
}

fn print_tuning(r: &TuningRecord, lake: &Lake, night: Night) {
    println!(
        "validation: {} to {} (last day with events: {}), {} users known at {} with {} new \
         relevant items",
        r.train_night.next(),
        r.validation_end,
        r.last_event_day.map_or("none".into(), |d| d.to_string()),
        r.users_scored,
        r.train_night,
        r.relevant_items
    );
    println!(
        "  {:>7} {:>14} {:>7} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8} {:>7}",
        "factors",
        "regularization",
        "alpha",
        format!("NDCG@{}", r.k),
        "precision",
        "recall",
        "MAP",
        "hit rate",
        "coverage",
        "seconds"
    );
    for (i, pt) in r.grid.iter().enumerate() {
        let s = &pt.scores;
        println!(
            "{} {:>7} {:>14} {:>7} {:>9.4} {:>9.4} {:>7.4} {:>7.4} {:>8.4} {:>8.4} {:>7.1}",
            if i == r.chosen { "*" } else { " " },
            pt.factors,
            pt.regularization,
            pt.alpha,
            s.ndcg,
            s.precision,
            s.recall,
            s.map,
            s.hit_rate,
            s.catalog_coverage,
            pt.seconds
        );
    }
    let p = &r.popularity;
    println!(
        "  {:<30} {:>9.4} {:>9.4} {:>7.4} {:>7.4} {:>8.4} {:>8.4}",
        "popularity (unseen, per user)",
        p.ndcg,
        p.precision,
        p.recall,
        p.map,
        p.hit_rate,
        p.catalog_coverage
    );
    if let Some(c) = r.choice() {
        println!(
            "chosen: factors {}, regularization {}, alpha {} (NDCG@{} {:.4}{}), recorded in {} \
             (field \"tuning\")",
            c.factors,
            c.regularization,
            c.alpha,
            r.k,
            c.scores.ndcg,
            if p.ndcg > 0.0 {
                format!(", {:.2}× popularity", c.scores.ndcg / p.ndcg)
            } else {
                String::new()
            },
            lake.url_of(&elastirec_core::layout::run_record(night))
        );
        println!(
            "the configuration is unchanged; to use the choice set [model] factors = {}, \
             regularization = {}, alpha = {} or pass --factors {} --regularization {} --alpha {} \
             to `train` or `run`",
            c.factors, c.regularization, c.alpha, c.factors, c.regularization, c.alpha
        );
    }
}

fn print_evaluation(r: &EvaluationReport) {
    println!(
        "night {} evaluated against days {} to {} (last day with events: {})",
        r.night,
        r.night.next(),
        r.night.plus_days(u64::from(r.horizon_days)),
        r.last_event_day.map_or("none".into(), |d| d.to_string())
    );
    println!(
        "users scored: {} (known at {}, with {} new relevant items among the {} items known \
         then); left out: {} later pairs on new items, {} new users",
        r.users_scored,
        r.night,
        r.relevant_items,
        r.catalog_items,
        r.unknown_item_pairs,
        r.unknown_users
    );
    println!(
        "{:<12} {:>9} {:>10} {:>8} {:>8} {:>9} {:>9} {:>8}",
        "",
        format!("NDCG@{}", r.k),
        "precision",
        "recall",
        "MAP",
        "hit rate",
        "coverage",
        "no list"
    );
    for (name, s) in [
        ("model", &r.model),
        ("popularity", &r.popularity),
        ("most popular", &r.most_popular),
    ] {
        println!(
            "{:<12} {:>9.4} {:>10.4} {:>8.4} {:>8.4} {:>9.4} {:>9.4} {:>8}",
            name,
            s.ndcg,
            s.precision,
            s.recall,
            s.map,
            s.hit_rate,
            s.catalog_coverage,
            s.users_without_list
        );
    }
    if r.popularity.ndcg > 0.0 && r.most_popular.ndcg > 0.0 {
        println!(
            "model NDCG: {:.2}× popularity (each user's unseen popular items), {:.2}× most \
             popular (one list for all)",
            r.model.ndcg / r.popularity.ndcg,
            r.model.ndcg / r.most_popular.ndcg
        );
    }
}

async fn demo(config: Config, evaluate_night: Night) -> Result<()> {
    let started = Instant::now();
    let lake = Lake::open_config(&config.lake).await?;
    let opts = simulate::SimulateOptions::default();
    println!(
        "1. simulating {} days of events ({} users, {} items, {} events/day) into {}",
        opts.days,
        opts.users,
        opts.items,
        opts.events_per_day,
        lake.url_of(&elastirec_core::layout::raw_events_root())
    );
    let sim = simulate::simulate(&lake, &opts).await?;
    println!(
        "   {} events, {} to {}",
        sim.events, sim.first_day, sim.last_day
    );
    println!(
        "2. running every night: ingest → prepare → snapshot → train → recommend → evaluate \
         (night D−7) → publish (if the gate passes)"
    );
    let p = pipeline(config).await?;
    for night in sim.first_day.through(sim.last_day) {
        let record = p.run(night).await?;
        let summary: Vec<String> = record
            .steps
            .iter()
            .map(|s| {
                let secs = match (s.started_at, s.ended_at) {
                    (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
                    _ => 0.0,
                };
                format!("{} {:.1}s", s.name, secs)
            })
            .collect();
        let verdict = match (&record.state, &record.publish) {
            (StepState::Succeeded, Some(p)) if p.published => "published".to_string(),
            (StepState::Succeeded, Some(p)) if p.reason.is_some() => format!(
                "HELD ({})",
                p.checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| c.detail.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            (StepState::Succeeded, _) => "ok".to_string(),
            _ => "FAILED".to_string(),
        };
        println!("   {night} {}  {verdict}", summary.join(", "));
    }
    let horizon = 7;
    println!("3. evaluating night {evaluate_night} against the next {horizon} days");
    let report = p.evaluate(evaluate_night, horizon).await?;
    print_evaluation(&report);
    println!("4. outputs:");
    for (what, path) in [
        ("warehouse tables", "warehouse/"),
        ("training exports", "exports/training/"),
        ("models", "models/"),
        ("recommendations", "recommendations/"),
        ("run records", "runs/"),
        ("evaluations", "evaluations/"),
    ] {
        println!("   {what:<18} {}", lake.url_of(&path.into()));
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn serve(config: Config) -> Result<()> {
    let lake = Lake::open_config(&config.lake).await?;
    let served = elastirec_serve::Served::new(lake.clone(), config.serve.token.clone());
    // A lake with nothing published yet is served too: the dashboard shows the runs, and the
    // first night is picked up by the poll.
    if let Err(e) = served.refresh().await {
        eprintln!("elastirec: warning: cannot load the latest night yet: {e}");
    }
    let addr = format!("{}:{}", config.serve.host, config.serve.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        elastirec_core::Error::Config(format!(
            "cannot listen on {addr}: {e} (pick another --port or --host)"
        ))
    })?;
    let local = listener.local_addr()?;
    match served.snapshot() {
        Some(s) => println!(
            "serving night {} ({} users) from {}",
            s.night(),
            s.users(),
            lake.url()
        ),
        None => println!("no night published yet in {}; polling for one", lake.url()),
    }
    println!(
        "listening on http://{local}/ (token {})",
        if config.serve.token.is_some() {
            "required"
        } else {
            "not required"
        }
    );
    let poll = tokio::spawn(
        served
            .clone()
            .poll(std::time::Duration::from_secs(config.serve.poll_seconds)),
    );
    let app = elastirec_serve::router(served);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    elastirec_serve::http1::serve(listener, app, shutdown).await?;
    poll.abort();
    Ok(())
}

/// The night `recommendations/_LATEST` names, or an error saying how to make one.
async fn latest_night(lake: &Lake) -> Result<Night> {
    let pointer = elastirec_serve::snapshot::read_latest(lake).await?;
    Ok(pointer
        .ok_or_else(|| elastirec_core::Error::NotFound {
            what: "published night".into(),
            path: lake.display_path(&elastirec_core::layout::recommendations_latest()),
            hint: "run `elastirec run --date D` first, or pass --date".into(),
        })?
        .night)
}

async fn show(lake: &Lake, args: &crate::cli::ShowArgs) -> Result<()> {
    let night = match args.date {
        Some(n) => n,
        None => latest_night(lake).await?,
    };
    let snapshot = elastirec_serve::Snapshot::load_night(lake, night).await?;
    let user = args.user;
    let title = |item: i64| {
        snapshot
            .item_meta(item)
            .and_then(|m| m.title.clone())
            .unwrap_or_else(|| "(no title)".into())
    };
    println!("user {user}, night {}", snapshot.night());
    match snapshot.history(user) {
        Some(history) => {
            println!(
                "history ({} items{}):",
                history.len(),
                if history.len() > args.history {
                    format!(", first {}", args.history)
                } else {
                    String::new()
                }
            );
            for h in history.iter().take(args.history) {
                let detail = match (h.value, h.events) {
                    (Some(v), Some(e)) => format!("value {v}, {e} events"),
                    _ => "before the window".into(),
                };
                println!("  {:>8}  {:<50}  {detail}", h.item_id, title(h.item_id));
            }
        }
        None => println!("history: none up to night {}", snapshot.night()),
    }
    let k = args.k.unwrap_or(snapshot.k);
    let recs = snapshot.recommendations(user, k)?;
    println!(
        "top {} ({}{}):",
        recs.items.len(),
        recs.source,
        if recs.fallback {
            ", fallback: user unknown to this night"
        } else {
            ""
        }
    );
    for (item, score, rank, because) in &recs.items {
        let because = if because.is_empty() {
            String::new()
        } else {
            format!(
                "  because: {}",
                because
                    .iter()
                    .map(|b| title(*b))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        println!(
            "  {rank:>3}. {item:>8}  {:<50} {score:>9.4}{because}",
            title(*item)
        );
    }
    Ok(())
}

/// `sql-files`: writes the built-in queries of `prepare`, or prints those in effect.
fn sql_files(config: &Config, args: &SqlFilesArgs) -> Result<()> {
    use elastirec_flow::prepare_sql::{self, PrepareSql};
    if let Some(dir) = &args.write {
        for path in prepare_sql::write_builtin(dir, args.overwrite)? {
            println!("wrote {}", path.display());
        }
        println!(
            "edit them, then set [prepare] sql_dir = \"{}\" in the config",
            dir.display()
        );
        return Ok(());
    }
    let sql = match &config.prepare.sql_dir {
        Some(dir) => PrepareSql::with_overrides(dir)?,
        None => PrepareSql::builtin(),
    };
    match args.date {
        Some(night) => {
            let r = sql.render(night, &config.prepare)?;
            for (file, text) in [
                (&sql.training, &r.training),
                (&sql.seen, &r.seen),
                (&sql.items, &r.items),
                (&sql.availability, &r.availability),
            ] {
                println!(
                    "-- {} ({}), night {night}\n{}\n",
                    file.name,
                    file.origin,
                    text.trim_end()
                );
            }
            println!("-- sql hash {}", r.hash);
        }
        None => {
            for file in [&sql.training, &sql.seen, &sql.items, &sql.availability] {
                println!(
                    "-- {} ({})\n{}\n",
                    file.name,
                    file.origin,
                    file.text.trim_end()
                );
            }
        }
    }
    Ok(())
}

/// The ids of `forget`: `--user` flags and the lines of `--users-file`.
fn forget_users(flags: &[i64], file: Option<&std::path::Path>) -> Result<Vec<i64>> {
    let mut users = flags.to_vec();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            elastirec_core::Error::Config(format!(
                "--users-file {}: cannot read it: {e}",
                path.display()
            ))
        })?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = line.parse::<i64>().map_err(|_| {
                elastirec_core::Error::Config(format!(
                    "--users-file {}:{}: '{line}' is not an integer user id",
                    path.display(),
                    i + 1
                ))
            })?;
            users.push(id);
        }
    }
    users.sort_unstable();
    users.dedup();
    if users.is_empty() {
        return Err(elastirec_core::Error::Config(
            "forget: no user ids given (--user ID or a --users-file with ids)".into(),
        )
        .into());
    }
    Ok(users)
}

fn print_forget(r: &elastirec_flow::governance::ForgetReport, users: usize) {
    let w = &r.warehouse;
    println!(
        "erasure {}: {users} users; deleted {} events and {} reject rows (events table version {})",
        r.erasure_id, w.events_deleted, w.rejects_deleted, w.events_version
    );
    for f in &r.outputs.folders {
        println!(
            "  {} of night {}: removed {} rows ({} files rewritten)",
            f.what, f.night, f.rows_removed, f.files_rewritten
        );
    }
    if r.outputs.latest_touched {
        println!("  recommendations/_LATEST rewritten: serving reloads without them");
    }
    for raw in &r.raw_files {
        println!(
            "  {}: removed {} lines{}",
            raw.path,
            raw.lines_removed,
            if raw.ledger_updated {
                " (load ledger updated)"
            } else {
                ""
            }
        );
    }
    if r.snapshots_holding.is_empty() {
        println!("no snapshot holds their rows");
    } else {
        println!(
            "snapshots still holding their rows until `elastirec warehouse vacuum --erasures`: {}",
            r.snapshots_holding.join(", ")
        );
    }
    if !w.replaced_files.is_empty() {
        println!(
            "{} replaced Delta files keep their rows in table history until `elastirec warehouse \
             vacuum --erasures`",
            w.replaced_files.len()
        );
    }
}
