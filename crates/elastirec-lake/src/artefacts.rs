//! The JSON documents and pair sets a night's steps hand each other: the export, model and
//! recommendations manifests, the seen pairs of an export, and the `_LATEST` pointer serving
//! follows. Each reader says which command makes what it did not find.

use std::collections::{HashMap, HashSet};

use elastirec_core::generation::Generation;
use elastirec_core::ids::IdDictionary;
use elastirec_core::layout;
use elastirec_core::manifest::{ExportManifest, LatestPointer, ModelInfo, RecommendationsManifest};
use elastirec_core::{Lake, Night};

use crate::io::{self, PairColumns};
use crate::{Error, Result};

/// Reads a night's JSON document that an earlier step writes, or says which command makes it.
async fn read_step_output<T: serde::de::DeserializeOwned>(
    lake: &Lake,
    path: &object_store::path::Path,
    what: &'static str,
    command: &str,
    night: Night,
) -> Result<T> {
    lake.get_json(path, what).await?.ok_or_else(|| {
        Error::Missing(format!(
            "no {what} for night {night} ({} is missing): run `elastirec {command} --date \
             {night}` first",
            lake.display_path(path)
        ))
    })
}

/// Reads the training export manifest of a night, or says which command makes it.
pub async fn read_export_manifest(lake: &Lake, night: Night) -> Result<ExportManifest> {
    let path = layout::training_export_manifest(night);
    read_step_output(lake, &path, "training export", "prepare", night).await
}

/// Reads the model description of a night, or says which command makes it.
pub async fn read_model_info(lake: &Lake, night: Night) -> Result<ModelInfo> {
    read_step_output(lake, &layout::model_info(night), "model", "train", night).await
}

/// Reads the recommendations manifest of a night, or says which command makes it.
pub async fn read_recommendations_manifest(
    lake: &Lake,
    night: Night,
) -> Result<RecommendationsManifest> {
    let path = layout::recommendations_manifest(night);
    read_step_output(lake, &path, "recommendations", "recommend", night).await
}

/// Starts rewriting night `night`'s recommendations, which may be live (`_LATEST` names
/// them): the files of the manifest in place stay until the new manifest replaces it (see
/// `elastirec_core::generation`); the caller writes under [`Generation::path`] names, then the
/// manifest, then calls [`Generation::finish`].
pub async fn begin_recommendations(lake: &Lake, night: Night) -> Result<Generation> {
    let live = lake
        .get_json::<RecommendationsManifest>(
            &layout::recommendations_manifest(night),
            "recommendations",
        )
        .await?
        .map(|m| m.files)
        .unwrap_or_default();
    Ok(Generation::begin(lake, &layout::recommendations_dir(night), &live).await?)
}

/// A set of item (or user) ids, with the fast hasher of the seen-pair maps.
pub type IdSet = HashSet<i64, foldhash::fast::RandomState>;

/// Seen items by user ([`SeenPairs::by_user`]).
pub type SeenByUser = HashMap<i64, IdSet, foldhash::fast::RandomState>;

/// Everything a user has seen up to the night: training pairs plus older seen pairs, less the
/// training pairs that may be offered again (`unseen-*`: event types that do not make their
/// items seen, or are past their `repeat_after_days`).
pub struct SeenPairs {
    pub training: PairColumns,
    pub older: PairColumns,
    /// Training pairs that are not seen; empty when every event type makes its items seen.
    pub again: HashSet<(i64, i64)>,
}

impl SeenPairs {
    /// Reads the pair sets of an export.
    pub async fn read(lake: &Lake, export: &ExportManifest) -> Result<SeenPairs> {
        Ok(SeenPairs {
            training: io::read_pairs(lake, &export.files, false).await?,
            older: io::read_pairs(lake, &export.seen_files, false).await?,
            again: read_again(lake, export).await?,
        })
    }

    /// Every seen (user, item) pair.
    pub fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        let t = &self.training;
        let o = &self.older;
        let again = &self.again;
        t.user_ids
            .iter()
            .copied()
            .zip(t.item_ids.iter().copied())
            .filter(move |pair| again.is_empty() || !again.contains(pair))
            .chain(o.user_ids.iter().copied().zip(o.item_ids.iter().copied()))
    }

    /// Seen items by user (hashed with foldhash: building this map over every pair was a
    /// quarter of the recommend step at MovieLens 20M's shape with the standard SipHash).
    pub fn by_user(&self) -> SeenByUser {
        let mut out = SeenByUser::default();
        for (u, i) in self.iter() {
            out.entry(u).or_default().insert(i);
        }
        out
    }

    /// The item of every training pair (one per pair: what popularity counts).
    pub fn training_items(&self) -> impl Iterator<Item = i64> + '_ {
        self.training.item_ids.iter().copied()
    }
}

/// The training pairs of an export that may be offered again (`unseen-*.parquet`).
pub async fn read_again(lake: &Lake, export: &ExportManifest) -> Result<HashSet<(i64, i64)>> {
    let pairs = io::read_pairs(lake, &export.unseen_files, false).await?;
    Ok(pairs
        .user_ids
        .iter()
        .copied()
        .zip(pairs.item_ids.iter().copied())
        .collect())
}

/// The id dictionary of an export: external names of its string ids (empty when every id is
/// numeric or the export predates layout 3).
pub async fn read_export_ids(lake: &Lake, export: &ExportManifest) -> Result<IdDictionary> {
    io::read_id_dictionary(lake, &export.id_files).await
}

/// The night `recommendations/_LATEST` names, `None` when nothing is published yet.
pub async fn read_latest(lake: &Lake) -> Result<Option<LatestPointer>> {
    Ok(lake
        .get_json(&layout::recommendations_latest(), "latest pointer")
        .await?)
}

/// Moves `recommendations/_LATEST` to `night` unless it already names a later night (a backfill
/// of an old night must not roll serving back); the pointer records the lease epoch its writer
/// held (see `elastirec_core::fence`).
pub async fn publish_latest(lake: &Lake, night: Night, lease_epoch: Option<u64>) -> Result<bool> {
    let path = layout::recommendations_latest();
    let current = read_latest(lake).await?;
    if current.as_ref().is_some_and(|c| c.night > night) {
        return Ok(false);
    }
    let pointer = LatestPointer {
        night,
        manifest: layout::recommendations_manifest(night).to_string(),
        published_at: chrono::Utc::now(),
        lease_epoch,
    };
    lake.put_json(&path, &pointer).await?;
    Ok(true)
}
