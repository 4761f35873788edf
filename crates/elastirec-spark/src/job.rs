//! Submitting the job: the command line, the process (with a timeout), its log, and whose fault
//! a failure is.
//!
//! The command is `[spark] submit` split on whitespace, then `--conf KEY=VALUE` for each entry of
//! `[spark] conf`, then `[spark] args`, then the program file (written into a temporary folder)
//! and one JSON argument, the [`JobSpec`]. Standard output and error go to one log file in the
//! same folder; its last `[spark] log_tail_lines` lines go into the run record.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path as FsPath, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use elastirec_core::config::SparkConfig;
use elastirec_core::manifest::JobRecord;
use elastirec_core::{ErrorKind, Night};

use crate::{Error, JOB_FILE_NAME, JOB_PROGRAM, Result};

/// The job's one argument: what to read, where to write, and the model settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub night: Night,
    /// Training pairs (`part-*` of the export), as Spark names them.
    pub training: Vec<String>,
    /// Older seen pairs (`seen-*`).
    pub seen: Vec<String>,
    /// The staging folder the job writes.
    pub output: String,
    pub factors: usize,
    pub iterations: usize,
    pub regularization: f32,
    pub alpha: f32,
    pub seed: u64,
    /// Implicit feedback (`implicitPrefs`): confidence 1 + alpha·value; false for
    /// `[model] feedback = "explicit"` (MLlib's ALS-WR, ranked by predicted rating).
    pub implicit: bool,
    /// Items per user the job writes: `[recommend] k`, or more candidates when elastirec
    /// applies offer rules to them before publishing.
    pub k: usize,
    pub output_files: usize,
}

/// The job's own account of its work (`staging/spark/D/report/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    pub spark_version: String,
    pub interactions: u64,
    pub users: u64,
    pub items: u64,
    pub factors: usize,
    /// Seconds from the job's start to its factors (reading, id maps and ALS).
    pub train_seconds: f64,
    /// Seconds from the job's start to its end.
    pub seconds: f64,
    /// Items scored per user before seen items were removed.
    pub candidates_per_user: u64,
}

/// A finished submission.
#[derive(Debug, Clone)]
pub struct JobRun {
    pub record: JobRecord,
}

impl JobRun {
    /// Whether the process exited with status 0.
    pub fn succeeded(&self) -> bool {
        self.record.exit_status == Some(0) && !self.record.timed_out
    }

    /// The exit, in words.
    pub fn status(&self) -> String {
        let r = &self.record;
        match (r.timed_out, r.exit_status, r.signal) {
            (true, _, _) => format!("killed after {:.0} s, past its timeout", r.seconds),
            (_, Some(code), _) => format!("exit status {code} after {:.1} s", r.seconds),
            (_, None, Some(sig)) => format!("ended by signal {sig} after {:.1} s", r.seconds),
            (_, None, None) => format!("ended without a status after {:.1} s", r.seconds),
        }
    }
}

/// The program and its arguments.
pub fn command_line(
    spark: &SparkConfig,
    program_file: &FsPath,
    spec: &str,
) -> Result<(String, Vec<String>)> {
    let mut words = spark.submit.split_whitespace();
    let program = words
        .next()
        .ok_or_else(|| Error::Config("[spark] submit is empty".into()))?
        .to_string();
    let mut args: Vec<String> = words.map(String::from).collect();
    for (key, value) in &spark.conf {
        args.push("--conf".into());
        args.push(format!("{key}={value}"));
    }
    args.extend(spark.args.iter().cloned());
    args.push(program_file.display().to_string());
    args.push(spec.to_string());
    Ok((program, args))
}

