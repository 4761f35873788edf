//! The nightly flow over one lake: the [`Pipeline`], its options and progress notifications,
//! and the loop that runs a night's steps in order (and nights in date order).
//!
//! The rest lives in submodules: `step` names the steps and builds their records, `retry` runs
//! a step under its record with retries, `currency` tells whether a step's outputs are current
//! (so the step is skipped), `steps` holds each step's body (the publish gate among them),
//! `maintenance` the warehouse and retention commands outside the nightly steps, and `als` names
//! what the pipeline uses of `elastirec_als`.

mod als;
mod currency;
mod maintenance;
mod retry;
mod step;
mod steps;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use elastirec_core::manifest::{RunRecord, StepRecord, StepState};
use elastirec_core::{Config, Lake, Night};
use elastirec_warehouse::Warehouse;

use crate::ledger::RunLedger;
use crate::{Error, Result, StopFlag, cost, hooks};

pub(crate) use elastirec_core::error::chain as error_chain;
pub(crate) use step::Outcome;
pub use step::Step;
use step::new_step_record;

/// Progress notifications, for a terminal or a log.
#[derive(Debug, Clone)]
pub enum Progress {
    StepStarted {
        night: Night,
        step: Step,
        attempt: u32,
    },
    StepFinished {
        night: Night,
        /// Boxed: a record (with a Spark job's log tail) is far larger than the other variants.
        record: Box<StepRecord>,
    },
    /// A step was not run: its outputs are current (`reason` says why).
    StepSkipped {
        night: Night,
        step: Step,
        reason: String,
    },
    /// A transient failure; the step runs again after `wait`.
    StepRetry {
        night: Night,
        step: Step,
        attempt: u32,
        wait: Duration,
        error: String,
    },
    TrainIteration {
        night: Night,
        iteration: usize,
        iterations: usize,
        loss: f64,
    },
}

type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How `run` treats a night.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Publish even if the gate's checks fail.
    pub force_publish: bool,
    /// Run every step even if its outputs are current.
    pub rerun: bool,
}

/// The nightly flow over one lake with one configuration.
#[derive(Clone)]
pub struct Pipeline {
    lake: Lake,
    config: Config,
    ledger: RunLedger,
    progress: ProgressFn,
    stop: StopFlag,
    /// The lists the Spark engine's job of the train step published, for the recommend step
    /// to record (one job does both steps).
    pub(crate) spark_lists: Arc<std::sync::Mutex<Option<crate::spark_steps::SparkLists>>>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("lake", &self.lake)
            .finish()
    }
}

impl Pipeline {
    /// Opens the lake named by the configuration.
    pub async fn open(config: Config) -> Result<Pipeline> {
        let lake = Lake::open_config(&config.lake).await?;
        Ok(Pipeline::new(lake, config))
    }

    /// Opens the lake named by the configuration for a command that only reads it: a lake
    /// that does not exist is an error, not created (see [`Lake::open_existing`]).
    pub async fn open_existing(config: Config) -> Result<Pipeline> {
        let lake = Lake::open_existing(&config.lake).await?;
        Ok(Pipeline::new(lake, config))
    }

    /// A pipeline over an opened lake.
    pub fn new(lake: Lake, config: Config) -> Pipeline {
        Pipeline {
            ledger: RunLedger::new(&lake),
            lake,
            config,
            progress: Arc::new(|_| {}),
            stop: StopFlag::new(),
            spark_lists: Arc::default(),
        }
    }

