//! Warehouse snapshots: `snapshots/NAME.json` names the version of every table.
//!
//! The warehouse is only files, so a snapshot is a record of table versions: Delta keeps every
//! version readable until a vacuum removes its files. A night's snapshot is what the next night
//! starts from; restoring one is reading the tables at those versions.

use chrono::Utc;

use elastirec_core::Night;
use elastirec_core::layout;
use elastirec_core::manifest::SnapshotRecord;

use crate::{Result, Warehouse};

impl Warehouse {
    /// Records the current version of every table as snapshot `name` (an existing record of the
    /// same name is replaced, with one put).
    pub async fn snapshot(&self, name: &str, night: Night) -> Result<SnapshotRecord> {
        let record = SnapshotRecord {
            name: name.to_string(),
            night,
            created_at: Utc::now(),
            table_versions: self.versions().await?,
        };
        self.lake()
            .put_json(&layout::snapshot(name), &record)
            .await?;
        Ok(record)
    }

    /// The snapshot record `name`, if there is one.
    pub async fn snapshot_record(&self, name: &str) -> Result<Option<SnapshotRecord>> {
        Ok(self
            .lake()
            .get_json(&layout::snapshot(name), "snapshot record")
            .await?)
    }
}
