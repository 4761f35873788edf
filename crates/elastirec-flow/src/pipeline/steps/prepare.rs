//! The prepare step: writes the night's training export with the prepare queries (built-in, or
//! from `[prepare] sql_dir`).

use elastirec_core::Night;
use elastirec_core::manifest::{ExportManifest, RunRecord};
use elastirec_warehouse::{PrepareOptions, PrepareSql};

use crate::pipeline::{Outcome, Step};
use crate::{Pipeline, Result};

impl Pipeline {
    /// `prepare`: writes the night's training export; an existing one is replaced only with
    /// `overwrite`. (A nightly run replaces its own export when it is no longer current: see
    /// [`Pipeline::run_with`].)
    pub async fn prepare(&self, night: Night, overwrite: bool) -> Result<ExportManifest> {
        let mut record = self.ledger.get_or_new(night).await?;
        self.prepare_in(night, &mut record, overwrite).await
    }

    /// The queries of `prepare`: built-in, or from `[prepare] sql_dir`.
    pub fn prepare_sql(&self) -> Result<PrepareSql> {
        Ok(match &self.config.prepare.sql_dir {
            Some(dir) => PrepareSql::with_overrides(dir)?,
            None => PrepareSql::builtin(),
        })
    }

    pub(in crate::pipeline) async fn prepare_in(
        &self,
        night: Night,
        record: &mut RunRecord,
        overwrite: bool,
    ) -> Result<ExportManifest> {
        let options = PrepareOptions {
            sql: self.prepare_sql()?,
            overwrite,
        };
        self.recorded(
            night,
            Step::Prepare,
            record,
            || async {
                let wh = self.warehouse().await?;
                Ok(wh
                    .prepare_with(night, &self.config.prepare, &options)
                    .await?)
            },
            |m: &ExportManifest| {
                Outcome::ok(
                    None,
                    Some(m.rows),
                    format!(
                        "exported {} pairs of {} users and {} items ({}), {} older seen \
                         pairs, events table version {}",
                        m.rows,
                        m.users,
                        m.items,
                        m.window_text(),
                        m.seen_rows,
                        m.table_versions.get("events").copied().unwrap_or(-1)
                    ),
                )
                .bytes(
                    &[
                        m.files.as_slice(),
                        m.seen_files.as_slice(),
                        m.unseen_files.as_slice(),
                    ]
                    .concat(),
                )
            },
        )
        .await
    }
}
