//! `ingest`: the nightly incremental load of raw files into the warehouse.
//!
//! Night D loads every raw event file under `raw/events/YYYY/MM/DD/` for days up to D that the
//! load ledger (`warehouse/loads`) does not list yet, so a new lake catches up its whole history
//! in one night and a rerun loads nothing. All new files go into `warehouse/events` in one Delta
//! commit; then one commit appends their ledger rows.
//!
//! Crash safety: each load is numbered, and its commits to `events`, `rejects` and `loads` carry
//! that number as a Delta application transaction (`txn` action, app id [`INGEST_APP`]), so
//! each table says which load it last received. If the process dies between the events commit
//! and the ledger commit, the next run sees that `events` holds a load `loads` does not, finds
//! the files that load took (every event row carries its `source_file`), and writes their
//! ledger rows instead of loading them again. A commit that did not happen is simply redone.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, Date32Array, Float32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::datafusion::logical_expr::{Operator, binary_expr};
use deltalake::datafusion::prelude::{SessionContext, col};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::config::TablePropertiesExt;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use rayon::prelude::*;

use elastirec_core::config::{EventsConfig, TimestampFormat};
use elastirec_core::layout::{self, Table};
use elastirec_core::{Night, failpoint};

use crate::query::{first_count, i64s, strings};
use crate::tables::{Warehouse, schema};
use crate::{Error, Result};

/// What one ingest did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IngestReport {
    /// Raw event files loaded by this run.
    pub files_loaded: u64,
    /// Event rows loaded by this run.
    pub rows_loaded: u64,
    /// Rows rejected by this run (written to `warehouse/rejects`).
    pub rows_rejected: u64,
    /// The first rejects, for messages.
    pub first_rejects: Vec<Reject>,
    /// Whether this was a dry run that committed nothing.
    pub dry_run: bool,
    /// Files of days up to the night that were loaded by earlier runs.
    pub files_already_loaded: u64,
    /// Files loaded earlier whose size or ETag has changed since (not reloaded).
    pub files_changed: Vec<String>,
    /// Files of days after the night, left for later nights.
    pub files_for_later_nights: u64,
    /// Files that an interrupted earlier run had loaded but not recorded; recorded now.
    pub files_recovered: u64,
    /// Item rows inserted or updated by the merge, when item files were new or changed.
    pub items_loaded: Option<u64>,
    /// Version of `warehouse/events` after the load.
    pub events_version: i64,
    /// Events of erased users (`elastirec forget`) in the new files, dropped instead of loaded.
    pub rows_erased: u64,
    /// Availability rows loaded, when availability files changed (layout 2).
    pub availability_loaded: Option<u64>,
    /// Events up to the night whose item is not in `warehouse/items` (loaded, not rejected),
    /// and how many such items; `None` when there is no item dimension at all.
    pub unknown_items: Option<UnknownItems>,
}

/// Events that name items the item dimension does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnknownItems {
    pub events: u64,
    pub items: u64,
}

/// Settings of one load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestOptions {
    /// Rows that may be rejected before the load fails and commits nothing.
    pub max_errors: u64,
    /// Parse and validate everything, commit nothing.
    pub dry_run: bool,
}

/// The application id of ingest's Delta transactions (see the module documentation).
pub const INGEST_APP: &str = "elastirec.ingest";

/// How many rejects a report or message names.
const REJECTS_SHOWN: usize = 5;

/// A raw file as the ledger remembers it.
#[derive(Debug, Clone)]
pub(crate) struct LedgerEntry {
    pub(crate) size: i64,
    pub(crate) e_tag: Option<String>,
}

