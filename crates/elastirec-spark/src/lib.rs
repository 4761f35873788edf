//! The Spark engine (`[model] engine = "spark"`): one Apache Spark job, MLlib ALS, does a night's
//! train and recommend steps, for data that outgrows one machine.
//!
//! ```text
//!  exports/training/D/  (the files its _manifest.json lists: part-* and seen-*)
//!        │  local paths, or s3a:// URLs for an S3 lake
//!        ▼
//!  spark-submit [--conf …] elastirec_spark_job.py SPEC       (program shipped in this binary,
//!        │                                                     written to a temporary folder)
//!        ▼
//!  staging/spark/D/{user_factors,item_factors,recommendations,report}/   (Spark's own writers)
//!        │  checked and converted here: exact schemas, fixed-size factor lists
//!        ▼
//!  models/D/{user,item}_factors.parquet, model.json  ──▶  recommendations/D/part-*, _manifest.json
//! ```
//!
//! The job only reads the training export and writes the staging folder; elastirec publishes
//! what it wrote with the same writers and manifests as the in-process engine (manifest last), so
//! the lake's atomicity rules stay in one place and readers (evaluate, serve, sink) cannot tell
//! which engine made a night. [`job`] runs the submit command (timeout, log tail, whose fault a
//! failure is); [`publish`] checks and publishes the staged output, applying `[rules]` (offer
//! rules) to the job's lists with the in-process engine's code when any rule is active.
//!
//! `[model] feedback` maps to MLlib's `implicitPrefs`; what MLlib cannot do (log confidence,
//! early stopping, explicit biases) is refused when the configuration is validated.

pub mod job;
pub mod publish;

use elastirec_core::config::{FeedbackKind, ModelConfig, SparkConfig};
use elastirec_core::manifest::{JobRecord, ModelInfo, RecommendationsManifest};
use elastirec_core::{ErrorKind, Lake, Night, layout};

pub use job::JobReport;
pub use publish::{CandidateRules, StagedLists};

/// The PySpark program, written out at submit time.
pub const JOB_PROGRAM: &str = include_str!("../job/elastirec_spark_job.py");

/// The file name the program is written under.
pub const JOB_FILE_NAME: &str = "elastirec_spark_job.py";

/// Errors of the Spark engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `[spark]` setting or the lake does not suit the engine.
    #[error("{0}")]
    Config(String),
    /// The submit command could not be started.
    #[error(
        "cannot run the spark submit command '{program}': {source}; install pyspark (`pip \
         install pyspark`, which brings spark-submit) or set [spark] submit to the command's path"
    )]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The job ran and failed; the run record keeps its exit status and log tail.
    #[error("the spark job of night {night} failed ({status}): {message}")]
    Job {
        night: Night,
        status: String,
        message: String,
        kind: ErrorKind,
        job: Box<JobRecord>,
    },
    /// The job said it succeeded but what it wrote is not what elastirec expects.
    #[error("{path}: {reason}")]
    BadOutput {
        path: String,
        reason: String,
        job: Option<Box<JobRecord>>,
    },
    /// Local files of the submission (program, log) could not be written or read.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Artefact(#[from] elastirec_lake::Error),
    #[error(transparent)]
    Lake(#[from] elastirec_core::Error),
}

impl Error {
    /// Whose fault this error is: a failed job's kind comes from its last log line, its exit
    /// (a signal or timeout is transient) and known messages; see [`job::classify`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::Spawn { .. } => ErrorKind::InvalidInput,
            Error::Job { kind, .. } => *kind,
            Error::BadOutput { .. } => ErrorKind::Internal,
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::Interrupted => {
                    ErrorKind::Transient
                }
                _ => ErrorKind::Internal,
            },
            Error::Artefact(e) => e.kind(),
            Error::Lake(e) => e.kind(),
        }
    }

    /// The job behind the error, when one ran.
    pub fn job(&self) -> Option<&JobRecord> {
        match self {
            Error::Job { job, .. } => Some(job.as_ref()),
            Error::BadOutput { job, .. } => job.as_deref(),
            _ => None,
        }
    }
}

/// Result of the Spark engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What one job left in the lake: the night's model and lists, and how the job ran.
#[derive(Debug, Clone)]
pub struct SparkNight {
    pub model: ModelInfo,
    pub recommendations: RecommendationsManifest,
    pub job: JobRecord,
    pub report: JobReport,
}