    /// Sends progress notifications to `f`.
    pub fn with_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Arc::new(f);
        self
    }

    /// Stops between steps once `stop` is raised.
    pub fn with_stop(mut self, stop: StopFlag) -> Self {
        self.stop = stop;
        self
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn ledger(&self) -> &RunLedger {
        &self.ledger
    }

    pub fn stop_flag(&self) -> &StopFlag {
        &self.stop
    }

    async fn warehouse(&self) -> Result<Warehouse> {
        Ok(Warehouse::open(&self.lake).await?)
    }

    /// The steps of a night under this configuration.
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = Step::NIGHTLY.to_vec();
        if self.config.sink.target != elastirec_core::config::SinkTarget::None {
            steps.push(Step::Sink);
        }
        steps
    }

    /// `run`: the whole night, step after step. Steps whose outputs are current are skipped,
    /// so after a crash the night continues from the first step that did not finish. Stops at
    /// the first failure.
    pub async fn run(&self, night: Night) -> Result<RunRecord> {
        self.run_with(night, RunOptions::default()).await
    }

    /// [`Pipeline::run`] with options.
    pub async fn run_with(&self, night: Night, options: RunOptions) -> Result<RunRecord> {
        let mut record = self.ledger.get_or_new(night).await?;
        record.state = StepState::Running;
        record.started_at = Utc::now();
        record.ended_at = None;
        self.ledger.put(&record).await?;
        let result = self.run_steps(night, &mut record, options).await;
        // A night stopped on request is not finished, not failed: the next run continues it.
        let interrupted = matches!(&result, Err(Error::Interrupted { .. }));
        record.state = match &result {
            Ok(()) => StepState::Succeeded,
            Err(_) if interrupted => StepState::Pending,
            Err(_) => StepState::Failed,
        };
        record.ended_at = Some(Utc::now());
        record.cost = Some(cost::night_cost(&record, &self.config.cost));
        self.ledger.put(&record).await?;
        if !interrupted {
            hooks::notify(
                &self.config.hooks,
                &hooks::NightSummary::of(&record, self.lake.url().as_str()),
            )
            .await;
        }
        result.map(|()| record)
    }

    async fn run_steps(
        &self,
        night: Night,
        record: &mut RunRecord,
        options: RunOptions,
    ) -> Result<()> {
        // A [rules] predicate that cannot be evaluated fails the night before any step runs,
        // naming the key and the catalog's columns; with catalog feeds, whose columns are known
        // once they are loaded, after the ingest step (still before any list is made).
        let item_rules = &self.config.prepare.item_rules;
        let feeds = self.config.items.id_column.is_some();
        if !item_rules.is_empty() && !feeds {
            self.warehouse().await?.check_item_rules(item_rules).await?;
        }
        for step in self.steps() {
            if step == Step::Prepare && !item_rules.is_empty() && feeds {
                self.warehouse().await?.check_item_rules(item_rules).await?;
            }
            if let Some(reason) = self.stop.reason() {
                return Err(Error::Interrupted {
                    night,
                    step,
                    reason,
                });
            }
            // The lists the train step's Spark job just published are this step's work: record it.
            let from_job = step == Step::Recommend && self.spark_lists_of(night).is_some();
            let current = if from_job {
                None
            } else if options.rerun {
                // A rerun runs every step again, except one with nothing to work on.
                self.nothing_to_do(step, night).await.unwrap_or_else(|e| {
                    tracing::warn!(%night, %step, error = %error_chain(&e), "could not tell whether the step has work; running it");
                    None
                })
            } else {
                // A check that cannot read its inputs says "not current": the step itself then
                // meets the problem, with retries if it is transient.
                self.current(step, night, record, options)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(%night, %step, error = %error_chain(&e), "could not tell whether the step's outputs are current; running it");
                        None
                    })
            };
            if let Some(why) = current {
                let prev = record.step(step.name()).cloned();
                let settled = prev.as_ref().is_some_and(|s| {
                    matches!(
                        s.state,
                        StepState::Succeeded | StepState::Skipped | StepState::Held
                    )
                });
                if !settled {
                    let mut r = new_step_record(step, prev.map_or(1, |p| p.attempt));
                    r.state = StepState::Skipped;
                    r.ended_at = r.started_at;
                    r.outcome = Some(format!("skipped: {why}"));
                    self.ledger.update_step(record, r).await?;
                }
                (self.progress)(&Progress::StepSkipped {
                    night,
                    step,
                    reason: why,
                });
                continue;
            }
            match step {
                Step::Ingest => self.ingest_in(night, record).await.map(|_| ())?,
                // Only a missing or stale export gets here (see `currency::current`): replace it.
                Step::Prepare => self.prepare_in(night, record, true).await.map(|_| ())?,
                Step::Snapshot => self.snapshot_in(night, record).await?,
                Step::Train => self.train_in(night, record).await.map(|_| ())?,
                Step::Recommend => self.recommend_in(night, record).await.map(|_| ())?,
                Step::Evaluate => self.evaluate_step_in(night, record).await?,
                Step::Publish => self
                    .publish_in(night, record, options.force_publish)
                    .await
                    .map(|_| ())?,
                Step::Sink => self.sink_in(night, record).await?,
            }
        }
        Ok(())
    }

    /// Runs `nights` in date order. A failed night stops the later ones (they depend on its
    /// load) unless `keep_going`. Returns each night's outcome.
    pub async fn run_nights(
        &self,
        nights: &[Night],
        options: RunOptions,
        keep_going: bool,
    ) -> Vec<(Night, Result<RunRecord>)> {
        let mut sorted = nights.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut out = Vec::new();
        for night in sorted {
            let result = self.run_with(night, options).await;
            let stop = result.is_err() && (!keep_going || self.stop.reason().is_some());
            out.push((night, result));
            if stop {
                break;
            }
        }
        out
    }

    /// The nights `run --missing` runs on `today` (UTC): from the night after the last one that
    /// succeeded (or the first day with raw events) to the last complete UTC day.
    pub async fn missing_nights(&self, last_complete: Night) -> Result<Vec<Night>> {
        let records = self.ledger.all().await?;
        let last_ok = records
            .iter()
            .filter(|r| r.state == StepState::Succeeded)
            .map(|r| r.night)
            .max();
        let first = match last_ok {
            Some(n) => n.next(),
            None => {
                let first_raw =
                    elastirec_warehouse::first_raw_event_day(&self.lake, &self.config.events)
                        .await?;
                match first_raw {
                    Some(d) => d,
                    None => return Ok(Vec::new()),
                }
            }
        };
        if first > last_complete {
            return Ok(Vec::new());
        }
        Ok(first.through(last_complete).collect())
    }
}