impl Warehouse {
    /// Loads raw files for `night`: see the module documentation.
    pub async fn ingest(
        &self,
        night: Night,
        events: &EventsConfig,
        options: IngestOptions,
    ) -> Result<IngestReport> {
        let lake = self.lake();
        let mut report = IngestReport {
            dry_run: options.dry_run,
            ..IngestReport::default()
        };
        let ledger = self.ledger().await?;
        let raw = lake.list(&layout::raw_events_root()).await?;
        let mut candidates = Vec::new();
        for meta in raw {
            let Some(day) = layout::raw_event_file_day(&meta.location) else {
                tracing::warn!(path = %meta.location, "ignoring an object outside raw/events/YYYY/MM/DD/");
                continue;
            };
            if day > night {
                report.files_for_later_nights += 1;
                continue;
            }
            candidates.push((day, meta));
        }

        // Recover ledger rows lost by a crash between the events commit and the ledger commit.
        let events_table = self.table(Table::Events).await?;
        let events_version = events_table.version().unwrap_or(0) as i64;
        let events_load = self.last_load(&events_table).await?;
        let ledger_load = self.last_load(&self.table(Table::Loads).await?).await?;
        let mut loaded: HashMap<String, LedgerEntry> = ledger
            .get("events")
            .map(|(m, _)| m.clone())
            .unwrap_or_default();
        if events_load > ledger_load && !options.dry_run {
            let counts = self.rows_per_source_file().await?;
            let mut recovered = Vec::new();
            for (day, meta) in &candidates {
                let path = meta.location.to_string();
                if counts.contains_key(&path) && !loaded.contains_key(&path) {
                    recovered.push((*day, meta.clone()));
                    loaded.insert(path, LedgerEntry::of(meta));
                }
            }
            report.files_recovered = recovered.len() as u64;
            if !recovered.is_empty() {
                tracing::warn!(
                    files = recovered.len(),
                    "recording files loaded by an interrupted run"
                );
                // Their rejects may not have been committed either: parse them again.
                let parsed = self.fetch_and_parse(recovered, events).await?;
                let already = self.files_with_rejects().await?;
                let rejects: Vec<Reject> = parsed
                    .iter()
                    .filter(|(_, m, _)| !already.contains(m.location.as_ref()))
                    .flat_map(|(_, _, p)| p.rejects.iter().cloned())
                    .collect();
                self.append_rejects(&rejects, night, events_load).await?;
                let rows = parsed
                    .iter()
                    .map(|(day, meta, p)| {
                        let loaded = counts.get(meta.location.as_ref()).copied().unwrap_or(0);
                        LedgerRow::of(meta, "events", Some(*day), loaded, events_version)
                            .with_rejected(p.rejects.len() as i64)
                    })
                    .collect();
                self.append_ledger(rows, night, events_load).await?;
            }
        }
        // This load's number: one past the last any table received.
        let load = events_load.max(ledger_load) + 1;

        let mut new_files = Vec::new();
        for (day, meta) in candidates {
            let path = meta.location.to_string();
            match loaded.get(&path) {
                Some(entry) => {
                    report.files_already_loaded += 1;
                    if entry.size != meta.size as i64
                        || (entry.e_tag.is_some() && entry.e_tag != meta.e_tag)
                    {
                        tracing::warn!(%path, "raw file changed after it was loaded; not reloading it");
                        report.files_changed.push(path);
                    }
                }
                None => new_files.push((day, meta)),
            }
        }

        report.events_version = events_version;
        if !new_files.is_empty() {
            let mut parsed = self.fetch_and_parse(new_files, events).await?;
            report.rows_erased = self.drop_erased_parsed(&mut parsed).await?;
            let rejects: Vec<Reject> = parsed
                .iter()
                .flat_map(|(_, _, p)| p.rejects.iter().cloned())
                .collect();
            report.rows_rejected = rejects.len() as u64;
            report.first_rejects = rejects.iter().take(REJECTS_SHOWN).cloned().collect();
            report.files_loaded = parsed.len() as u64;
            report.rows_loaded = parsed
                .iter()
                .map(|(_, _, p)| p.batch.num_rows() as u64)
                .sum();
            if report.rows_rejected > options.max_errors {
                return Err(Error::TooManyRejects {
                    rejected: report.rows_rejected,
                    max_errors: options.max_errors,
                    first: report.first_rejects.iter().map(|r| r.to_string()).collect(),
                });
            }
            if options.dry_run {
                return Ok(report);
            }
            let batches: Vec<RecordBatch> = parsed
                .iter()
                .map(|(_, _, p)| p.batch.clone())
                .filter(|b| b.num_rows() > 0)
                .collect();
            let mut version = events_version;
            failpoint::hit("ingest.before-events-commit");
            if !batches.is_empty() {
                let mut meta = HashMap::new();
                meta.insert("elastirec.step".to_string(), serde_json::json!("ingest"));
                meta.insert(
                    "elastirec.night".to_string(),
                    serde_json::json!(night.to_string()),
                );
                meta.insert(
                    "elastirec.files".to_string(),
                    serde_json::json!(parsed.len()),
                );
                let commit = CommitProperties::default()
                    .with_metadata(meta)
                    .with_application_transaction(Transaction::new(INGEST_APP, load));
                version = append_events(&events_table, batches, commit).await?;
            }
            // A crash here leaves events committed and the ledger behind: see the module docs.
            failpoint::hit("ingest.after-events-commit");
            self.append_rejects(&rejects, night, load).await?;
            let ledger_rows = parsed
                .iter()
                .map(|(day, meta, p)| {
                    LedgerRow::of(
                        meta,
                        "events",
                        Some(*day),
                        p.batch.num_rows() as i64,
                        version,
                    )
                    .with_rejected(p.rejects.len() as i64)
                })
                .collect();
            self.append_ledger(ledger_rows, night, load).await?;
            report.events_version = version;
        }
        if options.dry_run {
            return Ok(report);
        }

        report.items_loaded = self
            .ingest_items(night, ledger.get("items").map(|(m, _)| m), load)
            .await?;
        report.availability_loaded = self
            .ingest_availability(night, ledger.get("availability").map(|(m, _)| m), load)
            .await?;
        report.unknown_items = self.unknown_items(night).await?;
        Ok(report)
    }

