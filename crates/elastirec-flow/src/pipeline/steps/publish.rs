//! The publish step: the gate (`crate::gate`'s checks against the live night and the newest
//! evaluation) decides whether the night goes live, and `recommendations/_LATEST` moves if so.

use elastirec_core::manifest::{EvaluationReport, PublishDecision, RunRecord, StepState};
use elastirec_core::{Night, layout};

use crate::pipeline::als::{publish_latest, read_latest, read_recommendations_manifest};
use crate::pipeline::{Outcome, Step};
use crate::{Pipeline, Result, gate};

impl Pipeline {
    /// Decides whether `night` may go live and moves `_LATEST` if so.
    async fn decide_publish(&self, night: Night, force: bool) -> Result<PublishDecision> {
        let candidate = read_recommendations_manifest(&self.lake, night).await?;
        let latest = read_latest(&self.lake).await?;
        if let Some(l) = &latest
            && l.night > night
        {
            return Ok(PublishDecision {
                published: false,
                forced: false,
                checks: Vec::new(),
                reason: None,
                latest: Some(l.night),
            });
        }
        let live = match &latest {
            Some(l) if l.night < night => read_recommendations_manifest(&self.lake, l.night)
                .await
                .ok(),
            _ => None,
        };
        let evaluation = self.newest_evaluation_before(night).await?;
        let wh = self.warehouse().await?;
        let events_on_night = wh.count_events_on(night).await?;
        let checks = gate::checks(
            &self.config.publish,
            &gate::GateInput {
                night,
                events_on_night,
                candidate: &candidate,
                live: live.as_ref(),
                evaluation: evaluation.as_ref(),
            },
        );
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        let reason = (!failed.is_empty()).then(|| failed.join("; "));
        let go = reason.is_none() || force;
        if go {
            // Refused when this runner no longer holds the lake's lease.
            let epoch = self.stop.fence_on(&self.lake).await?;
            publish_latest(&self.lake, night, epoch).await?;
        }
        let latest = read_latest(&self.lake).await?.map(|l| l.night);
        Ok(PublishDecision {
            published: go && latest == Some(night),
            forced: force && reason.is_some(),
            checks,
            reason,
            latest,
        })
    }

    async fn newest_evaluation_before(&self, night: Night) -> Result<Option<EvaluationReport>> {
        let mut best: Option<(Night, object_store::path::Path)> = None;
        for meta in self.lake.list(&"evaluations".into()).await? {
            let Some(n) = layout::dated_night(&meta.location, 1) else {
                continue;
            };
            if n < night && best.as_ref().is_none_or(|(b, _)| n > *b) {
                best = Some((n, meta.location));
            }
        }
        match best {
            Some((_, path)) => Ok(self.lake.get_json(&path, "evaluation report").await?),
            None => Ok(None),
        }
    }

    pub(in crate::pipeline) async fn publish_in(
        &self,
        night: Night,
        record: &mut RunRecord,
        force: bool,
    ) -> Result<PublishDecision> {
        let decision = self
            .recorded(
                night,
                Step::Publish,
                record,
                || async { self.decide_publish(night, force).await },
                |d: &PublishDecision| {
                    let (state, message) = match (&d.reason, d.published, d.forced) {
                        (_, true, true) => (
                            StepState::Succeeded,
                            format!(
                                "published despite failed checks (--force-publish): {}",
                                d.reason.as_deref().unwrap_or("")
                            ),
                        ),
                        (_, true, false) => (
                            StepState::Succeeded,
                            "published: recommendations/_LATEST names this night".to_string(),
                        ),
                        (Some(r), false, _) => (
                            StepState::Held,
                            format!(
                                "held, {} stays live: {r}",
                                d.latest.map_or("no night".into(), |n| n.to_string())
                            ),
                        ),
                        (None, false, _) => (
                            StepState::Succeeded,
                            format!(
                                "not moved back: the later night {} is live",
                                d.latest.map_or("?".into(), |n| n.to_string())
                            ),
                        ),
                    };
                    Outcome {
                        state,
                        rows_in: None,
                        rows_out: None,
                        bytes_out: None,
                        message,
                        job: None,
                    }
                },
            )
            .await?;
        record.publish = Some(decision.clone());
        self.ledger.put(record).await?;
        Ok(decision)
    }

    /// `publish`: runs the gate for a night whose recommendations exist.
    pub async fn publish(&self, night: Night, force: bool) -> Result<PublishDecision> {
        let mut record = self.ledger.get_or_new(night).await?;
        self.publish_in(night, &mut record, force).await
    }
}
