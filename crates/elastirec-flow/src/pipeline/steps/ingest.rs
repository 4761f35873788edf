//! The ingest step: loads the raw files of the night and of any earlier day not loaded yet into
//! the warehouse; also `ingest --dry-run` and `ingest --reload`.

use elastirec_core::Night;
use elastirec_core::manifest::RunRecord;
use elastirec_warehouse::{IngestOptions, IngestReport};

use crate::pipeline::{Outcome, Step};
use crate::{Pipeline, Result};

impl Pipeline {
    fn ingest_options(&self, dry_run: bool) -> IngestOptions {
        IngestOptions {
            max_errors: self.config.events.max_errors,
            item_attributes: self.config.items.from_events.clone(),
            items: self.config.items.clone(),
            dry_run,
            fence: self.stop.fence(),
        }
    }

    /// `ingest`: loads the raw files of the night and of any earlier day not loaded yet.
    pub async fn ingest(&self, night: Night) -> Result<IngestReport> {
        let mut record = self.ledger.get_or_new(night).await?;
        self.ingest_in(night, &mut record).await
    }

    pub(in crate::pipeline) async fn ingest_in(
        &self,
        night: Night,
        record: &mut RunRecord,
    ) -> Result<IngestReport> {
        self.recorded(
            night,
            Step::Ingest,
            record,
            || async {
                let wh = self.warehouse().await?;
                let options = self.ingest_options(false);
                Ok(wh.ingest(night, &self.config.events, options).await?)
            },
            |r: &IngestReport| {
                Outcome::ok(
                    Some(r.rows_loaded + r.rows_rejected),
                    Some(r.rows_loaded),
                    describe_ingest(r),
                )
            },
        )
        .await
    }

    /// `ingest --reload FILE`: forgets loaded raw files so the next load takes their current
    /// content; returns the events removed per file.
    pub async fn forget_loaded(&self, paths: &[String]) -> Result<Vec<(String, u64)>> {
        let wh = self.warehouse().await?;
        let mut out = Vec::new();
        for path in paths {
            out.push((path.clone(), wh.forget_file(path).await?));
        }
        Ok(out)
    }

    /// `ingest --skip-file FILE`: records raw event files as loaded with no rows, so loads pass
    /// over them; returns the paths recorded.
    pub async fn skip_files(&self, night: Night, paths: &[String]) -> Result<Vec<String>> {
        let wh = self.warehouse().await?;
        let mut out = Vec::new();
        for path in paths {
            wh.skip_file(night, &self.config.events, path).await?;
            out.push(path.clone());
        }
        Ok(out)
    }

    /// `ingest --dry-run`: parses and validates what `ingest` would load, commits nothing and
    /// leaves the run record alone.
    pub async fn ingest_dry_run(&self, night: Night) -> Result<IngestReport> {
        let wh = self.warehouse().await?;
        let options = self.ingest_options(true);
        Ok(wh.ingest(night, &self.config.events, options).await?)
    }
}

fn describe_ingest(r: &IngestReport) -> String {
    let mut s = format!(
        "loaded {} rows from {} new files ({} already loaded, {} for later nights)",
        r.rows_loaded, r.files_loaded, r.files_already_loaded, r.files_for_later_nights
    );
    if r.rows_rejected > 0 {
        s.push_str(&format!(
            "; {} rows rejected into warehouse/rejects (first: {})",
            r.rows_rejected,
            r.first_rejects
                .first()
                .map(|x| x.to_string())
                .unwrap_or_default()
        ));
    }
    if r.rows_erased > 0 {
        s.push_str(&format!(
            "; {} events of erased users dropped (elastirec forget)",
            r.rows_erased
        ));
    }
    if let Some(n) = r.availability_loaded {
        s.push_str(&format!("; {n} availability rows"));
    }
    if r.files_skipped > 0 {
        s.push_str(&format!(
            "; {} marker or hidden files skipped",
            r.files_skipped
        ));
    }
    if r.files_outside_layout > 0 {
        s.push_str(&format!(
            "; {} objects outside the YYYY/MM/DD/[HH/] folders not read",
            r.files_outside_layout
        ));
    }
    if r.files_unreadable > 0 {
        s.push_str(&format!("; {} files unreadable", r.files_unreadable));
    }
    if r.records_skipped > 0 {
        s.push_str(&format!(
            "; {} records other than events skipped",
            r.records_skipped
        ));
    }
    if r.rows_duplicate > 0 {
        s.push_str(&format!("; {} duplicate rows dropped", r.rows_duplicate));
    }
    if r.ids_assigned > 0 {
        s.push_str(&format!("; {} new string ids", r.ids_assigned));
    }
    if r.files_recovered > 0 {
        s.push_str(&format!(
            "; recorded {} files an interrupted run had loaded",
            r.files_recovered
        ));
    }
    if !r.files_changed.is_empty() {
        s.push_str(&format!(
            "; {} loaded files changed since and were not reloaded: {}",
            r.files_changed.len(),
            r.files_changed.join(", ")
        ));
    }
    if let Some(n) = r.items_loaded {
        s.push_str(&format!("; {n} items"));
    }
    if r.item_attributes > 0 {
        s.push_str(&format!(
            "; {} item attribute values observed (catalog feeds, [items] from_events)",
            r.item_attributes
        ));
    }
    if let Some(u) = r.unknown_items
        && u.events > 0
    {
        s.push_str(&format!(
            "; {} events name {} items missing from warehouse/items (loaded; add them to \
             raw/items/)",
            u.events, u.items
        ));
    }
    s
}