    /// `ingest --reload FILE`: forgets a loaded raw event file — its events, its rejects, then
    /// its ledger row, in that order — so that the next load takes the file's current content.
    /// A crash between the commits leaves the file's rows missing while the ledger still names
    /// it (reported as changed); running the reload again completes it. It never leaves the old
    /// and the new rows side by side. Returns the number of events removed.
    pub async fn forget_file(&self, path: &str) -> Result<u64> {
        use deltalake::datafusion::prelude::{col, lit};
        let ledger = self.ledger().await?;
        if !ledger
            .get("events")
            .is_some_and(|(files, _)| files.contains_key(path))
        {
            return Err(Error::Lake(elastirec_core::Error::Config(format!(
                "--reload {path}: the load ledger has no such event file (give its lake path, \
                 such as raw/events/2024/01/05/app.csv; `elastirec sql \"SELECT path FROM \
                 loads\"` lists them)"
            ))));
        }
        let events = self.table(Table::Events).await?;
        let (_, metrics) = events
            .delete()
            .with_predicate(col("source_file").eq(lit(path)))
            .await
            .map_err(Error::delta("events"))?;
        let rejects = self.table(Table::Rejects).await?;
        rejects
            .delete()
            .with_predicate(col("file").eq(lit(path)))
            .await
            .map_err(Error::delta("rejects"))?;
        let loads = self.table(Table::Loads).await?;
        loads
            .delete()
            .with_predicate(col("path").eq(lit(path)))
            .await
            .map_err(Error::delta("loads"))?;
        Ok(metrics.num_deleted_rows.unwrap_or(0) as u64)
    }

    /// Events up to `night` whose item the item dimension lacks (none counted without items).
    pub async fn unknown_items(&self, night: Night) -> Result<Option<UnknownItems>> {
        let batches = self
            .sql(&format!(
                "SELECT COUNT(*) AS events, COUNT(DISTINCT item_id) AS items, \
                 (SELECT COUNT(*) FROM items) AS known FROM events \
                 WHERE event_date <= DATE '{night}' \
                 AND item_id NOT IN (SELECT item_id FROM items)"
            ))
            .await?;
        let first = |name: &str| first_count(&batches, name);
        if first("known")? == 0 {
            return Ok(None);
        }
        Ok(Some(UnknownItems {
            events: first("events")?,
            items: first("items")?,
        }))
    }

