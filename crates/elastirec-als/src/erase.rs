//! Erasure in the stage outputs: every night's training export, model and recommendations
//! rewritten without forgotten users (the warehouse part is `elastirec_warehouse`'s).
//!
//! Exports and models hold internal ids (`i64`); recommendation files hold the external ids
//! consumers see (Utf8; `i64` in files written before layout 3, when every id was numeric).
//! [`ErasedUsers`] names the users both ways; the external ids are also looked up in every
//! export's id dictionary (`ids-*.parquet`), so a rerun finds users whose warehouse dictionary
//! row an earlier, interrupted run already blanked. An export's `ids-*.parquet` lose the users'
//! rows too.
//!
//! Each output folder is rewritten so that a reader never sees a half-done rewrite and a kill
//! at any point leaves a consistent folder:
//!
//! - exports and recommendations (readers take files from the manifest): every file holding a
//!   forgotten user is written anew under a new name (`part-00000.TAG.parquet`), then the
//!   manifest naming the new files is written in one put, then the old files are deleted. A kill
//!   before the manifest leaves the old, complete set (plus unnamed files); a kill after it
//!   leaves old files nobody names. Each run first deletes the Parquet files its manifest does
//!   not name (leftovers of an interrupted run), so rerunning `forget` finishes the job.
//! - models (readers open `user_factors.parquet` by name): the user factor file is replaced in
//!   one put, then `model.json`. Item factors keep no per-user row; the users' influence on them
//!   goes with the next night's training, which no longer sees their events.
//!
//! Models and recommendations are rewritten before the exports, whose id dictionaries name the
//! users until then. When the night `recommendations/_LATEST` names was rewritten, `_LATEST` is
//! written again at the end (same night, new `published_at`): serving reloads a pointer that
//! changed, so it drops the users at its next poll.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, BooleanArray, RecordBatch};
use object_store::path::Path;
use serde::Serialize;

use elastirec_core::ids::{DICTIONARY_BASE, numeric_id};
use elastirec_core::manifest::{
    self, ExportManifest, FileEntry, LatestPointer, ModelInfo, RecommendationsManifest, columns,
};
use elastirec_core::{Lake, Night, layout};

use crate::{Error, Result};
use elastirec_lake::io::{read_parquet, write_parquet};

/// What the rewrite of one output folder removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FolderErasure {
    /// `export`, `model` or `recommendations`.
    pub what: &'static str,
    pub night: Night,
    pub rows_removed: u64,
    pub files_rewritten: u64,
}

/// What [`erase_outputs`] removed, folder by folder (folders without the users are left alone).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct OutputErasure {
    pub folders: Vec<FolderErasure>,
    /// Whether `recommendations/_LATEST` was written again for serving to reload.
    pub latest_touched: bool,
}

impl OutputErasure {
    /// Rows removed from outputs of kind `what`.
    pub fn rows(&self, what: &str) -> u64 {
        self.folders
            .iter()
            .filter(|f| f.what == what)
            .map(|f| f.rows_removed)
            .sum()
    }
}

/// The users an erasure removes from the outputs, by both kinds of ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErasedUsers {
    /// Internal ids (what exports and models hold, and recommendation files before layout 3).
    pub internal: HashSet<i64>,
    /// External ids, as producers sent them (what recommendation files hold); their internal
    /// ids are also looked up in the exports' id dictionaries.
    pub external: HashSet<String>,
}

impl ErasedUsers {
    /// The same users with each numeric id on both sides (a numeric external id is its own
    /// internal id, and an internal id below the dictionary's base its own external id).
    fn completed(&self) -> ErasedUsers {
        let mut out = self.clone();
        out.internal
            .extend(self.external.iter().filter_map(|e| numeric_id(e)));
        out.external.extend(
            self.internal
                .iter()
                .filter(|&&i| (0..DICTIONARY_BASE).contains(&i))
                .map(|i| i.to_string()),
        );
        out
    }

    fn is_empty(&self) -> bool {
        self.internal.is_empty() && self.external.is_empty()
    }
}

