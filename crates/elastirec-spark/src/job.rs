//! Submitting the job: the command line, the process (with a timeout), its log, and whose fault
//! a failure is.
//!
//! The command is `[spark] submit` split on whitespace, then `--conf KEY=VALUE` for each entry of
//! `[spark] conf` that is not a secret, then `--properties-file FILE` when some are, then
//! `[spark] args`, then the program file (written into a private temporary folder) and one JSON
//! argument, the [`JobSpec`]. Standard output and error go to one log file in the same folder;
//! its last `[spark] log_tail_lines` lines go into the run record, secret values replaced by
//! `***`.
//!
//! Secrets ([`is_secret`]) never reach the command line, which every user of the machine sees in
//! `ps`: they are written with the settings of `spark-defaults.conf` (which spark-submit stops
//! reading once given `--properties-file`) into a properties file only the owner can read, in
//! the folder that is deleted when the job ends. The submit command runs in its own process
//! group (a timeout ends the JVM and its Python workers together) and is killed if elastirec
//! dies.

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
    /// Training pairs that may be offered again (`unseen-*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unseen: Vec<String>,
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

/// Whether the Spark property `key` holds a secret: its name says secret, password, token or
/// credential, or `[spark] secret_conf` lists it.
pub fn is_secret(spark: &SparkConfig, key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    spark.secret_conf.iter().any(|k| k == key)
        || ["secret", "password", "token", "credential"]
            .iter()
            .any(|word| lower.contains(word))
}

