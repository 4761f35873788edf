//! Item availability: `raw/availability/*.csv` ──ingest──▶ `warehouse/availability`.
//!
//! Producers describe when (and where) items can be offered: one row per window,
//! `item_id,available_from,available_to[,region][,segment]` with a header, days as `YYYY-MM-DD`
//! (empty: open-ended), region and segment empty for everywhere. Unlike the item dimension
//! (merged), the table is rewritten whole (one Delta commit) when any availability file is new
//! or changed (a window removed from a file must disappear), and each file gets a load-ledger
//! row (`target = availability`); both commits carry the load's number like ingest's other
//! commits (an application transaction, see `ingest`). `prepare` unloads the table beside the
//! training export (`availability-*.parquet`), where the recommend step's offer rules read it.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;

use elastirec_core::Night;
use elastirec_core::layout::{self, Table};

use crate::ingest::{INGEST_APP, LedgerEntry, LedgerRow};
use crate::tables::{Warehouse, schema};
use crate::{Error, Result};

/// One availability window as read from a raw file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Window {
    pub item_id: i64,
    pub from: Option<Night>,
    pub to: Option<Night>,
    pub region: Option<String>,
    pub segment: Option<String>,
}

impl Warehouse {
    /// Rewrites `warehouse/availability` when any availability file is new or changed; returns
    /// the rows loaded (`None` when nothing changed).
    pub(crate) async fn ingest_availability(
        &self,
        night: Night,
        known: Option<&HashMap<String, LedgerEntry>>,
        load: i64,
    ) -> Result<Option<u64>> {
        let lake = self.lake();
        let Some(files) = self
            .dimension_files(&layout::raw_availability_root(), known, false)
            .await?
        else {
            return Ok(None);
        };
        let mut rows: Vec<(Window, String)> = Vec::new();
        let mut per_file = Vec::new();
        // The table is rewritten whole from every file; only new or changed ones get ledger rows.
        for (meta, changed) in &files {
            let name = meta.location.to_string();
            let body = lake.get(&meta.location).await?;
            let parsed = parse_availability(&name, &body)?;
            per_file.push((meta.clone(), *changed, parsed.len() as i64));
            rows.extend(parsed.into_iter().map(|w| (w, name.clone())));
        }
        let batch = RecordBatch::try_new(
            schema(Table::Availability),
            vec![
                Arc::new(rows.iter().map(|r| r.0.item_id).collect::<Int64Array>()),
                Arc::new(
                    rows.iter()
                        .map(|r| r.0.from.map(Night::days_since_epoch))
                        .collect::<Date32Array>(),
                ),
                Arc::new(
                    rows.iter()
                        .map(|r| r.0.to.map(Night::days_since_epoch))
                        .collect::<Date32Array>(),
                ),
                Arc::new(
                    rows.iter()
                        .map(|r| r.0.region.clone())
                        .collect::<StringArray>(),
                ),
                Arc::new(
                    rows.iter()
                        .map(|r| r.0.segment.clone())
                        .collect::<StringArray>(),
                ),
                Arc::new(
                    rows.iter()
                        .map(|r| Some(r.1.clone()))
                        .collect::<StringArray>(),
                ),
            ],
        )
        .map_err(|e| Error::Internal(format!("availability batch: {e}")))?;
        let table = self
            .table(Table::Availability)
            .await?
            .write(vec![batch])
            .with_save_mode(SaveMode::Overwrite)
            .with_commit_properties(
                CommitProperties::default()
                    .with_application_transaction(Transaction::new(INGEST_APP, load)),
            )
            .await
            .map_err(Error::delta("availability"))?;
        let version = table.version().unwrap_or(0) as i64;
        let ledger = per_file
            .iter()
            .filter(|(_, changed, _)| *changed)
            .map(|(m, _, n)| LedgerRow::of(m, "availability", None, *n, version))
            .collect();
        self.append_ledger(ledger, night, load).await?;
        Ok(Some(rows.len() as u64))
    }
}

/// Parses an availability file (header names, any order: `item_id`, `available_from`,
/// `available_to`, optional `region`, `segment`). A bad row fails the file, naming its line.
pub(crate) fn parse_availability(file: &str, body: &[u8]) -> Result<Vec<Window>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let header = reader
        .headers()
        .map_err(|e| Error::BadFile {
            file: file.into(),
            reason: format!("cannot read the header line: {e}"),
        })?
        .clone();
    let find = |name: &str| header.iter().position(|h| h.trim() == name);
    let need = |name: &str| {
        find(name).ok_or_else(|| Error::BadFile {
            file: file.into(),
            reason: format!(
                "no column '{name}' in the header ({}): availability files need item_id, \
                 available_from, available_to and may have region, segment",
                header.iter().collect::<Vec<_>>().join(",")
            ),
        })
    };
    let (item, from, to) = (
        need("item_id")?,
        need("available_from")?,
        need("available_to")?,
    );
    let (region, segment) = (find("region"), find("segment"));
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| Error::BadFile {
            file: file.into(),
            reason: format!("unreadable availability CSV: {e}"),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .map(str::trim)
                .filter(|t| !t.is_empty())
        };
        let bad = |column: &str, reason: String| Error::BadRow {
            file: file.into(),
            line,
            column: column.into(),
            reason,
        };
        let item_id = field(Some(item))
            .ok_or_else(|| bad("item_id", "empty id".into()))?
            .parse::<i64>()
            .map_err(|_| bad("item_id", "not an integer id".into()))?;
        let day = |i: usize, column: &str| -> Result<Option<Night>> {
            field(Some(i))
                .map(|t| {
                    t.parse::<Night>()
                        .map_err(|_| bad(column, format!("'{t}' is not a day (YYYY-MM-DD)")))
                })
                .transpose()
        };
        let window = Window {
            item_id,
            from: day(from, "available_from")?,
            to: day(to, "available_to")?,
            region: field(region).map(str::to_string),
            segment: field(segment).map(str::to_string),
        };
        if let (Some(a), Some(b)) = (window.from, window.to)
            && a > b
        {
            return Err(bad(
                "available_to",
                format!("the window ends ({b}) before it starts ({a})"),
            ));
        }
        out.push(window);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_windows_with_optional_columns() {
        let body = b"item_id,available_from,available_to,region\n1,2024-01-01,2024-01-31,eu\n2,,2024-02-01,\n";
        let w = parse_availability("a.csv", body).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].region.as_deref(), Some("eu"));
        assert_eq!(w[1].from, None);
        assert_eq!(w[1].region, None);
        let e = parse_availability(
            "a.csv",
            b"item_id,available_from,available_to\n1,2024-02-01,2024-01-01\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("a.csv:2") && e.contains("before it starts"),
            "{e}"
        );
        let e = parse_availability("a.csv", b"item,from\n1,2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no column 'item_id'"), "{e}");
    }
}