/// Rewrites every night's export, model and recommendations without the rows of `users`; new
/// file names carry `tag` (short, `[a-z0-9]`).
pub async fn erase_outputs(lake: &Lake, users: &ErasedUsers, tag: &str) -> Result<OutputErasure> {
    let mut out = OutputErasure::default();
    let mut users = users.completed();
    if users.is_empty() {
        return Ok(out);
    }
    // The internal ids the exports' dictionaries give the external ids, read before anything
    // changes (an id is never given to another user, so one found in any night holds for all).
    let mut exports: Vec<(Night, ExportManifest)> = Vec::new();
    for night in nights_with(lake, "exports/training", 2, "_manifest.json").await? {
        let path = layout::training_export_manifest(night);
        if let Some(m) = lake
            .get_json::<ExportManifest>(&path, "training export")
            .await?
        {
            let found = export_user_ids(lake, &m, &users.external).await?;
            users.internal.extend(found);
            exports.push((night, m));
        }
    }
    for night in nights_with(lake, "models", 1, "model.json").await? {
        if let Some(f) = erase_model(lake, night, &users).await? {
            out.folders.push(f);
        }
    }
    let latest: Option<LatestPointer> = lake
        .get_json(&layout::recommendations_latest(), "latest pointer")
        .await?;
    for night in nights_with(lake, "recommendations", 1, "_manifest.json").await? {
        let done = erase_recommendations(lake, night, &users, tag).await?;
        if let Some(f) = done {
            if latest.as_ref().is_some_and(|l| l.night == night) {
                out.latest_touched = true;
            }
            out.folders.push(f);
        }
    }
    for (night, m) in exports {
        if let Some(f) = erase_export(lake, night, m, &users, tag).await? {
            out.folders.push(f);
        }
    }
    // Reported as before: exports, models, recommendations, each by night.
    let order = |what: &str| {
        ["export", "model", "recommendations"]
            .iter()
            .position(|w| *w == what)
    };
    out.folders.sort_by_key(|f| (order(f.what), f.night));
    if out.latest_touched
        && let Some(mut pointer) = latest
    {
        pointer.published_at = chrono::Utc::now();
        lake.put_json(&layout::recommendations_latest(), &pointer)
            .await?;
    }
    Ok(out)
}

/// The internal ids an export's id dictionary gives the user ids of `names`.
async fn export_user_ids(
    lake: &Lake,
    export: &ExportManifest,
    names: &HashSet<String>,
) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for f in &export.id_files {
        for b in read_parquet(lake, &Path::from(f.path.as_str())).await? {
            let (kinds, ids, externals) = id_columns(&b, &f.path)?;
            for i in 0..b.num_rows() {
                if kinds.value(i) == "user"
                    && externals.is_valid(i)
                    && names.contains(externals.value(i))
                {
                    out.push(ids.value(i));
                }
            }
        }
    }
    Ok(out)
}

/// The `kind`, `id` and `external` columns of an `ids-*.parquet` batch.
fn id_columns<'a>(
    batch: &'a RecordBatch,
    path: &str,
) -> Result<(
    &'a arrow_array::StringArray,
    &'a arrow_array::Int64Array,
    &'a arrow_array::StringArray,
)> {
    let bad = |what: &str| Error::BadInput {
        path: path.into(),
        reason: format!("no {what} column of the id dictionary"),
    };
    let kinds = batch
        .column_by_name(columns::KIND)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| bad("Utf8 kind"))?;
    let ids = batch
        .column_by_name(columns::ID)
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| bad("Int64 id"))?;
    let names = batch
        .column_by_name(columns::EXTERNAL)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| bad("Utf8 external"))?;
    Ok((kinds, ids, names))
}

/// Nights with a `marker` file under `root/YYYY/MM/DD/`.
async fn nights_with(
    lake: &Lake,
    root: &str,
    root_parts: usize,
    marker: &str,
) -> Result<Vec<Night>> {
    let mut nights: Vec<Night> = lake
        .list(&Path::from(root))
        .await?
        .iter()
        .filter(|m| m.location.filename() == Some(marker))
        .filter_map(|m| layout::dated_night(&m.location, root_parts))
        .collect();
    nights.sort();
    nights.dedup();
    Ok(nights)
}

