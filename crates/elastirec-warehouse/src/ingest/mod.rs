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

use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::datafusion::logical_expr::{Operator, binary_expr};
use deltalake::datafusion::prelude::{SessionContext, coalesce, col};
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use rayon::prelude::*;

use elastirec_core::config::{EventsConfig, ItemsConfig};
use elastirec_core::ids::IdKind;
use elastirec_core::layout::{self, Table};
use elastirec_core::{Night, failpoint};

use crate::query::{first_count, strings};
use crate::tables::{Warehouse, schema};
use crate::{Error, Result};

mod catalog;
mod dedupe;
mod formats;
mod ids;
mod json;
mod ledger;
mod parse;
mod purge;
mod records;
mod source;
mod writer;

use dedupe::DedupeState;
pub(crate) use ledger::{LedgerEntry, LedgerRow};
pub(crate) use parse::ParsedEvents;
pub use parse::Reject;
use parse::{ParseSettings, parse_events, parse_items, rejects_batch};
pub(crate) use purge::without_users;
pub(crate) use source::RawSource;
use writer::{commit_events, write_events};

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
    /// Item attribute observations kept from the events (`[items] from_events`).
    pub item_attributes: u64,
    /// Version of `warehouse/events` after the load.
    pub events_version: i64,
    /// Events of erased users (`elastirec forget`) in the new files, dropped instead of loaded.
    pub rows_erased: u64,
    /// Availability rows loaded, when availability files changed (layout 2).
    pub availability_loaded: Option<u64>,
    /// Events up to the night whose item is not in `warehouse/items` (loaded, not rejected),
    /// and how many such items; `None` when there is no item dimension at all.
    pub unknown_items: Option<UnknownItems>,
    /// Marker and hidden files (`_SUCCESS`, `.x`, `*.crc`) found new and skipped.
    pub files_skipped: u64,
    /// New files that could not be read at all (each one reject, counted in `rows_rejected`).
    pub files_unreadable: u64,
    /// Objects under the raw prefix outside its `YYYY/MM/DD/[HH/]` folders, not read.
    pub files_outside_layout: u64,
    /// Records of other kinds than events (Segment's identify, page, screen calls), skipped.
    pub records_skipped: u64,
    /// Rows dropped as duplicates: an event id loaded before or earlier in this load, or a row
    /// identical to an earlier row of the same file (without event ids).
    pub rows_duplicate: u64,
    /// External ids given a dictionary id by this load.
    pub ids_assigned: u64,
}

/// Events that name items the item dimension does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnknownItems {
    pub events: u64,
    pub items: u64,
}

/// Settings of one load.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Rows that may be rejected before the load fails and commits nothing.
    pub max_errors: u64,
    /// Event fields that are item attributes (`[items] from_events`), kept in
    /// `warehouse/item_attributes`.
    pub item_attributes: Vec<String>,
    /// Where the catalog comes from (`[items]`): feeds in `raw/items/` when `id_column` is set.
    pub items: ItemsConfig,
    /// Parse and validate everything, commit nothing.
    pub dry_run: bool,
    /// Checked before the load's first commit and its events commit, whose metadata records the
    /// lease epoch (`elastirec.lease_epoch`): a runner that lost the lake's lease commits nothing.
    pub fence: elastirec_core::Fence,
}

/// The application id of ingest's Delta transactions (see the module documentation).
pub const INGEST_APP: &str = "elastirec.ingest";

/// How many rejects a report or message names.
const REJECTS_SHOWN: usize = 5;

/// Raw files a load reads, parses and writes at a time (see `Warehouse::ingest`), at most.
const PART_FILES: usize = 8_192;

