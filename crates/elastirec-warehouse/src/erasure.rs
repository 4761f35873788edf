//! Erasure in the warehouse: forgetting users (the right to be forgotten).
//!
//! ```text
//!  forget --user ID ──▶ ID resolved: a numeric id is its own internal id, a string id is looked
//!                       up in warehouse/ids (a user it does not know has no rows: only the
//!                       request is recorded)
//!                   ──▶ warehouse/erasures (salted hash of ID, pending)
//!                   ──▶ warehouse/events: Delta delete of the internal id's rows (files
//!                       rewritten without them)
//!                   ──▶ warehouse/rejects: rows whose raw line names ID
//!                   ──▶ warehouse/ids: ID's row keeps its internal id, its external id becomes
//!                       null (the name is gone, the id is never given again)
//!                   ──▶ (outputs rewritten by the caller, raw files purged if asked)
//!                   ──▶ warehouse/erasures: completed, with what was removed
//!  ingest           ──▶ drops events of every hashed user before loading (counted)
//!  restore          ──▶ deletes them again from the restored versions
//!  vacuum --erasures──▶ deletes the Delta files the deletes and the blanking replaced, the log
//!                       entries that name them and the snapshots that need them
//! ```
//!
//! A user id is never stored in clear: `warehouse/erasures` keeps `SHA-256(salt ":" id)` in
//! hex of the external id (what producers sent, so a numeric id's digits: the same hash as
//! before string ids), with the lake's salt in `governance/salt.json` (created on first use,
//! never changed). The hash lets ingest recognise the user's events in files that arrive later
//! (ingest hashes each file's external ids); whoever can read the salt can check a guessed id,
//! so the salt's object should be readable only by elastirec.
//!
//! Until `warehouse vacuum --erasures` runs, the user's rows (and the name in the dictionary's
//! older files) remain in Delta history (older table versions) and in the snapshots that name
//! them; `forget` says which.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::logical_expr::conditional_expressions::CaseBuilder;
use deltalake::datafusion::logical_expr::when;
use deltalake::datafusion::prelude::{Expr, col, lit};
use deltalake::protocol::SaveMode;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use elastirec_core::config::EventsConfig;
use elastirec_core::ids::{DICTIONARY_BASE, numeric_id};
use elastirec_core::layout::{self, Table};
use elastirec_core::manifest::SnapshotRecord;

use crate::ingest::ParsedEvents;
use crate::query::{first_count, i64s, strings};
use crate::tables::{Warehouse, schema};
use crate::{Error, Result};

/// `governance/salt.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SaltRecord {
    salt: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// The hash `warehouse/erasures` keeps of a user id: hex SHA-256 of `salt:id`.
pub fn user_hash(salt: &str, user_id: i64) -> String {
    external_user_hash(salt, &user_id.to_string())
}

