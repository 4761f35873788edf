//! Model quality: `evaluate` (a temporal backtest of one night's stored lists) and `tune` (a
//! grid of ALS settings scored on an inner temporal split).

use anyhow::Result;

use elastirec_core::Config;
use elastirec_core::manifest::TuningPoint;
use elastirec_flow::tune;

use crate::cli::{EvaluateArgs, TuneArgs};
use crate::context::{finish_config, leased, pipeline};
use crate::print::{print_evaluation, print_tuning, print_tuning_point, print_tuning_start};

/// `evaluate`.
pub async fn evaluate(mut config: Config, args: &EvaluateArgs) -> Result<()> {
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
    Ok(())
}

/// `tune`: the grid's points one by one (progress on stderr), then the choice.
pub async fn tune(mut config: Config, args: &TuneArgs) -> Result<()> {
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
    print_tuning_start(night, total, options.horizon_days);
    let mut done = 0usize;
    let on_point = move |pt: &TuningPoint| {
        done += 1;
        print_tuning_point(done, total, pt);
    };
    let r = leased(&p, &format!("tune {night}"), || async {
        Ok(tune::tune(&p, night, &options, on_point).await?)
    })
    .await?;
    print_tuning(&r, p.lake(), night);
    Ok(())
}
