//! The train step: fits the night's model in process, or hands the night to the Spark engine's
//! job (see `crate::spark_steps`).

use elastirec_core::Night;
use elastirec_core::config::Engine;
use elastirec_core::manifest::{ModelInfo, RunRecord};

use crate::pipeline::als::train_night;
use crate::pipeline::{Outcome, Progress, Step};
use crate::{Pipeline, Result};

impl Pipeline {
    /// `train`: fits the night's model.
    pub async fn train(&self, night: Night) -> Result<ModelInfo> {
        let mut record = self.ledger.get_or_new(night).await?;
        self.train_in(night, &mut record).await
    }

    pub(in crate::pipeline) async fn train_in(
        &self,
        night: Night,
        record: &mut RunRecord,
    ) -> Result<ModelInfo> {
        if self.config.model.engine == Engine::Spark {
            return self.spark_train_in(night, record).await;
        }
        let iterations = self.config.model.iterations;
        self.recorded(
            night,
            Step::Train,
            record,
            || {
                let progress = self.progress.clone();
                async move {
                    let on_iteration = move |iteration: usize, loss: f64| {
                        progress(&Progress::TrainIteration {
                            night,
                            iteration,
                            iterations,
                            loss,
                        })
                    };
                    Ok(train_night(&self.lake, night, &self.config.model, on_iteration).await?)
                }
            },
            |m: &ModelInfo| {
                Outcome::ok(
                    Some(m.interactions),
                    Some(m.users + m.items),
                    format!(
                        "{} factors for {} users and {} items in {:.1} s, final loss {:.5}",
                        m.factors,
                        m.users,
                        m.items,
                        m.train_seconds,
                        m.loss.last().copied().unwrap_or(f64::NAN)
                    ),
                )
                .bytes(&m.files)
            },
        )
        .await
    }
}
