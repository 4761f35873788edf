//! `elastirec tune --date D`: picks ALS parameters on an inner temporal split and keeps the grid
//! and the choice in night D's run record (`runs/YYYY-MM-DD.json`, field `tuning`).
//!
//! ```text
//!  exports/training/D−H/ (made by `prepare` if missing) ──▶ fit one model per grid point
//!  warehouse/events of D−H+1..D ─────────────────────────▶ score each point's top-K lists
//!                                                          ──▶ runs/D.json: tuning
//! ```
//!
//! The split never looks past D, so tuning night D uses only what night D's own run may use.
//! The configuration is not changed: the record says what was chosen, and applying it
//! (`[model]` in the configuration, or `--factors`, `--regularization` and `--alpha` on `train`
//! and `run`) is an explicit decision.

use elastirec_als::evaluate::Holdout;
pub use elastirec_als::tune::Grid;
use elastirec_als::tune::{TuneData, best_point};
use elastirec_core::manifest::{TuningPoint, TuningRecord};
use elastirec_core::{ErrorKind, Night};
use elastirec_lake::read_export_manifest;
use elastirec_warehouse::Warehouse;

use crate::{Error, Pipeline, Result};

/// What `tune` searches and how it splits.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneOptions {
    /// Days before D that are held out for validation (the inner horizon H).
    pub horizon_days: u32,
    pub grid: Grid,
    /// Cutoff of the metrics.
    pub k: usize,
}

/// Runs the grid for night `night`, writes the result into its run record and returns it;
/// `on_point` sees each point as it finishes.
pub async fn tune(
    p: &Pipeline,
    night: Night,
    options: &TuneOptions,
    on_point: impl FnMut(&TuningPoint) + Send + 'static,
) -> Result<TuningRecord> {
    options.grid.validate()?;
    if options.horizon_days == 0 {
        return Err(Error::Config(
            "--horizon-days 0: the inner split needs at least one validation day".into(),
        ));
    }
    let train_night = night.minus_days(u64::from(options.horizon_days));
    let lake = p.lake();
    let wh = Warehouse::open(lake).await?;
    let pairs = wh.event_pairs(train_night.next(), night).await?;
    if pairs.user_ids.is_empty() {
        return Err(elastirec_als::Error::Missing(format!(
            "no events on the validation days {} to {night} in the warehouse: run `elastirec \
             ingest --date {night}` first, or tune a later night",
            train_night.next()
        ))
        .into());
    }
    // The export of night D−H is exactly what that night trained on; make it if missing.
    match read_export_manifest(lake, train_night).await {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            p.prepare(train_night, false).await?;
        }
        Err(e) => return Err(e.into()),
    }
    let holdout = Holdout {
        user_ids: pairs.user_ids,
        item_ids: pairs.item_ids,
        last_day: pairs.last_day,
    };
    let data = TuneData::load(lake, train_night, &holdout).await?;
    if data.truth.users() == 0 {
        return Err(elastirec_als::Error::Missing(format!(
            "no user known at {train_night} has a new item on {} to {night}: nothing to \
             validate on; pick a longer --horizon-days or a later night",
            train_night.next()
        ))
        .into());
    }
    let base = p.config().model.clone();
    let grid = options.grid.clone();
    let k = options.k;
    let (data, points) = tokio::task::spawn_blocking(move || {
        let points = data.run_grid(&base, &grid, k, on_point);
        (data, points)
    })
    .await
    .map_err(|e| elastirec_als::Error::Internal(format!("tuning task failed: {e}")))?;
    let points = points?;
    let chosen = best_point(&points)
        .ok_or_else(|| elastirec_als::Error::Internal("the grid produced no point".into()))?;
    let record = TuningRecord {
        created_at: chrono::Utc::now(),
        train_night,
        validation_end: night,
        last_event_day: holdout.last_day,
        k,
        base_params: serde_json::to_value(&p.config().model)
            .map_err(|e| elastirec_als::Error::Internal(format!("model params: {e}")))?,
        users_scored: data.truth.users() as u64,
        relevant_items: data.truth.relevant_items,
        grid: points,
        chosen,
        popularity: data.popularity_scores(k),
    };
    p.ledger().record_tuning(night, record.clone()).await?;
    Ok(record)
}