/// The salted hash of a user by external id; the same as [`user_hash`] for a numeric id.
pub fn external_user_hash(salt: &str, user: &str) -> String {
    let digest = Sha256::digest(format!("{salt}:{user}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash recorded for a user known only by internal id (a dictionary id whose name an earlier
/// erasure blanked, found again after a `warehouse restore`): the hash of the id's digits behind
/// a NUL, which no external id holds (ids have no control characters), so it matches no file.
fn internal_user_hash(salt: &str, id: i64) -> String {
    external_user_hash(salt, &format!("\0{id}"))
}

/// A user an erasure removes.
#[derive(Debug, Clone)]
struct Target {
    /// The id producers sent; `None` for a user known only by internal id (see
    /// [`internal_user_hash`]).
    external: Option<String>,
    /// The internal id the events hold; `None` for a user the warehouse does not know (no event
    /// ever loaded, or a string id the dictionary never named): only the request is recorded.
    internal: Option<i64>,
}

impl Target {
    fn hash(&self, salt: &str) -> String {
        match (&self.external, self.internal) {
            (Some(e), _) => external_user_hash(salt, e),
            (None, Some(i)) => internal_user_hash(salt, i),
            (None, None) => internal_user_hash(salt, -1),
        }
    }
}

/// A fresh random salt: 32 bytes from the operating system, in hex.
fn new_salt() -> Result<String> {
    let mut bytes = [0u8; 32];
    let mut f = std::fs::File::open("/dev/urandom")
        .map_err(|e| Error::Internal(format!("cannot read /dev/urandom for a salt: {e}")))?;
    std::io::Read::read_exact(&mut f, &mut bytes)
        .map_err(|e| Error::Internal(format!("cannot read /dev/urandom for a salt: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What the warehouse part of an erasure removed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EventErasure {
    pub erasure_id: String,
    /// Hash of each forgotten user, with their events and reject rows removed.
    pub users: Vec<ErasedUser>,
    pub events_deleted: u64,
    pub rejects_deleted: u64,
    /// Versions of `warehouse/events` and `warehouse/rejects` after the deletes: older versions
    /// (and snapshots naming them) still hold the rows until vacuumed.
    pub events_version: i64,
    pub rejects_version: i64,
    /// Delta data files (lake paths) the deletes and the blanking replaced; they still hold
    /// the rows (and the dictionary's names).
    pub replaced_files: Vec<String>,
    /// Rows of `warehouse/ids` whose external id was blanked (the users' string ids).
    #[serde(default)]
    pub ids_blanked: u64,
    /// Version of `warehouse/ids` after the blanking; -1 when nothing was blanked. Older
    /// versions (and snapshots naming them) still hold the names until vacuumed.
    #[serde(default)]
    pub ids_version: i64,
    /// The internal ids the users' rows had (numeric ids, and string ids the dictionary named):
    /// what exports and models hold. Never serialized: they identify the users.
    #[serde(skip)]
    pub internal_ids: Vec<i64>,
}

/// One forgotten user, as recorded.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ErasedUser {
    pub id_hash: String,
    pub events_deleted: u64,
    pub rejects_deleted: u64,
}

/// A purged raw file's new object metadata, for its load-ledger row.
struct LedgerUpdate {
    path: String,
    size: i64,
    e_tag: Option<String>,
    modified_micros: i64,
}

/// A raw event file rewritten without forgotten users' lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawPurge {
    pub path: String,
    pub lines_removed: u64,
    /// Whether the load ledger's row of the file was updated to its new size and ETag.
    pub ledger_updated: bool,
    /// Why the file (or the whole raw prefix) was left as it is: it cannot be read by the
    /// `[events]` readers, or it is a producer's prefix outside the lake.
    pub left_because: Option<String>,
}

/// What `warehouse vacuum --erasures` did (or would do).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ErasureVacuum {
    /// Completed erasures not vacuumed before.
    pub erasures: u64,
    /// Snapshot records that named table versions holding erased rows, now deleted.
    pub snapshots_removed: Vec<String>,
    /// Delta data files deleted.
    pub files_deleted: u64,
    /// Delta log entries (commits, checkpoints) older than the erasures, deleted.
    pub log_entries_deleted: u64,
    pub dry_run: bool,
}

fn micros_now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A timestamp literal of the tables' type (µs, UTC).
fn utc_micros(micros: i64) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(micros), Some("UTC".into()))
}

impl Warehouse {
    /// The lake's salt, created on first use (create-only: two processes agree on one).
    pub async fn erasure_salt(&self) -> Result<String> {
        let path = layout::erasure_salt();
        if let Some(r) = self
            .lake()
            .get_json::<SaltRecord>(&path, "erasure salt")
            .await?
        {
            return Ok(r.salt);
        }
        let record = SaltRecord {
            salt: new_salt()?,
            created_at: chrono::Utc::now(),
        };
        self.lake().put_json_create(&path, &record).await?;
        let r = self
            .lake()
            .get_json::<SaltRecord>(&path, "erasure salt")
            .await?
            .ok_or_else(|| Error::Internal(format!("{path} vanished after it was written")))?;
        Ok(r.salt)
    }

    /// Hashes of every user an erasure request named (pending or completed).
    pub async fn erased_hashes(&self) -> Result<HashSet<String>> {
        let batches = self.sql("SELECT DISTINCT id_hash FROM erasures").await?;
        let mut out = HashSet::new();
        for b in &batches {
            out.extend(strings(b, "id_hash")?.into_iter().flatten());
        }
        Ok(out)
    }

    /// Lake paths of the data files of a table's current version.
    fn data_files(&self, table: &DeltaTable) -> Result<HashSet<String>> {
        let root = self.lake().url().as_str().to_string();
        // delta-rs names local files by plain absolute path, remote ones by URL.
        let folder = self
            .lake()
            .url()
            .to_file_path()
            .ok()
            .map(|p| p.to_string_lossy().trim_end_matches('/').to_string());
        let uris = table
            .get_file_uris()
            .map_err(Error::delta("files"))?
            .collect::<Vec<_>>();
        let mut out = HashSet::new();
        for uri in uris {
            let path = if let Some(rest) = uri.strip_prefix(&root) {
                Path::from_url_path(rest).unwrap_or_else(|_| Path::from(rest))
            } else if let Some(rest) = folder
                .as_deref()
                .and_then(|f| uri.strip_prefix(f))
                .and_then(|r| r.strip_prefix('/'))
            {
                Path::from(rest)
            } else {
                return Err(Error::Internal(format!(
                    "delta file {uri} is not under the lake {root}"
                )));
            };
            out.insert(path.to_string());
        }
        Ok(out)
    }

    /// Erases `users` (external ids, as producers sent them) from the warehouse: records the
    /// request (pending) in `warehouse/erasures` under `erasure_id`, deletes their rows from
    /// `warehouse/events` and `warehouse/rejects`, and blanks their external ids in
    /// `warehouse/ids` (the internal ids stay taken). A user the warehouse does not know is
    /// recorded all the same, so ingest drops their events from then on. The caller rewrites the
    /// outputs (with [`EventErasure::internal_ids`] and the external ids) and then calls
    /// [`Warehouse::complete_erasure`]. Rerunning it after a crash is safe: it finds nothing more
    /// to delete (outputs of a user whose name is already blanked are found through each
    /// export's `ids-*.parquet`).
    pub async fn erase_events(
        &self,
        erasure_id: &str,
        users: &[String],
        events: &EventsConfig,
    ) -> Result<EventErasure> {
        if users.is_empty() {
            return Err(Error::Lake(elastirec_core::Error::Config(
                "forget: name at least one user (--user ID or --users-file FILE)".into(),
            )));
        }
        let targets = self.resolve_users(users).await?;
        let wanted: HashSet<&str> = users.iter().map(String::as_str).collect();
        let reject_rows = self
            .reject_rows_of(&|field: &str| wanted.contains(field), events)
            .await?;
        self.erase_targets(erasure_id, &targets, reject_rows).await
    }

    /// The internal id of each external user id: a numeric id is its own; a string id is looked
    /// up in the dictionary (`None` when it has no named row: never seen, or already erased).
    async fn resolve_users(&self, users: &[String]) -> Result<Vec<Target>> {
        let names: Vec<Expr> = users
            .iter()
            .filter(|u| numeric_id(u).is_none())
            .map(|u| lit(u.clone()))
            .collect();
        let mut named: HashMap<String, i64> = HashMap::new();
        if !names.is_empty() {
            // A filter on the table rather than SQL text: ids may hold quotes and backslashes.
            let ctx = self
                .session_over([(Table::Ids, self.table(Table::Ids).await?)])
                .await?;
            let batches = ctx
                .table(Table::Ids.name())
                .await
                .map_err(Error::query("read ids"))?
                .filter(
                    col("kind")
                        .eq(lit("user"))
                        .and(col("external").in_list(names, false)),
                )
                .and_then(|df| df.select_columns(&["external", "id"]))
                .map_err(Error::query("look users up in ids"))?
                .collect()
                .await
                .map_err(Error::query("look users up in ids"))?;
            for b in &batches {
                for (name, id) in strings(b, "external")?.into_iter().zip(i64s(b, "id")?) {
                    if let (Some(name), Some(id)) = (name, id) {
                        named.insert(name, id);
                    }
                }
            }
        }
        Ok(users
            .iter()
            .map(|u| Target {
                external: Some(u.clone()),
                internal: numeric_id(u).or_else(|| named.get(u).copied()),
            })
            .collect())
    }

    /// The warehouse part of an erasure of `targets`, with the reject rows (file, line, user
    /// field) found for them; see [`Warehouse::erase_events`].
    async fn erase_targets(
        &self,
        erasure_id: &str,
        targets: &[Target],
        reject_rows: Vec<(String, i64, String)>,
    ) -> Result<EventErasure> {
        let salt = self.erasure_salt().await?;
        let mut internal_ids: Vec<i64> = targets.iter().filter_map(|t| t.internal).collect();
        internal_ids.sort_unstable();
        internal_ids.dedup();
        let mut per_user: HashMap<i64, u64> = HashMap::new();
        if !internal_ids.is_empty() {
            let list = internal_ids
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let counts = self
                .sql(&format!(
                    "SELECT user_id, COUNT(*) AS n FROM events WHERE user_id IN ({list}) \
                     GROUP BY user_id"
                ))
                .await?;
            for b in &counts {
                for (u, n) in i64s(b, "user_id")?.into_iter().zip(i64s(b, "n")?) {
                    if let (Some(u), Some(n)) = (u, n) {
                        per_user.insert(u, n as u64);
                    }
                }
            }
        }
        let mut rejects_per_user: HashMap<&str, u64> = HashMap::new();
        for (_, _, u) in &reject_rows {
            *rejects_per_user.entry(u.as_str()).or_default() += 1;
        }
        let mut erased: Vec<ErasedUser> = targets
            .iter()
            .map(|t| ErasedUser {
                id_hash: t.hash(&salt),
                events_deleted: t
                    .internal
                    .and_then(|u| per_user.get(&u).copied())
                    .unwrap_or(0),
                rejects_deleted: t
                    .external
                    .as_deref()
                    .and_then(|u| rejects_per_user.get(u).copied())
                    .unwrap_or(0),
            })
            .collect();
        erased.sort_by(|a, b| a.id_hash.cmp(&b.id_hash));
        erased.dedup_by(|a, b| a.id_hash == b.id_hash);
        // The request first: from here on, ingest drops the users' events.
        self.append_erasures(erasure_id, &erased).await?;

        let table = self.table(Table::Events).await?;
        let before = self.data_files(&table)?;
        let events_deleted: u64 = per_user.values().sum();
        let table = if events_deleted > 0 {
            let ids: Vec<Expr> = internal_ids.iter().map(|&u| lit(u)).collect();
            let (t, _) = table
                .delete()
                .with_predicate(col("user_id").in_list(ids, false))
                .await
                .map_err(Error::delta("events"))?;
            self.scrub_predicate(Table::Events, &t).await?;
            t
        } else {
            table
        };
        let after = self.data_files(&table)?;
        let mut replaced: Vec<String> = before.difference(&after).cloned().collect();

        let rejects = self.table(Table::Rejects).await?;
        let rejects_before = self.data_files(&rejects)?;
        let rejects = if reject_rows.is_empty() {
            rejects
        } else {
            let mut predicate: Option<Expr> = None;
            for (file, line, _) in &reject_rows {
                let one = col("file")
                    .eq(lit(file.clone()))
                    .and(col("line").eq(lit(*line)));
                predicate = Some(match predicate {
                    Some(p) => p.or(one),
                    None => one,
                });
            }
            let mut delete = rejects.delete();
            if let Some(p) = predicate {
                delete = delete.with_predicate(p);
            }
            delete.await.map_err(Error::delta("rejects"))?.0
        };
        let rejects_after = self.data_files(&rejects)?;
        replaced.extend(rejects_before.difference(&rejects_after).cloned());

        // Last, once no row needs the name to be found: a rerun after a crash before this
        // point resolves the users again.
        let (ids_blanked, ids_version, ids_replaced) = self.blank_ids(&internal_ids).await?;
        replaced.extend(ids_replaced);
        replaced.sort();
        Ok(EventErasure {
            erasure_id: erasure_id.to_string(),
            events_deleted,
            rejects_deleted: reject_rows.len() as u64,
            users: erased,
            events_version: table.version().map_or(-1, |v| v as i64),
            rejects_version: rejects.version().map_or(-1, |v| v as i64),
            replaced_files: replaced,
            ids_blanked,
            ids_version,
            internal_ids,
        })
    }

    /// Sets the external id of the dictionary's user rows of `ids` to null (a tombstone: the id
    /// stays taken, the name is gone; a user who comes back later gets a new id). Returns the
    /// rows blanked, the table's version after it (-1 when nothing was to blank) and the data
    /// files it replaced (they still hold the names until vacuumed).
    async fn blank_ids(&self, ids: &[i64]) -> Result<(u64, i64, Vec<String>)> {
        let ids: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|&i| i >= DICTIONARY_BASE)
            .collect();
        if ids.is_empty() {
            return Ok((0, -1, Vec::new()));
        }
        let list = ids
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let named = first_count(
            &self
                .sql(&format!(
                    "SELECT COUNT(*) AS n FROM ids WHERE kind = 'user' AND external IS NOT NULL \
                     AND id IN ({list})"
                ))
                .await?,
            "n",
        )?;
        if named == 0 {
            return Ok((0, -1, Vec::new()));
        }
        let table = self.table(Table::Ids).await?;
        let before = self.data_files(&table)?;
        let predicate = col("kind")
            .eq(lit("user"))
            .and(col("external").is_not_null())
            .and(col("id").in_list(ids.iter().map(|&i| lit(i)).collect(), false));
        let (table, _) = table
            .update()
            .with_predicate(predicate)
            .with_update("external", lit(ScalarValue::Utf8(None)))
            .await
            .map_err(Error::delta("ids"))?;
        self.scrub_predicate(Table::Ids, &table).await?;
        let after = self.data_files(&table)?;
        Ok((
            named,
            table.version().map_or(-1, |v| v as i64),
            before.difference(&after).cloned().collect(),
        ))
    }

    /// Rewrites the commit that `table` is at so that its `commitInfo` no longer quotes the
    /// delete's predicate, which names the erased ids in clear: the predicate becomes
    /// `"<erased users>"`. Readers never use `commitInfo` (it is provenance only), and the
    /// commit's actions are kept byte for byte; the rewrite is one put of the whole object.
    async fn scrub_predicate(&self, table: Table, handle: &DeltaTable) -> Result<()> {
        let Some(version) = handle.version() else {
            return Ok(());
        };
        let path = table
            .path()
            .join("_delta_log")
            .join(format!("{:020}.json", version as i64).as_str());
        let body = self.lake().get(&path).await?;
        let text = String::from_utf8_lossy(&body);
        let mut out = String::with_capacity(text.len());
        let mut changed = false;
        for line in text.lines() {
            let mut action: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(_) => {
                    out.push_str(line);
                    out.push('\n');
                    continue;
                }
            };
            if let Some(p) = action
                .get_mut("commitInfo")
                .and_then(|c| c.get_mut("operationParameters"))
                .and_then(|o| o.get_mut("predicate"))
            {
                *p = serde_json::Value::String("<erased users>".into());
                changed = true;
                out.push_str(&action.to_string());
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        if changed {
            self.lake().put(&path, out.into_bytes()).await?;
        }
        Ok(())
    }

    /// Reject rows (file, line, user field) whose raw line has a user `hit` accepts in its user
    /// column (read with the file's header, when the raw file is still there; a JSON line by the
    /// configured field names) or, when the column cannot be told, in any field.
    async fn reject_rows_of(
        &self,
        hit: &dyn Fn(&str) -> bool,
        events: &EventsConfig,
    ) -> Result<Vec<(String, i64, String)>> {
        let batches = self.sql("SELECT file, line, raw_line FROM rejects").await?;
        let mut headers: HashMap<String, Option<usize>> = HashMap::new();
        let user_names = events.mapping().map(|m| m.user.names).unwrap_or_default();
        let mut out = Vec::new();
        for b in &batches {
            let files = strings(b, "file")?;
            let lines = i64s(b, "line")?;
            let raws = strings(b, "raw_line")?;
            for i in 0..b.num_rows() {
                let (Some(file), Some(line)) = (files[i].clone(), lines[i]) else {
                    continue;
                };
                let raw = raws[i].clone().unwrap_or_default();
                if let Some(user) = json_user(&raw, &user_names) {
                    if hit(&user) {
                        out.push((file, line, user));
                    }
                    continue;
                }
                if !headers.contains_key(&file) {
                    let column = match self.lake().get_opt(&Path::from(file.as_str())).await? {
                        Some(body) => user_column_index(&body, events),
                        None => None,
                    };
                    headers.insert(file.clone(), column);
                }
                let fields = csv_fields(&raw, events.delimiter as u8);
                let found = match headers.get(&file).copied().flatten() {
                    Some(c) => fields.get(c).filter(|f| hit(f)).cloned(),
                    None => fields.into_iter().find(|f| hit(f)),
                };
                if let Some(u) = found {
                    out.push((file, line, u));
                }
            }
        }
        Ok(out)
    }

    async fn append_erasures(&self, erasure_id: &str, users: &[ErasedUser]) -> Result<()> {
        let n = users.len();
        let now = micros_now();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![erasure_id; n])),
            Arc::new(StringArray::from_iter_values(
                users.iter().map(|u| u.id_hash.as_str()),
            )),
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from(vec![None::<i64>; n]).with_timezone("UTC")),
            Arc::new(Int64Array::from_iter_values(
                users.iter().map(|u| u.events_deleted as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                users.iter().map(|u| u.rejects_deleted as i64),
            )),
            Arc::new(Int64Array::from(vec![-1i64; n])),
            Arc::new(Int64Array::from(vec![-1i64; n])),
            Arc::new(StringArray::from(vec![None::<&str>; n])),
            Arc::new(TimestampMicrosecondArray::from(vec![None::<i64>; n]).with_timezone("UTC")),
        ];
        let batch = RecordBatch::try_new(schema(Table::Erasures), columns)
            .map_err(|e| Error::Internal(format!("erasures batch: {e}")))?;
        self.table(Table::Erasures)
            .await?
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .await
            .map_err(Error::delta("erasures"))?;
        Ok(())
    }

    /// Marks erasure `erasure_id` complete, with the table versions after its deletes and
    /// `details` (JSON: what was removed from the warehouse, the outputs and raw files).
    pub async fn complete_erasure(
        &self,
        erasure: &EventErasure,
        details: &serde_json::Value,
    ) -> Result<()> {
        let text = serde_json::to_string(details)
            .map_err(|e| Error::Internal(format!("erasure details: {e}")))?;
        self.table(Table::Erasures)
            .await?
            .update()
            .with_predicate(col("erasure_id").eq(lit(erasure.erasure_id.clone())))
            .with_update("completed_at", lit(utc_micros(micros_now())))
            .with_update("events_version", lit(erasure.events_version))
            .with_update("rejects_version", lit(erasure.rejects_version))
            .with_update("details", lit(text))
            .await
            .map_err(Error::delta("erasures"))?;
        Ok(())
    }

    /// Snapshot records that name a version of `warehouse/events` or `warehouse/rejects` older
    /// than an erasure's deletes, or of `warehouse/ids` older than its blanking (-1: none):
    /// restoring them would bring erased rows back, and they keep the files holding them (or
    /// the users' names) from being vacuumed.
    pub async fn snapshots_holding(
        &self,
        events_version: i64,
        rejects_version: i64,
        ids_version: i64,
    ) -> Result<Vec<SnapshotRecord>> {
        Ok(self
            .snapshots()
            .await?
            .into_iter()
            .filter(|s| {
                let older = |t: &str, v: i64| s.table_versions.get(t).is_some_and(|&x| x < v);
                older("events", events_version)
                    || older("rejects", rejects_version)
                    || older("ids", ids_version)
            })
            .collect())
    }

    /// Deletes again the rows of every erased user from `warehouse/events` and `rejects` (after
    /// `warehouse restore` to a version older than an erasure), as a new erasure `erasure_id`
    /// of those users, so that `vacuum --erasures` also removes the files the restore brought
    /// back. An erased user of the events is one whose external id hashes to a recorded hash, or
    /// whose dictionary row was blanked (the dictionary is never restored); a reject row, one
    /// whose user field hashes to a recorded hash. Returns the events removed.
    pub async fn reapply_erasures(&self, erasure_id: &str, events: &EventsConfig) -> Result<u64> {
        let hashes = self.erased_hashes().await?;
        if hashes.is_empty() {
            return Ok(0);
        }
        let salt = self.erasure_salt().await?;
        let batches = self
            .sql(
                "SELECT u.user_id, i.external, i.id AS dictionary_id \
                 FROM (SELECT DISTINCT user_id FROM events) u \
                 LEFT JOIN ids i ON i.kind = 'user' AND i.id = u.user_id",
            )
            .await?;
        let mut targets = Vec::new();
        for b in &batches {
            let users = i64s(b, "user_id")?;
            let names = strings(b, "external")?;
            let known = i64s(b, "dictionary_id")?;
            for i in 0..b.num_rows() {
                let Some(u) = users[i] else { continue };
                let external = if u < DICTIONARY_BASE {
                    Some(u.to_string())
                } else if known[i].is_some() {
                    names[i].clone()
                } else {
                    continue; // a dictionary id without a row: not one an erasure blanked
                };
                let erased = match &external {
                    Some(e) => hashes.contains(&external_user_hash(&salt, e)),
                    None => true, // blanked by an erasure
                };
                if erased {
                    targets.push(Target {
                        external,
                        internal: Some(u),
                    });
                }
            }
        }
        let reject_rows = self
            .reject_rows_of(
                &|field: &str| hashes.contains(&external_user_hash(&salt, field)),
                events,
            )
            .await?;
        // Users of reject rows only (no event): recorded by their external id.
        let mut named: HashSet<String> =
            targets.iter().filter_map(|t| t.external.clone()).collect();
        for (_, _, user) in &reject_rows {
            if named.insert(user.clone()) {
                targets.push(Target {
                    external: Some(user.clone()),
                    internal: None,
                });
            }
        }
        if targets.is_empty() {
            return Ok(0);
        }
        let erasure = self
            .erase_targets(erasure_id, &targets, reject_rows)
            .await?;
        let details = serde_json::json!({
            "reason": "warehouse restore brought back rows of erased users",
            "warehouse": {
                "events_deleted": erasure.events_deleted,
                "rejects_deleted": erasure.rejects_deleted,
                "events_version": erasure.events_version,
                "rejects_version": erasure.rejects_version,
                "ids_blanked": erasure.ids_blanked,
                "ids_version": erasure.ids_version,
                "replaced_files": erasure.replaced_files,
            },
        });
        self.complete_erasure(&erasure, &details).await?;
        Ok(erasure.events_deleted)
    }

    /// Drops the rows of erased users from parsed raw files (their rejects stay: a reject row
    /// keeps the raw line only until `forget` runs for its user); returns the rows dropped.
    pub(crate) async fn drop_erased_parsed(
        &self,
        parsed: &mut [(
            elastirec_core::Night,
            object_store::ObjectMeta,
            ParsedEvents,
        )],
    ) -> Result<u64> {
        let hashes = self.erased_hashes().await?;
        if hashes.is_empty() {
            return Ok(0);
        }
        let salt = self.erasure_salt().await?;
        let mut verdict: HashMap<String, bool> = HashMap::new();
        let mut dropped = 0u64;
        for (_, _, p) in parsed.iter_mut() {
            let keep: Vec<bool> = (0..p.len())
                .map(|row| {
                    // A string the dictionary had is not an erased user's: erasing a user
                    // blanks their dictionary entry.
                    let Some(user) = p.users.external(row) else {
                        return true;
                    };
                    if let Some(&erased) = verdict.get(user.as_ref()) {
                        return !erased;
                    }
                    let erased = hashes.contains(&external_user_hash(&salt, &user));
                    verdict.insert(user.into_owned(), erased);
                    !erased
                })
                .collect();
            let n = keep.iter().filter(|k| !**k).count() as u64;
            if n > 0 {
                dropped += n;
                p.retain(&keep);
            }
        }
        Ok(dropped)
    }

    /// Rewrites every raw event file holding records of `users` without those records (one put
    /// per file: a reader sees the old file or the new one), then updates the load ledger's row
    /// of each loaded file to its new size and ETag in one Delta commit, so the next ingest
    /// neither reports the file as changed nor loads it again. A crash between the two leaves
    /// the file reported as changed; `forget --purge-raw` again, or `ingest --reload FILE`,
    /// settles it. `users` are external ids: a record is the user's when its user field (the
    /// `[events]` mapping's) is one of them. CSV, JSON lines and Parquet, compressed or not,
    /// are rewritten in their own format and codec; a file that cannot be read, and a raw
    /// prefix outside the lake (never written), are reported as left.
    pub async fn purge_raw(
        &self,
        users: &[String],
        events: &EventsConfig,
    ) -> Result<Vec<RawPurge>> {
        let wanted: HashSet<&str> = users.iter().map(String::as_str).collect();
        let source = crate::ingest::RawSource::of(self.lake(), events).await?;
        if source.is_outside() {
            return Ok(vec![RawPurge {
                path: source.display(),
                lines_removed: 0,
                ledger_updated: false,
                left_because: Some(
                    "[events] raw_prefix is outside the lake, which elastirec only reads: \
                     remove the users' records there with the producer's tools"
                        .into(),
                ),
            }]);
        }
        let loaded = self.loaded_files().await?;
        let mut purged = Vec::new();
        let mut ledger_updates: Vec<LedgerUpdate> = Vec::new();
        for meta in source.list().await? {
            if source.day(&meta.location).is_none() {
                continue;
            }
            let path = meta.location.to_string();
            let body = self.lake().get(&meta.location).await?;
            let (kept, removed) = match crate::ingest::without_users(&path, body, &wanted, events) {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(reason) => {
                    purged.push(RawPurge {
                        path,
                        lines_removed: 0,
                        ledger_updated: false,
                        left_because: Some(reason),
                    });
                    continue;
                }
            };
            self.lake().put(&meta.location, kept).await?;
            let is_loaded = loaded.contains(&path);
            if is_loaded {
                let head = self
                    .lake()
                    .store()
                    .head(&meta.location)
                    .await
                    .map_err(|e| elastirec_core::Error::Store {
                        path: self.lake().display_path(&meta.location),
                        source: e,
                    })?;
                ledger_updates.push(LedgerUpdate {
                    path: path.clone(),
                    size: head.size as i64,
                    e_tag: head.e_tag.clone(),
                    modified_micros: head.last_modified.timestamp_micros(),
                });
            }
            purged.push(RawPurge {
                path,
                lines_removed: removed,
                ledger_updated: is_loaded,
                left_because: None,
            });
        }
        if !ledger_updates.is_empty() {
            let case = |value: &dyn Fn(&LedgerUpdate) -> Expr| {
                let mut builder: Option<CaseBuilder> = None;
                for u in &ledger_updates {
                    let (w, t) = (col("path").eq(lit(u.path.clone())), value(u));
                    builder = Some(match builder {
                        None => when(w, t),
                        Some(mut b) => b.when(w, t),
                    });
                }
                builder
                    .ok_or_else(|| Error::Internal("no ledger rows to update".into()))?
                    .end()
                    .map_err(Error::query("ledger update"))
            };
            let paths: Vec<Expr> = ledger_updates.iter().map(|u| lit(u.path.clone())).collect();
            let size = case(&|u| lit(u.size))?;
            let tag = case(&|u| lit(ScalarValue::Utf8(u.e_tag.clone())))?;
            let modified = case(&|u| lit(utc_micros(u.modified_micros)))?;
            self.table(Table::Loads)
                .await?
                .update()
                .with_predicate(
                    col("path")
                        .in_list(paths, false)
                        .and(col("target").eq(lit("events"))),
                )
                .with_update("size", size)
                .with_update("e_tag", tag)
                .with_update("last_modified", modified)
                .await
                .map_err(Error::delta("loads"))?;
        }
        Ok(purged)
    }

    /// `warehouse vacuum --erasures`: for every completed erasure not vacuumed yet, deletes the
    /// snapshot records naming table versions that hold its rows, the Delta data files its
    /// deletes replaced, and the log entries before its deletes (after a checkpoint at that
    /// version, so every later version stays readable); then marks the erasures vacuumed.
    /// After it, no file of the lake holds the erased users' rows.
    pub async fn vacuum_erased(&self, dry_run: bool) -> Result<ErasureVacuum> {
        let batches = self
            .sql(
                "SELECT erasure_id, MAX(events_version) AS ev, MAX(rejects_version) AS rv, \
                 MAX(details) AS details FROM erasures \
                 WHERE completed_at IS NOT NULL AND vacuumed_at IS NULL GROUP BY erasure_id",
            )
            .await?;
        let mut report = ErasureVacuum {
            dry_run,
            ..ErasureVacuum::default()
        };
        let mut ids = Vec::new();
        let mut events_version = -1i64;
        let mut rejects_version = -1i64;
        let mut ids_version = -1i64;
        let mut files: BTreeMap<String, ()> = BTreeMap::new();
        for b in &batches {
            let erasure_ids = strings(b, "erasure_id")?;
            let evs = i64s(b, "ev")?;
            let rvs = i64s(b, "rv")?;
            let details = strings(b, "details")?;
            for i in 0..b.num_rows() {
                let Some(id) = erasure_ids[i].clone() else {
                    continue;
                };
                ids.push(id);
                events_version = events_version.max(evs[i].unwrap_or(-1));
                rejects_version = rejects_version.max(rvs[i].unwrap_or(-1));
                let d: serde_json::Value = details[i]
                    .as_deref()
                    .and_then(|t| serde_json::from_str(t).ok())
                    .unwrap_or_default();
                ids_version = ids_version.max(d["warehouse"]["ids_version"].as_i64().unwrap_or(-1));
                for f in d["warehouse"]["replaced_files"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let Some(f) = f.as_str() {
                        files.insert(f.to_string(), ());
                    }
                }
            }
        }
        report.erasures = ids.len() as u64;
        if ids.is_empty() {
            return Ok(report);
        }
        let holding = self
            .snapshots_holding(events_version, rejects_version, ids_version)
            .await?;
        report.snapshots_removed = holding.iter().map(|s| s.name.clone()).collect();
        report.files_deleted = files.len() as u64;
        if dry_run {
            return Ok(report);
        }
        for s in &holding {
            self.lake().delete(&layout::snapshot(&s.name)).await?;
        }
        for f in files.keys() {
            self.lake().delete(&Path::from(f.as_str())).await?;
        }
        for (table, version) in [
            (Table::Events, events_version),
            (Table::Rejects, rejects_version),
            (Table::Ids, ids_version),
        ] {
            if version > 0 {
                report.log_entries_deleted += self.drop_history_before(table, version).await?;
            }
        }
        let list: Vec<Expr> = ids.iter().map(|i| lit(i.clone())).collect();
        self.table(Table::Erasures)
            .await?
            .update()
            .with_predicate(col("erasure_id").in_list(list, false))
            .with_update("vacuumed_at", lit(utc_micros(micros_now())))
            .await
            .map_err(Error::delta("erasures"))?;
        Ok(report)
    }

    /// Checkpoints `table` at `version` and deletes its log entries before it: versions older
    /// than `version` can no longer be read (their add actions named erased rows' files, and
    /// their statistics could name the ids).
    async fn drop_history_before(&self, table: Table, version: i64) -> Result<u64> {
        let current = self.table(table).await?;
        let mut at = current.clone();
        at.load_version(version as _)
            .await
            .map_err(Error::delta(table.name()))?;
        deltalake::checkpoints::create_checkpoint(&at, None)
            .await
            .map_err(Error::delta(table.name()))?;
        // Everything before the checkpoint, whatever its age.
        let cutoff = chrono::Utc::now().timestamp_millis() + 3_600_000;
        let deleted = deltalake::checkpoints::cleanup_expired_logs_for(
            version as _,
            current.log_store().as_ref(),
            cutoff,
            None,
        )
        .await
        .map_err(Error::delta(table.name()))?;
        Ok(deleted as u64)
    }
}

