//! The sink step: copies the live night's lists into Redis or PostgreSQL (`[sink] target`).

use elastirec_core::Night;
use elastirec_core::manifest::RunRecord;

use crate::pipeline::{Outcome, Step};
use crate::{Pipeline, Result};

impl Pipeline {
    pub(in crate::pipeline) async fn sink_in(
        &self,
        night: Night,
        record: &mut RunRecord,
    ) -> Result<()> {
        self.recorded(
            night,
            Step::Sink,
            record,
            || async {
                Ok(elastirec_sink::copy_night(&self.lake, &self.config.sink, night).await?)
            },
            |r: &elastirec_sink::SinkReport| {
                Outcome::ok(
                    Some(r.rows),
                    Some(r.users),
                    format!(
                        "copied the lists of {} users ({} rows) to {} in {:.1} s",
                        r.users, r.rows, r.target, r.seconds
                    ),
                )
            },
        )
        .await
        .map(|_| ())
    }
}
