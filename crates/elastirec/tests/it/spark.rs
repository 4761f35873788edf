//! The Spark engine against the in-process engine: one night each on MovieLens 100K and on the
//! simulator's defaults with `--engine spark` (pyspark's spark-submit, `local[2]`), the same
//! checks on both engines' outputs (schemas, a top-K for every user, no seen item), both steps'
//! job records in the run ledger, serving and evaluation reading Spark's night, and on the
//! simulated night NDCG@10 within 10% of the in-process engine's.
//!
//! Needs Java 17 and pyspark (`./scripts/test` installs pyspark with pip when it is missing).

use std::collections::HashSet;
use std::path::Path;

use arrow_schema::Schema;
use elastirec_core::{Night, layout};
use elastirec_lake::io::{read_parquet, read_recommendations_internal};
use elastirec_lake::{
    SeenPairs, read_export_ids, read_export_manifest, read_recommendations_manifest,
};
use elastirec_serve::snapshot::Snapshot;

use crate::harness::{evaluation, import_movielens_100k, ok, open_lake, read_json};

/// A config file that keeps a local Spark job small and quick.
fn spark_config(dir: &Path) -> String {
    let path = dir.join("spark.toml");
    std::fs::write(
        &path,
        r#"[spark]
submit = "spark-submit --master local[2]"
conf = { "spark.sql.shuffle.partitions" = "4", "spark.default.parallelism" = "4", "spark.driver.memory" = "2g", "spark.ui.enabled" = "false" }
timeout_seconds = 900
"#,
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn assert_pyspark() {
    let found = std::process::Command::new("python3")
        .args(["-c", "import pyspark"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "pyspark is missing: `pip install pyspark` (./scripts/test does it); Java 17 is needed too"
    );
}

/// The Arrow schemas (user factors, item factors, recommendations) of a night's files.
async fn schemas(lake_dir: &Path, night: Night) -> Vec<Schema> {
    let lake = open_lake(lake_dir).await;
    let manifest = read_recommendations_manifest(&lake, night).await.unwrap();
    // The files model.json names (a night trained again writes them under new names).
    let model = elastirec_lake::read_model_info(&lake, night).await.unwrap();
    let mut out = Vec::new();
    for path in [
        elastirec_lake::io::model_factor_file(&model, "user_factors"),
        elastirec_lake::io::model_factor_file(&model, "item_factors"),
        object_store::path::Path::from(manifest.files[0].path.as_str()),
    ] {
        let batches = read_parquet(&lake, &path).await.unwrap();
        out.push(
            batches[0]
                .schema()
                .as_ref()
                .clone()
                .with_metadata(Default::default()),
        );
    }
    out
}

/// Every user seen up to the night has a top-`k` list ranked 1..k, without a seen item.
async fn check_lists(lake_dir: &Path, night: Night, k: usize) {
    let lake = open_lake(lake_dir).await;
    let export = read_export_manifest(&lake, night).await.unwrap();
    let seen = SeenPairs::read(&lake, &export).await.unwrap().by_user();
    let manifest = read_recommendations_manifest(&lake, night).await.unwrap();
    let names = read_export_ids(&lake, &export).await.unwrap();
    let lists = read_recommendations_internal(&lake, &manifest.files, &names)
        .await
        .unwrap();
    assert_eq!(
        lists.len(),
        seen.len(),
        "one list per user seen up to {night}"
    );
    assert_eq!(manifest.users as usize, seen.len());
    for (user, items) in &seen {
        let list = &lists[user];
        assert_eq!(list.len(), k, "user {user}: {list:?}");
        let ranks: Vec<i32> = list.iter().map(|r| r.1).collect();
        assert_eq!(ranks, (1..=k as i32).collect::<Vec<_>>(), "user {user}");
        let distinct: HashSet<i64> = list.iter().map(|r| r.0).collect();
        assert_eq!(distinct.len(), k, "user {user} has an item twice: {list:?}");
        for (item, _, score, _) in list {
            assert!(!items.contains(item), "user {user} got seen item {item}");
            assert!(score.is_finite());
        }
        let scores: Vec<f32> = list.iter().map(|r| r.2).collect();
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "user {user}: {scores:?}"
        );
    }
}

/// Both steps of the night's record carry the one Spark job that did them.
fn check_ledger(lake_dir: &Path, night: Night) {
    let record = read_json(lake_dir, &layout::run_record(night));
    assert_eq!(record["state"], "succeeded", "{record}");
    let step = |name: &str| {
        record["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} step: {record}"))
            .clone()
    };
    let (train, recommend) = (step("train"), step("recommend"));
    for s in [&train, &recommend] {
        assert_eq!(s["state"], "succeeded", "{s}");
        let job = &s["job"];
        assert_eq!(job["engine"], "spark", "{s}");
        assert_eq!(job["exit_status"], 0, "{s}");
        assert_eq!(job["timed_out"], false, "{s}");
        assert!(job["seconds"].as_f64().unwrap() > 0.0, "{s}");
        assert!(
            job["command"]
                .as_str()
                .unwrap()
                .starts_with("spark-submit --master local[2]"),
            "{s}"
        );
        assert!(
            job["log_tail"]
                .as_str()
                .unwrap()
                .contains("elastirec spark job done"),
            "{s}"
        );
    }
    assert_eq!(train["job"], recommend["job"], "one job for both steps");
    let model = read_json(lake_dir, &layout::model_info(night));
    assert_eq!(model["algorithm"], "spark_mllib_als_implicit", "{model}");
    assert_eq!(model["params"]["engine"], "spark", "{model}");
}

/// Serving loads the published night whole (lists, history, titles, item factors).
async fn check_serving(lake_dir: &Path, night: Night, users: usize) {
    let lake = open_lake(lake_dir).await;
    let snapshot = Snapshot::load_latest(&lake)
        .await
        .unwrap()
        .expect("a published night");
    assert_eq!(snapshot.night(), night);
    assert_eq!(snapshot.users(), users);
}

#[tokio::test(flavor = "multi_thread")]
async fn spark_engine_nights_match_the_in_process_engine() {
    assert_pyspark();
    let dir = tempfile::tempdir().unwrap();
    let config = spark_config(dir.path());

    // The simulator's defaults: night 23 with Spark, then the same export with elastirec's ALS.
    let lake_dir = dir.path().join("sim");
    ok(&lake_dir, &["simulate"]);
    let night: Night = "2024-01-23".parse().unwrap();
    let d = night.to_string();
    let out = ok(
        &lake_dir,
        &[
            "--config",
            &config,
            "run",
            "--date",
            &d,
            "--engine",
            "spark",
            "--force-publish",
        ],
    );
    assert!(out.contains(": succeeded"), "{out}");
    check_ledger(&lake_dir, night);
    check_lists(&lake_dir, night, 10).await;
    let spark_schemas = schemas(&lake_dir, night).await;
    let users = read_recommendations_manifest(&open_lake(&lake_dir).await, night)
        .await
        .unwrap()
        .users as usize;
    check_serving(&lake_dir, night, users).await;
    let shown = ok(&lake_dir, &["show", "--user", "1"]);
    assert!(shown.contains(&d), "{shown}");

    ok(&lake_dir, &["ingest", "--date", "2024-01-30"]);
    let eval = ["evaluate", "--date", &d, "--horizon-days", "7"];
    println!("spark: {}", ok(&lake_dir, &eval));
    let spark_ndcg = evaluation(&lake_dir, night, 7)["model"]["ndcg"]
        .as_f64()
        .unwrap();

    ok(&lake_dir, &["train", "--date", &d]);
    ok(&lake_dir, &["recommend", "--date", &d]);
    check_lists(&lake_dir, night, 10).await;
    assert_eq!(schemas(&lake_dir, night).await, spark_schemas);
    println!("in-process: {}", ok(&lake_dir, &eval));
    let als_ndcg = evaluation(&lake_dir, night, 7)["model"]["ndcg"]
        .as_f64()
        .unwrap();
    println!("NDCG@10 on night {night}: spark {spark_ndcg:.4}, in-process {als_ndcg:.4}");
    assert!(
        (spark_ndcg - als_ndcg).abs() <= 0.1 * als_ndcg,
        "spark NDCG@10 {spark_ndcg:.4} is not within 10% of the in-process engine's {als_ndcg:.4}"
    );

    // MovieLens 100K: all history in one night, every user gets a list.
    let lake_dir = dir.path().join("ml");
    import_movielens_100k(&lake_dir);
    let night: Night = "1998-04-22".parse().unwrap();
    let out = ok(
        &lake_dir,
        &[
            "--config",
            &config,
            "run",
            "--date",
            &night.to_string(),
            "--engine",
            "spark",
            "--force-publish",
        ],
    );
    assert!(out.contains(": succeeded"), "{out}");
    check_ledger(&lake_dir, night);
    check_lists(&lake_dir, night, 10).await;
    assert_eq!(schemas(&lake_dir, night).await, spark_schemas);
    check_serving(&lake_dir, night, 943).await;
    // The staging folder is gone once its contents are published.
    assert!(!lake_dir.join("staging/spark/1998/04/22").exists());
}

/// A lake holding the MovieLens 100K fixture's ratings, in a temporary folder.
fn ml_100k_lake() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let data = crate::harness::fixtures().join("ml-100k");
    ok(
        &lake,
        &[
            "import",
            "movielens",
            "--ratings",
            data.join("u.data").to_str().unwrap(),
        ],
    );
    (dir, lake)
}