    /// Fetches raw files (several at a time) and parses them in parallel off the async runtime.
    async fn fetch_and_parse(
        &self,
        files: Vec<(Night, ObjectMeta)>,
        events: &EventsConfig,
    ) -> Result<Vec<(Night, ObjectMeta, ParsedEvents)>> {
        let lake = self.lake();
        let bodies: Vec<(Night, ObjectMeta, bytes::Bytes)> = futures::stream::iter(files)
            .map(|(day, meta)| async move {
                let body = lake.get(&meta.location).await?;
                Ok::<_, Error>((day, meta, body))
            })
            .buffered(8)
            .try_collect()
            .await?;
        let cfg = events.clone();
        tokio::task::spawn_blocking(move || {
            bodies
                .into_par_iter()
                .map(|(day, meta, body)| {
                    let parsed = parse_events(meta.location.as_ref(), day, &body, &cfg)?;
                    Ok((day, meta, parsed))
                })
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|e| Error::Internal(format!("parse task failed: {e}")))?
    }

    async fn files_with_rejects(&self) -> Result<std::collections::HashSet<String>> {
        let batches = self.sql("SELECT DISTINCT file FROM rejects").await?;
        let mut out = std::collections::HashSet::new();
        for b in &batches {
            out.extend(strings(b, "file")?.into_iter().flatten());
        }
        Ok(out)
    }

    /// The number of the last load whose commit `table` received (0 for none).
    async fn last_load(&self, table: &deltalake::DeltaTable) -> Result<i64> {
        let Ok(state) = table.snapshot() else {
            return Ok(0); // a table without any commit yet
        };
        Ok(state
            .transaction_version(table.log_store().as_ref(), INGEST_APP)
            .await
            .map_err(Error::delta(table.table_url().to_string()))?
            .unwrap_or(0))
    }

    async fn append_rejects(&self, rejects: &[Reject], night: Night, load: i64) -> Result<()> {
        if rejects.is_empty() {
            return Ok(());
        }
        self.table(Table::Rejects)
            .await?
            .write(vec![rejects_batch(rejects, night)?])
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(
                CommitProperties::default()
                    .with_application_transaction(Transaction::new(INGEST_APP, load)),
            )
            .await
            .map_err(Error::delta("rejects"))?;
        Ok(())
    }

    /// Lake paths of every raw file the load ledger records as loaded.
    pub async fn loaded_files(&self) -> Result<std::collections::HashSet<String>> {
        Ok(self
            .ledger()
            .await?
            .into_values()
            .flat_map(|(files, _)| files.into_keys())
            .collect())
    }

    /// The ledger by target table: each loaded path's size and ETag, and the newest table version
    /// the ledger has recorded for that target.
    async fn ledger(&self) -> Result<HashMap<String, (HashMap<String, LedgerEntry>, i64)>> {
        let batches = self
            .sql("SELECT path, target, size, e_tag, table_version FROM loads")
            .await?;
        let mut out: HashMap<String, (HashMap<String, LedgerEntry>, i64)> = HashMap::new();
        for b in &batches {
            let paths = strings(b, "path")?;
            let targets = strings(b, "target")?;
            let sizes = i64s(b, "size")?;
            let tags = strings(b, "e_tag")?;
            let versions = i64s(b, "table_version")?;
            for i in 0..b.num_rows() {
                let (Some(path), Some(target)) = (paths[i].clone(), targets[i].clone()) else {
                    return Err(Error::Internal("null path in warehouse/loads".into()));
                };
                let entry = out.entry(target).or_default();
                entry.0.insert(
                    path,
                    LedgerEntry {
                        size: sizes[i].unwrap_or(-1),
                        e_tag: tags[i].clone(),
                    },
                );
                entry.1 = entry.1.max(versions[i].unwrap_or(0));
            }
        }
        Ok(out)
    }

    async fn rows_per_source_file(&self) -> Result<HashMap<String, i64>> {
        let batches = self
            .sql("SELECT source_file, COUNT(*) AS n FROM events GROUP BY source_file")
            .await?;
        let mut out = HashMap::new();
        for b in &batches {
            for (f, n) in strings(b, "source_file")?.into_iter().zip(i64s(b, "n")?) {
                if let (Some(f), Some(n)) = (f, n) {
                    out.insert(f, n);
                }
            }
        }
        Ok(out)
    }

    pub(crate) async fn append_ledger(
        &self,
        rows: Vec<LedgerRow>,
        night: Night,
        load: i64,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = ledger_batch(&rows, night)?;
        self.table(Table::Loads)
            .await?
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(
                CommitProperties::default()
                    .with_application_transaction(Transaction::new(INGEST_APP, load)),
            )
            .await
            .map_err(Error::delta("loads"))?;
        Ok(())
    }

    /// The CSV files of a dimension folder (`raw/items/`, `raw/availability/`), each with
    /// whether it is new or changed since the ledger (`known`) recorded it (another size, or
    /// another ETag where the store gives one); `None` when no file is new or changed, so there
    /// is nothing to load.
    pub(crate) async fn dimension_files(
        &self,
        root: &object_store::path::Path,
        known: Option<&HashMap<String, LedgerEntry>>,
    ) -> Result<Option<Vec<(ObjectMeta, bool)>>> {
        let files: Vec<(ObjectMeta, bool)> = self
            .lake()
            .list(root)
            .await?
            .into_iter()
            .filter(|m| m.location.as_ref().ends_with(".csv"))
            .map(|m| {
                let unchanged = known
                    .and_then(|k| k.get(m.location.as_ref()))
                    .is_some_and(|e| {
                        e.size == m.size as i64 && (e.e_tag.is_none() || e.e_tag == m.e_tag)
                    });
                (m, !unchanged)
            })
            .collect();
        Ok(files.iter().any(|(_, changed)| *changed).then_some(files))
    }

    /// Merges the rows of new or changed item files into `warehouse/items` (insert new ids,
    /// update changed titles or genres, keep the rest); returns the rows inserted or updated.
    async fn ingest_items(
        &self,
        night: Night,
        known: Option<&HashMap<String, LedgerEntry>>,
        load: i64,
    ) -> Result<Option<u64>> {
        let lake = self.lake();
        let Some(files) = self
            .dimension_files(&layout::raw_items_root(), known)
            .await?
        else {
            return Ok(None);
        };
        // Only new or changed files are merged; later files override earlier ones for the same
        // id (files are sorted by path). Items absent from them keep their rows.
        let mut items: BTreeMap<i64, (Option<String>, Option<String>, String)> = BTreeMap::new();
        let mut per_file = Vec::new();
        for (meta, _) in files.iter().filter(|(_, changed)| *changed) {
            let name = meta.location.to_string();
            let body = lake.get(&meta.location).await?;
            let parsed = parse_items(&name, &body)?;
            per_file.push((meta.clone(), parsed.len() as i64));
            for (id, title, genres) in parsed {
                items.insert(id, (Some(title), Some(genres), name.clone()));
            }
        }
        let ids: Int64Array = items.keys().copied().collect();
        let titles: StringArray = items.values().map(|v| v.0.clone()).collect();
        let genres: StringArray = items.values().map(|v| v.1.clone()).collect();
        let sources: StringArray = items.values().map(|v| Some(v.2.clone())).collect();
        let batch = RecordBatch::try_new(
            schema(Table::Items),
            vec![
                Arc::new(ids),
                Arc::new(titles),
                Arc::new(genres),
                Arc::new(sources),
            ],
        )
        .map_err(|e| Error::Internal(format!("items batch: {e}")))?;
        let distinct = |column: &str| {
            binary_expr(
                col(format!("target.{column}")),
                Operator::IsDistinctFrom,
                col(format!("source.{column}")),
            )
        };
        let source = SessionContext::new()
            .read_batch(batch)
            .map_err(Error::query("items to merge"))?;
        let (table, metrics) = self
            .table(Table::Items)
            .await?
            .merge(source, col("target.item_id").eq(col("source.item_id")))
            .with_source_alias("source")
            .with_target_alias("target")
            .with_commit_properties(
                CommitProperties::default()
                    .with_application_transaction(Transaction::new(INGEST_APP, load)),
            )
            .when_matched_update(|update| {
                update
                    .predicate(distinct("title").or(distinct("genres")))
                    .update("title", col("source.title"))
                    .update("genres", col("source.genres"))
                    .update("source_file", col("source.source_file"))
            })
            .and_then(|m| {
                m.when_not_matched_insert(|insert| {
                    insert
                        .set("item_id", col("source.item_id"))
                        .set("title", col("source.title"))
                        .set("genres", col("source.genres"))
                        .set("source_file", col("source.source_file"))
                })
            })
            .map_err(Error::delta("items"))?
            .await
            .map_err(Error::delta("items"))?;
        tracing::info!(
            inserted = metrics.num_target_rows_inserted,
            updated = metrics.num_target_rows_updated,
            "merged items"
        );
        let version = table.version().unwrap_or(0) as i64;
        let rows = per_file
            .iter()
            .map(|(m, n)| LedgerRow::of(m, "items", None, *n, version))
            .collect();
        self.append_ledger(rows, night, load).await?;
        Ok(Some(
            (metrics.num_target_rows_inserted + metrics.num_target_rows_updated) as u64,
        ))
    }
}

impl LedgerEntry {
    fn of(meta: &ObjectMeta) -> Self {
        LedgerEntry {
            size: meta.size as i64,
            e_tag: meta.e_tag.clone(),
        }
    }
}

pub(crate) struct LedgerRow {
    path: String,
    target: &'static str,
    day: Option<Night>,
    size: i64,
    e_tag: Option<String>,
    last_modified: i64,
    rows: i64,
    rejected: i64,
    version: i64,
}

impl LedgerRow {
    fn with_rejected(mut self, rejected: i64) -> Self {
        self.rejected = rejected;
        self
    }

