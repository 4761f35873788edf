//! The steps of a night and how they are run, skipped, retried and recorded.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use elastirec_als::evaluate::{Holdout, evaluate_night};
use elastirec_als::stage::{recommend_night_with, train_night};
use elastirec_core::config::Engine;
use elastirec_core::manifest::{
    EvaluationReport, ExportManifest, FileEntry, JobRecord, ModelInfo, PublishDecision,
    RecommendationsManifest, RunRecord, StepRecord, StepState,
};
use elastirec_core::{Config, Lake, Night, failpoint, layout};
use elastirec_lake::{
    publish_latest, read_export_manifest, read_latest, read_model_info,
    read_recommendations_manifest,
};
use elastirec_warehouse::{IngestOptions, IngestReport, PrepareOptions, PrepareSql, Warehouse};

use crate::ledger::RunLedger;
use crate::resources::Usage;
use crate::{Error, Result, StopFlag, cost, gate, hooks, retention};

/// A step of the nightly flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Ingest,
    Prepare,
    Snapshot,
    Train,
    Recommend,
    Evaluate,
    Publish,
    /// Copies a published night's lists into Redis or PostgreSQL (only with `[sink] target`).
    Sink,
}

impl Step {
    /// The steps `run` performs, in order.
    pub const NIGHTLY: [Step; 7] = [
        Step::Ingest,
        Step::Prepare,
        Step::Snapshot,
        Step::Train,
        Step::Recommend,
        Step::Evaluate,
        Step::Publish,
    ];

