//! The whole night on an S3 endpoint: `moto_server` (which speaks the S3 HTTP API) on
//! 127.0.0.1, producers and consumers using standard tools (`boto3`, `pyarrow`, through
//! `s3_tool.py`), elastirec given only `--lake s3://…`, an endpoint and the usual `AWS_*`
//! credentials. `./scripts/test` installs `moto[server] boto3 pyarrow` with pip.
//!
//! Concurrent writers are not tested here: both S3 emulators available were seen to lose a
//! commit under 8–16 concurrent writers, so that is tested on the local filesystem.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use elastirec_core::config::LakeConfig;
use elastirec_core::{Lake, Night, layout};
use elastirec_warehouse::Warehouse;

use crate::harness::{bin, import_movielens_100k, movielens_100k, ok, succeeded};

const ACCESS_KEY: &str = "elastirec-test";
const SECRET_KEY: &str = "elastirec-test-secret";

/// A free local port (nothing listens on it once this returns).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `moto_server` on a free local port, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// Starts moto with extra environment (`INITIAL_NO_AUTH_ACTION_COUNT=0` turns on its
    /// credential checks).
    fn start_with(env: &[(&str, &str)]) -> Moto {
        let port = free_port();
        let args = ["-H", "127.0.0.1", "-p", &port.to_string()];
        let spawn = |program: &str, first: &[&str]| {
            Command::new(program)
                .args(first)
                .args(args)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        };
        // `moto_server` is `python3 -m moto.server`; pip may have put the script off PATH.
        let child = match spawn("moto_server", &[]) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                spawn("python3", &["-m", "moto.server"])
            }
            other => other,
        }
        .unwrap_or_else(|e| {
            panic!(
                "cannot start moto_server ({e}): run ./scripts/test, which installs \
                     moto[server], boto3 and pyarrow with pip"
            )
        });
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        moto
    }

    /// Runs `s3_tool.py ARGS…` with this endpoint and the test credentials; returns stdout.
    fn tool(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/s3_tool.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).args(args);
        aws_env(&mut cmd).env("AWS_ENDPOINT_URL", &self.endpoint);
        let out = cmd.output().expect("python3 runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "s3_tool.py {args:?} failed\nstdout (first 2000 bytes):\n{}\nstderr:\n{}",
            stdout.chars().take(2000).collect::<String>(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A config file pointing elastirec at this endpoint.
    fn config(&self, dir: &Path) -> PathBuf {
        write_config(dir, &self.endpoint)
    }

    /// `[lake]` settings for opening the lake in this process.
    fn lake_config(&self, root: &str) -> LakeConfig {
        let mut options = std::collections::HashMap::new();
        for (k, v) in [
            ("endpoint", self.endpoint.as_str()),
            ("allow_http", "true"),
            ("access_key_id", ACCESS_KEY),
            ("secret_access_key", SECRET_KEY),
            ("region", "us-east-1"),
        ] {
            options.insert(k.to_string(), v.to_string());
        }
        LakeConfig {
            root: root.into(),
            options,
            ..LakeConfig::default()
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The standard AWS variables a deployment would set, and no others from the developer's shell.
fn aws_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// `[lake] options` naming an S3-compatible endpoint over plain http.
fn write_config(dir: &Path, endpoint: &str) -> PathBuf {
    let path = dir.join(format!("elastirec-{}.toml", free_port()));
    std::fs::write(
        &path,
        format!("[lake]\noptions = {{ endpoint = \"{endpoint}\", allow_http = \"true\" }}\n"),
    )
    .unwrap();
    path
}

/// The binary with AWS credentials in its environment and the endpoint in `config`.
fn s3_bin(config: &Path, lake: &str, args: &[&str]) -> Command {
    let mut cmd = bin();
    aws_env(&mut cmd)
        .arg("--config")
        .arg(config)
        .arg("--lake")
        .arg(lake)
        .args(args);
    cmd
}

fn s3_ok(config: &Path, lake: &str, args: &[&str]) -> String {
    s3_ok_with(config, lake, args, &[])
}

/// [`s3_ok`] with more environment variables (`ELASTIREC_*` settings).
fn s3_ok_with(config: &Path, lake: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = s3_bin(config, lake, args)
        .envs(env.iter().copied())
        .output()
        .expect("the elastirec binary runs");
    succeeded(&out, format_args!("elastirec --lake {lake} {args:?}"))
}

/// Recommendations of a night as a consumer reads them (`s3_tool.py recommendations`).
fn read_back(moto: &Moto, lake: &str, night: &str) -> serde_json::Value {
    serde_json::from_str(&moto.tool(&["recommendations", lake, night])).unwrap()
}

#[test]
fn two_nights_on_s3_match_the_same_nights_on_a_local_lake() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = moto.config(dir.path());
    let local = dir.path().join("local");
    import_movielens_100k(&local);

    // A producer uploads the raw daily files with boto3; no elastirec is involved.
    moto.tool(&["create-bucket", "elastirec"]);
    let uploaded: serde_json::Value = serde_json::from_str(&moto.tool(&[
        "upload",
        local.join("raw").to_str().unwrap(),
        "elastirec",
        "nightly/raw",
    ]))
    .unwrap();
    assert!(uploaded["uploaded"].as_u64().unwrap() > 200, "{uploaded}");

    let s3_lake = "s3://elastirec/nightly";
    let nights = ["1998-03-25", "1998-03-26"];
    for night in nights {
        let started = Instant::now();
        let out = ok(&local, &["run", "--date", night]);
        assert!(out.contains(": succeeded"), "{out}");
        let local_time = started.elapsed();
        let started = Instant::now();
        let out = s3_ok(&config, s3_lake, &["run", "--date", night]);
        assert!(out.contains(": succeeded"), "{out}");
        println!(
            "night {night}: local {:.1} s, S3 (moto) {:.1} s",
            local_time.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }

    // A consumer reads both lakes with boto3 + pyarrow: same rows, same top-10 of every user.
    for night in nights {
        let from_s3 = read_back(&moto, s3_lake, night);
        let from_local = read_back(&moto, local.to_str().unwrap(), night);
        let rows = from_s3["rows"].as_u64().unwrap();
        assert_eq!(from_s3["rows"], from_s3["manifest_rows"]);
        assert_eq!(from_s3["rows"], from_local["rows"], "{night}: row counts");
        let (s3_lists, local_lists) = (&from_s3["lists"], &from_local["lists"]);
        let users = s3_lists.as_object().unwrap();
        assert!(
            users.len() > 700,
            "{night}: lists for {} users",
            users.len()
        );
        assert_eq!(rows, 10 * users.len() as u64, "{night}: a top-10 per user");
        assert_eq!(users.len(), local_lists.as_object().unwrap().len());
        for (user, list) in users {
            assert_eq!(list.as_array().unwrap().len(), 10, "user {user}");
            assert_eq!(list, &local_lists[user], "{night}: top-10 of user {user}");
        }
    }
    let latest = read_back(&moto, s3_lake, nights[1]);
    assert_eq!(latest["latest"], nights[1]);

    // Later days arrive; night 2's lists are scored the same on both lakes.
    let horizon = ["evaluate", "--date", nights[1], "--horizon-days", "30"];
    ok(&local, &["ingest", "--date", "1998-04-30"]);
    ok(&local, &horizon);
    s3_ok(&config, s3_lake, &["ingest", "--date", "1998-04-30"]);
    s3_ok(&config, s3_lake, &horizon);
    let report = layout::evaluation(nights[1].parse().unwrap(), 30);
    let read = |lake: &str| -> serde_json::Value {
        serde_json::from_str(&moto.tool(&["cat", lake, report.as_ref()])).unwrap()
    };
    let (from_s3, from_local) = (read(s3_lake), read(local.to_str().unwrap()));
    assert!(from_s3["users_scored"].as_u64().unwrap() > 50, "{from_s3}");
    for key in ["users_scored", "relevant_items", "model", "popularity"] {
        assert_eq!(from_s3[key], from_local[key], "evaluation {key}");
    }
}

/// Runs a command that must succeed with its credentials in an AWS profile (shared
/// credentials file and `AWS_PROFILE`) instead of `AWS_ACCESS_KEY_ID`.
fn profile_ok(dir: &Path, config: &Path, lake: &str, args: &[&str]) -> String {
    let credentials = dir.join("aws-credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\nregion = us-east-1\n[elastirec]\naws_access_key_id = {ACCESS_KEY}\n\
             aws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap();
    let out = s3_bin(config, lake, args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env("AWS_PROFILE", "elastirec")
        .output()
        .expect("the elastirec binary runs");
    succeeded(&out, format_args!("elastirec {args:?}"))
}

#[test]
fn each_step_command_runs_on_s3_with_profile_credentials() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = moto.config(dir.path());
    moto.tool(&["create-bucket", "steps"]);
    let lake = "s3://steps/sim";
    let out = profile_ok(
        dir.path(),
        &config,
        lake,
        &[
            "simulate",
            "--days",
            "3",
            "--users",
            "200",
            "--items",
            "100",
            "--events-per-day",
            "2000",
        ],
    );
    assert!(out.contains("simulated 6000 events over 3 days"), "{out}");
    let night = ["--date", "2024-01-03"];
    let steps: [(&str, &str); 5] = [
        ("ingest", "loaded 6000 rows from 3 files"),
        ("prepare", "exported"),
        ("train", "trained 32 factors for 200 users"),
        ("recommend", "wrote top-10 for 200 users"),
        ("publish", "night 2024-01-03: published"),
    ];
    for (step, expected) in steps {
        let out = profile_ok(
            dir.path(),
            &config,
            lake,
            &[&[step][..], &night[..]].concat(),
        );
        assert!(out.contains(expected), "{step}: {out}");
    }
    let latest: serde_json::Value =
        serde_json::from_str(&moto.tool(&["cat", lake, "recommendations/_LATEST"])).unwrap();
    assert_eq!(latest["night"], "2024-01-03");
    let lists = read_back(&moto, lake, "2024-01-03");
    assert_eq!(lists["lists"].as_object().unwrap().len(), 200);
}

/// The binary with no keys anywhere but an AWS profile in `aws_config` (`AWS_CONFIG_FILE`),
/// named by `lake.options.profile` in the elastirec config, and `extra` environment.
fn keyless(
    dir: &Path,
    endpoint: &str,
    aws_config: &str,
    profile: &str,
    lake: &str,
    args: &[&str],
    extra: &[(&str, &str)],
) -> Output {
    let aws = dir.join(format!("aws-config-{}", free_port()));
    std::fs::write(&aws, aws_config).unwrap();
    let config = dir.join(format!("elastirec-{}.toml", free_port()));
    std::fs::write(
        &config,
        format!(
            "[lake]\noptions = {{ endpoint = \"{endpoint}\", allow_http = \"true\", \
             profile = \"{profile}\" }}\n"
        ),
    )
    .unwrap();
    let mut cmd = s3_bin(&config, lake, args);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION")
        .env("AWS_CONFIG_FILE", &aws)
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .envs(extra.iter().copied());
    cmd.output().expect("the elastirec binary runs")
}

/// Profiles the AWS SDK resolves and static keys cannot express: a `credential_process`
/// (run once per command: the lake's files and its Delta tables share one cached credential)
/// and an assumed role (`role_arn` + `source_profile`, answered by moto's STS). The region
/// comes from the profile.
#[test]
fn credential_process_and_assumed_role_profiles_run_a_night_on_s3() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    moto.tool(&["create-bucket", "profiles"]);
    let simulate = [
        "simulate",
        "--days",
        "3",
        "--users",
        "150",
        "--items",
        "80",
        "--events-per-day",
        "1500",
    ];
    let night = ["run", "--date", "2024-01-03"];

    // credential_process: a script that counts its runs and prints keys.
    let calls = dir.path().join("credential-process-calls");
    let script = dir.path().join("credentials.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> '{}'\necho '{{\"Version\": 1, \"AccessKeyId\": \"{ACCESS_KEY}\", \
             \"SecretAccessKey\": \"{SECRET_KEY}\"}}'\n",
            calls.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let process = format!(
        "[profile proc]\nregion = us-east-1\ncredential_process = {}\n",
        script.display()
    );
    let lake = "s3://profiles/process";
    let out = succeeded(
        &keyless(
            dir.path(),
            &moto.endpoint,
            &process,
            "proc",
            lake,
            &simulate,
            &[],
        ),
        format_args!("elastirec with only an AWS profile"),
    );
    assert!(out.contains("simulated 4500 events over 3 days"), "{out}");
    let out = succeeded(
        &keyless(
            dir.path(),
            &moto.endpoint,
            &process,
            "proc",
            lake,
            &night,
            &[],
        ),
        format_args!("elastirec with only an AWS profile"),
    );
    assert!(out.contains("published"), "{out}");
    let runs = std::fs::read_to_string(&calls).unwrap().lines().count();
    assert_eq!(runs, 2, "one credential_process run per command");
    assert_eq!(
        read_back(&moto, lake, "2024-01-03")["lists"]
            .as_object()
            .unwrap()
            .len(),
        150
    );

    // role_arn: the source profile's keys sign an AssumeRole call to STS (moto's), whose
    // temporary credentials sign every S3 request.
    let role = format!(
        "[profile base]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n\
         [profile role]\nrole_arn = arn:aws:iam::123456789012:role/elastirec\n\
         source_profile = base\nregion = us-east-1\n"
    );
    let lake = "s3://profiles/role";
    let sts = [("AWS_ENDPOINT_URL_STS", moto.endpoint.as_str())];
    succeeded(
        &keyless(
            dir.path(),
            &moto.endpoint,
            &role,
            "role",
            lake,
            &simulate,
            &sts,
        ),
        format_args!("elastirec with only an AWS profile"),
    );
    let out = succeeded(
        &keyless(
            dir.path(),
            &moto.endpoint,
            &role,
            "role",
            lake,
            &night,
            &sts,
        ),
        format_args!("elastirec with only an AWS profile"),
    );
    assert!(out.contains("published"), "{out}");

    // Without a reachable STS the role cannot be assumed: a configuration error that names
    // the profile, before any work.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = keyless(
        dir.path(),
        &moto.endpoint,
        &role,
        "role",
        lake,
        &night,
        &[("AWS_ENDPOINT_URL_STS", dead.as_str())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("profile 'role'"), "{stderr}");
}

/// Starts `elastirec ingest` paused at `point` (see `elastirec_core::failpoint`), then kills it
/// with SIGKILL there.
fn ingest_killed_at(config: &Path, lake: &str, night: &str, point: &str) {
    let mut child = s3_bin(config, lake, &["ingest", "--date", night])
        .env(elastirec_core::failpoint::ENV, format!("{point}=pause"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let paused = line.contains("paused at");
            seen.push(line);
            if paused {
                let _ = tx.send(Ok(()));
                return;
            }
        }
        let _ = tx.send(Err(seen.join("\n")));
    });
    let reached = rx.recv_timeout(Duration::from_secs(300));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    match reached {
        Ok(Ok(())) => {}
        Ok(Err(stderr)) => panic!("ingest ended before {point} ({status:?}):\n{stderr}"),
        Err(e) => panic!("ingest did not reach {point}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_killed_mid_way_on_s3_loses_and_duplicates_nothing() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = moto.config(dir.path());
    moto.tool(&["create-bucket", "crash"]);
    let lake_url = "s3://crash/lake";
    let data = movielens_100k();
    // `import` itself writes to S3 here.
    s3_ok(
        &config,
        lake_url,
        &[
            "import",
            "movielens",
            "--ratings",
            data.join("ratings.csv").to_str().unwrap(),
        ],
    );

    // The ratings of each day up to the last night, from the source file.
    let last: Night = "1998-03-25".parse().unwrap();
    let mut expected: BTreeMap<Night, i64> = BTreeMap::new();
    let text = std::fs::read_to_string(data.join("ratings.csv")).unwrap();
    for line in text.lines().skip(1) {
        let seconds: i64 = line.rsplit(',').next().unwrap().parse().unwrap();
        let day = Night::of_unix_seconds(seconds).unwrap();
        if day <= last {
            *expected.entry(day).or_default() += 1;
        }
    }
    let lake = Lake::open_config(&moto.lake_config(lake_url))
        .await
        .unwrap();
    // Killed after the events commit, before the ledger records it; then killed again before
    // the next events commit, after recovering the first; then a clean run.
    let events = "SELECT COUNT(*) FROM events";
    let recorded = "SELECT COUNT(*) FROM loads WHERE target = 'events'";
    ingest_killed_at(
        &config,
        lake_url,
        "1998-03-20",
        "ingest.after-events-commit",
    );
    let wh = Warehouse::open(&lake).await.unwrap();
    let first = scalar(&wh, events).await;
    let through_20 = expected.range(..="1998-03-20".parse::<Night>().unwrap());
    let (files_20, rows_20): (i64, i64) = (
        through_20.clone().count() as i64,
        through_20.map(|d| d.1).sum(),
    );
    assert_eq!(first, rows_20, "the killed ingest committed its events");
    assert_eq!(scalar(&wh, recorded).await, 0, "the ledger was not written");
    ingest_killed_at(
        &config,
        lake_url,
        "1998-03-25",
        "ingest.before-events-commit",
    );
    let wh = Warehouse::open(&lake).await.unwrap();
    assert_eq!(scalar(&wh, events).await, first, "nothing loaded twice");
    let recovered = scalar(&wh, recorded).await;
    assert_eq!(
        recovered, files_20,
        "ledger rows recovered by the second ingest"
    );
    let out = s3_ok(&config, lake_url, &["ingest", "--date", "1998-03-25"]);
    println!("{out}");
    assert!(
        out.contains(&format!("{recovered} files already loaded")),
        "{out}"
    );
    let out = s3_ok(&config, lake_url, &["ingest", "--date", "1998-03-25"]);
    assert!(out.contains("loaded 0 rows from 0 files"), "{out}");

    // Every rating of a day up to the night is in the events table exactly once.
    let wh = Warehouse::open(&lake).await.unwrap();
    let batches = wh
        .sql("SELECT source_file, COUNT(*) AS n FROM events GROUP BY source_file")
        .await
        .unwrap();
    let mut loaded: BTreeMap<Night, i64> = BTreeMap::new();
    for b in &batches {
        let files = strings(b.column(0));
        let counts =
            arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(b.column(1));
        for (file, n) in files.iter().zip(counts.values()) {
            let day = layout::raw_event_file_day(&file.as_str().into())
                .unwrap_or_else(|| panic!("{file} is not a raw event file"));
            *loaded.entry(day).or_default() += n;
        }
    }
    let total: i64 = expected.values().sum();
    assert_eq!(
        loaded.values().sum::<i64>(),
        total,
        "rows in the events table"
    );
    assert_eq!(loaded, expected, "rows per raw file: none lost, none twice");
    let dupes = scalar(
        &wh,
        "SELECT COUNT(*) FROM (SELECT user_id, item_id, event_time FROM events \
         GROUP BY user_id, item_id, event_time HAVING COUNT(*) > 1) AS d",
    )
    .await;
    assert_eq!(dupes, 0, "duplicate events");
    let ledger = scalar(
        &wh,
        "SELECT COUNT(*) - COUNT(DISTINCT path) FROM loads WHERE target = 'events'",
    )
    .await;
    assert_eq!(ledger, 0, "a raw file recorded twice in the ledger");
    assert_eq!(
        scalar(&wh, recorded).await as usize,
        expected.len(),
        "ledger rows"
    );
}

/// A string column's values, whatever its string encoding.
fn strings(col: &arrow_array::ArrayRef) -> Vec<String> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    if let Some(a) = col.as_string_view_opt() {
        return (0..a.len()).map(|i| a.value(i).to_string()).collect();
    }
    if let Some(a) = col.as_string_opt::<i32>() {
        return (0..a.len()).map(|i| a.value(i).to_string()).collect();
    }
    panic!("not a string column: {}", col.data_type())
}

async fn scalar(wh: &Warehouse, sql: &str) -> i64 {
    let batches = wh.sql(sql).await.unwrap();
    let col = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(
        batches[0].column(0),
    );
    col.value(0)
}

/// Runs `elastirec run` against a misconfigured lake: it must fail with exit code 2 (a
/// configuration error) within `limit`, and its message must name `needles`.
fn fails_fast(output: impl FnOnce() -> Output, needles: &[&str]) {
    let started = Instant::now();
    let out = output();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    assert!(
        elapsed < Duration::from_secs(15),
        "took {elapsed:?}:\n{stderr}"
    );
    println!("{elapsed:?}: {stderr}");
}

#[test]
fn dead_endpoint_missing_bucket_and_bad_credentials_fail_fast() {
    let dir = tempfile::tempdir().unwrap();
    let night = ["run", "--date", "1998-03-25"];

    // Nothing listens on the endpoint.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let config = write_config(dir.path(), &dead);
    fails_fast(
        || s3_bin(&config, "s3://lake/p", &night).output().unwrap(),
        &[&dead, "bucket 'lake'", "lake.options.endpoint"],
    );

    // The endpoint's host does not exist.
    let unknown = "http://no-such-host.invalid:9000";
    let config = write_config(dir.path(), unknown);
    fails_fast(
        || s3_bin(&config, "s3://lake/p", &night).output().unwrap(),
        &[unknown, "bucket 'lake'", "lake.options.endpoint"],
    );

    // The bucket does not exist.
    let moto = Moto::start();
    let config = moto.config(dir.path());
    fails_fast(
        || s3_bin(&config, "s3://absent/p", &night).output().unwrap(),
        &[
            &moto.endpoint,
            "bucket 'absent' does not exist",
            "[lake] root",
        ],
    );

    // moto checks credentials from its first request on: ours are unknown to it.
    let strict = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let config = strict.config(dir.path());
    fails_fast(
        || s3_bin(&config, "s3://lake/p", &night).output().unwrap(),
        &[
            &strict.endpoint,
            "refused the credentials",
            "bucket 'lake'",
            "AWS_ACCESS_KEY_ID",
        ],
    );
}

#[test]
fn a_night_reads_segment_files_from_a_producers_own_bucket() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = moto.config(dir.path());
    // Segment's Firehose writes hour folders into its own bucket; the lake is another bucket.
    let produced = dir.path().join("produced");
    let out = ok(
        &produced,
        &[
            "simulate",
            "--format",
            "segment",
            "--days",
            "3",
            "--users",
            "150",
            "--items",
            "80",
            "--events-per-day",
            "1500",
        ],
    );
    assert!(out.contains("simulated"), "{out}");
    moto.tool(&["create-bucket", "producer"]);
    moto.tool(&["create-bucket", "lakes"]);
    moto.tool(&[
        "upload",
        produced.join("raw/events").to_str().unwrap(),
        "producer",
        "firehose",
    ]);
    let listing = || moto.tool(&["count", "producer", "firehose/"]);
    let before = listing();
    let lake = "s3://lakes/shop";
    let env = [
        ("ELASTIREC_EVENTS__PRESET", "segment"),
        ("ELASTIREC_EVENTS__RAW_PREFIX", "s3://producer/firehose/"),
    ];
    let run = |args: &[&str]| s3_ok_with(&config, lake, args, &env);
    let out = run(&["run", "--date", "2024-01-03"]);
    assert!(out.contains(": succeeded"), "{out}");
    // The ledger names the producer's files by URL; the lake holds no raw copy of them; the
    // producer's bucket is as it was.
    let paths = run(&[
        "sql",
        "SELECT COUNT(*) AS n, MIN(path) AS first FROM loads WHERE target = 'events' \
         AND path LIKE 's3://producer/firehose/2024/01/%'",
    ]);
    assert!(
        paths.contains("s3://producer/firehose/2024/01/0"),
        "{paths}"
    );
    let none: serde_json::Value =
        serde_json::from_str(&moto.tool(&["count", "lakes", "shop/raw/"])).unwrap();
    assert_eq!(none["objects"], 0, "{none}");
    assert_eq!(listing(), before);
    // The lists carry the producer's UUIDs; a second run loads nothing new.
    let lists = read_back(&moto, lake, "2024-01-03");
    let users = lists["lists"].as_object().unwrap();
    assert!(users.len() > 100, "{} users", users.len());
    assert!(
        users.keys().all(|u| u.len() == 36 && u.contains('-')),
        "{users:?}"
    );
    let again = run(&["ingest", "--date", "2024-01-03"]);
    assert!(again.contains("loaded 0 rows from 0 files"), "{again}");
}