    pub(crate) fn of(
        meta: &ObjectMeta,
        target: &'static str,
        day: Option<Night>,
        rows: i64,
        version: i64,
    ) -> Self {
        LedgerRow {
            path: meta.location.to_string(),
            target,
            day,
            size: meta.size as i64,
            e_tag: meta.e_tag.clone(),
            last_modified: meta.last_modified.timestamp_micros(),
            rows,
            rejected: 0,
            version,
        }
    }
}

/// How many raw files' rows one data-file writer takes before it closes its files.
const FILES_PER_WRITER: usize = 64;

/// Appends the parsed files' rows to `warehouse/events` in one commit (with the load's
/// application transaction in `commit`) and returns the new version.
///
/// The data files are written here rather than by delta-rs's write operation, which keeps one
/// open Parquet writer per partition value until the end and encodes on one writer per input
/// partition: with years of daily partitions that held every day's rows in memory at once
/// (5.5 GB for MovieLens 20M's 7,387 days). Here groups of [`FILES_PER_WRITER`] files are
/// encoded and written by one writer each, as many at a time as there are cores, and each
/// writer's files are closed before the next group starts. Nothing is visible until the single
/// commit of all their `add` actions; files of a run that dies before it are never referenced
/// (vacuum removes them).
async fn append_events(
    table: &deltalake::DeltaTable,
    mut batches: Vec<RecordBatch>,
    commit: CommitProperties,
) -> Result<i64> {
    let state = table.snapshot().map_err(Error::delta("events"))?;
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| Error::Internal("no event rows to append".into()))?;
    let config = WriterConfig::new(
        schema,
        vec!["event_date".to_string()],
        None,
        None,
        None,
        state.table_config().num_indexed_cols(),
        None,
    );
    // Files of one day next to each other, so a day's files usually share one writer.
    batches.sort_by_cached_key(|b| {
        b.column_by_name("event_date")
            .and_then(|c| c.as_any().downcast_ref::<Date32Array>())
            .filter(|d| !d.is_empty())
            .map(|d| d.value(0))
    });
    let mut groups = Vec::new();
    while !batches.is_empty() {
        let rest = batches.split_off(FILES_PER_WRITER.min(batches.len()));
        groups.push(std::mem::replace(&mut batches, rest));
    }
    let lanes = std::thread::available_parallelism().map_or(1, |n| n.get());
    let store = table.object_store();
    let adds: Vec<Vec<deltalake::kernel::Add>> =
        futures::stream::iter(groups.into_iter().map(|group| {
            let (store, config) = (store.clone(), config.clone());
            tokio::spawn(async move {
                let mut writer = DeltaWriter::new(store, config);
                for batch in &group {
                    writer.write(batch).await?;
                }
                writer.close().await
            })
        }))
        .buffer_unordered(lanes)
        .map(|joined| match joined {
            Ok(written) => written.map_err(Error::delta("events")),
            Err(e) => Err(Error::Internal(format!(
                "an events writer task failed: {e}"
            ))),
        })
        .try_collect()
        .await?;
    let actions: Vec<Action> = adds.into_iter().flatten().map(Action::Add).collect();
    let done = CommitBuilder::from(commit)
        .with_actions(actions)
        .build(
            Some(state),
            table.log_store(),
            DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: Some(vec!["event_date".to_string()]),
                predicate: None,
            },
        )
        .await
        .map_err(Error::delta("events"))?;
    Ok(done.version() as i64)
}

