//! Customer data governance: `forget` (erasure of users everywhere elastirec keeps them),
//! `warehouse vacuum --erasures`, and `migrate` (lake layout upgrades).
//!
//! ```text
//!  forget --user ID ─▶ warehouse: erasures (pending) → events, rejects (Delta deletes) →
//!                      ids (the user's external id blanked; the internal id stays taken)
//!                   ─▶ outputs: exports (ids-*.parquet too), models, recommendations of every
//!                      night rewritten;
//!                      staging/spark/ (a failed Spark job's leftovers) deleted
//!                   ─▶ raw files purged (--purge-raw), load ledger kept in step
//!                   ─▶ [sink] target: the users' Redis keys / PostgreSQL rows deleted
//!                   ─▶ warehouse: erasures (complete, with what was removed)
//!                   ─▶ _LATEST rewritten: serving reloads without the users
//! ```
//!
//! Users are named by their external ids (what producers sent: `42`, `A3CIUOJXQ5VDQ2`): the
//! warehouse resolves them to the internal ids its tables, the exports and the models hold,
//! and the recommendation files hold the external ids themselves. A user the lake does not know
//! is recorded all the same, so later loads drop their events.
//!
//! Every step can be rerun: a `forget` killed anywhere is finished by running it again (the
//! request is recorded first, so ingest drops the users' events from then on). Erasure is
//! complete in the lake's current state when `forget` returns; older Delta versions and the
//! snapshots naming them keep the rows until `warehouse vacuum --erasures` (the nightly run does
//! not vacuum by itself: see docs/lake-layout.md, "Erasure").

use std::collections::HashSet;

use serde::Serialize;

use elastirec_als::erase::{ErasedUsers, OutputErasure, erase_outputs};
use elastirec_core::config::LakeConfig;
use elastirec_core::lake::Migration;
use elastirec_core::layout::{self, Table};
use elastirec_core::{Lake, layout::LAYOUT_VERSION};
use elastirec_sink::SinkErasure;
use elastirec_warehouse::{ErasureVacuum, EventErasure, RawPurge, Warehouse};

use crate::{Pipeline, Result};

/// What `forget` did.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    pub erasure_id: String,
    pub warehouse: EventErasure,
    pub outputs: OutputErasure,
    pub raw_files: Vec<RawPurge>,
    /// What was deleted from `[sink] target` (`None` without one).
    pub sink: Option<SinkErasure>,
    /// Snapshots naming table versions that still hold the users' rows (until
    /// `warehouse vacuum --erasures`).
    pub snapshots_holding: Vec<String>,
}

/// A new erasure id, also the tag of rewritten file names: `e` and the time in µs, in hex.
fn erasure_id() -> String {
    format!("e{:x}", chrono::Utc::now().timestamp_micros())
}

impl Pipeline {
    /// `forget`: erases `users` (external ids) from the warehouse, every night's outputs and,
    /// with `purge_raw`, the raw event files; records the request in `warehouse/erasures` by
    /// salted hash only. See the module documentation for the order and what a rerun does.
    pub async fn forget(&self, users: &[String], purge_raw: bool) -> Result<ForgetReport> {
        let wh = Warehouse::open(self.lake()).await?;
        let id = erasure_id();
        let events = &self.config().events;
        let warehouse = wh.erase_events(&id, users, events).await?;
        // Tests kill `forget` here: the rerun must find the users' outputs without the
        // dictionary names the warehouse part blanked.
        elastirec_core::failpoint::hit("forget.after-warehouse");
        let erased = ErasedUsers {
            internal: warehouse.internal_ids.iter().copied().collect(),
            external: users.iter().cloned().collect::<HashSet<String>>(),
        };
        let outputs = erase_outputs(self.lake(), &erased, &id).await?;
        // What a failed or interrupted Spark job staged (factors and lists of every user) is
        // never published nor read: delete it whole rather than rewrite it.
        let spark_staging_deleted = elastirec_spark::clear_all_staging(self.lake()).await?;
        let raw_files = if purge_raw {
            wh.purge_raw(users, events).await?
        } else {
            Vec::new()
        };
        // After the outputs: a sink copy that runs later reads lists without the users. A
        // sink that cannot be reached fails `forget` before the request is marked complete,
        // so running it again finishes the job.
        let sink = elastirec_sink::forget_users(&self.config().sink, users).await?;
        let snapshots_holding: Vec<String> = wh
            .snapshots_holding(
                warehouse.events_version,
                warehouse.rejects_version,
                warehouse.ids_version,
            )
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        let details = serde_json::json!({
            "warehouse": {
                "events_deleted": warehouse.events_deleted,
                "rejects_deleted": warehouse.rejects_deleted,
                "events_version": warehouse.events_version,
                "rejects_version": warehouse.rejects_version,
                "ids_blanked": warehouse.ids_blanked,
                "ids_version": warehouse.ids_version,
                "replaced_files": warehouse.replaced_files,
            },
            "outputs": outputs.folders,
            "export_rows": outputs.rows("export"),
            "model_rows": outputs.rows("model"),
            "recommendation_rows": outputs.rows("recommendations"),
            "spark_staging_objects_deleted": spark_staging_deleted,
            "raw_files": raw_files,
            "sink": sink,
            "snapshots_holding": snapshots_holding,
        });
        wh.complete_erasure(&warehouse, &details).await?;
        Ok(ForgetReport {
            erasure_id: id,
            warehouse,
            outputs,
            raw_files,
            sink,
            snapshots_holding,
        })
    }