/// The program and its arguments; secrets go in `properties_file` (which the caller writes with
/// [`properties_text`]), passed as `--properties-file` when there are any.
pub fn command_line(
    spark: &SparkConfig,
    program_file: &FsPath,
    properties_file: &FsPath,
    spec: &str,
) -> Result<(String, Vec<String>)> {
    let mut words = spark.submit.split_whitespace();
    let program = words
        .next()
        .ok_or_else(|| Error::Config("[spark] submit is empty".into()))?
        .to_string();
    let mut args: Vec<String> = words.map(String::from).collect();
    let mut secrets = false;
    for (key, value) in &spark.conf {
        if is_secret(spark, key) {
            secrets = true;
            continue;
        }
        args.push("--conf".into());
        args.push(format!("{key}={value}"));
    }
    if secrets {
        if let Some(given) = args
            .iter()
            .chain(&spark.args)
            .find(|a| a.starts_with("--properties-file"))
        {
            return Err(Error::Config(format!(
                "[spark] submit or args has {given}, but elastirec passes the secret settings of \
                 [spark] conf in its own properties file: move that file's settings into \
                 [spark] conf"
            )));
        }
        args.push("--properties-file".into());
        args.push(properties_file.display().to_string());
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
        // Only the owner may enter: the secrets' properties file is written here.
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&path)
            .map_err(io_err(format!(
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

/// The properties file for spark-submit: `defaults` (the text of `spark-defaults.conf`, which
/// spark-submit does not read once given a properties file), then the secret settings.
pub fn properties_text(spark: &SparkConfig, defaults: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(defaults) = defaults {
        out.push_str(defaults);
        if !defaults.ends_with('\n') {
            out.push('\n');
        }
    }
    for (key, value) in &spark.conf {
        if is_secret(spark, key) {
            out.push_str(&escape_property(key, true));
            out.push('=');
            out.push_str(&escape_property(value, false));
            out.push('\n');
        }
    }
    out
}

/// A key or value in Java properties syntax: backslashes, line breaks and (in keys) the
/// separators escaped, a value's leading blanks kept.
fn escape_property(text: &str, key: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '=' | ':' | ' ' | '#' | '!' if key => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == 0 => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

/// The `spark-defaults.conf` spark-submit would read: `$SPARK_CONF_DIR`, `$SPARK_HOME/conf`, or
/// the `conf` folder beside the submit program's `bin`.
fn spark_defaults(program: &FsPath) -> Option<String> {
    let candidates = [
        std::env::var_os("SPARK_CONF_DIR").map(PathBuf::from),
        std::env::var_os("SPARK_HOME").map(|h| PathBuf::from(h).join("conf")),
        program
            .parent()
            .and_then(FsPath::parent)
            .map(|home| home.join("conf")),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|dir| dir.join("spark-defaults.conf"))
        .find_map(|file| std::fs::read_to_string(file).ok())
}

/// `text` with every secret value of `[spark] conf` (4 characters or more) replaced by `***`.
pub fn redact_secrets(spark: &SparkConfig, text: &str) -> String {
    let mut out = text.to_string();
    for (key, value) in &spark.conf {
        if is_secret(spark, key) && value.len() >= 4 {
            out = out.replace(value.as_str(), "***");
        }
    }
    out
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
    let properties_file = dir.path().join("spark-secrets.properties");
    let (program, args) = command_line(spark, &program_file, &properties_file, spec_json)?;
    let resolved = resolve_program(&program);
    if args.iter().any(|a| a == "--properties-file") {
        let text = properties_text(spark, spark_defaults(&resolved).as_deref());
        write_private(&properties_file, &text)?;
    }
    let shown = shown_command(&program, &args, spec_json);
    tracing::info!(command = %shown, "submitting the spark job");
    let started = Instant::now();
    let mut command = Command::new(&resolved);
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        // Its own process group, so a timeout ends the JVM and its Python workers together.
        .process_group(0);
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2) and
    // getppid(2), which are async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // Killed when elastirec dies (even by SIGKILL), instead of running on unowned.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // elastirec died between fork and prctl: do not start.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("elastirec exited"));
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| Error::Spawn {
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
    let log_tail = redact_secrets(spark, &tail(&log_path, spark.log_tail_lines)?);
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

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &FsPath, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(format!("cannot create {}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(io_err(format!("cannot write {}", path.display())))
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
        let props = FsPath::new("/t/p.properties");
        let (program, args) = command_line(&spark, FsPath::new("/t/job.py"), props, "{}").unwrap();
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
    fn secrets_go_to_the_properties_file_not_the_command_line() {
        let mut spark = SparkConfig::default();
        for (k, v) in [
            ("spark.sql.shuffle.partitions", "4"),
            ("spark.hadoop.fs.s3a.secret.key", "wJalr/K7MDENG=x"),
            ("spark.hadoop.fs.s3a.session.token", "tok:en#1"),
            ("spark.ssl.keyPassword", "pw\\with\nbreak"),
            ("spark.hadoop.fs.s3a.access.key", "AKIAEXAMPLE"),
        ] {
            spark.conf.insert(k.into(), v.into());
        }
        spark.secret_conf = vec!["spark.hadoop.fs.s3a.access.key".into()];
        let props = FsPath::new("/t/p.properties");
        let (program, args) = command_line(&spark, FsPath::new("/t/job.py"), props, "{}").unwrap();
        let shown = shown_command(&program, &args, "{}");
        assert_eq!(
            shown,
            "spark-submit --master local[2] --conf spark.sql.shuffle.partitions=4 \
             --properties-file /t/p.properties /t/job.py '<job spec JSON>'"
        );
        for secret in ["wJalr", "tok:en", "pw", "AKIA"] {
            assert!(!args.iter().any(|a| a.contains(secret)), "{args:?}");
        }
        let text = properties_text(&spark, Some("spark.master local[4]"));
        assert_eq!(
            text,
            "spark.master local[4]\n\
             spark.hadoop.fs.s3a.access.key=AKIAEXAMPLE\n\
             spark.hadoop.fs.s3a.secret.key=wJalr/K7MDENG=x\n\
             spark.hadoop.fs.s3a.session.token=tok:en#1\n\
             spark.ssl.keyPassword=pw\\\\with\\nbreak\n"
        );
        assert_eq!(
            redact_secrets(
                &spark,
                "auth wJalr/K7MDENG=x failed for AKIAEXAMPLE; partitions 4"
            ),
            "auth *** failed for ***; partitions 4"
        );
        // The user's own properties file would replace ours: refused, saying why.
        spark.args = vec!["--properties-file".into(), "/etc/mine.conf".into()];
        let e = command_line(&spark, FsPath::new("/t/job.py"), props, "{}").unwrap_err();
        assert!(e.to_string().contains("[spark] conf"), "{e}");
        // Without secrets, no properties file of ours.
        spark.args.clear();
        spark
            .conf
            .retain(|k, _| k == "spark.sql.shuffle.partitions");
        spark.secret_conf.clear();
        let (_, args) = command_line(&spark, FsPath::new("/t/job.py"), props, "{}").unwrap();
        assert!(
            !args.iter().any(|a| a.starts_with("--properties-file")),
            "{args:?}"
        );
    }

    #[test]
    fn a_secret_reaches_the_job_in_a_private_file_and_never_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("submit.sh");
        // A stand-in submit command: shows its arguments, checks the secret arrived, and
        // prints it the way a careless log line would.
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"argv: $*\"\n\
             while [ \"$1\" != --properties-file ]; do shift; done\n\
             stat -c 'mode %a' \"$2\"\n\
             grep -q 'secret.key=hunter2-secret' \"$2\" && echo 'secret arrived'\n\
             echo 'oops: hunter2-secret'\n",
        )
        .unwrap();
        let mut spark = SparkConfig {
            submit: format!("sh {}", script.display()),
            ..SparkConfig::default()
        };
        spark.conf.insert(
            "spark.hadoop.fs.s3a.secret.key".into(),
            "hunter2-secret".into(),
        );
        let ran = run_blocking(&spark, "{}").unwrap();
        let record = serde_json::to_string(&ran.record).unwrap();
        assert!(!record.contains("hunter2"), "{record}");
        assert!(ran.record.log_tail.contains("secret arrived"), "{record}");
        assert!(ran.record.log_tail.contains("mode 600"), "{record}");
        assert!(ran.record.log_tail.contains("oops: ***"), "{record}");
        assert!(ran.record.command.contains("--properties-file"), "{record}");
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
