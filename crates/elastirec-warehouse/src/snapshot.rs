//! Warehouse snapshots: `snapshots/NAME.json` names the version of every table.
//!
//! The warehouse is only files, so a snapshot is a record of table versions, taken with a Delta
//! checkpoint of each table so that opening it later reads one Parquet checkpoint instead of
//! replaying the log. Delta keeps every version readable until a vacuum removes its files.
//! Restoring a snapshot commits, on each table that moved since, a Delta restore to the recorded
//! version: history is kept (the restore is itself a new version), and the tables read exactly
//! as they did when the snapshot was taken. `warehouse/erasures` is never restored (a restore
//! must not bring a forgotten user back; see `erasure`).
//!
//! `vacuum --keep N` keeps the newest N snapshots and the current state: it deletes the other
//! snapshot records first (so nothing restores a snapshot whose files are going), then, per
//! table, every data file that neither the current version nor a kept snapshot's version reads
//! (a Delta vacuum with those versions kept and no time-based retention). It keeps the log, so
//! the statistics of old versions stay; erased users' history goes with `vacuum --erasures`
//! (`Warehouse::vacuum_erased`), which the command runs first when both are asked.

use chrono::Utc;

use elastirec_core::layout::{self, Table};
use elastirec_core::manifest::SnapshotRecord;
use elastirec_core::{Night, Result as CoreResult};

use crate::{Error, Result, Warehouse};

/// What `vacuum` did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VacuumReport {
    /// Snapshot records kept, oldest first.
    pub snapshots_kept: Vec<String>,
    /// Snapshot records deleted, oldest first.
    pub snapshots_dropped: Vec<String>,
    /// Per table: the versions whose files were kept, and the files deleted.
    pub tables: Vec<TableVacuum>,
    pub dry_run: bool,
}

/// `vacuum` on one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableVacuum {
    pub table: &'static str,
    /// The current version and every kept snapshot's version of this table.
    pub kept_versions: Vec<i64>,
    /// Data files deleted (or, in a dry run, that would be).
    pub files_deleted: usize,
}

/// What a restore did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRestore {
    pub table: &'static str,
    /// The version before the restore.
    pub from: i64,
    /// The snapshot's version, which the table now reads as.
    pub to: i64,
    /// False when the table was already at that version (nothing committed).
    pub committed: bool,
}

impl Warehouse {
    /// Records the current version of every table as snapshot `name` (an existing record of the
    /// same name is replaced, with one put), after checkpointing each table.
    pub async fn snapshot(&self, name: &str, night: Night) -> Result<SnapshotRecord> {
        check_name(name)?;
        for table in Table::ALL {
            let t = self.table(table).await?;
            if t.version().is_some_and(|v| v > 0) {
                deltalake::checkpoints::create_checkpoint(&t, None)
                    .await
                    .map_err(Error::delta(table.name()))?;
            }
        }
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
        check_name(name)?;
        Ok(self
            .lake()
            .get_json(&layout::snapshot(name), "snapshot record")
            .await?)
    }

    /// Every snapshot record, oldest name first.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotRecord>> {
        let mut out = Vec::new();
        for meta in self.lake().list(&layout::snapshots_root()).await? {
            let Some(name) = meta
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
            else {
                continue;
            };
            let record: CoreResult<Option<SnapshotRecord>> = self
                .lake()
                .get_json(&meta.location, "snapshot record")
                .await;
            if let Some(r) = record? {
                debug_assert_eq!(r.name, name);
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Brings every table back to the versions snapshot `name` recorded.
    pub async fn restore(&self, name: &str) -> Result<Vec<TableRestore>> {
        let record = self.snapshot_record(name).await?.ok_or_else(|| {
            Error::Lake(elastirec_core::Error::NotFound {
                what: format!("snapshot '{name}'"),
                path: self.lake().display_path(&layout::snapshot(name)),
                hint: "`elastirec warehouse snapshots` lists the snapshots".into(),
            })
        })?;
        let mut out = Vec::new();
        for table in Table::ALL.into_iter().filter(|t| t.restorable()) {
            let Some(&to) = record.table_versions.get(table.name()) else {
                continue;
            };
            let t = self.table(table).await?;
            let from = t.version().map_or(-1, |v| v as i64);
            if from == to || to < 0 {
                out.push(TableRestore {
                    table: table.name(),
                    from,
                    to,
                    committed: false,
                });
                continue;
            }
            t.restore()
                .with_version_to_restore(to as _)
                .await
                .map_err(Error::delta(table.name()))?;
            out.push(TableRestore {
                table: table.name(),
                from,
                to,
                committed: true,
            });
        }
        Ok(out)
    }
}

impl Warehouse {
    /// Keeps the newest `keep` snapshots (by time taken) and deletes every data file that
    /// neither they nor the current tables read and that left the tables at least `retain` ago
    /// (readers of recent versions keep their files); see the module documentation.
    pub async fn vacuum(
        &self,
        keep: usize,
        retain: std::time::Duration,
        dry_run: bool,
    ) -> Result<VacuumReport> {
        let retention = chrono::Duration::from_std(retain).map_err(|_| {
            Error::Lake(elastirec_core::Error::Config(format!(
                "vacuum retention {retain:?} is too long"
            )))
        })?;
        let mut all = self.snapshots().await?;
        all.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        let split = all.len().saturating_sub(keep);
        let (dropped, kept) = all.split_at(split);
        let mut report = VacuumReport {
            snapshots_kept: kept.iter().map(|s| s.name.clone()).collect(),
            snapshots_dropped: dropped.iter().map(|s| s.name.clone()).collect(),
            tables: Vec::new(),
            dry_run,
        };
        if !dry_run {
            for s in dropped {
                self.lake().delete(&layout::snapshot(&s.name)).await?;
            }
        }
        for table in Table::ALL {
            let t = self.table(table).await?;
            let Some(current) = t.version() else {
                continue; // never committed: nothing to vacuum
            };
            let mut versions: Vec<i64> = kept
                .iter()
                .filter_map(|s| s.table_versions.get(table.name()).copied())
                .filter(|v| *v >= 0 && *v <= current as i64)
                .collect();
            versions.push(current as i64);
            versions.sort_unstable();
            versions.dedup();
            let keep_versions: Vec<_> = versions.iter().map(|v| *v as _).collect();
            let (_, metrics) = t
                .vacuum()
                .with_keep_versions(&keep_versions)
                .with_retention_period(retention)
                .with_enforce_retention_duration(false)
                .with_dry_run(dry_run)
                .await
                .map_err(Error::delta(table.name()))?;
            report.tables.push(TableVacuum {
                table: table.name(),
                kept_versions: versions,
                files_deleted: metrics.files_deleted.len(),
            });
        }
        Ok(report)
    }
}

/// Snapshot names become object names: keep them to a safe alphabet.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::Lake(elastirec_core::Error::Config(format!(
            "snapshot name '{name}': use letters, digits, '-', '_' and '.' (such as 2024-01-05)"
        ))))
    }
}
