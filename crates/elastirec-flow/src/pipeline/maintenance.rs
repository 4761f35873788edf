//! Commands on the lake outside the nightly steps: warehouse snapshots, restore, vacuum and
//! the PostgreSQL endpoint, `sql` queries, and `gc` (retention).

use chrono::Utc;

use elastirec_core::Night;

use super::als::read_latest;
use crate::{Pipeline, Result, retention};

impl Pipeline {
    /// `warehouse snapshot`: records the version of every table as snapshot `name`.
    pub async fn snapshot(
        &self,
        name: &str,
        night: Night,
    ) -> Result<elastirec_core::manifest::SnapshotRecord> {
        Ok(self.warehouse().await?.snapshot(name, night).await?)
    }

    /// `warehouse snapshots`: every snapshot record.
    pub async fn snapshots(&self) -> Result<Vec<elastirec_core::manifest::SnapshotRecord>> {
        Ok(self.warehouse().await?.snapshots().await?)
    }

    /// `warehouse restore`: brings every table back to snapshot `name`.
    /// Erasure requests are not rolled back: the rows of erased users that the restored
    /// versions hold are deleted again at once.
    pub async fn restore(&self, name: &str) -> Result<Vec<elastirec_warehouse::TableRestore>> {
        let wh = self.warehouse().await?;
        let done = wh.restore(name).await?;
        let id = format!("r{:x}", Utc::now().timestamp_micros());
        let erased = wh.reapply_erasures(&id, &self.config.events).await?;
        if erased > 0 {
            tracing::warn!(
                events = erased,
                "the restored versions held events of erased users; deleted them again"
            );
        }
        Ok(done)
    }

    /// `warehouse vacuum`: keeps the newest `keep` snapshots and deletes the data files that
    /// neither they nor the current tables read, once they left the tables `retain` ago.
    pub async fn vacuum(
        &self,
        keep: usize,
        retain: std::time::Duration,
        dry_run: bool,
    ) -> Result<elastirec_warehouse::VacuumReport> {
        Ok(self
            .warehouse()
            .await?
            .vacuum(keep, retain, dry_run)
            .await?)
    }

    /// `warehouse serve`: the tables over the PostgreSQL wire protocol, read-only, with the
    /// authentication, TLS and limits of `[pgwire]`, until the stop flag is raised.
    pub async fn serve_postgres(&self, host: &str, port: u16) -> Result<()> {
        let stop = self.stop.clone();
        Ok(self
            .warehouse()
            .await?
            .serve_postgres(host, port, &self.config.pgwire, async move {
                stop.raised().await
            })
            .await?)
    }

    /// `sql`: one read-only statement over the warehouse tables.
    pub async fn query(&self, sql: &str) -> Result<Vec<arrow_array::RecordBatch>> {
        Ok(self.warehouse().await?.query(sql).await?)
    }

    /// `gc`: deletes outputs of nights older than the newest `keep_nights` (never the live
    /// night) and, with `raw_before`, loaded raw files of earlier days.
    pub async fn gc(
        &self,
        keep_nights: usize,
        raw_before: Option<Night>,
        dry_run: bool,
    ) -> Result<retention::GcPlan> {
        let live = read_latest(&self.lake).await?.map(|l| l.night);
        let loaded = match raw_before {
            Some(_) => self.warehouse().await?.loaded_files().await?,
            None => Default::default(),
        };
        let plan = retention::plan(&self.lake, keep_nights, live, raw_before, &loaded).await?;
        if !dry_run {
            retention::apply(&self.lake, &plan).await?;
        }
        Ok(plan)
    }
}
