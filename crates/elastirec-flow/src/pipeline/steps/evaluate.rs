//! The evaluate step: scores the lists of the night `horizon_days` earlier against the events
//! that followed it; also `evaluate` of one night.

use elastirec_core::Night;
use elastirec_core::manifest::{EvaluationReport, RunRecord};

use crate::pipeline::als::{Holdout, evaluate_night};
use crate::pipeline::{Outcome, Step};
use crate::{Pipeline, Result};

impl Pipeline {
    /// The night the nightly evaluate step of `night` scores: the one `horizon_days` before.
    pub(in crate::pipeline) fn evaluated_night(&self, night: Night) -> Option<Night> {
        let h = u64::from(self.config.evaluate.horizon_days.max(1));
        Some(night.minus_days(h))
    }

    pub(in crate::pipeline) async fn evaluate_step_in(
        &self,
        night: Night,
        record: &mut RunRecord,
    ) -> Result<()> {
        let Some(target) = self.evaluated_night(night) else {
            return Ok(());
        };
        let h = self.config.evaluate.horizon_days.max(1);
        self.recorded(
            night,
            Step::Evaluate,
            record,
            || async { self.evaluate_report(target, h).await },
            |r: &EvaluationReport| {
                Outcome::ok(
                    Some(r.relevant_items),
                    Some(r.users_scored),
                    format!(
                        "night {}: NDCG@{} model {:.4}, popularity {:.4}, most popular {:.4} over \
                         {} users",
                        r.night,
                        r.k,
                        r.model.ndcg,
                        r.popularity.ndcg,
                        r.most_popular.ndcg,
                        r.users_scored
                    ),
                )
            },
        )
        .await
        .map(|_| ())
    }

    async fn evaluate_report(&self, night: Night, horizon_days: u32) -> Result<EvaluationReport> {
        let wh = self.warehouse().await?;
        let last = night.plus_days(u64::from(horizon_days.max(1)));
        let pairs = wh.event_pairs(night.next(), last).await?;
        let holdout = Holdout {
            user_ids: pairs.user_ids,
            item_ids: pairs.item_ids,
            last_day: pairs.last_day,
        };
        let k = self.config.recommend.k;
        Ok(evaluate_night(&self.lake, night, horizon_days, k, &holdout).await?)
    }

    /// `evaluate`: scores night D's stored lists against events of days D+1..D+H in the lake.
    pub async fn evaluate(&self, night: Night, horizon_days: u32) -> Result<EvaluationReport> {
        let mut record = self.ledger.get_or_new(night).await?;
        // Recorded under the evaluated night, as its own step: the nightly evaluate step of a
        // later night is recorded under that night instead.
        self.recorded(
            night,
            Step::Evaluate,
            &mut record,
            || async { self.evaluate_report(night, horizon_days).await },
            |r: &EvaluationReport| {
                Outcome::ok(
                    Some(r.relevant_items),
                    Some(r.users_scored),
                    format!(
                        "NDCG@{} {:.4} (popularity {:.4}) over {} users",
                        r.k, r.model.ndcg, r.popularity.ndcg, r.users_scored
                    ),
                )
            },
        )
        .await
    }
}
