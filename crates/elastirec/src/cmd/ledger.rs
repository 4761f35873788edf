//! The run ledger, read-only: `runs` (one line per night), `status` (one night in detail, and
//! the lease) and `cost`.

use anyhow::{Result, bail};

use elastirec_core::manifest::RunRecord;
use elastirec_core::{Config, Lake};
use elastirec_flow::RunLedger;

use crate::cli::{CostArgs, RunsArgs, StatusArgs};
use crate::print::{
    print_cost, print_lease, print_record_json, print_records_json, print_runs, print_status,
};

/// `runs`.
pub async fn runs(config: Config, args: &RunsArgs) -> Result<()> {
    let lake = Lake::open_existing(&config.lake).await?;
    let mut records = RunLedger::new(&lake).all().await?;
    if let Some(n) = args.last {
        let skip = records.len().saturating_sub(n);
        records.drain(..skip);
    }
    if args.json {
        print_records_json(&records)?;
    } else {
        print_runs(&records, &config);
    }
    Ok(())
}

/// `status`: the night asked for, or the newest one with a record.
pub async fn status(config: Config, args: &StatusArgs) -> Result<()> {
    let lake = Lake::open_existing(&config.lake).await?;
    let ledger = RunLedger::new(&lake);
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
        print_record_json(&record)?;
    } else {
        print_status(&record);
    }
    if let Some(lease) = elastirec_flow::lease::current(&lake).await?
        && !lease.released
        && lease.expires_at > chrono::Utc::now()
        && !args.json
    {
        print_lease(&lease);
    }
    Ok(())
}

/// `cost`, over the nights from `--from` to `--to`.
pub async fn cost(config: Config, args: &CostArgs) -> Result<()> {
    let lake = Lake::open_existing(&config.lake).await?;
    let records: Vec<RunRecord> = RunLedger::new(&lake)
        .all()
        .await?
        .into_iter()
        .filter(|r| args.from.is_none_or(|f| r.night >= f))
        .filter(|r| args.to.is_none_or(|t| r.night <= t))
        .collect();
    print_cost(&records, &config, args.json)
}
