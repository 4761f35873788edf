//! Retention (`elastirec gc`): deletes dated outputs of old nights, and loaded raw files.
//!
//! Never deleted: the night `recommendations/_LATEST` names, the newest `keep_nights` nights,
//! run records, evaluations, snapshots and warehouse tables (Delta files belong to `vacuum`),
//! and raw files the load ledger does not record as loaded.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use elastirec_core::{Lake, Night, layout};

use crate::Result;

/// One dated output folder to delete.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputDir {
    pub night: Night,
    /// `export`, `model` or `recommendations`.
    pub what: &'static str,
    pub files: usize,
    pub bytes: u64,
}

/// What `gc` will delete (or, after [`apply`], deleted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcPlan {
    pub outputs: Vec<OutputDir>,
    /// Nights whose outputs are kept.
    pub kept_nights: Vec<Night>,
    /// Raw files to delete: path and size.
    pub raw_files: Vec<(String, u64)>,
    /// Old raw files kept because the ledger does not record them as loaded.
    pub raw_not_loaded: usize,
}

impl GcPlan {
    pub fn bytes(&self) -> u64 {
        self.outputs.iter().map(|o| o.bytes).sum::<u64>()
            + self.raw_files.iter().map(|(_, b)| b).sum::<u64>()
    }
}

/// Plans retention: keep the newest `keep_nights` nights with outputs (and the live one);
/// with `raw_before`, delete loaded raw files of days before it.
pub async fn plan(
    lake: &Lake,
    keep_nights: usize,
    live: Option<Night>,
    raw_before: Option<Night>,
    loaded: &HashSet<String>,
) -> Result<GcPlan> {
    // (night, what) → (files, bytes)
    let mut found: BTreeMap<(Night, &'static str), (usize, u64)> = BTreeMap::new();
    for (what, root, depth) in [
        ("export", "exports/training", 2),
        ("model", "models", 1),
        ("recommendations", "recommendations", 1),
    ] {
        for meta in lake.list(&root.into()).await? {
            if let Some(night) = layout::dated_night(&meta.location, depth) {
                let e = found.entry((night, what)).or_default();
                e.0 += 1;
                e.1 += meta.size;
            }
        }
    }
    let nights: BTreeSet<Night> = found.keys().map(|(n, _)| *n).collect();
    let mut kept: BTreeSet<Night> = nights.iter().rev().take(keep_nights).copied().collect();
    if let Some(l) = live {
        kept.insert(l);
    }
    let mut out = GcPlan {
        kept_nights: kept.iter().copied().collect(),
        ..GcPlan::default()
    };
    for ((night, what), (files, bytes)) in found {
        if !kept.contains(&night) {
            out.outputs.push(OutputDir {
                night,
                what,
                files,
                bytes,
            });
        }
    }
    if let Some(before) = raw_before {
        for meta in lake.list(&layout::raw_events_root()).await? {
            let Some(day) = layout::raw_event_file_day(&meta.location) else {
                continue;
            };
            if day >= before {
                continue;
            }
            if loaded.contains(meta.location.as_ref()) {
                out.raw_files.push((meta.location.to_string(), meta.size));
            } else {
                out.raw_not_loaded += 1;
            }
        }
    }
    Ok(out)
}

/// Deletes what `plan` lists: each output folder's marker first, then its files.
pub async fn apply(lake: &Lake, plan: &GcPlan) -> Result<()> {
    for o in &plan.outputs {
        let (marker, dir) = match o.what {
            "export" => (
                layout::training_export_manifest(o.night),
                layout::training_export_dir(o.night),
            ),
            "model" => (layout::model_info(o.night), layout::model_dir(o.night)),
            _ => (
                layout::recommendations_manifest(o.night),
                layout::recommendations_dir(o.night),
            ),
        };
        lake.clear_output(&marker, &dir).await?;
    }
    for (path, _) in &plan.raw_files {
        lake.delete(&path.as_str().into()).await?;
    }
    Ok(())
}
