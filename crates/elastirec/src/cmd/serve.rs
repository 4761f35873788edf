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
    if args.token.is_some() {
        return Err(elastirec_core::Error::Config(
            "--token would show the token to every user of this machine (ps, shell history): \
             put it in ELASTIREC_SERVE__TOKEN or in a file named by --token-file"
                .into(),
        )
        .into());
    }
    if let Some(path) = &args.token_file {
        config.serve.token = Some(read_token_file(path)?);
    }
    if let Some(s) = args.poll_seconds {
        config.serve.poll_seconds = s;
    }
    let config = finish_config(config)?;
    let lake = Lake::open_existing(&config.lake).await?;
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
    if !elastirec_serve::server::is_loopback(&local)
        && config.serve.token.is_none()
        && !args.insecure_no_token
    {
        return Err(elastirec_core::Error::Config(format!(
            "refusing to serve {local} without a token: anyone who reaches it would read every \
             user's history and recommendations. Set ELASTIREC_SERVE__TOKEN (or --token-file), \
             serve 127.0.0.1, or pass --insecure-no-token"
        ))
        .into());
    }
    if !elastirec_serve::server::is_loopback(&local) && config.serve.token.is_none() {
        eprintln!("elastirec: warning: serving {local} without a token (--insecure-no-token)");
    }
    let options = server_options(&config.serve)?;
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
    elastirec_serve::server::serve(listener, app, options, crate::context::interrupted()).await?;
    poll.abort();
    Ok(())
}

/// The token in `path`: its first line, trimmed; an empty file is an error.
fn read_token_file(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        elastirec_core::Error::Config(format!("--token-file {}: {e}", path.display()))
    })?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(elastirec_core::Error::Config(format!(
            "--token-file {}: the first line is empty: write the token there",
            path.display()
        ))
        .into());
    }
    Ok(token.to_string())
}

/// The HTTP server's limits and TLS from `[serve]`.
fn server_options(
    serve: &elastirec_core::config::ServeConfig,
) -> Result<elastirec_serve::server::Options> {
    use std::time::Duration;
    let tls = match (&serve.tls_cert, &serve.tls_key) {
        (Some(cert), Some(key)) => Some(elastirec_serve::server::tls_config(cert, key)?),
        _ => None,
    };
    Ok(elastirec_serve::server::Options {
        header_timeout: Duration::from_secs(serve.header_timeout_secs),
        request_timeout: Duration::from_secs(serve.request_timeout_secs),
        write_timeout: Duration::from_secs(serve.write_timeout_secs),
        max_connections: serve.max_connections,
        tls,
        ..Default::default()
    })
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
    let lake = Lake::open_existing(&config.lake).await?;
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
    let lake = Lake::open_existing(&config.lake).await?;
    let night = match args.date {
        Some(n) => n,
        None => latest_night(&lake).await?,
    };
    let r = elastirec_sink::copy_night(&lake, &config.sink, night).await?;
    print_sink(&r);
    Ok(())
}
