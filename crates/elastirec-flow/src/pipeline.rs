//! The steps of a night and how they are run and recorded.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use chrono::Utc;

use elastirec_als::evaluate::{Holdout, evaluate_night};
use elastirec_als::stage::{recommend_night, train_night};
use elastirec_core::manifest::{
    EvaluationReport, ExportManifest, ModelInfo, RecommendationsManifest, RunRecord, StepRecord,
    StepState,
};
use elastirec_core::{Config, Lake, Night};
use elastirec_warehouse::{IngestOptions, IngestReport, Warehouse};

use crate::ledger::RunLedger;
use crate::{Error, Result};

/// A step of the nightly flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Ingest,
    Prepare,
    Train,
    Recommend,
    Evaluate,
}

impl Step {
    /// The steps `run` performs, in order.
    pub const NIGHTLY: [Step; 4] = [Step::Ingest, Step::Prepare, Step::Train, Step::Recommend];

    /// The step's name in run records and messages.
    pub fn name(self) -> &'static str {
        match self {
            Step::Ingest => "ingest",
            Step::Prepare => "prepare",
            Step::Train => "train",
            Step::Recommend => "recommend",
            Step::Evaluate => "evaluate",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Progress notifications, for a terminal or a log.
#[derive(Debug, Clone)]
pub enum Progress {
    StepStarted {
        night: Night,
        step: Step,
    },
    StepFinished {
        night: Night,
        record: StepRecord,
    },
    TrainIteration {
        night: Night,
        iteration: usize,
        iterations: usize,
        loss: f64,
    },
}

type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// The nightly flow over one lake with one configuration.
#[derive(Clone)]
pub struct Pipeline {
    lake: Lake,
    config: Config,
    ledger: RunLedger,
    progress: ProgressFn,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("lake", &self.lake)
            .finish()
    }
}

/// What a finished step reports for its record.
struct Outcome {
    rows_in: Option<u64>,
    rows_out: Option<u64>,
    message: String,
}

impl Pipeline {
    /// Opens the lake named by the configuration.
    pub async fn open(config: Config) -> Result<Pipeline> {
        let lake = Lake::open_config(&config.lake).await?;
        Ok(Pipeline::new(lake, config))
    }

    /// A pipeline over an opened lake.
    pub fn new(lake: Lake, config: Config) -> Pipeline {
        Pipeline {
            ledger: RunLedger::new(&lake),
            lake,
            config,
            progress: Arc::new(|_| {}),
        }
    }

    /// Sends progress notifications to `f`.
    pub fn with_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Arc::new(f);
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

    /// Runs one step under the run record of `night`: marks it running, then succeeded or failed.
    async fn recorded<T, F, Fut>(
        &self,
        night: Night,
        step: Step,
        record: &mut RunRecord,
        work: F,
        describe: impl FnOnce(&T) -> Outcome,
    ) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Utc::now();
        let mut step_record = StepRecord {
            name: step.name().into(),
            state: StepState::Running,
            started_at: Some(started),
            ended_at: None,
            rows_in: None,
            rows_out: None,
            outcome: None,
            error_kind: None,
            attempt: 1,
            bytes_out: None,
            cpu_seconds: None,
            peak_memory_bytes: None,
        };
        (self.progress)(&Progress::StepStarted { night, step });
        self.ledger.update_step(record, step_record.clone()).await?;
        let result = work().await;
        step_record.ended_at = Some(Utc::now());
        match &result {
            Ok(value) => {
                let o = describe(value);
                step_record.state = StepState::Succeeded;
                step_record.rows_in = o.rows_in;
                step_record.rows_out = o.rows_out;
                step_record.outcome = Some(o.message);
            }
            Err(e) => {
                step_record.state = StepState::Failed;
                step_record.outcome = Some(error_chain(e));
                step_record.error_kind = Some(e.kind().as_str().into());
            }
        }
        self.ledger.update_step(record, step_record.clone()).await?;
        (self.progress)(&Progress::StepFinished {
            night,
            record: step_record,
        });
        result.map_err(|e| Error::Step {
            night,
            step,
            source: Box::new(e),
        })
    }