fn ledger_batch(rows: &[LedgerRow], night: Night) -> Result<RecordBatch> {
    let now = chrono::Utc::now().timestamp_micros();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(
            rows.iter()
                .map(|r| Some(r.path.clone()))
                .collect::<StringArray>(),
        ),
        Arc::new(rows.iter().map(|r| Some(r.target)).collect::<StringArray>()),
        Arc::new(
            rows.iter()
                .map(|r| r.day.map(Night::days_since_epoch))
                .collect::<Date32Array>(),
        ),
        Arc::new(rows.iter().map(|r| r.size).collect::<Int64Array>()),
        Arc::new(
            rows.iter()
                .map(|r| r.e_tag.clone())
                .collect::<StringArray>(),
        ),
        Arc::new(
            TimestampMicrosecondArray::from(
                rows.iter().map(|r| r.last_modified).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(rows.iter().map(|r| r.rows).collect::<Int64Array>()),
        Arc::new(rows.iter().map(|r| r.rejected).collect::<Int64Array>()),
        Arc::new(rows.iter().map(|r| r.version).collect::<Int64Array>()),
        Arc::new(Date32Array::from(vec![
            night.days_since_epoch();
            rows.len()
        ])),
        Arc::new(TimestampMicrosecondArray::from(vec![now; rows.len()]).with_timezone("UTC")),
    ];
    RecordBatch::try_new(schema(Table::Loads), cols)
        .map_err(|e| Error::Internal(format!("ledger batch: {e}")))
}

/// A row that could not be loaded, as written to `warehouse/rejects`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub file: String,
    pub line: u64,
    /// The offending column's header name, or `*` for the row as a whole.
    pub column: String,
    pub reason: String,
    pub raw_line: String,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: column '{}': {}",
            self.file, self.line, self.column, self.reason
        )
    }
}

/// The loadable rows of one raw file and the rows it rejected.
pub(crate) struct ParsedEvents {
    pub batch: RecordBatch,
    pub rejects: Vec<Reject>,
}

/// The text of the line starting at `offset`, for reject records.
fn raw_line(body: &[u8], offset: usize) -> String {
    let rest = body.get(offset..).unwrap_or(&[]);
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .trim_end_matches('\r')
        .to_string()
}

