//! The load ledger (`warehouse/loads`): one row per raw file loaded, with its size, ETag and the
//! table version it went into, and the load numbers (Delta application transactions) that
//! recovery compares to tell a committed load from one the ledger has not recorded yet.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use object_store::ObjectMeta;

use elastirec_core::Night;
use elastirec_core::layout::Table;

use super::INGEST_APP;
use crate::query::{i64s, strings};
use crate::tables::{Warehouse, schema};
use crate::{Error, Result};

/// A raw file as the ledger remembers it.
#[derive(Debug, Clone)]
pub(crate) struct LedgerEntry {
    pub(crate) size: i64,
    pub(crate) e_tag: Option<String>,
}

impl Warehouse {
    /// The number of the last load whose commit `table` received (0 for none).
    pub(super) async fn last_load(&self, table: &deltalake::DeltaTable) -> Result<i64> {
        let Ok(state) = table.snapshot() else {
            return Ok(0); // a table without any commit yet
        };
        Ok(state
            .transaction_version(table.log_store().as_ref(), INGEST_APP)
            .await
            .map_err(Error::delta(table.table_url().to_string()))?
            .unwrap_or(0))
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
    pub(super) async fn ledger(
        &self,
    ) -> Result<HashMap<String, (HashMap<String, LedgerEntry>, i64)>> {
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

    pub(super) async fn rows_per_source_file(&self) -> Result<HashMap<String, i64>> {
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
        self.append_in_load(Table::Loads, ledger_batch(&rows, night)?, load)
            .await
    }

    /// Appends `batch` to `table` in one commit carrying load `load`'s application transaction
    /// (see the module documentation of `ingest`): how every table of a load records it.
    pub(crate) async fn append_in_load(
        &self,
        table: Table,
        batch: RecordBatch,
        load: i64,
    ) -> Result<()> {
        self.table(table)
            .await?
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(
                CommitProperties::default()
                    .with_application_transaction(Transaction::new(INGEST_APP, load)),
            )
            .await
            .map_err(Error::delta(table.name()))?;
        Ok(())
    }
}

impl LedgerEntry {
    pub(super) fn of(meta: &ObjectMeta) -> Self {
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
    pub(super) fn with_rejected(mut self, rejected: i64) -> Self {
        self.rejected = rejected;
        self
    }

    /// The row with the events table version that holds its file's rows.
    pub(super) fn with_version(mut self, version: i64) -> Self {
        self.version = version;
        self
    }

    /// The row of a lake file, named by its lake path.
    pub(crate) fn of(
        meta: &ObjectMeta,
        target: &'static str,
        day: Option<Night>,
        rows: i64,
        version: i64,
    ) -> Self {
        LedgerRow::named(meta.location.to_string(), meta, target, day, rows, version)
    }

    /// The row of a file named `path` (a raw event file outside the lake is named by its URL).
    pub(crate) fn named(
        path: String,
        meta: &ObjectMeta,
        target: &'static str,
        day: Option<Night>,
        rows: i64,
        version: i64,
    ) -> Self {
        LedgerRow {
            path,
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