/// The index of the configured user column in a raw file's header.
fn user_column_index(body: &[u8], events: &EventsConfig) -> Option<usize> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(events.delimiter as u8)
        .has_headers(true)
        .from_reader(body);
    let header = reader.headers().ok()?;
    let names = events.mapping().ok()?.user.names;
    names
        .iter()
        .find_map(|n| header.iter().position(|h| h.trim() == n))
}

/// The user of a reject's raw line that is a JSON object: the first configured user field
/// present (a dotted name is a path into nested objects), as ingest reads it (trimmed; a number
/// as its digits). `None` for a line that is not a JSON object.
fn json_user(raw: &str, names: &[String]) -> Option<String> {
    let trimmed = raw.trim_start();
    if !trimmed.starts_with('{') {
        return None;
    }
    let object: serde_json::Value = serde_json::from_str(trimmed).ok()?;
    let value = names.iter().find_map(|name| {
        object
            .get(name)
            .or_else(|| name.split('.').try_fold(&object, |v, key| v.get(key)))
            .filter(|v| !v.is_null())
    });
    Some(match value {
        Some(serde_json::Value::String(s)) => s.trim().to_string(),
        Some(other) => other.to_string(),
        None => String::new(),
    })
}

/// The fields of one CSV line, trimmed (quotes read as CSV reads them); split at the delimiter
/// when the line is not valid CSV.
fn csv_fields(raw: &str, delimiter: u8) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(raw.as_bytes());
    match reader.records().next() {
        Some(Ok(record)) => record.iter().map(|f| f.trim().to_string()).collect(),
        _ => raw
            .split(delimiter as char)
            .map(|f| f.trim().to_string())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_hex_sha256() {
        let a = user_hash("s1", 42);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, user_hash("s2", 42));
        assert_ne!(a, user_hash("s1", 43));
        assert_eq!(a, user_hash("s1", 42));
        // SHA-256("abc:1"), computed independently with coreutils' sha256sum.
        assert_eq!(
            user_hash("abc", 1),
            "bfcf0b9cbe9d8208b2cddd9a01c31a9a60698a106a0e4fc1664233a15f16acec"
        );
    }

    #[test]
    fn reject_lines_give_their_user_as_ingest_reads_it() {
        assert_eq!(
            csv_fields(" u-alice ,\"SKU, 12\",x", b','),
            ["u-alice", "SKU, 12", "x"]
        );
        let names = vec!["userId".to_string(), "context.user".to_string()];
        assert_eq!(
            json_user(r#"{"userId": " u-alice ", "rating": "x"}"#, &names).as_deref(),
            Some("u-alice")
        );
        assert_eq!(
            json_user(r#"{"context": {"user": 42}}"#, &names).as_deref(),
            Some("42")
        );
        assert_eq!(json_user("u-alice,1,2", &names), None);
    }

    #[test]
    fn internal_hashes_match_no_external_id() {
        let h = internal_user_hash("s", 4_611_686_018_427_387_904);
        assert_ne!(h, external_user_hash("s", "4611686018427387904"));
        assert_eq!(h.len(), 64);
    }
}
