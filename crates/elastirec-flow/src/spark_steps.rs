//! The train and recommend steps under `[model] engine = "spark"`: one Spark job (crate
//! `elastirec-spark`) trains the model and writes the lists, and both steps' records carry it
//! (exit status, duration, log tail).
//!
//! The train step runs the job, which publishes `models/D/` and then `recommendations/D/`; the
//! recommend step that follows in the same run records those lists. A recommend step with no
//! such lists (run alone, or resumed after a crash between the two publications) runs the job
//! again, which rewrites both folders, so a night's lists always come from the model beside them.
//! `[rules]` (offer rules) are applied to the job's lists before they are published, as the
//! in-process recommend step applies them.

use std::collections::BTreeMap;

use elastirec_als::rules::OfferRules;
use elastirec_core::manifest::{
    ExportManifest, JobRecord, ModelInfo, RecommendationsManifest, RunRecord,
};
use elastirec_core::{Lake, Night};
use elastirec_lake::io::RecommendationRow;
use elastirec_spark::{CandidateRules, SparkNight, StagedLists};

use crate::pipeline::{Outcome, Step};
use crate::{Pipeline, Result};

/// Lists a train step's job published, kept for the recommend step's record.
#[derive(Debug, Clone)]
pub(crate) struct SparkLists {
    night: Night,
    manifest: RecommendationsManifest,
    job: JobRecord,
}

fn sources(m: &RecommendationsManifest) -> String {
    m.users_by_source
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The in-process engine's offer rules, applied to the Spark job's candidates.
struct InProcessRules(OfferRules);

impl CandidateRules for InProcessRules {
    fn candidates(&self, k: usize) -> usize {
        self.0.candidates(k)
    }

    fn describe(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::to_value(self.0.config())
    }

    async fn apply(
        self,
        lake: &Lake,
        night: Night,
        export: &ExportManifest,
        staged: StagedLists,
        k: usize,
    ) -> elastirec_lake::Result<BTreeMap<i64, Vec<RecommendationRow>>> {
        elastirec_als::stage::rank_candidates(lake, night, export, staged, k, self.0).await
    }
}

impl Pipeline {
    /// The lists the train step's job published for `night` in this process, if any.
    pub(crate) fn spark_lists_of(&self, night: Night) -> Option<SparkLists> {
        let guard = self.spark_lists.lock().ok()?;
        guard.as_ref().filter(|l| l.night == night).cloned()
    }

    async fn spark_job(&self, night: Night) -> Result<SparkNight> {
        let config = self.config();
        let export = elastirec_lake::read_export_manifest(self.lake(), night).await?;
        // The same offer rules as the in-process recommend step, applied to the job's lists;
        // loaded before the job, so a rule that cannot be read fails the step before Spark runs.
        let rules = OfferRules::load(self.lake(), &export, night, &config.rules)
            .await?
            .map(InProcessRules);
        Ok(elastirec_spark::train_and_recommend(
            self.lake(),
            night,
            &config.model,
            config.recommend.k,
            &config.spark,
            rules,
        )
        .await?)
    }

    pub(crate) async fn spark_train_in(
        &self,
        night: Night,
        record: &mut RunRecord,
    ) -> Result<ModelInfo> {
        let done = self
            .recorded(
                night,
                Step::Train,
                record,
                || self.spark_job(night),
                |n: &SparkNight| {
                    let m = &n.model;
                    let mut o = Outcome::ok(
                        Some(m.interactions),
                        Some(m.users + m.items),
                        format!(
                            "spark job (Spark {}, {:.1} s): {} factors for {} users and {} items \
                             in {:.1} s; it also wrote top-{} for {} users ({}), recorded by the \
                             recommend step",
                            n.report.spark_version,
                            n.job.seconds,
                            m.factors,
                            m.users,
                            m.items,
                            m.train_seconds,
                            n.recommendations.k,
                            n.recommendations.users,
                            sources(&n.recommendations)
                        ),
                    )
                    .bytes(&m.files);
                    o.job = Some(n.job.clone());
                    o
                },
            )
            .await?;
        if let Ok(mut slot) = self.spark_lists.lock() {
            *slot = Some(SparkLists {
                night,
                manifest: done.recommendations.clone(),
                job: done.job.clone(),
            });
        }
        Ok(done.model)
    }

    pub(crate) async fn spark_recommend_in(
        &self,
        night: Night,
        record: &mut RunRecord,
    ) -> Result<RecommendationsManifest> {
        let stored = self
            .spark_lists
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .filter(|l| l.night == night);
        let (manifest, _, _) = self
            .recorded(
                night,
                Step::Recommend,
                record,
                || {
                    let stored = stored.clone();
                    async move {
                        match stored {
                            Some(l) => Ok((l.manifest, l.job, true)),
                            None => {
                                let n = self.spark_job(night).await?;
                                Ok((n.recommendations, n.job, false))
                            }
                        }
                    }
                },
                |(m, job, from_train): &(RecommendationsManifest, JobRecord, bool)| {
                    let by = if *from_train {
                        "by the train step's spark job"
                    } else {
                        "by a new spark job (which also rewrote the model)"
                    };
                    let mut o = Outcome::ok(
                        Some(m.users),
                        Some(m.rows),
                        format!(
                            "top-{} for {} users ({}), written {by}",
                            m.k,
                            m.users,
                            sources(m)
                        ),
                    )
                    .bytes(&m.files);
                    o.job = Some(job.clone());
                    o
                },
            )
            .await?;
        Ok(manifest)
    }
}
