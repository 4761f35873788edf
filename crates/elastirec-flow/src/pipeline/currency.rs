//! Whether a step's outputs exist and are current for a night, so that `run` skips the step
//! (and, after a crash, continues from the first step that did not finish).

use elastirec_core::manifest::{
    EvaluationReport, ExportManifest, ModelInfo, RecommendationsManifest, RunRecord, StepState,
};
use elastirec_core::{Night, layout};

use super::als::{read_export_manifest, read_latest, read_model_info};
use super::{RunOptions, Step};
use crate::{Pipeline, Result};

impl Pipeline {
    /// Why `step` has nothing to work on for `night`, whatever `--rerun` says: the evaluate step
    /// of a night whose earlier night made no lists (the first nights of a lake, or a night that
    /// failed before its lists). Such a step is skipped, never failed.
    pub(super) async fn nothing_to_do(&self, step: Step, night: Night) -> Result<Option<String>> {
        if step != Step::Evaluate {
            return Ok(None);
        }
        Ok(self.lists_to_evaluate(night).await?.err())
    }

    /// The night the evaluate step of `night` scores and that night's lists, or why there is
    /// nothing to evaluate.
    async fn lists_to_evaluate(
        &self,
        night: Night,
    ) -> Result<std::result::Result<(Night, RecommendationsManifest), String>> {
        let Some(target) = self.evaluated_night(night) else {
            return Ok(Err("no earlier night to evaluate".into()));
        };
        let lists = self
            .lake
            .get_json::<RecommendationsManifest>(
                &layout::recommendations_manifest(target),
                "recommendations",
            )
            .await?;
        Ok(lists
            .map(|lists| (target, lists))
            .ok_or_else(|| format!("night {target} has no recommendations to evaluate")))
    }

    /// Why `step` need not run for `night`, if its outputs exist and are current.
    pub(super) async fn current(
        &self,
        step: Step,
        night: Night,
        record: &RunRecord,
        options: RunOptions,
    ) -> Result<Option<String>> {
        let prev = record.step(step.name());
        let done_before = prev.is_some_and(|s| {
            matches!(
                s.state,
                StepState::Succeeded | StepState::Skipped | StepState::Held
            )
        });
        Ok(match step {
            // Loading is incremental: rerunning it loads only new files, so a night whose load
            // succeeded is not loaded again (late files are taken by the next night's load).
            Step::Ingest => done_before.then(|| "loaded earlier in this night's run".into()),
            Step::Prepare => {
                let Some(m) = self
                    .lake
                    .get_json::<ExportManifest>(
                        &layout::training_export_manifest(night),
                        "training export",
                    )
                    .await?
                else {
                    return Ok(None);
                };
                let versions = self.warehouse().await?.versions().await?;
                let params = serde_json::to_value(&self.config.prepare).ok();
                let sql = self.prepare_sql()?.render(night, &self.config.prepare)?;
                // Offer rules read the export's availability windows: a new availability
                // load makes the export stale too.
                (m.table_versions.get("events") == versions.get("events")
                    && m.table_versions.get("availability") == versions.get("availability")
                    && Some(&m.params) == params.as_ref()
                    && m.sql_hash.as_deref() == Some(sql.hash.as_str()))
                .then(|| {
                    format!(
                        "the export is current (events table version {})",
                        versions.get("events").copied().unwrap_or(-1)
                    )
                })
            }
            Step::Snapshot => {
                let wh = self.warehouse().await?;
                let Some(s) = wh.snapshot_record(&night.to_string()).await? else {
                    return Ok(None);
                };
                (s.table_versions == wh.versions().await?)
                    .then(|| "the snapshot names the current table versions".into())
            }
            Step::Train => {
                let path = layout::model_info(night);
                let Some(m) = self.lake.get_json::<ModelInfo>(&path, "model").await? else {
                    return Ok(None);
                };
                let export = read_export_manifest(&self.lake, night).await?;
                let params = serde_json::to_value(&self.config.model).ok();
                (Some(&m.params) == params.as_ref() && m.created_at >= export.created_at)
                    .then(|| "the model is newer than its export, with the same parameters".into())
            }
            Step::Recommend => {
                let Some(r) = self
                    .lake
                    .get_json::<RecommendationsManifest>(
                        &layout::recommendations_manifest(night),
                        "recommendations",
                    )
                    .await?
                else {
                    return Ok(None);
                };
                let model = read_model_info(&self.lake, night).await?;
                (r.k == self.config.recommend.k && r.created_at >= model.created_at)
                    .then(|| "the lists are newer than the model, with the same k".into())
            }
            Step::Evaluate => {
                let (target, recs) = match self.lists_to_evaluate(night).await? {
                    Ok(found) => found,
                    Err(why) => return Ok(Some(why)),
                };
                let h = self.config.evaluate.horizon_days.max(1);
                match self
                    .lake
                    .get_json::<EvaluationReport>(&layout::evaluation(target, h), "evaluation")
                    .await?
                {
                    Some(r)
                        if r.created_at >= recs.created_at && r.k == self.config.recommend.k =>
                    {
                        Some(format!("night {target} is evaluated already"))
                    }
                    _ => None,
                }
            }
            Step::Publish => {
                let latest = read_latest(&self.lake).await?;
                if latest.as_ref().is_some_and(|l| l.night >= night) {
                    Some(format!(
                        "recommendations/_LATEST names {}",
                        latest.map_or_else(String::new, |l| l.night.to_string())
                    ))
                } else if prev.is_some_and(|s| s.state == StepState::Held) && !options.force_publish
                {
                    Some("held earlier (use --force-publish to publish anyway)".into())
                } else {
                    None
                }
            }
            // Applications read the live night: copy a night only once it is published.
            Step::Sink => {
                let live = read_latest(&self.lake).await?.map(|l| l.night);
                if live != Some(night) {
                    Some(format!(
                        "night {night} is not the live night ({}): nothing to copy",
                        live.map_or("none".into(), |n| n.to_string())
                    ))
                } else {
                    done_before.then(|| "copied earlier in this night's run".into())
                }
            }
        })
    }
}
