//! The snapshot step: records the version of every warehouse table under the night's name.

use elastirec_core::manifest::RunRecord;
use elastirec_core::{Night, layout};

use crate::pipeline::{Outcome, Step};
use crate::{Pipeline, Result};

impl Pipeline {
    pub(in crate::pipeline) async fn snapshot_in(
        &self,
        night: Night,
        record: &mut RunRecord,
    ) -> Result<()> {
        self.recorded(
            night,
            Step::Snapshot,
            record,
            || async {
                let wh = self.warehouse().await?;
                Ok(wh.snapshot(&night.to_string(), night).await?)
            },
            |s: &elastirec_core::manifest::SnapshotRecord| {
                Outcome::ok(
                    None,
                    None,
                    format!(
                        "recorded {} ({})",
                        layout::snapshot(&s.name),
                        s.table_versions
                            .iter()
                            .map(|(t, v)| format!("{t} v{v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            },
        )
        .await
        .map(|_| ())
    }
}
