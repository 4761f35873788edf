//! `import movielens` and `simulate`: raw event files laid out in the lake, from a MovieLens
//! data set or from a planted preference model.

use std::time::Instant;

use anyhow::{Context, Result};

use elastirec_core::{Config, Lake};
use elastirec_sources::{movielens, simulate};

use crate::cli::{MovielensArgs, SimulateArgs, SimulateFormatArg};
use crate::print::{print_import, print_simulated, print_simulated_scaled};

/// `import movielens`.
pub async fn movielens(config: Config, args: &MovielensArgs) -> Result<()> {
    let lake = Lake::open_config(&config.lake).await?;
    let started = Instant::now();
    let r = movielens::import(&lake, &args.ratings, args.items.as_deref())
        .await
        .with_context(|| format!("importing {}", args.ratings.display()))?;
    print_import(&r, &lake, started.elapsed().as_secs_f64());
    Ok(())
}

/// `simulate`, with `--scale` or with explicit counts.
pub async fn simulate(config: Config, args: &SimulateArgs) -> Result<()> {
    let lake = Lake::open_config(&config.lake).await?;
    if let Some(scale) = args.scale {
        let opts = simulate::ScaleOptions {
            scale,
            seed: args.seed,
            format: format(args.format),
        };
        let shape = opts.shape()?;
        let started = Instant::now();
        let r = simulate::simulate_scaled(&lake, &opts).await?;
        let seconds = started.elapsed().as_secs_f64();
        print_simulated_scaled(&r, &shape, scale, args.seed, seconds, &lake);
        return Ok(());
    }
    let opts = simulate::SimulateOptions {
        start: args.start,
        days: args.days,
        users: args.users,
        items: args.items,
        events_per_day: args.events_per_day,
        seed: args.seed,
        format: format(args.format),
    };
    let r = simulate::simulate(&lake, &opts).await?;
    print_simulated(&r, args.users, args.items, args.seed, &lake);
    Ok(())
}

fn format(arg: SimulateFormatArg) -> simulate::SimulateFormat {
    match arg {
        SimulateFormatArg::Movielens => simulate::SimulateFormat::Movielens,
        SimulateFormatArg::Segment => simulate::SimulateFormat::Segment,
        SimulateFormatArg::SegmentIntegerIds => simulate::SimulateFormat::SegmentIntegerIds,
    }
}
