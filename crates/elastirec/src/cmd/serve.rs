//! Delivering the lists: `serve` (HTTP API and dashboard), `show` (one user in the terminal)
//! and `sink` (a night's lists copied into Redis or PostgreSQL).

use anyhow::Result;

use elastirec_core::manifest::sources;
use elastirec_core::{Config, Lake, Night};

use crate::cli::{ServeArgs, ShowArgs, SinkArgs};
use crate::context::finish_config;
use crate::print::{print_serving, print_sink, print_user_history, print_user_recommendations};

/// `serve`: until Ctrl-C, polling `recommendations/_LATEST` for new nights.
pub async fn serve(mut config: Config, args: &ServeArgs) -> Result<()> {
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
    let config = finish_config(config)?;
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
    print_serving(
        served.snapshot().as_deref(),
        &lake,
        local,
        config.serve.token.is_some(),
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
    let pointer = elastirec_lake::read_latest(lake).await?;
    Ok(pointer
        .ok_or_else(|| elastirec_core::Error::NotFound {
            what: "published night".into(),
            path: lake.display_path(&elastirec_core::layout::recommendations_latest()),
            hint: "run `elastirec run --date D` first, or pass --date".into(),
        })?
        .night)
}

/// `show`: the night asked for, or the published one.
pub async fn show(config: Config, args: &ShowArgs) -> Result<()> {
    let config = finish_config(config)?;
    let lake = Lake::open_config(&config.lake).await?;
    let night = match args.date {
        Some(n) => n,
        None => latest_night(&lake).await?,
    };
    let snapshot = elastirec_serve::Snapshot::load_night(&lake, night).await?;
    // The night's dictionary names the user's internal id; an id it does not know is a user
    // without data (no history, the popular fallback), as a numeric id without data is.
    let user = snapshot.ids().users.internal(&args.user);
    print_user_history(&snapshot, &args.user, user, args.history);
    let k = args.k.unwrap_or(snapshot.k);
    match user {
        Some(user) => {
            let recs = snapshot.recommendations(user, k)?;
            print_user_recommendations(&snapshot, recs.source, recs.fallback, &recs.items);
        }
        None => {
            let items = snapshot.fallback(k)?;
            print_user_recommendations(&snapshot, sources::POPULAR, true, &items);
        }
    }
    Ok(())
}

/// `sink`: the night asked for, or the published one, to `[sink] target` or `--target`.
pub async fn sink(mut config: Config, args: &SinkArgs) -> Result<()> {
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
    let r = elastirec_sink::copy_night(&lake, &config.sink, night).await?;
    print_sink(&r);
    Ok(())
}
