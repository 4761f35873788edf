//! Whole nights: `run` (one night, a backfill or the missing nights, under the lake's lease)
//! and `schedule` (every night at the configured time, until a signal).

use std::sync::Arc;

use anyhow::Result;

use elastirec_core::Config;
use elastirec_flow::RunOptions;
use elastirec_flow::schedule::{Scheduler, SystemClock};

use crate::cli::RunArgs;
use crate::context::{apply_model_args, finish_config, leased, nights_of, pipeline, yesterday_utc};
use crate::print::{
    print_backfill_stopped, print_nothing_to_run, print_record, print_schedule, print_stopped,
    print_tick,
};

/// `run`: every night named, in date order; fails with the first night that failed.
pub async fn run(mut config: Config, args: &RunArgs) -> Result<()> {
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
        print_nothing_to_run(yesterday_utc());
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
        print_backfill_stopped(nights.len() - ran);
    }
    if let Some(e) = first_error {
        return Err(e.into());
    }
    Ok(())
}

/// `schedule`: runs until SIGTERM or Ctrl-C.
pub async fn schedule(config: Config) -> Result<()> {
    let config = finish_config(config)?;
    let schedule = config.schedule.clone();
    let p = pipeline(config).await?;
    let stop = p.stop_flag().clone();
    let scheduler = Scheduler::new(p, &schedule, Arc::new(SystemClock))?.on_tick(print_tick);
    print_schedule(&schedule);
    scheduler.run(&stop).await?;
    print_stopped(&stop.reason().unwrap_or_default());
    Ok(())
}