    /// `warehouse vacuum --erasures`: removes what still holds erased users' rows (snapshots,
    /// replaced Delta files, old log entries).
    pub async fn vacuum_erasures(&self, dry_run: bool) -> Result<ErasureVacuum> {
        let wh = Warehouse::open(self.lake()).await?;
        Ok(wh.vacuum_erased(dry_run).await?)
    }
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationReport {
    pub from: u32,
    pub to: u32,
    /// What each step changed, in a sentence.
    pub steps: Vec<String>,
}

/// `migrate`: upgrades the lake at `config` in place to [`LAYOUT_VERSION`], one version at a
/// time, `lake.json` last (a killed migration is finished by running it again; every step
/// checks what is already there). A lake already at this version is left alone.
///
/// - 1 → 2: creates `warehouse/erasures` and `warehouse/availability` (empty Delta tables) and
///   `governance/salt.json`. Exports of earlier nights have no `availability-*.parquet`; the
///   recommend step reads them as "no availability rows".
/// - 2 → 3: creates `warehouse/ids` (the id dictionary, empty: every id an older lake holds is
///   numeric, its own internal id) and adds the nullable column `event_id` to
///   `warehouse/events`. Nothing else changes: the same events give the same lists.
pub async fn migrate(config: &LakeConfig) -> Result<MigrationReport> {
    let lake = Lake::open_for_migrate(config).await?;
    let Some(mut marker) = lake.marker().await? else {
        return Err(crate::Error::Config(format!(
            "{} has no lake.json: nothing to migrate",
            lake.url()
        )));
    };
    let from = marker.layout_version;
    let mut steps = Vec::new();
    let mut version = from;
    while version < LAYOUT_VERSION {
        match version {
            1 => {
                for table in [Table::Erasures, Table::Availability] {
                    let first = table.path().join("_delta_log/00000000000000000000.json");
                    if lake.get_opt(&first).await?.is_none() {
                        steps.push(format!("created the Delta table {}", table.path()));
                    }
                }
                let salt = layout::erasure_salt();
                let had_salt = lake.get_opt(&salt).await?.is_some();
                let wh = Warehouse::open(&lake).await?;
                wh.erasure_salt().await?;
                if !had_salt {
                    steps.push(format!("created {salt} (the salt of erased-user hashes)"));
                }
            }
            2 => {
                let first = Table::Ids
                    .path()
                    .join("_delta_log/00000000000000000000.json");
                if lake.get_opt(&first).await?.is_none() {
                    steps.push(format!("created the Delta table {}", Table::Ids.path()));
                }
                let wh = Warehouse::open(&lake).await?;
                for column in wh.add_missing_columns(Table::Events).await? {
                    steps.push(format!(
                        "added the column {column} to {}",
                        Table::Events.path()
                    ));
                }
            }
            other => {
                return Err(crate::Error::Config(format!(
                    "no migration from layout version {other}: this elastirec migrates 1 to \
                     {LAYOUT_VERSION}"
                )));
            }
        }
        marker.migrations.push(Migration {
            from: version,
            to: version + 1,
            at: chrono::Utc::now(),
            by: format!("elastirec {}", env!("CARGO_PKG_VERSION")),
        });
        version += 1;
        marker.layout_version = version;
        lake.put_json(&layout::lake_marker(), &marker).await?;
        steps.push(format!("lake.json: layout version {}", version));
    }
    Ok(MigrationReport {
        from,
        to: version,
        steps,
    })
}
