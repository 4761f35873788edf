//! Looking after the lake: `gc` (old nights' outputs and loaded raw files), `forget` (erasure
//! of users everywhere) and `migrate` (layout upgrades).

use std::time::Duration;

use anyhow::Result;

use elastirec_core::{Config, Lake, Night};
use elastirec_flow::lease::Lease;

use crate::cli::{ForgetArgs, GcArgs};
use crate::context::{finish_config, leased, pipeline};
use crate::print::{print_forget, print_gc, print_migration};

/// `gc`.
pub async fn gc(config: Config, args: &GcArgs) -> Result<()> {
    let p = pipeline(finish_config(config)?).await?;
    let raw_before = args
        .raw_older_than
        .map(|d| Night::new(chrono::Utc::now().date_naive()).minus_days(d));
    let plan = leased(&p, "gc", || async {
        Ok(p.gc(args.keep_nights, raw_before, args.dry_run).await?)
    })
    .await?;
    print_gc(&plan, args.dry_run);
    Ok(())
}

/// `forget`: the users of `--user` and `--users-file`, erased under the lease.
pub async fn forget(config: Config, args: &ForgetArgs) -> Result<()> {
    let users = forget_users(&args.users, args.users_file.as_deref())?;
    let p = pipeline(finish_config(config)?).await?;
    let r = leased(&p, "forget", || async {
        Ok(p.forget(&users, args.purge_raw).await?)
    })
    .await?;
    print_forget(&r, users.len());
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

/// `migrate`: opens even an older lake, and holds its lease while upgrading it.
pub async fn migrate(config: Config) -> Result<()> {
    let lake_config = config.lake.clone();
    let lake = Lake::open_for_migrate(&lake_config).await?;
    let ttl = Duration::from_secs(config.run.lease_seconds);
    let lease = Lease::acquire(&lake, "migrate", ttl).await?;
    let result = elastirec_flow::governance::migrate(&lake_config).await;
    lease.release().await?;
    let m = result?;
    print_migration(&lake, &m);
    Ok(())
}