#[test]
fn a_failing_spark_job_fails_the_step_with_its_record() {
    let (dir, lake) = ml_100k_lake();
    // A stand-in submit command that fails the way a bad spark-submit option does.
    let script = dir.path().join("fake-submit.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'Error: Unrecognized option: --bogus' >&2\nexit 1\n",
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\nengine = \"spark\"\n[spark]\nsubmit = \"sh {}\"\n",
            script.display()
        ),
    )
    .unwrap();
    let out = crate::harness::run(
        &lake,
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            "--date",
            "1997-12-05",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "invalid input: {stderr}");
    assert!(stderr.contains("spark job"), "{stderr}");
    let record = read_json(&lake, &layout::run_record("1997-12-05".parse().unwrap()));
    let train = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "train")
        .unwrap();
    assert_eq!(train["state"], "failed", "{train}");
    assert_eq!(train["error_kind"], "invalid_input", "{train}");
    assert_eq!(train["attempt"], 1, "not retried: {train}");
    assert_eq!(train["job"]["exit_status"], 1, "{train}");
    assert!(
        train["job"]["log_tail"]
            .as_str()
            .unwrap()
            .contains("Unrecognized option"),
        "{train}"
    );
}

#[test]
fn a_spark_job_does_not_outlive_a_killed_elastirec() {
    let (dir, lake) = ml_100k_lake();
    // A stand-in submit command that says who it is and runs for a minute.
    let pid_file = dir.path().join("job.pid");
    let script = dir.path().join("slow-submit.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
            pid_file.display()
        ),
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\nengine = \"spark\"\n[spark]\nsubmit = \"sh {}\"\n",
            script.display()
        ),
    )
    .unwrap();
    let mut elastirec = crate::harness::bin()
        .arg("--lake")
        .arg(&lake)
        .arg("--config")
        .arg(&config)
        .args(["run", "--date", "1997-12-05"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let job: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        assert!(
            elastirec.try_wait().unwrap().is_none(),
            "elastirec ended before submitting the job"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the job never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    elastirec.kill().unwrap(); // SIGKILL: no chance to clean up
    elastirec.wait().unwrap();
    // Gone (or a zombie waiting for a reaper) within a few seconds.
    let running = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
            .is_some_and(|r| !r.starts_with('Z'))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while running(job) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let alive = running(job);
    if alive {
        // SAFETY: kill(2) of the stand-in's pid, so the test leaves nothing running.
        unsafe { libc::kill(job, libc::SIGKILL) };
    }
    assert!(
        !alive,
        "the spark job {job} kept running after elastirec was killed"
    );
}