/// Parses one raw event file of `day` into `warehouse/events` rows.
///
/// A malformed row becomes a [`Reject`] naming the file, line, column and reason; a header that
/// lacks a configured column fails the whole file.
pub(crate) fn parse_events(
    file: &str,
    day: Night,
    body: &[u8],
    cfg: &EventsConfig,
) -> Result<ParsedEvents> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(cfg.delimiter as u8)
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let header = reader
        .byte_headers()
        .map_err(|e| Error::BadFile {
            file: file.into(),
            reason: format!("cannot read the header line: {e}"),
        })?
        .clone();
    let names: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let find = |wanted: &str, setting: &str| {
        names
            .iter()
            .position(|n| n == wanted)
            .ok_or_else(|| Error::BadFile {
                file: file.into(),
                reason: format!(
                    "no column '{wanted}' in the header ({}); set [events] {setting} to the right \
                     name",
                    names.join(",")
                ),
            })
    };
    let user_col = find(&cfg.user_column, "user_column")?;
    let item_col = find(&cfg.item_column, "item_column")?;
    // No value column (clickstreams): every event has the value 1, weighted by its type in
    // `prepare`.
    let value_col = if cfg.value_column.is_empty() {
        None
    } else {
        Some(find(&cfg.value_column, "value_column")?)
    };
    let time_col = find(&cfg.timestamp_column, "timestamp_column")?;
    let type_col = match &cfg.event_type_column {
        Some(c) => Some(find(c, "event_type_column")?),
        None => None,
    };
    // Events may stray from their folder's day by the tolerance (clock skew, late uploads).
    let tolerance = i64::from(cfg.day_tolerance_hours) * 3_600_000_000;
    let earliest = day.start_unix_seconds() * 1_000_000 - tolerance;
    let latest = day.next().start_unix_seconds() * 1_000_000 - 1 + tolerance;

    let mut users = Vec::new();
    let mut items = Vec::new();
    let mut values = Vec::new();
    let mut times = Vec::new();
    let mut dates = Vec::new();
    let mut types: Vec<Option<String>> = Vec::new();
    let mut rejects = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let position = reader.position().clone();
        let more = match reader.read_byte_record(&mut record) {
            Ok(more) => more,
            Err(e) => {
                let line = e.position().map_or(position.line(), |p| p.line());
                rejects.push(Reject {
                    file: file.into(),
                    line,
                    column: "*".into(),
                    reason: format!("unreadable CSV: {e}"),
                    raw_line: raw_line(body, position.byte() as usize),
                });
                // The reader cannot resynchronise after a CSV syntax error.
                break;
            }
        };
        if !more {
            break;
        }
        let start = record.position().cloned().unwrap_or(position);
        let line = start.line();
        if record.len() == 1 && record[0].is_empty() {
            continue; // blank line
        }
        let reject = |column: &str, reason: String| Reject {
            file: file.into(),
            line,
            column: column.into(),
            reason,
            raw_line: raw_line(body, start.byte() as usize),
        };
        let row = (|| -> std::result::Result<_, Reject> {
            if record.len() != names.len() {
                return Err(reject(
                    "*",
                    format!(
                        "expected {} fields like the header, found {}",
                        names.len(),
                        record.len()
                    ),
                ));
            }
            let text = |i: usize, column: &str| {
                std::str::from_utf8(&record[i])
                    .map(str::trim)
                    .map_err(|_| reject(column, "not valid UTF-8".into()))
            };
            let id = |i: usize, column: &str| {
                let t = text(i, column)?;
                if t.is_empty() {
                    return Err(reject(column, "empty id".into()));
                }
                t.parse::<i64>()
                    .map_err(|_| reject(column, format!("'{t}' is not an integer id")))
            };
            let user = id(user_col, &cfg.user_column)?;
            let item = id(item_col, &cfg.item_column)?;
            let value: f32 = match value_col {
                Some(col) => {
                    let raw_value = text(col, &cfg.value_column)?;
                    raw_value
                        .parse()
                        .ok()
                        .filter(|v: &f32| v.is_finite())
                        .ok_or_else(|| {
                            reject(&cfg.value_column, format!("'{raw_value}' is not a number"))
                        })?
                }
                None => 1.0,
            };
            let below = cfg.value_min.is_some_and(|m| value < m);
            let above = cfg.value_max.is_some_and(|m| value > m);
            if below || above {
                return Err(reject(
                    &cfg.value_column,
                    format!(
                        "{value} is outside the configured scale {}..{} ([events] value_min, \
                         value_max)",
                        cfg.value_min.map_or("".into(), |v| v.to_string()),
                        cfg.value_max.map_or("".into(), |v| v.to_string())
                    ),
                ));
            }
            let raw_time = text(time_col, &cfg.timestamp_column)?;
            let micros = parse_timestamp(raw_time, cfg.timestamp_format).ok_or_else(|| {
                reject(
                    &cfg.timestamp_column,
                    format!(
                        "'{raw_time}' is not a timestamp in the configured format ({:?}); set \
                         [events] timestamp_format",
                        cfg.timestamp_format
                    ),
                )
            })?;
            if micros < earliest || micros > latest {
                return Err(reject(
                    &cfg.timestamp_column,
                    format!(
                        "'{raw_time}' is outside the file's day {day} by more than {} hours \
                         ([events] day_tolerance_hours)",
                        cfg.day_tolerance_hours
                    ),
                ));
            }
            let event_day =
                Night::of_unix_seconds(micros.div_euclid(1_000_000)).ok_or_else(|| {
                    reject(
                        &cfg.timestamp_column,
                        format!("'{raw_time}' is out of range"),
                    )
                })?;
            let event_type = match type_col {
                Some(i) => {
                    let t = text(i, cfg.event_type_column.as_deref().unwrap_or(""))?;
                    (!t.is_empty()).then(|| t.to_string())
                }
                None => None,
            };
            Ok((user, item, value, micros, event_day, event_type))
        })();
        match row {
            Ok((user, item, value, micros, event_day, event_type)) => {
                users.push(user);
                items.push(item);
                values.push(value);
                times.push(micros);
                dates.push(event_day.days_since_epoch());
                types.push(event_type);
            }
            Err(r) => rejects.push(r),
        }
    }
    let n = users.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(users)),
        Arc::new(Int64Array::from(items)),
        Arc::new(Float32Array::from(values)),
        Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
        Arc::new(StringArray::from(types)),
        Arc::new(StringArray::from(vec![file; n])),
        Arc::new(Date32Array::from(dates)),
    ];
    let batch = RecordBatch::try_new(schema(Table::Events), columns)
        .map_err(|e| Error::Internal(format!("events batch for {file}: {e}")))?;
    Ok(ParsedEvents { batch, rejects })
}

