//! Rewriting an output folder that may be live, without taking anything away from its readers.
//!
//! A dated output (`recommendations/D/`) is a manifest naming its Parquet files; readers read
//! the manifest, then the files it names. When a night is redone while its output is live
//! (`recommendations/_LATEST` names it, serving and consumers read it), deleting the old files
//! first would leave them nothing if the process died before the new ones were complete. So a
//! [`Generation`] writes the new files beside the old ones under names of their own
//! (`part-00000.TAG.parquet`), the caller writes the new manifest (one atomic put: the swap),
//! and only then are the files the new manifest does not name deleted. A kill at any point
//! leaves a manifest whose files all exist; what a killed attempt wrote is deleted by the next
//! attempt, which keeps what the manifest in place names.

use std::collections::HashSet;

use object_store::path::Path;

use crate::Result;
use crate::lake::Lake;
use crate::layout;
use crate::manifest::FileEntry;

/// One rewrite of an output folder: see the module documentation.
#[derive(Debug)]
pub struct Generation {
    dir: Path,
    /// The tag new files carry; `None` when no manifest names files in the folder (a first
    /// write keeps the plain names).
    tag: Option<String>,
}

impl Generation {
    /// Starts rewriting `dir`, whose current manifest names `live` (empty when there is none):
    /// deletes the Parquet files a killed attempt left there (any that `live` does not name),
    /// and chooses names for the new files that `live` does not use.
    pub async fn begin(lake: &Lake, dir: &Path, live: &[FileEntry]) -> Result<Generation> {
        let named: HashSet<&str> = live.iter().map(|f| f.path.as_str()).collect();
        delete_unnamed(lake, dir, &named).await?;
        let tag = (!live.is_empty()).then(|| {
            // Base 36 of the milliseconds: short, `[a-z0-9]`, ordered, new for each rewrite.
            let mut n = chrono::Utc::now().timestamp_millis().unsigned_abs();
            let mut digits = Vec::new();
            while n > 0 {
                digits.push(char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
                n /= 36;
            }
            let tag: String = digits.iter().rev().collect();
            format!("g{tag}")
        });
        // Should the clock give a tag a live file already carries, add to it.
        let tag = tag.map(|mut t| {
            while live.iter().any(|f| f.path.contains(&format!(".{t}."))) {
                t.push('x');
            }
            t
        });
        Ok(Generation {
            dir: dir.clone(),
            tag,
        })
    }

    /// The path the new generation writes for `base` (a file of the folder under its plain
    /// name, `part-00000.parquet`).
    pub fn path(&self, base: &Path) -> Path {
        match &self.tag {
            Some(tag) => layout::erased_copy(base, tag),
            None => base.clone(),
        }
    }

    /// Once the new manifest naming `kept` is written: deletes every other Parquet file of the
    /// folder (the replaced generation). Returns how many were deleted.
    pub async fn finish(self, lake: &Lake, kept: &[FileEntry]) -> Result<usize> {
        let named: HashSet<&str> = kept.iter().map(|f| f.path.as_str()).collect();
        delete_unnamed(lake, &self.dir, &named).await
    }
}

/// Deletes the Parquet files under `dir` that `named` does not hold.
async fn delete_unnamed(lake: &Lake, dir: &Path, named: &HashSet<&str>) -> Result<usize> {
    let mut deleted = 0;
    for meta in lake.list(dir).await? {
        let path = meta.location.as_ref();
        if path.ends_with(".parquet") && !named.contains(path) {
            lake.delete(&meta.location).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(path: &str) -> FileEntry {
        FileEntry {
            path: path.to_string(),
            rows: 1,
            bytes: 1,
        }
    }

    async fn files(lake: &Lake, dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = lake
            .list(dir)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.location.to_string())
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_rewrite_keeps_the_live_files_until_the_swap_then_drops_them() {
        let root = tempfile::tempdir().unwrap();
        let lake = Lake::open(root.path().to_str().unwrap(), Default::default())
            .await
            .unwrap();
        let dir = Path::from("recommendations/2024/01/03");
        let base = dir.clone().join("part-00000.parquet");
        let put = |p: Path| {
            let lake = &lake;
            async move { lake.put(&p, Bytes::from_static(b"x")).await.unwrap() }
        };
        // A first write keeps the plain names.
        let first = Generation::begin(&lake, &dir, &[]).await.unwrap();
        assert_eq!(first.path(&base), base);
        put(base.clone()).await;
        let live = vec![entry(base.as_ref())];
        first.finish(&lake, &live).await.unwrap();
        assert_eq!(files(&lake, &dir).await, vec![base.to_string()]);

        // A killed attempt's file is removed by the next attempt; the live file stays.
        let killed = Generation::begin(&lake, &dir, &live).await.unwrap();
        let stray = killed.path(&base);
        assert_ne!(stray, base);
        put(stray.clone()).await;
        drop(killed);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let again = Generation::begin(&lake, &dir, &live).await.unwrap();
        assert_eq!(files(&lake, &dir).await, vec![base.to_string()]);
        let new = again.path(&base);
        assert_ne!(new, base);
        put(new.clone()).await;
        // Both generations exist until the swap.
        assert_eq!(files(&lake, &dir).await.len(), 2);
        let deleted = again.finish(&lake, &[entry(new.as_ref())]).await.unwrap();
        assert_eq!(deleted, 1);
        assert_eq!(files(&lake, &dir).await, vec![new.to_string()]);
    }
}