/// A batch without the rows `drop` marks, and how many were removed.
fn filtered(
    batch: &RecordBatch,
    drop: impl Iterator<Item = bool>,
    path: &str,
) -> Result<(RecordBatch, u64)> {
    let keep: BooleanArray = drop.map(|d| Some(!d)).collect();
    let removed = (keep.len() - keep.true_count()) as u64;
    if removed == 0 {
        return Ok((batch.clone(), 0));
    }
    let kept = arrow_select::filter::filter_record_batch(batch, &keep)
        .map_err(|e| Error::Internal(format!("{path}: {e}")))?;
    Ok((kept, removed))
}

/// A batch without the rows of `users` (by its `user_id` column: internal ids in an Int64
/// column, external ids in a Utf8 one), and how many were removed.
fn without(batch: &RecordBatch, users: &ErasedUsers, path: &str) -> Result<(RecordBatch, u64)> {
    let column = batch
        .column_by_name(columns::USER_ID)
        .ok_or_else(|| Error::BadInput {
            path: path.into(),
            reason: "no column user_id".into(),
        })?;
    if let Some(ids) = column.as_primitive_opt::<Int64Type>() {
        let drop = ids
            .iter()
            .map(|u| u.is_some_and(|u| users.internal.contains(&u)));
        return filtered(batch, drop, path);
    }
    if let Some(ids) = column.as_string_opt::<i32>() {
        let drop = ids
            .iter()
            .map(|u| u.is_some_and(|u| users.external.contains(u)));
        return filtered(batch, drop, path);
    }
    Err(Error::BadInput {
        path: path.into(),
        reason: format!(
            "column user_id is {}, expected Int64 or Utf8",
            column.data_type()
        ),
    })
}

/// An `ids-*.parquet` batch without the entries of `users` (kind `user`, by internal or
/// external id), and how many were removed.
fn without_ids(batch: &RecordBatch, users: &ErasedUsers, path: &str) -> Result<(RecordBatch, u64)> {
    let (kinds, ids, names) = id_columns(batch, path)?;
    let drop = (0..batch.num_rows()).map(|i| {
        kinds.value(i) == "user"
            && (users.internal.contains(&ids.value(i))
                || (names.is_valid(i) && users.external.contains(names.value(i))))
    });
    filtered(batch, drop, path)
}

/// How a rewrite filters a file's batches.
type RowFilter = fn(&RecordBatch, &ErasedUsers, &str) -> Result<(RecordBatch, u64)>;

/// Rewrites the listed files that hold `users`: (new entries, rows removed, files rewritten,
/// old paths to delete once the manifest names the new ones).
async fn rewrite_files(
    lake: &Lake,
    files: &[FileEntry],
    users: &ErasedUsers,
    filter: RowFilter,
    tag: &str,
) -> Result<(Vec<FileEntry>, u64, u64, Vec<Path>)> {
    let mut entries = Vec::with_capacity(files.len());
    let (mut removed, mut rewritten) = (0u64, 0u64);
    let mut old = Vec::new();
    for f in files {
        let path = Path::from(f.path.as_str());
        let batches = read_parquet(lake, &path).await?;
        let mut kept = Vec::with_capacity(batches.len());
        let mut here = 0u64;
        for b in &batches {
            let (k, r) = filter(b, users, &f.path)?;
            here += r;
            kept.push(k);
        }
        if here == 0 {
            entries.push(f.clone());
            continue;
        }
        let Some(schema) = kept.first().map(|b| b.schema()) else {
            entries.push(f.clone());
            continue;
        };
        let target = layout::erased_copy(&path, tag);
        entries.push(write_parquet(lake, &target, schema, &kept).await?);
        removed += here;
        rewritten += 1;
        if target != path {
            old.push(path);
        }
    }
    Ok((entries, removed, rewritten, old))
}

/// Deletes the Parquet files of `dir` that `named` does not list (an interrupted rewrite's).
async fn delete_unnamed(lake: &Lake, dir: &Path, named: &HashSet<String>) -> Result<()> {
    for meta in lake.list(dir).await? {
        let p = meta.location.to_string();
        if p.ends_with(".parquet") && !named.contains(&p) {
            lake.delete(&meta.location).await?;
        }
    }
    Ok(())
}

