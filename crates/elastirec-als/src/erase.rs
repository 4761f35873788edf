//! Erasure in the stage outputs: every night's training export, model and recommendations
//! rewritten without forgotten users (the warehouse part is `elastirec_warehouse`'s).
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
//! When the night `recommendations/_LATEST` names was rewritten, `_LATEST` is written again
//! (same night, new `published_at`): serving reloads a pointer that changed, so it drops the
//! users at its next poll.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{BooleanArray, RecordBatch};
use object_store::path::Path;
use serde::Serialize;

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

/// Rewrites every night's export, model and recommendations without the rows of `users`; new
/// file names carry `tag` (short, `[a-z0-9]`).
pub async fn erase_outputs(lake: &Lake, users: &HashSet<i64>, tag: &str) -> Result<OutputErasure> {
    let mut out = OutputErasure::default();
    for night in nights_with(lake, "exports/training", 2, "_manifest.json").await? {
        if let Some(f) = erase_export(lake, night, users, tag).await? {
            out.folders.push(f);
        }
    }
    for night in nights_with(lake, "models", 1, "model.json").await? {
        if let Some(f) = erase_model(lake, night, users).await? {
            out.folders.push(f);
        }
    }
    let latest: Option<LatestPointer> = lake
        .get_json(&layout::recommendations_latest(), "latest pointer")
        .await?;
    for night in nights_with(lake, "recommendations", 1, "_manifest.json").await? {
        let done = erase_recommendations(lake, night, users, tag).await?;
        if let Some(f) = done {
            if latest.as_ref().is_some_and(|l| l.night == night) {
                out.latest_touched = true;
            }
            out.folders.push(f);
        }
    }
    if out.latest_touched
        && let Some(mut pointer) = latest
    {
        pointer.published_at = chrono::Utc::now();
        lake.put_json(&layout::recommendations_latest(), &pointer)
            .await?;
    }
    Ok(out)
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

/// A batch without the rows of `users` (by its `user_id` column), and how many were removed.
fn without(batch: &RecordBatch, users: &HashSet<i64>, path: &str) -> Result<(RecordBatch, u64)> {
    let ids = batch
        .column_by_name(columns::USER_ID)
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| Error::BadInput {
            path: path.into(),
            reason: "no Int64 column user_id".into(),
        })?;
    let keep: BooleanArray = ids
        .iter()
        .map(|u| Some(!u.is_some_and(|u| users.contains(&u))))
        .collect();
    let removed = (keep.len() - keep.true_count()) as u64;
    if removed == 0 {
        return Ok((batch.clone(), 0));
    }
    let kept = arrow_select::filter::filter_record_batch(batch, &keep)
        .map_err(|e| Error::Internal(format!("{path}: {e}")))?;
    Ok((kept, removed))
}

/// Rewrites the listed files that hold `users`: (new entries, rows removed, files rewritten,
/// old paths to delete once the manifest names the new ones).
async fn rewrite_files(
    lake: &Lake,
    files: &[FileEntry],
    users: &HashSet<i64>,
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
            let (k, r) = without(b, users, &f.path)?;
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
    users: &HashSet<i64>,
    tag: &str,
) -> Result<Option<FolderErasure>> {
    let path = layout::training_export_manifest(night);
    let Some(mut m) = lake
        .get_json::<ExportManifest>(&path, "training export")
        .await?
    else {
        return Ok(None);
    };
    let dir = layout::training_export_dir(night);
    let named = |m: &ExportManifest| -> HashSet<String> {
        [
            &m.files,
            &m.seen_files,
            &m.item_files,
            &m.availability_files,
        ]
        .into_iter()
        .flatten()
        .map(|f| f.path.clone())
        .collect()
    };
    delete_unnamed(lake, &dir, &named(&m)).await?;
    let users_before = users_in(lake, &m.files, users).await?;
    let (files, r1, w1, mut old) = rewrite_files(lake, &m.files, users, tag).await?;
    let (seen, r2, w2, old2) = rewrite_files(lake, &m.seen_files, users, tag).await?;
    old.extend(old2);
    if r1 + r2 == 0 {
        return Ok(None);
    }
    m.rows = files.iter().map(|f| f.rows).sum();
    m.files = files;
    m.seen_rows = seen.iter().map(|f| f.rows).sum();
    m.seen_files = seen;
    m.users = m.users.saturating_sub(users_before);
    lake.put_json(&path, &m).await?;
    for p in old {
        lake.delete(&p).await?;
    }
    Ok(Some(FolderErasure {
        what: "export",
        night,
        rows_removed: r1 + r2,
        files_rewritten: w1 + w2,
    }))
}

/// How many of `users` have rows in `files`.
async fn users_in(lake: &Lake, files: &[FileEntry], users: &HashSet<i64>) -> Result<u64> {
    let mut found = HashSet::new();
    for f in files {
        for b in read_parquet(lake, &Path::from(f.path.as_str())).await? {
            if let Some(ids) = b
                .column_by_name(columns::USER_ID)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
            {
                found.extend(ids.iter().flatten().filter(|u| users.contains(u)));
            }
        }
    }
    Ok(found.len() as u64)
}

async fn erase_model(
    lake: &Lake,
    night: Night,
    users: &HashSet<i64>,
) -> Result<Option<FolderErasure>> {
    let info_path = layout::model_info(night);
    let Some(mut info) = lake.get_json::<ModelInfo>(&info_path, "model").await? else {
        return Ok(None);
    };
    let path = layout::model_user_factors(night);
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
    users: &HashSet<i64>,
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
    let (files, removed, rewritten, old) = rewrite_files(lake, &m.files, users, tag).await?;
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
