//! One function per command; each prints what it did on stdout.

use std::time::Instant;

use anyhow::{Context, Result};

use elastirec_core::manifest::{EvaluationReport, StepState};
use elastirec_core::{Config, ErrorKind, Lake, Night};
use elastirec_flow::Pipeline;
use elastirec_sources::{movielens, simulate};

use crate::cli::{Cli, Command, ImportCommand, ModelArgs};
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
        .with_progress(move |p| progress.update(p)))
}

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> Result<()> {
    let mut config = load_config(&cli)?;
    match &cli.command {
        Command::Import(ImportCommand::Movielens(args)) => {
            let lake = Lake::open(&config.lake.root, config.lake.options.clone()).await?;
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
            let lake = Lake::open(&config.lake.root, config.lake.options.clone()).await?;
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
                p.ingest(night).await?
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
            for reject in &r.first_rejects {
                println!("rejected: {reject}");
            }
            for f in &r.files_changed {
                println!("warning: {f} changed after it was loaded; it was not reloaded");
            }
        }
        Command::Prepare(args) => {
            let p = pipeline(finish_config(config)?).await?;
            let m = p.prepare(args.date).await?;
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
            let m = p.train(args.date.date).await?;
            println!(
                "night {}: trained {} factors for {} users and {} items on {} pairs in {:.1} s; \
                 loss {}",
                args.date.date,
                m.factors,
                m.users,
                m.items,
                m.interactions,
                m.train_seconds,
                m.loss
                    .iter()
                    .map(|l| format!("{l:.5}"))
                    .collect::<Vec<_>>()
                    .join(" → ")
            );
        }
        Command::Recommend(args) => {
            if let Some(k) = args.k {
                config.recommend.k = k;
            }
            let p = pipeline(finish_config(config)?).await?;
            let m = p.recommend(args.date.date).await?;
            println!(
                "night {}: wrote top-{} for {} users ({} rows); published as latest",
                args.date.date, m.k, m.users, m.rows
            );
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
            let record = p.run(args.date.date).await?;
            print_record(&record);
        }
        Command::Evaluate(args) => {
            if let Some(k) = args.k {
                config.recommend.k = k;
            }
            let p = pipeline(finish_config(config)?).await?;
            let r = p.evaluate(args.date.date, args.horizon_days).await?;
            print_evaluation(&r);
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
            let lake = Lake::open(&config.lake.root, config.lake.options.clone()).await?;
            show(&lake, args).await?;
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
            let lake = Lake::open(&config.lake.root, config.lake.options.clone()).await?;
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

fn print_record(record: &elastirec_core::manifest::RunRecord) {
    println!("night {}: {:?}", record.night, record.state);
    for s in &record.steps {
        let secs = match (s.started_at, s.ended_at) {
            (Some(a), Some(b)) => format!("{:.1} s", (b - a).num_milliseconds() as f64 / 1000.0),
            _ => "-".into(),
        };
        println!(
            "  {:<10} {:<10} {:>8}  {}",
            s.name,
            format!("{:?}", s.state).to_lowercase(),
            secs,
            s.outcome.as_deref().unwrap_or("")
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
        "users scored: {} (known at {}, with {} new relevant items in all)",
        r.users_scored, r.night, r.relevant_items
    );
    println!(
        "{:<12} {:>9} {:>12} {:>9} {:>9}",
        "",
        format!("NDCG@{}", r.k),
        "precision",
        "recall",
        "hit rate"
    );
    for (name, s) in [
        ("model", &r.model),
        ("popularity", &r.popularity),
        ("most popular", &r.most_popular),
    ] {
        println!(
            "{:<12} {:>9.4} {:>12.4} {:>9.4} {:>9.4}",
            name, s.ndcg, s.precision, s.recall, s.hit_rate
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
    let lake = Lake::open(&config.lake.root, config.lake.options.clone()).await?;
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
    println!("2. running every night: ingest → prepare → train → recommend");
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
        let ok = record.state == StepState::Succeeded;
        println!(
            "   {night} {} {}",
            if ok { "ok" } else { "FAILED" },
            summary.join(", ")
        );
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
    let lake = Lake::open(&config.lake.root, config.lake.options.clone()).await?;
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