async fn erase_export(
    lake: &Lake,
    night: Night,
    mut m: ExportManifest,
    users: &ErasedUsers,
    tag: &str,
) -> Result<Option<FolderErasure>> {
    let path = layout::training_export_manifest(night);
    let dir = layout::training_export_dir(night);
    let named = |m: &ExportManifest| -> HashSet<String> {
        [
            &m.files,
            &m.seen_files,
            &m.unseen_files,
            &m.item_rule_files,
            &m.item_group_files,
            &m.item_attribute_files,
            &m.item_files,
            &m.availability_files,
            &m.id_files,
        ]
        .into_iter()
        .flatten()
        .map(|f| f.path.clone())
        .collect()
    };
    delete_unnamed(lake, &dir, &named(&m)).await?;
    let users_before = users_in(lake, &m.files, users).await?;
    let (files, r1, w1, mut old) = rewrite_files(lake, &m.files, users, without, tag).await?;
    let (seen, r2, w2, old2) = rewrite_files(lake, &m.seen_files, users, without, tag).await?;
    old.extend(old2);
    let (unseen, r4, w4, old4) = rewrite_files(lake, &m.unseen_files, users, without, tag).await?;
    old.extend(old4);
    let (ids, r3, w3, old3) = rewrite_files(lake, &m.id_files, users, without_ids, tag).await?;
    old.extend(old3);
    if r1 + r2 + r3 + r4 == 0 {
        return Ok(None);
    }
    m.rows = files.iter().map(|f| f.rows).sum();
    m.files = files;
    m.seen_rows = seen.iter().map(|f| f.rows).sum();
    m.seen_files = seen;
    m.unseen_files = unseen;
    m.id_files = ids;
    m.users = m.users.saturating_sub(users_before);
    lake.put_json(&path, &m).await?;
    for p in old {
        lake.delete(&p).await?;
    }
    Ok(Some(FolderErasure {
        what: "export",
        night,
        rows_removed: r1 + r2 + r3 + r4,
        files_rewritten: w1 + w2 + w3 + w4,
    }))
}

/// How many of `users` have rows in `files`.
async fn users_in(lake: &Lake, files: &[FileEntry], users: &ErasedUsers) -> Result<u64> {
    let mut found = HashSet::new();
    for f in files {
        for b in read_parquet(lake, &Path::from(f.path.as_str())).await? {
            if let Some(ids) = b
                .column_by_name(columns::USER_ID)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
            {
                found.extend(ids.iter().flatten().filter(|u| users.internal.contains(u)));
            }
        }
    }
    Ok(found.len() as u64)
}

async fn erase_model(
    lake: &Lake,
    night: Night,
    users: &ErasedUsers,
) -> Result<Option<FolderErasure>> {
    let info_path = layout::model_info(night);
    let Some(mut info) = lake.get_json::<ModelInfo>(&info_path, "model").await? else {
        return Ok(None);
    };
    let path = elastirec_lake::io::model_factor_file(&info, "user_factors");
    let Some(_) = lake.get_opt(&path).await? else {
        return Ok(None);
    };
    let batches = read_parquet(lake, &path).await?;
    let mut kept = Vec::with_capacity(batches.len());
    let mut removed = 0u64;
    for b in &batches {
        let (k, r) = without(b, users, path.as_ref())?;
        removed += r;
        kept.push(k);
    }
    if removed == 0 {
        return Ok(None);
    }
    let Some(schema) = kept.first().map(|b| b.schema()) else {
        return Ok(None);
    };
    let entry = write_parquet(lake, &path, Arc::clone(&schema), &kept).await?;
    info.users = info.users.saturating_sub(removed);
    for f in info.files.iter_mut() {
        if f.path == entry.path {
            *f = entry.clone();
        }
    }
    lake.put_json(&info_path, &info).await?;
    Ok(Some(FolderErasure {
        what: "model",
        night,
        rows_removed: removed,
        files_rewritten: 1,
    }))
}