    /// The step's name in run records and messages.
    pub fn name(self) -> &'static str {
        match self {
            Step::Ingest => "ingest",
            Step::Prepare => "prepare",
            Step::Snapshot => "snapshot",
            Step::Train => "train",
            Step::Recommend => "recommend",
            Step::Evaluate => "evaluate",
            Step::Publish => "publish",
            Step::Sink => "sink",
        }
    }

    /// What the step reads and writes in the lake, for `--help`, docs and the dashboard.
    pub fn artefacts(self) -> (&'static str, &'static str) {
        match self {
            Step::Ingest => (
                "raw/events/YYYY/MM/DD/*.csv up to the night, raw/items/",
                "warehouse/events, items, loads, rejects",
            ),
            Step::Prepare => (
                "warehouse/events",
                "exports/training/YYYY/MM/DD/ (_manifest.json last)",
            ),
            Step::Snapshot => ("warehouse/*", "snapshots/YYYY-MM-DD.json"),
            Step::Train => (
                "exports/training/YYYY/MM/DD/",
                "models/YYYY/MM/DD/ (model.json last)",
            ),
            Step::Recommend => (
                "models/YYYY/MM/DD/, exports/training/YYYY/MM/DD/seen-*",
                "recommendations/YYYY/MM/DD/ (_manifest.json last)",
            ),
            Step::Evaluate => (
                "recommendations of night D−H, warehouse/events D−H+1..D",
                "evaluations/…/horizon-Hd.json",
            ),
            Step::Publish => (
                "recommendations/YYYY/MM/DD/_manifest.json, the live night, evaluations",
                "recommendations/_LATEST",
            ),
            Step::Sink => (
                "recommendations/YYYY/MM/DD/",
                "[sink] target: a Redis hash per user, or a PostgreSQL table",
            ),
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
        attempt: u32,
    },
    StepFinished {
        night: Night,
        /// Boxed: a record (with a Spark job's log tail) is far larger than the other variants.
        record: Box<StepRecord>,
    },
    /// A step was not run: its outputs are current (`already` says whether the record already
    /// said so).
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

/// What a finished step reports for its record.
pub(crate) struct Outcome {
    pub(crate) state: StepState,
    pub(crate) rows_in: Option<u64>,
    pub(crate) rows_out: Option<u64>,
    pub(crate) bytes_out: Option<u64>,
    pub(crate) message: String,
    /// The external job that did the work (the Spark engine's).
    pub(crate) job: Option<JobRecord>,
}

impl Outcome {
    pub(crate) fn ok(rows_in: Option<u64>, rows_out: Option<u64>, message: String) -> Outcome {
        Outcome {
            state: StepState::Succeeded,
            rows_in,
            rows_out,
            bytes_out: None,
            message,
            job: None,
        }
    }

    pub(crate) fn bytes(mut self, files: &[FileEntry]) -> Outcome {
        self.bytes_out = Some(files.iter().map(|f| f.bytes).sum());
        self
    }
}

fn new_step_record(step: Step, attempt: u32) -> StepRecord {
    StepRecord {
        name: step.name().into(),
        state: StepState::Running,
        started_at: Some(Utc::now()),
        ended_at: None,
        rows_in: None,
        rows_out: None,
        outcome: None,
        error_kind: None,
        attempt,
        bytes_out: None,
        cpu_seconds: None,
        peak_memory_bytes: None,
        job: None,
    }
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

    /// Runs one step under the run record of `night`: marks it running, retries transient
    /// failures with exponential backoff, then records it succeeded (or skipped, or held) or
    /// failed, with its CPU time and the process's peak memory.
    pub(crate) async fn recorded<T, F, Fut>(
        &self,
        night: Night,
        step: Step,
        record: &mut RunRecord,
        work: F,
        describe: impl Fn(&T) -> Outcome,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let first_attempt = record.step(step.name()).map_or(1, |s| s.attempt + 1);
        let run = &self.config.run;
        let mut attempt = first_attempt;
        let mut wait = Duration::from_millis(run.backoff_initial_ms);
        loop {
            let mut step_record = new_step_record(step, attempt);
            self.ledger.update_step(record, step_record.clone()).await?;
            (self.progress)(&Progress::StepStarted {
                night,
                step,
                attempt,
            });
            failpoint::hit(&format!("{step}.before"));
            let usage = Usage::now();
            let result = work().await;
            if result.is_ok() {
                failpoint::hit(&format!("{step}.done"));
            }
            let after = Usage::now();
            step_record.ended_at = Some(Utc::now());
            step_record.cpu_seconds = Some(after.cpu_since(&usage));
            step_record.peak_memory_bytes = Some(after.peak_rss_bytes);
            match &result {
                Ok(value) => {
                    let o = describe(value);
                    step_record.state = o.state;
                    step_record.rows_in = o.rows_in;
                    step_record.rows_out = o.rows_out;
                    step_record.bytes_out = o.bytes_out;
                    step_record.outcome = Some(o.message);
                    step_record.job = o.job;
                }
                Err(e) => {
                    step_record.state = StepState::Failed;
                    step_record.outcome = Some(error_chain(e));
                    step_record.error_kind = Some(e.kind().as_str().into());
                    step_record.job = e.job().cloned();
                }
            }
            self.ledger.update_step(record, step_record.clone()).await?;
            (self.progress)(&Progress::StepFinished {
                night,
                record: Box::new(step_record.clone()),
            });
            match result {
                Ok(value) => return Ok(value),
                Err(e)
                    if e.kind() == elastirec_core::ErrorKind::Transient
                        && attempt + 1 - first_attempt < run.max_attempts
                        && self.stop.reason().is_none() =>
                {
                    (self.progress)(&Progress::StepRetry {
                        night,
                        step,
                        attempt: attempt + 1,
                        wait,
                        error: error_chain(&e),
                    });
                    tracing::warn!(%night, %step, attempt, error = %error_chain(&e), ?wait, "transient failure; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(run.backoff_max_ms));
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::Step {
                        night,
                        step,
                        source: Box::new(e),
                    });
                }
            }
        }
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
            |r: &IngestReport| {
                Outcome::ok(
                    Some(r.rows_loaded + r.rows_rejected),
                    Some(r.rows_loaded),
                    describe_ingest(r),
                )
            },
        )
        .await
    }

    /// `ingest --reload FILE`: forgets loaded raw files so the next load takes their current
    /// content; returns the events removed per file.
    pub async fn forget_loaded(&self, paths: &[String]) -> Result<Vec<(String, u64)>> {
        let wh = self.warehouse().await?;
        let mut out = Vec::new();
        for path in paths {
            out.push((path.clone(), wh.forget_file(path).await?));
        }
        Ok(out)
    }

    /// `ingest --dry-run`: parses and validates what `ingest` would load, commits nothing and
    /// leaves the run record alone.
    pub async fn ingest_dry_run(&self, night: Night) -> Result<IngestReport> {
        let wh = self.warehouse().await?;
        let options = self.ingest_options(true);
        Ok(wh.ingest(night, &self.config.events, options).await?)
    }

    /// `prepare`: writes the night's training export; an existing one is replaced only with
    /// `overwrite`. (A nightly run replaces its own export when it is no longer current: see
    /// [`Pipeline::run_with`].)
    pub async fn prepare(&self, night: Night, overwrite: bool) -> Result<ExportManifest> {
        let mut record = self.ledger.get_or_new(night).await?;
        self.prepare_in(night, &mut record, overwrite).await
    }

    /// The queries of `prepare`: built-in, or from `[prepare] sql_dir`.
    pub fn prepare_sql(&self) -> Result<PrepareSql> {
        Ok(match &self.config.prepare.sql_dir {
            Some(dir) => PrepareSql::with_overrides(dir)?,
            None => PrepareSql::builtin(),
        })
    }

    async fn prepare_in(
        &self,
        night: Night,
        record: &mut RunRecord,
        overwrite: bool,
    ) -> Result<ExportManifest> {
        let options = PrepareOptions {
            sql: self.prepare_sql()?,
            overwrite,
        };
        self.recorded(
            night,
            Step::Prepare,
            record,
            || async {
                let wh = self.warehouse().await?;
                Ok(wh
                    .prepare_with(night, &self.config.prepare, &options)
                    .await?)
            },
            |m: &ExportManifest| {
                Outcome::ok(
                    None,
                    Some(m.rows),
                    format!(
                        "exported {} pairs of {} users and {} items ({} to {}), {} older seen \
                         pairs, events table version {}",
                        m.rows,
                        m.users,
                        m.items,
                        m.window_start,
                        m.window_end,
                        m.seen_rows,
                        m.table_versions.get("events").copied().unwrap_or(-1)
                    ),
                )
                .bytes(&[m.files.as_slice(), m.seen_files.as_slice()].concat())
            },
        )
        .await
    }

    async fn snapshot_in(&self, night: Night, record: &mut RunRecord) -> Result<()> {
        self.recorded(
            night,
            Step::Snapshot,
            record,
            || async {
                let wh = self.warehouse().await?;
                Ok(wh.snapshot(&night.to_string(), night).await?)
            },
            |s: &elastirec_core::manifest::SnapshotRecord| {
                Outcome::ok(
                    None,
                    None,
                    format!(
                        "recorded {} ({})",
                        layout::snapshot(&s.name),
                        s.table_versions
                            .iter()
                            .map(|(t, v)| format!("{t} v{v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            },
        )
        .await
        .map(|_| ())
    }

    /// `train`: fits the night's model.
    pub async fn train(&self, night: Night) -> Result<ModelInfo> {
        let mut record = self.ledger.get_or_new(night).await?;
        self.train_in(night, &mut record).await
    }

    async fn train_in(&self, night: Night, record: &mut RunRecord) -> Result<ModelInfo> {
        if self.config.model.engine == Engine::Spark {
            return self.spark_train_in(night, record).await;
        }
        let iterations = self.config.model.iterations;
        self.recorded(
            night,
            Step::Train,
            record,
            || {
                let progress = self.progress.clone();
                async move {
                    let on_iteration = move |iteration: usize, loss: f64| {
                        progress(&Progress::TrainIteration {
                            night,
                            iteration,
                            iterations,
                            loss,
                        })
                    };
                    Ok(train_night(&self.lake, night, &self.config.model, on_iteration).await?)
                }
            },
            |m: &ModelInfo| {
                Outcome::ok(
                    Some(m.interactions),
                    Some(m.users + m.items),
                    format!(
                        "{} factors for {} users and {} items in {:.1} s, final loss {:.5}",
                        m.factors,
                        m.users,
                        m.items,
                        m.train_seconds,
                        m.loss.last().copied().unwrap_or(f64::NAN)
                    ),
                )
                .bytes(&m.files)
            },
        )
        .await
    }

    /// `recommend`: writes the night's top-K lists (the publish step makes them live).
    pub async fn recommend(&self, night: Night) -> Result<RecommendationsManifest> {
        let mut record = self.ledger.get_or_new(night).await?;
        self.recommend_in(night, &mut record).await
    }

    async fn recommend_in(
        &self,
        night: Night,
        record: &mut RunRecord,
    ) -> Result<RecommendationsManifest> {
        if self.config.model.engine == Engine::Spark {
            return self.spark_recommend_in(night, record).await;
        }
        self.recorded(
            night,
            Step::Recommend,
            record,
            || async {
                let (k, rules) = (self.config.recommend.k, Some(&self.config.rules));
                Ok(recommend_night_with(&self.lake, night, k, rules).await?)
            },
            |m: &RecommendationsManifest| {
                Outcome::ok(
                    Some(m.users),
                    Some(m.rows),
                    format!(
                        "top-{} for {} users ({})",
                        m.k,
                        m.users,
                        m.users_by_source
                            .iter()
                            .map(|(s, n)| format!("{n} {s}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .bytes(&m.files)
            },
        )
        .await
    }

    /// The night the nightly evaluate step of `night` scores: the one `horizon_days` before.
    fn evaluated_night(&self, night: Night) -> Option<Night> {
        let h = u64::from(self.config.evaluate.horizon_days.max(1));
        Some(night.minus_days(h))
    }

    async fn evaluate_step_in(&self, night: Night, record: &mut RunRecord) -> Result<()> {
        let Some(target) = self.evaluated_night(night) else {
            return Ok(());
        };
        let h = self.config.evaluate.horizon_days.max(1);
        self.recorded(
            night,
            Step::Evaluate,
            record,
            || async { self.evaluate_report(target, h).await },
            |r: &EvaluationReport| {
                Outcome::ok(
                    Some(r.relevant_items),
                    Some(r.users_scored),
                    format!(
                        "night {}: NDCG@{} model {:.4}, popularity {:.4}, most popular {:.4} over \
                         {} users",
                        r.night,
                        r.k,
                        r.model.ndcg,
                        r.popularity.ndcg,
                        r.most_popular.ndcg,
                        r.users_scored
                    ),
                )
            },
        )
        .await
        .map(|_| ())
    }

    async fn evaluate_report(&self, night: Night, horizon_days: u32) -> Result<EvaluationReport> {
        let wh = self.warehouse().await?;
        let last = night.plus_days(u64::from(horizon_days.max(1)));
        let pairs = wh.event_pairs(night.next(), last).await?;
        let holdout = Holdout {
            user_ids: pairs.user_ids,
            item_ids: pairs.item_ids,
            last_day: pairs.last_day,
        };
        let k = self.config.recommend.k;
        Ok(evaluate_night(&self.lake, night, horizon_days, k, &holdout).await?)
    }

    /// `evaluate`: scores night D's stored lists against events of days D+1..D+H in the lake.
    pub async fn evaluate(&self, night: Night, horizon_days: u32) -> Result<EvaluationReport> {
        let mut record = self.ledger.get_or_new(night).await?;
        // Recorded under the evaluated night, as its own step: the nightly evaluate step of a
        // later night is recorded under that night instead.
        self.recorded(
            night,
            Step::Evaluate,
            &mut record,
            || async { self.evaluate_report(night, horizon_days).await },
            |r: &EvaluationReport| {
                Outcome::ok(
                    Some(r.relevant_items),
                    Some(r.users_scored),
                    format!(
                        "NDCG@{} {:.4} (popularity {:.4}) over {} users",
                        r.k, r.model.ndcg, r.popularity.ndcg, r.users_scored
                    ),
                )
            },
        )
        .await
    }

    /// Decides whether `night` may go live and moves `_LATEST` if so.
    async fn decide_publish(&self, night: Night, force: bool) -> Result<PublishDecision> {
        let candidate = read_recommendations_manifest(&self.lake, night).await?;
        let latest = read_latest(&self.lake).await?;
        if let Some(l) = &latest
            && l.night > night
        {
            return Ok(PublishDecision {
                published: false,
                forced: false,
                checks: Vec::new(),
                reason: None,
                latest: Some(l.night),
            });
        }
        let live = match &latest {
            Some(l) if l.night < night => read_recommendations_manifest(&self.lake, l.night)
                .await
                .ok(),
            _ => None,
        };
        let evaluation = self.newest_evaluation_before(night).await?;
        let wh = self.warehouse().await?;
        let events_on_night = wh.count_events_on(night).await?;
        let checks = gate::checks(
            &self.config.publish,
            &gate::GateInput {
                night,
                events_on_night,
                candidate: &candidate,
                live: live.as_ref(),
                evaluation: evaluation.as_ref(),
            },
        );
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        let reason = (!failed.is_empty()).then(|| failed.join("; "));
        let go = reason.is_none() || force;
        if go {
            publish_latest(&self.lake, night).await?;
        }
        let latest = read_latest(&self.lake).await?.map(|l| l.night);
        Ok(PublishDecision {
            published: go && latest == Some(night),
            forced: force && reason.is_some(),
            checks,
            reason,
            latest,
        })
    }

    async fn newest_evaluation_before(&self, night: Night) -> Result<Option<EvaluationReport>> {
        let mut best: Option<(Night, object_store::path::Path)> = None;
        for meta in self.lake.list(&"evaluations".into()).await? {
            let Some(n) = layout::dated_night(&meta.location, 1) else {
                continue;
            };
            if n < night && best.as_ref().is_none_or(|(b, _)| n > *b) {
                best = Some((n, meta.location));
            }
        }
        match best {
            Some((_, path)) => Ok(self.lake.get_json(&path, "evaluation report").await?),
            None => Ok(None),
        }
    }

    async fn publish_in(
        &self,
        night: Night,
        record: &mut RunRecord,
        force: bool,
    ) -> Result<PublishDecision> {
        let decision = self
            .recorded(
                night,
                Step::Publish,
                record,
                || async { self.decide_publish(night, force).await },
                |d: &PublishDecision| {
                    let (state, message) = match (&d.reason, d.published, d.forced) {
                        (_, true, true) => (
                            StepState::Succeeded,
                            format!(
                                "published despite failed checks (--force-publish): {}",
                                d.reason.as_deref().unwrap_or("")
                            ),
                        ),
                        (_, true, false) => (
                            StepState::Succeeded,
                            "published: recommendations/_LATEST names this night".to_string(),
                        ),
                        (Some(r), false, _) => (
                            StepState::Held,
                            format!(
                                "held, {} stays live: {r}",
                                d.latest.map_or("no night".into(), |n| n.to_string())
                            ),
                        ),
                        (None, false, _) => (
                            StepState::Succeeded,
                            format!(
                                "not moved back: the later night {} is live",
                                d.latest.map_or("?".into(), |n| n.to_string())
                            ),
                        ),
                    };
                    Outcome {
                        state,
                        rows_in: None,
                        rows_out: None,
                        bytes_out: None,
                        message,
                        job: None,
                    }
                },
            )
            .await?;
        record.publish = Some(decision.clone());
        self.ledger.put(record).await?;
        Ok(decision)
    }

    async fn sink_in(&self, night: Night, record: &mut RunRecord) -> Result<()> {
        self.recorded(
            night,
            Step::Sink,
            record,
            || async {
                Ok(elastirec_sink::copy_night(&self.lake, &self.config.sink, night).await?)
            },
            |r: &elastirec_sink::SinkReport| {
                Outcome::ok(
                    Some(r.rows),
                    Some(r.users),
                    format!(
                        "copied the lists of {} users ({} rows) to {} in {:.1} s",
                        r.users, r.rows, r.target, r.seconds
                    ),
                )
            },
        )
        .await
        .map(|_| ())
    }

    /// The steps of a night under this configuration.
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = Step::NIGHTLY.to_vec();
        if self.config.sink.target != elastirec_core::config::SinkTarget::None {
            steps.push(Step::Sink);
        }
        steps
    }

    /// `publish`: runs the gate for a night whose recommendations exist.
    pub async fn publish(&self, night: Night, force: bool) -> Result<PublishDecision> {
        let mut record = self.ledger.get_or_new(night).await?;
        self.publish_in(night, &mut record, force).await
    }

    /// Why `step` need not run for `night`, if its outputs exist and are current.
    async fn current(
        &self,
        step: Step,
        night: Night,
        record: &RunRecord,
        options: RunOptions,
    ) -> Result<Option<String>> {
        let prev = record.step(step.name());
        let done_before = prev.is_some_and(|s| {
            matches!(
                s.state,
                StepState::Succeeded | StepState::Skipped | StepState::Held
            )
        });
        Ok(match step {
            // Loading is incremental: rerunning it loads only new files, so a night whose load
            // succeeded is not loaded again (late files are taken by the next night's load).
            Step::Ingest => done_before.then(|| "loaded earlier in this night's run".into()),
            Step::Prepare => {
                let Some(m) = self
                    .lake
                    .get_json::<ExportManifest>(
                        &layout::training_export_manifest(night),
                        "training export",
                    )
                    .await?
                else {
                    return Ok(None);
                };
                let versions = self.warehouse().await?.versions().await?;
                let params = serde_json::to_value(&self.config.prepare).ok();
                let sql = self.prepare_sql()?.render(night, &self.config.prepare)?;
                // Offer rules read the export's availability windows: a new availability
                // load makes the export stale too.
                (m.table_versions.get("events") == versions.get("events")
                    && m.table_versions.get("availability") == versions.get("availability")
                    && Some(&m.params) == params.as_ref()
                    && m.sql_hash.as_deref() == Some(sql.hash.as_str()))
                .then(|| {
                    format!(
                        "the export is current (events table version {})",
                        versions.get("events").copied().unwrap_or(-1)
                    )
                })
            }
            Step::Snapshot => {
                let wh = self.warehouse().await?;
                let Some(s) = wh.snapshot_record(&night.to_string()).await? else {
                    return Ok(None);
                };
                (s.table_versions == wh.versions().await?)
                    .then(|| "the snapshot names the current table versions".into())
            }
            Step::Train => {
                let path = layout::model_info(night);
                let Some(m) = self.lake.get_json::<ModelInfo>(&path, "model").await? else {
                    return Ok(None);
                };
                let export = read_export_manifest(&self.lake, night).await?;
                let params = serde_json::to_value(&self.config.model).ok();
                (Some(&m.params) == params.as_ref() && m.created_at >= export.created_at)
                    .then(|| "the model is newer than its export, with the same parameters".into())
            }
            Step::Recommend => {
                let Some(r) = self
                    .lake
                    .get_json::<RecommendationsManifest>(
                        &layout::recommendations_manifest(night),
                        "recommendations",
                    )
                    .await?
                else {
                    return Ok(None);
                };
                let model = read_model_info(&self.lake, night).await?;
                (r.k == self.config.recommend.k && r.created_at >= model.created_at)
                    .then(|| "the lists are newer than the model, with the same k".into())
            }
            Step::Evaluate => {
                let Some(target) = self.evaluated_night(night) else {
                    return Ok(Some("no earlier night to evaluate".into()));
                };
                let h = self.config.evaluate.horizon_days.max(1);
                let Some(recs) = self
                    .lake
                    .get_json::<RecommendationsManifest>(
                        &layout::recommendations_manifest(target),
                        "recommendations",
                    )
                    .await?
                else {
                    return Ok(Some(format!(
                        "night {target} has no recommendations to evaluate"
                    )));
                };
                match self
                    .lake
                    .get_json::<EvaluationReport>(&layout::evaluation(target, h), "evaluation")
                    .await?
                {
                    Some(r)
                        if r.created_at >= recs.created_at && r.k == self.config.recommend.k =>
                    {
                        Some(format!("night {target} is evaluated already"))
                    }
                    _ => None,
                }
            }
            Step::Publish => {
                let latest = read_latest(&self.lake).await?;
                if latest.as_ref().is_some_and(|l| l.night >= night) {
                    Some(format!(
                        "recommendations/_LATEST names {}",
                        latest.map_or_else(String::new, |l| l.night.to_string())
                    ))
                } else if prev.is_some_and(|s| s.state == StepState::Held) && !options.force_publish
                {
                    Some("held earlier (use --force-publish to publish anyway)".into())
                } else {
                    None
                }
            }
            // Applications read the live night: copy a night only once it is published.
            Step::Sink => {
                let live = read_latest(&self.lake).await?.map(|l| l.night);
                if live != Some(night) {
                    Some(format!(
                        "night {night} is not the live night ({}): nothing to copy",
                        live.map_or("none".into(), |n| n.to_string())
                    ))
                } else {
                    done_before.then(|| "copied earlier in this night's run".into())
                }
            }
        })
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
        for step in self.steps() {
            if let Some(reason) = self.stop.reason() {
                return Err(Error::Interrupted {
                    night,
                    step,
                    reason,
                });
            }
            // The lists the train step's Spark job just published are this step's work: record it.
            let from_job = step == Step::Recommend && self.spark_lists_of(night).is_some();
            let current = if options.rerun || from_job {
                None
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
                // Only a missing or stale export gets here (see `skip_reason`): replace it.
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

    /// `warehouse snapshot`: records the version of every table as snapshot `name`.
    pub async fn snapshot(
        &self,
        name: &str,
        night: Night,
    ) -> Result<elastirec_core::manifest::SnapshotRecord> {
        Ok(self.warehouse().await?.snapshot(name, night).await?)
    }

    /// `warehouse snapshots`: every snapshot record.
    pub async fn snapshots(&self) -> Result<Vec<elastirec_core::manifest::SnapshotRecord>> {
        Ok(self.warehouse().await?.snapshots().await?)
    }

    /// `warehouse restore`: brings every table back to snapshot `name`.
    /// Erasure requests are not rolled back: the rows of erased users that the restored
    /// versions hold are deleted again at once.
    pub async fn restore(&self, name: &str) -> Result<Vec<elastirec_warehouse::TableRestore>> {
        let wh = self.warehouse().await?;
        let done = wh.restore(name).await?;
        let id = format!("r{:x}", Utc::now().timestamp_micros());
        let erased = wh.reapply_erasures(&id, &self.config.events).await?;
        if erased > 0 {
            tracing::warn!(
                events = erased,
                "the restored versions held events of erased users; deleted them again"
            );
        }
        Ok(done)
    }

    /// `warehouse vacuum`: keeps the newest `keep` snapshots and deletes the data files that
    /// neither they nor the current tables read.
    pub async fn vacuum(
        &self,
        keep: usize,
        dry_run: bool,
    ) -> Result<elastirec_warehouse::VacuumReport> {
        Ok(self.warehouse().await?.vacuum(keep, dry_run).await?)
    }

    /// `warehouse serve`: the tables over the PostgreSQL wire protocol, read-only, until the
    /// stop flag is raised.
    pub async fn serve_postgres(&self, host: &str, port: u16) -> Result<()> {
        let stop = self.stop.clone();
        Ok(self
            .warehouse()
            .await?
            .serve_postgres(host, port, async move { stop.raised().await })
            .await?)
    }

    /// `sql`: one read-only statement over the warehouse tables.
    pub async fn query(&self, sql: &str) -> Result<Vec<arrow_array::RecordBatch>> {
        Ok(self.warehouse().await?.query(sql).await?)
    }

    /// `gc`: deletes outputs of nights older than the newest `keep_nights` (never the live
    /// night) and, with `raw_before`, loaded raw files of earlier days.
    pub async fn gc(
        &self,
        keep_nights: usize,
        raw_before: Option<Night>,
        dry_run: bool,
    ) -> Result<retention::GcPlan> {
        let live = read_latest(&self.lake).await?.map(|l| l.night);
        let loaded = match raw_before {
            Some(_) => self.warehouse().await?.loaded_files().await?,
            None => Default::default(),
        };
        let plan = retention::plan(&self.lake, keep_nights, live, raw_before, &loaded).await?;
        if !dry_run {
            retention::apply(&self.lake, &plan).await?;
        }
        Ok(plan)
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
                let first_raw = self
                    .lake
                    .list(&layout::raw_events_root())
                    .await?
                    .iter()
                    .filter_map(|m| layout::raw_event_file_day(&m.location))
                    .min();
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
    if r.rows_erased > 0 {
        s.push_str(&format!(
            "; {} events of erased users dropped (elastirec forget)",
            r.rows_erased
        ));
    }
    if let Some(n) = r.availability_loaded {
        s.push_str(&format!("; {n} availability rows"));
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
    if let Some(u) = r.unknown_items
        && u.events > 0
    {
        s.push_str(&format!(
            "; {} events name {} items missing from warehouse/items (loaded; add them to \
             raw/items/)",
            u.events, u.items
        ));
    }
    s
}

pub(crate) use elastirec_core::error::chain as error_chain;