    fn ingest_options(&self, dry_run: bool) -> IngestOptions {
        IngestOptions {
            max_errors: self.config.events.max_errors,
            dry_run,
        }
    }

    async fn warehouse(&self) -> Result<Warehouse> {
        Ok(Warehouse::open(&self.lake).await?)
    }

    /// `ingest`: loads the raw files of the night and of any earlier day not loaded yet.
    pub async fn ingest(&self, night: Night) -> Result<IngestReport> {
        let mut record = self.ledger.get_or_new(night).await?;
        self.ingest_in(night, &mut record).await
    }

    async fn ingest_in(&self, night: Night, record: &mut RunRecord) -> Result<IngestReport> {
        self.recorded(
            night,
            Step::Ingest,
            record,
            || async {
                let wh = self.warehouse().await?;
                let options = self.ingest_options(false);
                Ok(wh.ingest(night, &self.config.events, options).await?)
            },
            |r: &IngestReport| Outcome {
                rows_in: Some(r.rows_loaded + r.rows_rejected),
                rows_out: Some(r.rows_loaded),
                message: describe_ingest(r),
            },
        )
        .await
    }

    /// `ingest --dry-run`: parses and validates what `ingest` would load, commits nothing and
    /// leaves the run record alone.
    pub async fn ingest_dry_run(&self, night: Night) -> Result<IngestReport> {
        let wh = self.warehouse().await?;
        let options = self.ingest_options(true);
        Ok(wh.ingest(night, &self.config.events, options).await?)
    }

    /// `prepare`: writes the night's training export.
    pub async fn prepare(&self, night: Night) -> Result<ExportManifest> {
        let mut record = self.ledger.get_or_new(night).await?;
        self.prepare_in(night, &mut record).await
    }

    async fn prepare_in(&self, night: Night, record: &mut RunRecord) -> Result<ExportManifest> {
        self.recorded(
            night,
            Step::Prepare,
            record,
            || async {
                let wh = self.warehouse().await?;
                Ok(wh.prepare(night, &self.config.prepare).await?)
            },
            |m: &ExportManifest| Outcome {
                rows_in: None,
                rows_out: Some(m.rows),
                message: format!(
                    "exported {} pairs of {} users and {} items ({} to {}), {} older seen pairs, \
                     events table version {}",
                    m.rows,
                    m.users,
                    m.items,
                    m.window_start,
                    m.window_end,
                    m.seen_rows,
                    m.table_versions.get("events").copied().unwrap_or(-1)
                ),
            },
        )
        .await
    }

    /// `train`: fits the night's model.
    pub async fn train(&self, night: Night) -> Result<ModelInfo> {
        let mut record = self.ledger.get_or_new(night).await?;
        self.train_in(night, &mut record).await
    }

    async fn train_in(&self, night: Night, record: &mut RunRecord) -> Result<ModelInfo> {
        let progress = self.progress.clone();
        let iterations = self.config.model.iterations;
        self.recorded(
            night,
            Step::Train,
            record,
            || async move {
                let on_iteration = move |iteration: usize, loss: f64| {
                    progress(&Progress::TrainIteration {
                        night,
                        iteration,
                        iterations,
                        loss,
                    })
                };
                Ok(train_night(&self.lake, night, &self.config.model, on_iteration).await?)
            },
            |m: &ModelInfo| Outcome {
                rows_in: Some(m.interactions),
                rows_out: Some(m.users + m.items),
                message: format!(
                    "{} factors for {} users and {} items in {:.1} s, final loss {:.5}",
                    m.factors,
                    m.users,
                    m.items,
                    m.train_seconds,
                    m.loss.last().copied().unwrap_or(f64::NAN)
                ),
            },
        )
        .await
    }