/// Bytes of raw files (as stored, compressed or not) a part holds at most, unless its first file
/// alone is larger: the parsed events of a part are held in memory until they are written.
const PART_BYTES: u64 = 64 * 1024 * 1024;

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
        let mut settings = ParseSettings::of(events)?;
        settings.attributes = options.item_attributes.clone();
        let ledger = self.ledger().await?;
        let source = RawSource::of(lake, events).await?;
        let raw = source.list().await?;
        let mut candidates = Vec::new();
        for meta in raw {
            let Some(day) = source.day(&meta.location) else {
                tracing::warn!(
                    path = %source.name(&meta.location),
                    "ignoring an object outside {}YYYY/MM/DD/[HH/]",
                    source.display()
                );
                report.files_outside_layout += 1;
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
                let path = source.name(&meta.location);
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
                let known = Arc::default(); // only their rejects are wanted
                let parsed = self
                    .fetch_and_parse(recovered, &settings, &source, known)
                    .await?;
                let already = self.files_with_rejects().await?;
                let rejects: Vec<Reject> = parsed
                    .iter()
                    .filter(|(_, m, _)| !already.contains(&source.name(&m.location)))
                    .flat_map(|(_, _, p)| p.rejects.iter().cloned())
                    .collect();
                self.append_rejects(&rejects, night, events_load).await?;
                let rows = parsed
                    .iter()
                    .map(|(day, meta, p)| {
                        let name = source.name(&meta.location);
                        let loaded = counts.get(&name).copied().unwrap_or(0);
                        LedgerRow::named(name, meta, "events", Some(*day), loaded, events_version)
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
            let path = source.name(&meta.location);
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
            // The files go through in parts of PART_FILES files or PART_BYTES bytes: each part
            // is fetched, parsed, de-duplicated, given its dictionary ids and written as data
            // files before the next is read, so memory follows a part, not the backlog (176,000
            // hourly files, or 20 years of daily files). Every part's data files are committed
            // together at the end: a load is still one commit.
            let mut rejects: Vec<Reject> = Vec::new();
            let mut ledger_rows: Vec<LedgerRow> = Vec::new();
            let mut adds = Vec::new();
            let mut dedupe = DedupeState::default();
            // The id dictionary as of each part goes to its parsing threads, which give the
            // strings it has their ids as they read them; the rest are interned per file and
            // given new ids after de-duplication.
            let mut dictionary = self.dictionary().await?;
            let mut new_ids = ids::NewIds::default();
            let mut attribute_rows: Vec<AttributeRow> = Vec::new();
            let mut files = new_files.into_iter().peekable();
            while files.peek().is_some() {
                let mut part: Vec<(Night, ObjectMeta)> = Vec::new();
                let mut part_bytes = 0u64;
                while part.len() < PART_FILES && (part.is_empty() || part_bytes < PART_BYTES) {
                    let Some(file) = files.next() else { break };
                    part_bytes += file.1.size;
                    part.push(file);
                }
                let known = Arc::clone(&dictionary.names);
                let mut parsed = self
                    .fetch_and_parse(part, &settings, &source, known)
                    .await?;
                report.files_skipped += parsed.iter().filter(|(_, _, p)| p.marker).count() as u64;
                report.files_unreadable +=
                    parsed.iter().filter(|(_, _, p)| p.unreadable).count() as u64;
                report.records_skipped += parsed.iter().map(|(_, _, p)| p.skipped).sum::<u64>();
                report.rows_erased += self.drop_erased_parsed(&mut parsed).await?;
                report.rows_duplicate += self.drop_duplicates(&mut parsed, &mut dedupe).await?;
                rejects.extend(
                    parsed
                        .iter()
                        .flat_map(|(_, _, p)| p.rejects.iter().cloned()),
                );
                report.rows_rejected = rejects.len() as u64;
                report.files_loaded += parsed.iter().filter(|(_, _, p)| !p.marker).count() as u64;
                report.rows_loaded += parsed.iter().map(|(_, _, p)| p.len() as u64).sum::<u64>();
                if report.rows_rejected > options.max_errors {
                    report.first_rejects = rejects.iter().take(REJECTS_SHOWN).cloned().collect();
                    return Err(Error::TooManyRejects {
                        rejected: report.rows_rejected,
                        max_errors: options.max_errors,
                        first: report.first_rejects.iter().map(|r| r.to_string()).collect(),
                    });
                }
                ledger_rows.extend(parsed.iter().map(|(day, meta, p)| {
                    let name = source.name(&meta.location);
                    LedgerRow::named(name, meta, "events", Some(*day), p.len() as i64, -1)
                        .with_rejected(p.rejects.len() as i64)
                }));
                if options.dry_run {
                    continue;
                }
                // New strings get their dictionary ids, committed before the events that use
                // them.
                let mut batches = Vec::new();
                for (_, meta, p) in &parsed {
                    if p.len() == 0 {
                        continue;
                    }
                    let users = dictionary.resolve(IdKind::User, &p.users, &mut new_ids);
                    let items = dictionary.resolve(IdKind::Item, &p.items, &mut new_ids);
                    batches.push(p.batch(&source.name(&meta.location), &users, &items)?);
                    for (external, (micros, values)) in &p.attributes {
                        // An item whose every row was dropped (a duplicate) has no id yet.
                        let Some(item) = dictionary.get(IdKind::Item, external) else {
                            continue;
                        };
                        for (field, value) in settings.attributes.iter().zip(values) {
                            if value.is_some() {
                                attribute_rows.push(AttributeRow {
                                    item,
                                    name: ItemsConfig::column(field).to_string(),
                                    value: value.clone(),
                                    observed_at: *micros,
                                    file: source.name(&meta.location),
                                });
                            }
                        }
                    }
                }
                drop(parsed);
                adds.extend(write_events(&events_table, batches).await?);
            }
            report.first_rejects = rejects.iter().take(REJECTS_SHOWN).cloned().collect();
            if options.dry_run {
                return Ok(report);
            }
            options.fence.check()?;
            report.ids_assigned = self.commit_ids(new_ids, night, load).await?;
            // Before the events: a crash between the two loads the files again, and the
            // attributes' second copy changes nothing (the latest observation wins).
            report.item_attributes = attribute_rows.len() as u64;
            self.append_item_attributes(attribute_rows, load).await?;
            let mut version = events_version;
            failpoint::hit("ingest.before-events-commit");
            if !adds.is_empty() {
                let mut meta = HashMap::new();
                if let Some(epoch) = options.fence.check()? {
                    meta.insert(
                        "elastirec.lease_epoch".to_string(),
                        serde_json::json!(epoch),
                    );
                }
                meta.insert("elastirec.step".to_string(), serde_json::json!("ingest"));
                meta.insert(
                    "elastirec.night".to_string(),
                    serde_json::json!(night.to_string()),
                );
                meta.insert(
                    "elastirec.files".to_string(),
                    serde_json::json!(ledger_rows.len()),
                );
                let commit = CommitProperties::default()
                    .with_metadata(meta)
                    .with_application_transaction(Transaction::new(INGEST_APP, load));
                version = commit_events(&events_table, adds, commit).await?;
            }
            // A crash here leaves events committed and the ledger behind: see the module docs.
            failpoint::hit("ingest.after-events-commit");
            self.append_rejects(&rejects, night, load).await?;
            let ledger_rows = ledger_rows
                .into_iter()
                .map(|r| r.with_version(version))
                .collect();
            self.append_ledger(ledger_rows, night, load).await?;
            report.events_version = version;
        }
        if options.dry_run {
            return Ok(report);
        }

        report.items_loaded = self
            .ingest_items(
                night,
                ledger.get("items").map(|(m, _)| m),
                load,
                &options,
                &mut report,
            )
            .await?;
        report.availability_loaded = self
            .ingest_availability(night, ledger.get("availability").map(|(m, _)| m), load)
            .await?;
        report.unknown_items = self.unknown_items(night).await?;
        Ok(report)
    }

    /// `ingest --skip-file FILE`: records a raw event file in the load ledger with no rows, so
    /// no load reads it (a file that cannot be read and cannot be fixed or moved). A file already
    /// in the ledger is left as it is.
    pub async fn skip_file(&self, night: Night, events: &EventsConfig, path: &str) -> Result<()> {
        let ledger = self.ledger().await?;
        if ledger
            .get("events")
            .is_some_and(|(files, _)| files.contains_key(path))
        {
            return Ok(());
        }
        let source = RawSource::of(self.lake(), events).await?;
        let not_found = || {
            Error::Lake(elastirec_core::Error::Config(format!(
                "--skip-file {path}: no such raw event file (give the name a reject gives it, \
                 such as {})",
                source.example()
            )))
        };
        let location = source.location(path).ok_or_else(not_found)?;
        // A listing's prefix is a folder: list the file's own.
        let folder = object_store::path::Path::from_iter(
            location
                .parts()
                .take(location.parts().count().saturating_sub(1)),
        );
        let meta = source
            .list_under(&folder)
            .await?
            .into_iter()
            .find(|m| m.location == location)
            .ok_or_else(not_found)?;
        let events = self.table(Table::Events).await?;
        let version = events.version().unwrap_or(0) as i64;
        let load = self
            .last_load(&events)
            .await?
            .max(self.last_load(&self.table(Table::Loads).await?).await?)
            + 1;
        let day = source.day(&location);
        let row = LedgerRow::named(path.to_string(), &meta, "events", day, 0, version);
        self.append_ledger(vec![row], night, load).await
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
        settings: &ParseSettings,
        source: &RawSource,
        known: Arc<elastirec_core::ids::IdDictionary>,
    ) -> Result<Vec<(Night, ObjectMeta, ParsedEvents)>> {
        let bodies: Vec<(Night, ObjectMeta, Option<bytes::Bytes>)> = futures::stream::iter(files)
            .map(|(day, meta)| async move {
                // A symbolic link is never followed: its target could be any file of the
                // machine, and a reject would echo its first line.
                if source.is_link(&meta.location) {
                    return Ok::<_, Error>((day, meta, None));
                }
                let body = source.get(&meta.location).await?;
                Ok::<_, Error>((day, meta, Some(body)))
            })
            .buffered(8)
            .try_collect()
            .await?;
        let settings = settings.clone();
        let source = source.clone();
        tokio::task::spawn_blocking(move || {
            bodies
                .into_par_iter()
                .map(|(day, meta, body)| {
                    let name = source.name(&meta.location);
                    let parsed = match body {
                        Some(body) => parse_events(&name, day, body, &settings, &known),
                        None => ParsedEvents::unreadable_file(
                            &name,
                            "is a symbolic link, which elastirec does not follow: put the file \
                             itself in the raw folder"
                                .into(),
                        ),
                    };
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

    async fn append_item_attributes(&self, rows: Vec<AttributeRow>, load: i64) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = RecordBatch::try_new(
            schema(Table::ItemAttributes),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.item))),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.name.as_str()),
                )),
                Arc::new(StringArray::from_iter(
                    rows.iter().map(|r| r.value.as_deref()),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.observed_at))
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.file.as_str()),
                )),
            ],
        )
        .map_err(|e| Error::Internal(format!("item attributes batch: {e}")))?;
        self.append_in_load(Table::ItemAttributes, batch, load)
            .await
    }

    async fn append_rejects(&self, rejects: &[Reject], night: Night, load: i64) -> Result<()> {
        if rejects.is_empty() {
            return Ok(());
        }
        self.append_in_load(Table::Rejects, rejects_batch(rejects, night)?, load)
            .await
    }

    /// The CSV files (`any_format`: all files) of a dimension folder (`raw/items/`,
    /// `raw/availability/`), each with
    /// whether it is new or changed since the ledger (`known`) recorded it (another size, or
    /// another ETag where the store gives one); `None` when no file is new or changed, so there
    /// is nothing to load.
    pub(crate) async fn dimension_files(
        &self,
        root: &object_store::path::Path,
        known: Option<&HashMap<String, LedgerEntry>>,
        any_format: bool,
    ) -> Result<Option<Vec<(ObjectMeta, bool)>>> {
        let files: Vec<(ObjectMeta, bool)> = self
            .lake()
            .list(root)
            .await?
            .into_iter()
            .filter(|m| any_format || m.location.as_ref().ends_with(".csv"))
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
    /// Catalog feeds (`[items] id_column`) also append their attributes and deletion flags to
    /// `warehouse/item_attributes` (observed at the snapshot folder's day, else the file's
    /// time, so the newest feed wins) and their bad rows to `warehouse/rejects`.
    async fn ingest_items(
        &self,
        night: Night,
        known: Option<&HashMap<String, LedgerEntry>>,
        load: i64,
        options: &IngestOptions,
        report: &mut IngestReport,
    ) -> Result<Option<u64>> {
        let lake = self.lake();
        let feeds = options.items.id_column.is_some();
        let Some(files) = self
            .dimension_files(&layout::raw_items_root(), known, feeds)
            .await?
        else {
            return Ok(None);
        };
        // When each file's rows were true: a snapshot folder's day, else the file's time.
        let observed = |m: &ObjectMeta| {
            layout::raw_file_day(&layout::raw_items_root(), &m.location)
                .map_or(m.last_modified.timestamp_micros(), |day| {
                    day.start_unix_seconds() * 1_000_000
                })
        };
        let mut changed: Vec<&ObjectMeta> = files
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(m, _)| m)
            .collect();
        // Feeds by time then path; MovieLens-shaped files by path, as always.
        let order = |m: &ObjectMeta| (if feeds { observed(m) } else { 0 }, m.location.to_string());
        changed.sort_by_cached_key(|m| order(m));
        // Only new or changed files are merged; later files override earlier ones for the same
        // id. Items absent from them keep their rows.
        let mut by_external: BTreeMap<String, (Option<String>, Option<String>, String)> =
            BTreeMap::new();
        let mut per_file = Vec::new();
        let mut observations: Vec<(String, String, Option<String>, i64, String)> = Vec::new();
        let mut rejects: Vec<Reject> = Vec::new();
        for meta in changed {
            let name = meta.location.to_string();
            let body = lake.get(&meta.location).await?;
            if !feeds {
                let parsed = parse_items(&name, &body)?;
                per_file.push((meta.clone(), parsed.len() as i64, 0));
                for (id, title, genres) in parsed {
                    by_external.insert(id, (Some(title), Some(genres), name.clone()));
                }
                continue;
            }
            let feed = catalog::read_feed(&name, body, &options.items);
            if feed.marker {
                continue;
            }
            let at = observed(meta);
            per_file.push((
                meta.clone(),
                feed.rows.len() as i64,
                feed.rejects.len() as i64,
            ));
            rejects.extend(feed.rejects);
            for row in feed.rows {
                if let Some(deleted) = row.deleted {
                    observations.push((
                        row.id.clone(),
                        catalog::DELETED.to_string(),
                        Some(deleted.to_string()),
                        at,
                        name.clone(),
                    ));
                }
                for (attribute, value) in row.attributes {
                    observations.push((row.id.clone(), attribute, value, at, name.clone()));
                }
                let entry = by_external
                    .entry(row.id)
                    .or_insert((None, None, name.clone()));
                // A feed without a title (or genres) keeps what an earlier one said.
                entry.0 = row.title.or(entry.0.take());
                entry.1 = row.genres.or(entry.1.take());
                entry.2 = name.clone();
            }
        }
        report.rows_rejected += rejects.len() as u64;
        if report.rows_rejected > options.max_errors {
            report
                .first_rejects
                .extend(rejects.iter().take(REJECTS_SHOWN).cloned());
            return Err(Error::TooManyRejects {
                rejected: report.rows_rejected,
                max_errors: options.max_errors,
                first: rejects
                    .iter()
                    .take(REJECTS_SHOWN)
                    .map(|r| r.to_string())
                    .collect(),
            });
        }
        if report.first_rejects.len() < REJECTS_SHOWN {
            let room = REJECTS_SHOWN - report.first_rejects.len();
            report
                .first_rejects
                .extend(rejects.iter().take(room).cloned());
        }
        // String item ids get their dictionary ids, as in event files.
        let wanted: Vec<(IdKind, &str)> = by_external
            .keys()
            .filter(|id| elastirec_core::ids::numeric_id(id).is_none())
            .map(|id| (IdKind::Item, id.as_str()))
            .collect();
        let dictionary = self.ids_for(&wanted, night, load).await?;
        let id_of = |external: &str| {
            dictionary.get(IdKind::Item, external).ok_or_else(|| {
                Error::Internal(format!("item id '{external}' has no dictionary id"))
            })
        };
        let mut attribute_rows = Vec::with_capacity(observations.len());
        for (external, name, value, observed_at, file) in observations {
            attribute_rows.push(AttributeRow {
                item: id_of(&external)?,
                name,
                value,
                observed_at,
                file,
            });
        }
        report.item_attributes += attribute_rows.len() as u64;
        // Before the items merge and the ledger: a crash in between reads the files again, and
        // the second copy of an observation changes nothing (the latest wins, ties alike).
        self.append_item_attributes(attribute_rows, load).await?;
        self.append_rejects(&rejects, night, load).await?;
        let mut items: BTreeMap<i64, (Option<String>, Option<String>, String)> = BTreeMap::new();
        for (external, row) in by_external {
            items.insert(id_of(&external)?, row);
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
        // A row without a title or genres (a feed without those columns) keeps the item's.
        let newer = |column: &str| {
            coalesce(vec![
                col(format!("source.{column}")),
                col(format!("target.{column}")),
            ])
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
                    .predicate(
                        (col("source.title").is_not_null().and(distinct("title"))).or(col(
                            "source.genres",
                        )
                        .is_not_null()
                        .and(distinct("genres"))),
                    )
                    .update("title", newer("title"))
                    .update("genres", newer("genres"))
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
            .map(|(m, n, rejected)| {
                LedgerRow::of(m, "items", None, *n, version).with_rejected(*rejected)
            })
            .collect();
        self.append_ledger(rows, night, load).await?;
        Ok(Some(
            (metrics.num_target_rows_inserted + metrics.num_target_rows_updated) as u64,
        ))
    }
}

/// One observed item attribute (`[items] from_events`).
struct AttributeRow {
    item: i64,
    name: String,
    value: Option<String>,
    observed_at: i64,
    file: String,
}

/// The first arrival day of any raw event file where `[events]` says they are (`run
/// --missing` starts there on a new lake); `None` when there is none yet.
pub async fn first_raw_event_day(
    lake: &elastirec_core::Lake,
    events: &EventsConfig,
) -> Result<Option<Night>> {
    let source = RawSource::of(lake, events).await?;
    Ok(source
        .list()
        .await?
        .iter()
        .filter_map(|m| source.day(&m.location))
        .min())
}
