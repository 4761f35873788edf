//! The run ledger: `runs/YYYY-MM-DD.json`, one record per night, rewritten whole on each change.
//!
//! This module alone decides how run records change; a record is written with one put, so a
//! reader on another machine sees the previous state or the new one.

use chrono::Utc;

use elastirec_core::layout;
use elastirec_core::manifest::{RunRecord, StepRecord, StepState, TuningRecord};
use elastirec_core::{Lake, Night};

use crate::Result;

/// Reads and updates run records.
#[derive(Debug, Clone)]
pub struct RunLedger {
    lake: Lake,
}

impl RunLedger {
    pub fn new(lake: &Lake) -> Self {
        RunLedger { lake: lake.clone() }
    }

    /// The record of a night, if it ran.
    pub async fn get(&self, night: Night) -> Result<Option<RunRecord>> {
        Ok(self
            .lake
            .get_json(&layout::run_record(night), "run record")
            .await?)
    }

    /// Every run record, oldest night first.
    pub async fn all(&self) -> Result<Vec<RunRecord>> {
        let mut out = Vec::new();
        for meta in self.lake.list(&layout::runs_root()).await? {
            let name = meta.location.filename().unwrap_or_default();
            let Some(date) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(night) = date.parse::<Night>() else {
                continue;
            };
            if let Some(r) = self.get(night).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Writes a record.
    pub async fn put(&self, record: &RunRecord) -> Result<()> {
        self.lake
            .put_json(&layout::run_record(record.night), record)
            .await?;
        Ok(())
    }

    /// The night's record, or a new one.
    pub async fn get_or_new(&self, night: Night) -> Result<RunRecord> {
        Ok(self.get(night).await?.unwrap_or_else(|| RunRecord {
            night,
            state: StepState::Pending,
            started_at: Utc::now(),
            ended_at: None,
            steps: Vec::new(),
            publish: None,
            cost: None,
            tuning: None,
        }))
    }

    /// Keeps a tuning result in the night's record (a new, pending record if the night has not
    /// run), replacing an earlier one; steps and state are left as they are.
    pub async fn record_tuning(&self, night: Night, tuning: TuningRecord) -> Result<RunRecord> {
        let mut record = self.get_or_new(night).await?;
        record.tuning = Some(tuning);
        self.put(&record).await?;
        Ok(record)
    }

    /// Replaces (or appends) the step of the same name in a record and writes it.
    pub async fn update_step(&self, record: &mut RunRecord, step: StepRecord) -> Result<()> {
        match record.steps.iter_mut().find(|s| s.name == step.name) {
            Some(s) => *s = step,
            None => record.steps.push(step),
        }
        self.put(record).await
    }
}