    /// `recommend`: writes the night's top-K lists and publishes them.
    pub async fn recommend(&self, night: Night) -> Result<RecommendationsManifest> {
        let mut record = self.ledger.get_or_new(night).await?;
        self.recommend_in(night, &mut record).await
    }

    async fn recommend_in(
        &self,
        night: Night,
        record: &mut RunRecord,
    ) -> Result<RecommendationsManifest> {
        self.recorded(
            night,
            Step::Recommend,
            record,
            || async { Ok(recommend_night(&self.lake, night, self.config.recommend.k).await?) },
            |m: &RecommendationsManifest| Outcome {
                rows_in: Some(m.users),
                rows_out: Some(m.rows),
                message: format!(
                    "top-{} for {} users ({})",
                    m.k,
                    m.users,
                    m.users_by_source
                        .iter()
                        .map(|(s, n)| format!("{n} {s}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        )
        .await
    }

    /// `run`: the whole night, step after step; stops at the first failure.
    pub async fn run(&self, night: Night) -> Result<RunRecord> {
        let mut record = self.ledger.get_or_new(night).await?;
        record.state = StepState::Running;
        record.started_at = Utc::now();
        record.ended_at = None;
        self.ledger.put(&record).await?;
        let result = async {
            self.ingest_in(night, &mut record).await?;
            self.prepare_in(night, &mut record).await?;
            self.train_in(night, &mut record).await?;
            self.recommend_in(night, &mut record).await?;
            Ok::<_, Error>(())
        }
        .await;
        record.state = if result.is_ok() {
            StepState::Succeeded
        } else {
            StepState::Failed
        };
        record.ended_at = Some(Utc::now());
        self.ledger.put(&record).await?;
        result.map(|()| record)
    }

    /// `evaluate`: scores night D's stored lists against events of days D+1..D+H in the lake.
    pub async fn evaluate(&self, night: Night, horizon_days: u32) -> Result<EvaluationReport> {
        let mut record = self.ledger.get_or_new(night).await?;
        let k = self.config.recommend.k;
        self.recorded(
            night,
            Step::Evaluate,
            &mut record,
            || async {
                let wh = self.warehouse().await?;
                let last = night.plus_days(u64::from(horizon_days.max(1)));
                let pairs = wh.event_pairs(night.next(), last).await?;
                let holdout = Holdout {
                    user_ids: pairs.user_ids,
                    item_ids: pairs.item_ids,
                    last_day: pairs.last_day,
                };
                Ok(evaluate_night(&self.lake, night, horizon_days, k, &holdout).await?)
            },
            |r: &EvaluationReport| Outcome {
                rows_in: Some(r.relevant_items),
                rows_out: Some(r.users_scored),
                message: format!(
                    "NDCG@{} {:.4} (popularity {:.4}) over {} users",
                    r.k, r.model.ndcg, r.popularity.ndcg, r.users_scored
                ),
            },
        )
        .await
    }
}

fn describe_ingest(r: &IngestReport) -> String {
    let mut s = format!(
        "loaded {} rows from {} new files ({} already loaded, {} for later nights)",
        r.rows_loaded, r.files_loaded, r.files_already_loaded, r.files_for_later_nights
    );
    if r.rows_rejected > 0 {
        s.push_str(&format!(
            "; {} rows rejected into warehouse/rejects (first: {})",
            r.rows_rejected,
            r.first_rejects
                .first()
                .map(|x| x.to_string())
                .unwrap_or_default()
        ));
    }
    if r.files_recovered > 0 {
        s.push_str(&format!(
            "; recorded {} files an interrupted run had loaded",
            r.files_recovered
        ));
    }
    if !r.files_changed.is_empty() {
        s.push_str(&format!(
            "; {} loaded files changed since and were not reloaded: {}",
            r.files_changed.len(),
            r.files_changed.join(", ")
        ));
    }
    if let Some(n) = r.items_loaded {
        s.push_str(&format!("; {n} items"));
    }
    s
}

/// An error and its causes on one line, as `{:#}` prints them with anyhow.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}