/// Rejects as a batch of `warehouse/rejects` rows.
fn rejects_batch(rejects: &[Reject], night: Night) -> Result<RecordBatch> {
    let now = chrono::Utc::now().timestamp_micros();
    let n = rejects.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rejects.iter().map(|r| r.file.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            rejects.iter().map(|r| r.line as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            rejects.iter().map(|r| r.column.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rejects.iter().map(|r| r.reason.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rejects.iter().map(|r| r.raw_line.as_str()),
        )),
        Arc::new(Date32Array::from(vec![night.days_since_epoch(); n])),
        Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
    ];
    RecordBatch::try_new(schema(Table::Rejects), columns)
        .map_err(|e| Error::Internal(format!("rejects batch: {e}")))
}

fn parse_timestamp(raw: &str, format: TimestampFormat) -> Option<i64> {
    match format {
        TimestampFormat::UnixSeconds => match raw.parse::<i64>() {
            Ok(s) => s.checked_mul(1_000_000),
            Err(_) => raw
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && s.abs() < 1e12)
                .map(|s| (s * 1e6).round() as i64),
        },
        TimestampFormat::UnixMillis => raw.parse::<i64>().ok()?.checked_mul(1_000),
        TimestampFormat::Rfc3339 => chrono::DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| t.timestamp_micros()),
    }
}

/// Parses an item file: a header, then `id,title,genres` (RFC 4180 quoting).
fn parse_items(file: &str, body: &[u8]) -> Result<Vec<(i64, String, String)>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| Error::BadFile {
            file: file.into(),
            reason: format!("unreadable item CSV: {e}"),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() < 2 {
            return Err(Error::BadRow {
                file: file.into(),
                line,
                column: "*".into(),
                reason: "expected id,title,genres".into(),
            });
        }
        let id = record[0].trim().parse().map_err(|_| Error::BadRow {
            file: file.into(),
            line,
            column: "movieId".into(),
            reason: format!("'{}' is not an integer id", &record[0]),
        })?;
        out.push((
            id,
            record[1].to_string(),
            record.get(2).unwrap_or("").to_string(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_configured_columns_and_rejects_bad_rows() {
        let cfg = EventsConfig::default();
        let day: Night = "1997-12-04".parse().unwrap();
        let body = b"userId,movieId,rating,timestamp\n1,10,4.0,881250949\n2,11,3.5,881250950\n";
        let p = parse_events("raw/events/1997/12/04/a.csv", day, body, &cfg).unwrap();
        assert_eq!((p.batch.num_rows(), p.rejects.len()), (2, 0));
        let bad = b"userId,movieId,rating,timestamp\n1,10,4.0,881250949\n2,x,3.5,881250950\n";
        let p = parse_events("f.csv", day, bad, &cfg).unwrap();
        assert_eq!(p.batch.num_rows(), 1);
        assert_eq!(
            p.rejects[0].to_string(),
            "f.csv:3: column 'movieId': 'x' is not an integer id"
        );
        assert_eq!(p.rejects[0].raw_line, "2,x,3.5,881250950");
        let e = parse_events("f.csv", day, b"user,item\n1,2\n", &cfg)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("set [events] user_column"), "{e}");
    }

    #[test]
    fn timestamp_formats() {
        assert_eq!(
            parse_timestamp("10", TimestampFormat::UnixSeconds),
            Some(10_000_000)
        );
        assert_eq!(
            parse_timestamp("10.5", TimestampFormat::UnixSeconds),
            Some(10_500_000)
        );
        assert_eq!(
            parse_timestamp("10", TimestampFormat::UnixMillis),
            Some(10_000)
        );
        assert_eq!(
            parse_timestamp("1970-01-01T00:00:01Z", TimestampFormat::Rfc3339),
            Some(1_000_000)
        );
        assert_eq!(parse_timestamp("x", TimestampFormat::UnixSeconds), None);
    }
}