/// `spark-submit` from `PATH`, else from pip's `pyspark` package (whose `bin/` is not always on
/// `PATH`); any other program as it is named.
pub fn resolve_program(program: &str) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(program);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    if program == "spark-submit" {
        let found = Command::new("python3")
            .args([
                "-c",
                "import os, pyspark; print(os.path.dirname(pyspark.__file__))",
            ])
            .stderr(Stdio::null())
            .output();
        if let Ok(out) = found
            && out.status.success()
        {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let candidate = FsPath::new(&dir).join("bin").join(program);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(program)
}

/// Writes the program out, runs the submit command until it exits or times out, and keeps the
/// tail of its log.
pub async fn submit(spark: &SparkConfig, spec: &JobSpec) -> Result<JobRun> {
    let spec_json = serde_json::to_string(spec)
        .map_err(|e| Error::Config(format!("the job spec cannot be written: {e}")))?;
    let spark = spark.clone();
    tokio::task::spawn_blocking(move || run_blocking(&spark, &spec_json))
        .await
        .map_err(|e| Error::Io {
            what: "the spark job's waiting thread".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A private temporary folder for one submission (program file and log), deleted on drop.
struct SubmitDir(PathBuf);

impl SubmitDir {
    fn new() -> Result<SubmitDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("elastirec-spark-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).map_err(io_err(format!(
            "cannot make a temporary folder {} for the spark job",
            path.display()
        )))?;
        Ok(SubmitDir(path))
    }

    fn path(&self) -> &FsPath {
        &self.0
    }
}

impl Drop for SubmitDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_blocking(spark: &SparkConfig, spec_json: &str) -> Result<JobRun> {
    let dir = SubmitDir::new()?;
    let program_file = dir.path().join(JOB_FILE_NAME);
    std::fs::write(&program_file, JOB_PROGRAM).map_err(io_err(format!(
        "cannot write the job program {}",
        program_file.display()
    )))?;
    let log_path = dir.path().join("spark.log");
    let log = std::fs::File::create(&log_path)
        .map_err(io_err(format!("cannot create {}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(io_err(format!("cannot open {}", log_path.display())))?;
    let (program, args) = command_line(spark, &program_file, spec_json)?;
    let shown = shown_command(&program, &args, spec_json);
    let resolved = resolve_program(&program);
    tracing::info!(command = %shown, "submitting the spark job");
    let started = Instant::now();
    let mut child = Command::new(&resolved)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        // Its own process group, so a timeout ends the JVM and its Python workers together.
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn {
            program: resolved.display().to_string(),
            source,
        })?;
    let timeout = Duration::from_secs(spark.timeout_seconds);
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(io_err("waiting for the spark job")(e)),
        }
        if started.elapsed() >= timeout {
            timed_out = true;
            kill_group(child.id());
            break child
                .wait()
                .map_err(io_err("waiting for the killed spark job"))?;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let seconds = started.elapsed().as_secs_f64();
    let log_tail = tail(&log_path, spark.log_tail_lines)?;
    Ok(JobRun {
        record: JobRecord {
            engine: "spark".into(),
            command: shown,
            exit_status: status.code(),
            signal: status.signal(),
            timed_out,
            seconds,
            log_tail,
        },
    })
}

fn kill_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals the process group the child leads
    // (`process_group(0)` made its pid the group id); it touches no memory.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

/// The command line for records and logs: the JSON argument shortened to its night.
fn shown_command(program: &str, args: &[String], spec_json: &str) -> String {
    let mut words = vec![program.to_string()];
    for a in args {
        if a == spec_json {
            words.push("'<job spec JSON>'".into());
        } else if a.contains(char::is_whitespace) {
            words.push(format!("'{a}'"));
        } else {
            words.push(a.clone());
        }
    }
    words.join(" ")
}

/// The last `lines` lines of the log (at most 16 KiB of it).
pub fn tail(path: &FsPath, lines: usize) -> Result<String> {
    const MAX: u64 = 16 * 1024;
    let mut file =
        std::fs::File::open(path).map_err(io_err(format!("cannot open {}", path.display())))?;
    let len = file
        .metadata()
        .map_err(io_err(format!("cannot read {}", path.display())))?
        .len();
    file.seek(SeekFrom::Start(len.saturating_sub(MAX)))
        .map_err(io_err(format!("cannot read {}", path.display())))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(io_err(format!("cannot read {}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

/// The marker line the program prints last when it fails.
const MARKER: &str = "ELASTIREC_JOB_ERROR kind=";

/// Whose fault a failed job is, and the message that says why.
///
/// In order: the program's own last line (`ELASTIREC_JOB_ERROR kind=…`, from the Python
/// exception it caught); a timeout or a signal (preemption, the OOM killer, a lost node) is
/// transient; then known messages of spark-submit and the JVM: a missing Java, a bad option or
/// master URL is invalid input, a refused or reset connection transient; anything else internal,
/// with the log's last line.
pub fn classify(run: &JobRun, spark: &SparkConfig) -> (ErrorKind, String) {
    let r = &run.record;
    let log = &r.log_tail;
    if let Some(line) = log.lines().rev().find_map(|l| {
        l.find(MARKER)
            .map(|at| &l[at + MARKER.len()..])
            .map(str::trim)
    }) {
        let (kind, message) = line.split_once(' ').unwrap_or((line, ""));
        let kind = match kind {
            "invalid_input" => ErrorKind::InvalidInput,
            "not_found" => ErrorKind::NotFound,
            "transient" => ErrorKind::Transient,
            _ => ErrorKind::Internal,
        };
        return (kind, message.to_string());
    }
    if r.timed_out {
        return (
            ErrorKind::Transient,
            format!(
                "it ran past [spark] timeout_seconds = {}; raise it if the job needs longer",
                spark.timeout_seconds
            ),
        );
    }
    if let Some(sig) = r.signal {
        return (
            ErrorKind::Transient,
            format!(
                "it was ended by signal {sig} (killed from outside: preemption, out of memory)"
            ),
        );
    }
    const INVALID: [(&str, &str); 6] = [
        (
            "JAVA_HOME is not set",
            "Java is missing: install Java 17 or set JAVA_HOME",
        ),
        (
            "java: not found",
            "Java is missing: install Java 17 or set JAVA_HOME",
        ),
        (
            "Unrecognized option",
            "spark-submit rejected an option of [spark] submit or args",
        ),
        (
            "Usage: spark-submit",
            "spark-submit rejected its arguments: check [spark] submit, conf and args",
        ),
        (
            "Could not parse Master URL",
            "spark-submit rejected the --master of [spark] submit",
        ),
        (
            "Master must either be",
            "spark-submit rejected the --master of [spark] submit",
        ),
    ];
    for (needle, why) in INVALID {
        if log.contains(needle) {
            return (ErrorKind::InvalidInput, why.to_string());
        }
    }
    const TRANSIENT: [&str; 4] = [
        "Connection refused",
        "Connection reset",
        "ExecutorLostFailure",
        "FetchFailedException",
    ];
    let last = cause_line(log);
    if TRANSIENT.iter().any(|t| log.contains(t)) {
        return (ErrorKind::Transient, last);
    }
    (ErrorKind::Internal, last)
}

/// The line of the log that says what went wrong: the last line naming an exception or error
/// that is not a stack frame (a JVM stack trace ends with frames, not with its cause), else the
/// last non-empty line.
fn cause_line(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let is_frame = |l: &str| l.starts_with("at ") || l.starts_with("... ");
    lines
        .iter()
        .rev()
        .find(|l| !is_frame(l) && (l.contains("Exception") || l.contains("Error")))
        .or_else(|| lines.last())
        .map_or_else(|| "no output".to_string(), |l| l.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(exit: Option<i32>, signal: Option<i32>, timed_out: bool, log: &str) -> JobRun {
        JobRun {
            record: JobRecord {
                engine: "spark".into(),
                command: "spark-submit".into(),
                exit_status: exit,
                signal,
                timed_out,
                seconds: 1.0,
                log_tail: log.into(),
            },
        }
    }

    #[test]
    fn the_command_line_puts_conf_args_program_and_spec_in_order() {
        let mut spark = SparkConfig::default();
        spark
            .conf
            .insert("spark.sql.shuffle.partitions".into(), "4".into());
        spark.args = vec!["--name".into(), "night job".into()];
        let (program, args) = command_line(&spark, FsPath::new("/t/job.py"), "{}").unwrap();
        assert_eq!(program, "spark-submit");
        assert_eq!(
            args,
            [
                "--master",
                "local[2]",
                "--conf",
                "spark.sql.shuffle.partitions=4",
                "--name",
                "night job",
                "/t/job.py",
                "{}"
            ]
        );
        assert_eq!(
            shown_command(&program, &args, "{}"),
            "spark-submit --master local[2] --conf spark.sql.shuffle.partitions=4 --name \
             'night job' /t/job.py '<job spec JSON>'"
        );
    }

    #[test]
    fn failures_are_classified_by_marker_then_exit_then_log() {
        let spark = SparkConfig::default();
        let (k, m) = classify(
            &run(
                Some(1),
                None,
                false,
                "Traceback …\nELASTIREC_JOB_ERROR kind=not_found AnalysisException: [PATH_NOT_FOUND] x",
            ),
            &spark,
        );
        assert_eq!(k, ErrorKind::NotFound);
        assert!(m.starts_with("AnalysisException"), "{m}");
        assert_eq!(
            classify(&run(None, Some(9), true, "…"), &spark).0,
            ErrorKind::Transient
        );
        assert_eq!(
            classify(&run(None, Some(9), false, "…"), &spark).0,
            ErrorKind::Transient
        );
        assert_eq!(
            classify(&run(Some(1), None, false, "JAVA_HOME is not set"), &spark).0,
            ErrorKind::InvalidInput
        );
        assert_eq!(
            classify(
                &run(
                    Some(1),
                    None,
                    false,
                    "java.net.ConnectException: Connection refused"
                ),
                &spark
            )
            .0,
            ErrorKind::Transient
        );
        let (k, m) = classify(&run(Some(1), None, false, "a\nlast words\n\n"), &spark);
        assert_eq!((k, m.as_str()), (ErrorKind::Internal, "last words"));
        // A JVM stack trace: the message names the error, not its last frame.
        let trace = "INFO starting\nException in thread \"main\" java.lang.StackOverflowError\n\tat java.io.ObjectInputStream.readObject0(ObjectInputStream.java:1733)\n\tat java.io.ObjectInputStream.readObject(ObjectInputStream.java:509)\n";
        let (k, m) = classify(&run(Some(50), None, false, trace), &spark);
        assert_eq!(
            (k, m.as_str()),
            (
                ErrorKind::Internal,
                "Exception in thread \"main\" java.lang.StackOverflowError"
            )
        );
    }

    #[test]
    fn a_job_past_its_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("slow.sh");
        // A stand-in submit command: prints, starts a child, and sleeps past the timeout.
        std::fs::write(&script, "#!/bin/sh\necho started\nsleep 30 &\nsleep 30\n").unwrap();
        let mut spark = SparkConfig {
            submit: format!("sh {}", script.display()),
            timeout_seconds: 1,
            ..SparkConfig::default()
        };
        let started = Instant::now();
        let ran = run_blocking(&spark, "{}").unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(ran.record.timed_out && !ran.succeeded(), "{:?}", ran.record);
        assert_eq!(ran.record.log_tail, "started");
        assert_eq!(classify(&ran, &spark).0, ErrorKind::Transient);
        // A command that does not exist is the configuration's fault.
        spark.submit = "/nonexistent/spark-submit".into();
        let e = run_blocking(&spark, "{}").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("/nonexistent/spark-submit"), "{e}");
    }
}
