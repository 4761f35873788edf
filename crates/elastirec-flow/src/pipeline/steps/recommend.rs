//! The recommend step: writes the night's top-K lists (the publish step makes them live), in
//! process or from the Spark engine's job.

use elastirec_core::Night;
use elastirec_core::config::Engine;
use elastirec_core::manifest::{RecommendationsManifest, RunRecord};

use crate::pipeline::als::recommend_night_with;
use crate::pipeline::{Outcome, Step};
use crate::{Pipeline, Result};

impl Pipeline {
    /// `recommend`: writes the night's top-K lists (the publish step makes them live).
    pub async fn recommend(&self, night: Night) -> Result<RecommendationsManifest> {
        let mut record = self.ledger.get_or_new(night).await?;
        self.recommend_in(night, &mut record).await
    }

    pub(in crate::pipeline) async fn recommend_in(
        &self,
        night: Night,
        record: &mut RunRecord,
    ) -> Result<RecommendationsManifest> {
        if self.config.model.engine == Engine::Spark {
            return self.spark_recommend_in(night, record).await;
        }
        self.recorded(
            night,
            Step::Recommend,
            record,
            || async {
                let (k, rules) = (self.config.recommend.k, Some(&self.config.rules));
                Ok(recommend_night_with(&self.lake, night, k, rules).await?)
            },
            |m: &RecommendationsManifest| {
                Outcome::ok(
                    Some(m.users),
                    Some(m.rows),
                    format!(
                        "top-{} for {} users ({})",
                        m.k,
                        m.users,
                        m.users_by_source
                            .iter()
                            .map(|(s, n)| format!("{n} {s}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .bytes(&m.files)
            },
        )
        .await
    }
}