async fn erase_recommendations(
    lake: &Lake,
    night: Night,
    users: &ErasedUsers,
    tag: &str,
) -> Result<Option<FolderErasure>> {
    let path = layout::recommendations_manifest(night);
    let Some(mut m) = lake
        .get_json::<RecommendationsManifest>(&path, "recommendations")
        .await?
    else {
        return Ok(None);
    };
    let dir = layout::recommendations_dir(night);
    let named: HashSet<String> = m.files.iter().map(|f| f.path.clone()).collect();
    delete_unnamed(lake, &dir, &named).await?;
    let (files, removed, rewritten, old) =
        rewrite_files(lake, &m.files, users, without, tag).await?;
    if removed == 0 {
        return Ok(None);
    }
    // Recount users, and users and rows by source, from what is left.
    let lists = elastirec_lake::io::read_recommendations(lake, &files).await?;
    let mut users_by_source: BTreeMap<String, u64> = BTreeMap::new();
    let mut rows_by_source: BTreeMap<String, u64> = BTreeMap::new();
    for list in lists.values() {
        let source = if list.iter().any(|r| r.3 == manifest::sources::ALS) {
            manifest::sources::ALS.to_string()
        } else {
            list.first()
                .map_or(manifest::sources::POPULAR.to_string(), |r| r.3.clone())
        };
        *users_by_source.entry(source).or_default() += 1;
        for r in list {
            *rows_by_source.entry(r.3.clone()).or_default() += 1;
        }
    }
    m.rows = files.iter().map(|f| f.rows).sum();
    m.files = files;
    m.users = lists.len() as u64;
    m.users_by_source = users_by_source;
    m.rows_by_source = rows_by_source;
    lake.put_json(&path, &m).await?;
    for p in old {
        lake.delete(&p).await?;
    }
    Ok(Some(FolderErasure {
        what: "recommendations",
        night,
        rows_removed: removed,
        files_rewritten: rewritten,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array, StringArray};

    fn users(internal: &[i64], external: &[&str]) -> ErasedUsers {
        ErasedUsers {
            internal: internal.iter().copied().collect(),
            external: external.iter().map(|s| s.to_string()).collect(),
        }
        .completed()
    }

    fn batch(user_id: ArrayRef) -> RecordBatch {
        RecordBatch::try_from_iter([("user_id", user_id)]).unwrap()
    }

    #[test]
    fn int64_columns_go_by_internal_id_and_utf8_columns_by_external_id() {
        let alice = DICTIONARY_BASE + 3;
        let who = users(&[alice], &["u-alice", "42"]);
        let ints = batch(Arc::new(Int64Array::from(vec![alice, 42, 7, alice])));
        let (kept, removed) = without(&ints, &who, "x").unwrap();
        assert_eq!(removed, 3);
        assert_eq!(kept.num_rows(), 1);
        let names = batch(Arc::new(StringArray::from(vec![
            "u-alice", "42", "042", "u-alice2",
        ])));
        let (kept, removed) = without(&names, &who, "x").unwrap();
        assert_eq!(removed, 2);
        let left = kept.column(0).as_string::<i32>();
        assert_eq!(
            left.iter().flatten().collect::<Vec<_>>(),
            ["042", "u-alice2"]
        );
        // Numeric internal ids reach Utf8 columns as their digits.
        let (_, removed) = without(&names, &users(&[42], &[]), "x").unwrap();
        assert_eq!(removed, 1);
    }

    #[test]
    fn id_dictionary_files_lose_the_users_entries_only() {
        let alice = DICTIONARY_BASE + 3;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["user", "user", "item", "user"])),
            Arc::new(Int64Array::from(vec![
                alice,
                DICTIONARY_BASE + 4,
                alice,
                DICTIONARY_BASE + 5,
            ])),
            Arc::new(StringArray::from(vec![
                "u-alice", "u-bob", "sku-1", "u-carol",
            ])),
        ];
        let b = RecordBatch::try_new(manifest::ids_schema(), columns).unwrap();
        // By internal id (alice), or by name (carol, whose id the caller did not know).
        let (kept, removed) = without_ids(&b, &users(&[alice], &["u-carol"]), "x").unwrap();
        assert_eq!(removed, 2);
        let names = kept.column(2).as_string::<i32>();
        assert_eq!(
            names.iter().flatten().collect::<Vec<_>>(),
            ["u-bob", "sku-1"]
        );
    }
}