/// A path of the lake as Spark must name it: a local path for a local lake, `s3a://…` for S3
/// (Spark's S3 connector, which needs the hadoop-aws jars on the job's classpath).
pub fn spark_url(lake: &Lake, path: &object_store::path::Path) -> Result<String> {
    let url = lake.url_of(path);
    match url.scheme() {
        "file" => url
            .to_file_path()
            .map(|p| p.display().to_string())
            .map_err(|()| Error::Config(format!("{url} is not a local path Spark can read"))),
        "s3" | "s3a" => Ok(format!(
            "s3a://{}",
            url.as_str().split_once("://").map_or("", |(_, rest)| rest)
        )),
        other => Err(Error::Config(format!(
            "the spark engine needs a local or s3:// lake, not {other}:// ({}): set [model] \
             engine = \"als\" for this lake",
            lake.url()
        ))),
    }
}

/// Deletes a staging folder: every object, and on a local lake the folder itself (Hadoop's
/// writers leave hidden checksum files and empty folders that an object listing may not show).
async fn clear_staging(lake: &Lake, staging: &object_store::path::Path) -> Result<()> {
    lake.delete_prefix(staging).await?;
    if lake.is_local()
        && let Ok(dir) = lake.url_of(staging).to_file_path()
    {
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Io {
                    what: format!("cannot delete the staging folder {}", dir.display()),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Deletes `staging/spark/` whole: what failed or interrupted jobs left (a finished job's staging
/// folder is deleted once published). `forget` calls it, so no copy of a forgotten user's
/// factors or lists outlives the erasure; it must not run beside a job (the lake's lease keeps
/// them apart). Returns the objects deleted.
pub async fn clear_all_staging(lake: &Lake) -> Result<usize> {
    let root = layout::spark_staging_root();
    let deleted = lake.delete_prefix(&root).await?;
    clear_staging(lake, &root).await?;
    Ok(deleted)
}

/// Runs night `night`'s Spark job over its training export and publishes its model and lists.
///
/// With `rules` (the night's active `[rules]`, loaded by the caller before the job so that a rule
/// that cannot be read fails the step before Spark runs), the job writes more candidates than
/// `k` per user and the rules are applied to them before the lists are published (see
/// [`publish::publish_recommendations`]).
pub async fn train_and_recommend<R: CandidateRules>(
    lake: &Lake,
    night: Night,
    model: &ModelConfig,
    k: usize,
    spark: &SparkConfig,
    rules: Option<R>,
) -> Result<SparkNight> {
    let export = elastirec_lake::read_export_manifest(lake, night).await?;
    let per_user = rules.as_ref().map_or(k, |r| r.candidates(k));
    let staging = layout::spark_staging_dir(night);
    clear_staging(lake, &staging).await?;
    let urls = |files: &[elastirec_core::manifest::FileEntry]| {
        files
            .iter()
            .map(|f| spark_url(lake, &object_store::path::Path::from(f.path.as_str())))
            .collect::<Result<Vec<_>>>()
    };
    let spec = job::JobSpec {
        night,
        training: urls(&export.files)?,
        seen: urls(&export.seen_files)?,
        unseen: urls(&export.unseen_files)?,
        output: spark_url(lake, &staging)?,
        factors: model.factors,
        iterations: model.iterations,
        regularization: model.regularization,
        alpha: model.alpha,
        seed: model.seed,
        implicit: model.feedback == FeedbackKind::Implicit,
        k: per_user,
        output_files: spark.output_files,
    };
    let ran = job::submit(spark, &spec).await?;
    let record = ran.record.clone();
    if !ran.succeeded() {
        let (kind, message) = job::classify(&ran, spark);
        return Err(Error::Job {
            night,
            status: ran.status(),
            message,
            kind,
            job: Box::new(record),
        });
    }
    let attach = |e: Error| match e {
        Error::BadOutput { path, reason, .. } => Error::BadOutput {
            path,
            reason,
            job: Some(Box::new(record.clone())),
        },
        e => e,
    };
    let report = publish::read_report(lake, &staging).await.map_err(attach)?;
    let model_info = publish::publish_model(lake, night, &export, &staging, model, &report)
        .await
        .map_err(attach)?;
    let recommendations =
        publish::publish_recommendations(lake, night, &export, &staging, k, per_user, rules)
            .await
            .map_err(attach)?;
    clear_staging(lake, &staging).await?;
    Ok(SparkNight {
        model: model_info,
        recommendations,
        job: record,
        report,
    })
}
