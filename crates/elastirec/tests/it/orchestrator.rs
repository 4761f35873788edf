//! The orchestrator through the binary: a SIGKILL at every step boundary and in the middle of
//! every step, then a rerun, gives the same outputs as an uninterrupted night without redoing
//! finished steps; two runners on one lake; hooks, runs, status, cost and gc.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use elastirec_core::failpoint;
use elastirec_core::{Night, layout};
use elastirec_lake::io::{ExternalLists, read_recommendations};
use elastirec_warehouse::Warehouse;

use crate::harness::{NIGHTLY_STEPS, bin, copy_dir, ok, open_lake, read_json, step_names};

pub(crate) const NIGHT_3: &str = "2024-01-03";

/// Settings of these tests: small fast models, fixed threads (so results are reproducible),
/// and a one-day evaluation horizon so night 3 also evaluates night 2.
fn configure(c: &mut Command) -> &mut Command {
    c.env("ELASTIREC_MODEL__FACTORS", "8")
        .env("ELASTIREC_MODEL__ITERATIONS", "4")
        .env("ELASTIREC_MODEL__THREADS", "2")
        .env("ELASTIREC_EVALUATE__HORIZON_DAYS", "1")
}

pub(crate) fn elastirec(lake: &Path, args: &[&str]) -> Command {
    let mut c = bin();
    configure(&mut c).arg("--lake").arg(lake).args(args);
    c
}

pub(crate) fn run_ok(lake: &Path, args: &[&str]) -> String {
    let out = elastirec(lake, args).output().unwrap();
    crate::harness::succeeded(&out, format_args!("elastirec {args:?}"))
}

/// Files (not folders) under `dir`, 0 if it does not exist.
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap())
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// A lake with one small simulated day (2024-01-01) and no night run yet.
fn one_day_lake(root: &Path) -> std::path::PathBuf {
    let lake = root.join("lake");
    ok(
        &lake,
        &[
            "simulate",
            "--days",
            "1",
            "--users",
            "100",
            "--items",
            "50",
            "--events-per-day",
            "500",
        ],
    );
    lake
}

/// A lake with three simulated days whose first two nights ran.
pub(crate) fn base_lake(root: &Path) -> std::path::PathBuf {
    let lake = root.join("base");
    ok(
        &lake,
        &[
            "simulate",
            "--days",
            "3",
            "--users",
            "300",
            "--items",
            "150",
            "--events-per-day",
            "3000",
        ],
    );
    run_ok(
        &lake,
        &["run", "--from", "2024-01-01", "--to", "2024-01-02"],
    );
    lake
}

struct NightOutputs {
    lists: ExternalLists,
    events: u64,
    loads: usize,
    evaluated: serde_json::Value,
}

async fn outputs(lake_dir: &Path) -> NightOutputs {
    let lake = open_lake(lake_dir).await;
    let n: Night = NIGHT_3.parse().unwrap();
    let manifest = elastirec_lake::read_recommendations_manifest(&lake, n)
        .await
        .unwrap();
    let wh = Warehouse::open(&lake).await.unwrap();
    let loads = wh
        .sql("SELECT path FROM loads WHERE target = 'events'")
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    let mut eval = read_json(
        lake_dir,
        &layout::evaluation("2024-01-02".parse().unwrap(), 1),
    );
    eval.as_object_mut().unwrap().remove("created_at");
    NightOutputs {
        lists: read_recommendations(&lake, &manifest.files).await.unwrap(),
        events: wh.count_events_through(n).await.unwrap(),
        loads,
        evaluated: eval,
    }
}

fn same_lists(a: &ExternalLists, b: &ExternalLists, point: &str) {
    assert_eq!(a.len(), b.len(), "{point}: users");
    for (user, list) in a {
        let other = &b[user];
        let items = |l: &[(String, i32, f32, String)]| -> Vec<(String, i32)> {
            l.iter().map(|r| (r.0.clone(), r.1)).collect()
        };
        assert_eq!(items(list), items(other), "{point}: user {user}");
        for (x, y) in list.iter().zip(other) {
            assert!(
                (x.2 - y.2).abs() <= 1e-5 * x.2.abs().max(1.0),
                "{point}: {x:?} {y:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_at_any_point_then_a_rerun_gives_the_uninterrupted_result() {
    let root = tempfile::tempdir().unwrap();
    let base = base_lake(root.path());
    let reference = root.path().join("reference");
    copy_dir(&base, &reference);
    run_ok(&reference, &["run", "--date", NIGHT_3]);
    let expected = outputs(&reference).await;
    assert!(expected.events > 0 && expected.loads == 3);

    for point in failpoint::POINTS {
        let lake = root.path().join(point.replace('.', "-"));
        copy_dir(&base, &lake);
        let killed = elastirec(&lake, &["run", "--date", NIGHT_3])
            .env(failpoint::ENV, format!("{point}=kill"))
            .output()
            .unwrap();
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "{point}: expected SIGKILL, got {:?}\nstderr:\n{}",
            killed.status,
            String::from_utf8_lossy(&killed.stderr)
        );
        let before = read_json(&lake, &layout::run_record(NIGHT_3.parse().unwrap()));
        let out = run_ok(&lake, &["run", "--date", NIGHT_3]);
        assert!(out.contains(": succeeded"), "{point}: {out}");
        let after = read_json(&lake, &layout::run_record(NIGHT_3.parse().unwrap()));

        // Steps that had finished before the kill were not run again.
        let step_name = point.split('.').next().unwrap();
        for s in before["steps"].as_array().unwrap() {
            let name = s["name"].as_str().unwrap();
            let finished = matches!(s["state"].as_str(), Some("succeeded" | "skipped" | "held"));
            if finished && name != step_name {
                let now = after["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|t| t["name"] == name)
                    .unwrap();
                assert_eq!(
                    (&now["started_at"], &now["attempt"]),
                    (&s["started_at"], &s["attempt"]),
                    "{point}: step {name} ran again"
                );
            }
        }
        let got = outputs(&lake).await;
        assert_eq!(
            got.events, expected.events,
            "{point}: events (duplicates or losses)"
        );
        assert_eq!(got.loads, expected.loads, "{point}: load ledger rows");
        same_lists(&expected.lists, &got.lists, point);
        let mut ev = got.evaluated.clone();
        let mut ex = expected.evaluated.clone();
        // Scores are floating point sums over users: compare them at a tolerance.
        for v in [&mut ev, &mut ex] {
            for list in ["model", "popularity", "most_popular"] {
                let ndcg = v[list]["ndcg"].as_f64().unwrap();
                v[list]["ndcg"] = serde_json::json!((ndcg * 1e6).round());
            }
        }
        assert_eq!(ev["model"]["ndcg"], ex["model"]["ndcg"], "{point}");
        assert_eq!(ev["users_scored"], ex["users_scored"], "{point}");
        let latest = read_json(&lake, &layout::recommendations_latest());
        assert_eq!(latest["night"], NIGHT_3, "{point}");
        assert_eq!(after["state"], "succeeded", "{point}");
    }
}

#[test]
fn a_second_runner_fails_fast_naming_the_holder() {
    let root = tempfile::tempdir().unwrap();
    let lake = one_day_lake(root.path());
    // The first runner pauses in its prepare step, holding the lease.
    let first = elastirec(&lake, &["run", "--date", "2024-01-01"])
        .env(failpoint::ENV, "prepare.before=sleep-6000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lease_dir = lake.join("runs/_lease");
    let started = Instant::now();
    while !lease_dir.exists() || std::fs::read_dir(&lease_dir).unwrap().count() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no lease appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = elastirec(&lake, &["run", "--date", "2024-01-01"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(
        second.status.code(),
        Some(4),
        "busy is worth retrying later: {stderr}"
    );
    assert!(stderr.contains("lease is held by"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.id())),
        "names the holder's pid {}: {stderr}",
        first.id()
    );
    let first_out = first.wait_with_output().unwrap();
    assert!(
        first_out.status.success(),
        "{}",
        String::from_utf8_lossy(&first_out.stderr)
    );
    // The lease was given back: the next run starts at once.
    let out = run_ok(&lake, &["run", "--date", "2024-01-01"]);
    assert!(out.contains(": succeeded"), "{out}");
}

#[test]
fn ledger_views_cost_hooks_and_gc() {
    let root = tempfile::tempdir().unwrap();
    let lake = base_lake(root.path());
    run_ok(&lake, &["run", "--date", NIGHT_3]);

    let runs = run_ok(&lake, &["runs"]);
    for n in ["2024-01-01", "2024-01-02", NIGHT_3] {
        assert!(runs.contains(n), "{runs}");
    }
    assert!(runs.contains("published"), "{runs}");
    let json: serde_json::Value =
        serde_json::from_str(&run_ok(&lake, &["runs", "--json"])).unwrap();
    let records = json.as_array().unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(step_names(&records[2]), NIGHTLY_STEPS);
    for s in records[2]["steps"].as_array().unwrap() {
        assert!(s["cpu_seconds"].as_f64().is_some(), "{s}");
        assert!(s["peak_memory_bytes"].as_u64().unwrap() > 1 << 20, "{s}");
    }
    assert!(records[2]["cost"]["elastic_cost"].as_f64().unwrap() > 0.0);

    let status = run_ok(&lake, &["status", "--date", NIGHT_3]);
    assert!(status.contains("peak mem"), "{status}");
    assert!(
        status.contains("gate [ok] users did not collapse"),
        "{status}"
    );

    let cost: serde_json::Value =
        serde_json::from_str(&run_ok(&lake, &["cost", "--json"])).unwrap();
    let total = &cost["total"];
    assert!(total["elastic_cost"].as_f64().unwrap() > 0.0, "{cost}");
    assert_eq!(total["always_on_cost"].as_f64().unwrap(), 3.0 * 24.0 * 1.22);
    let table = run_ok(&lake, &["cost", "--from", "2024-01-02", "--to", NIGHT_3]);
    assert!(table.contains("cheaper) over 2 nights"), "{table}");

    // A failing night calls the failure hook with a JSON summary.
    let bad_day = lake.join("raw/events/2024/01/04");
    std::fs::create_dir_all(&bad_day).unwrap();
    std::fs::write(
        bad_day.join("app.csv"),
        "userId,movieId,rating,timestamp\n1,2,x,1704326400\n",
    )
    .unwrap();
    let hook_file = root.path().join("hook.json");
    let out = elastirec(&lake, &["run", "--date", "2024-01-04"])
        .env(
            "ELASTIREC_HOOKS__ON_FAILURE",
            format!("cat > {}", hook_file.display()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "bad input exits 2");
    let hook: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&hook_file).unwrap()).unwrap();
    assert_eq!(hook["night"], "2024-01-04");
    assert_eq!(hook["state"], "failed");
    assert_eq!(hook["failed_step"], "ingest");
    assert_eq!(hook["error_kind"], "invalid_input");
    assert!(
        hook["error"].as_str().unwrap().contains("app.csv"),
        "{hook}"
    );

    // Retention keeps the newest night (which is also the live one) and says what it removed.
    let out = run_ok(&lake, &["gc", "--keep-nights", "1"]);
    assert!(out.contains("deleted model of night 2024-01-01"), "{out}");
    for n in ["2024/01/01", "2024/01/02"] {
        for root in ["exports/training", "models", "recommendations"] {
            let dir = lake.join(root).join(n);
            assert_eq!(files_under(&dir), 0, "{}", dir.display());
        }
    }
    assert!(
        lake.join("recommendations/2024/01/03/_manifest.json")
            .exists()
    );
    assert!(lake.join("models/2024/01/03/model.json").exists());
    assert!(
        lake.join("runs/2024-01-01.json").exists(),
        "run records are kept"
    );
}

#[test]
fn schedule_stops_between_steps_on_sigterm_and_run_resumes() {
    let root = tempfile::tempdir().unwrap();
    let lake = one_day_lake(root.path());
    // The scheduler catches up from 2024-01-01; it is held inside night 1's prepare step.
    let child = elastirec(&lake, &["schedule"])
        .env(failpoint::ENV, "prepare.before=sleep-3000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let record_path = lake.join("runs/2024-01-01.json");
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "prepare never started"
        );
        if let Ok(text) = std::fs::read_to_string(&record_path) {
            let r: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let running_prepare = r["steps"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["name"] == "prepare" && s["state"] == "running")
            });
            if running_prepare {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stopped: SIGTERM received"), "{stdout}");
    // The step under way finished; the next one did not start; the night waits to be resumed.
    let record = read_json(&lake, &layout::run_record("2024-01-01".parse().unwrap()));
    assert_eq!(record["state"], "pending", "{record}");
    let steps = record["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ingest", "prepare"], "{record}");
    assert!(steps.iter().all(|s| s["state"] == "succeeded"), "{record}");
    let prepare_started = steps[1]["started_at"].clone();

    run_ok(&lake, &["run", "--date", "2024-01-01"]);
    let record = read_json(&lake, &layout::run_record("2024-01-01".parse().unwrap()));
    assert_eq!(record["state"], "succeeded");
    assert_eq!(
        record["steps"][1]["started_at"], prepare_started,
        "prepare not redone"
    );
    assert_eq!(record["steps"].as_array().unwrap().len(), 7);
}

/// Rerunning the recommend step of the night `_LATEST` names writes the new files beside the
/// live ones: a kill between the new files and the new manifest leaves serving the old lists,
/// whole; the next rerun swaps and removes the old generation and the killed attempt's files.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_rerun_of_the_live_night_leaves_its_published_lists_whole() {
    let root = tempfile::tempdir().unwrap();
    let lake_dir = root.path().join("lake");
    copy_dir(&base_lake(root.path()), &lake_dir);
    let lake = open_lake(&lake_dir).await;
    let night = elastirec_lake::read_latest(&lake)
        .await
        .unwrap()
        .unwrap()
        .night;
    let date = night.to_string();
    let live = elastirec_lake::read_recommendations_manifest(&lake, night)
        .await
        .unwrap();
    let live_lists = read_recommendations(&lake, &live.files).await.unwrap();
    assert!(!live_lists.is_empty());

    let killed = elastirec(&lake_dir, &["recommend", "--date", &date, "--k", "5"])
        .env(failpoint::ENV, "recommend.after-parts=kill")
        .output()
        .unwrap();
    assert_eq!(killed.status.signal(), Some(9), "{killed:?}");
    // The killed attempt wrote its part beside the live one.
    let dir = lake_dir.join(layout::recommendations_dir(night).as_ref());
    assert!(files_under(&dir) > live.files.len() + 1, "{dir:?}");
    // What _LATEST names is still there and reads as before.
    let after_kill = elastirec_lake::read_recommendations_manifest(&lake, night)
        .await
        .unwrap();
    assert_eq!(after_kill.files, live.files);
    let lists = read_recommendations(&lake, &after_kill.files)
        .await
        .unwrap();
    assert_eq!(lists, live_lists);

    run_ok(&lake_dir, &["recommend", "--date", &date, "--k", "5"]);
    let redone = elastirec_lake::read_recommendations_manifest(&lake, night)
        .await
        .unwrap();
    assert_eq!(redone.k, 5);
    for f in &live.files {
        assert!(
            !redone.files.contains(f),
            "the rerun reused a live name: {f:?}"
        );
        assert!(!lake_dir.join(&f.path).exists(), "{} was kept", f.path);
    }
    // Only the new manifest and the files it names are left.
    assert_eq!(files_under(&dir), redone.files.len() + 1);
    let lists = read_recommendations(&lake, &redone.files).await.unwrap();
    assert!(lists.values().all(|l| l.len() <= 5));

    // The model of the live night likewise: a train killed after its factor files leaves the
    // model that model.json names whole; the next train swaps and drops the old files.
    let model = elastirec_lake::read_model_info(&lake, night).await.unwrap();
    let killed = elastirec(&lake_dir, &["train", "--date", &date])
        .env(failpoint::ENV, "train.after-factors=kill")
        .output()
        .unwrap();
    assert_eq!(killed.status.signal(), Some(9), "{killed:?}");
    let models = lake_dir.join(layout::model_dir(night).as_ref());
    assert!(files_under(&models) > model.files.len() + 1, "{models:?}");
    assert_eq!(
        elastirec_lake::read_model_info(&lake, night)
            .await
            .unwrap()
            .files,
        model.files
    );
    elastirec_als::Model::load(&lake, night).await.unwrap();
    // Serving loads the live night (lists and the item factors model.json names) throughout.
    let user = live_lists.keys().next().unwrap().clone();
    run_ok(&lake_dir, &["show", "--user", &user]);
    run_ok(&lake_dir, &["train", "--date", &date]);
    run_ok(&lake_dir, &["show", "--user", &user]);
    let retrained = elastirec_lake::read_model_info(&lake, night).await.unwrap();
    assert_eq!(files_under(&models), retrained.files.len() + 1);
    for f in &model.files {
        assert!(!retrained.files.contains(f), "{f:?}");
    }
    elastirec_als::Model::load(&lake, night).await.unwrap();
}

/// `run --rerun` of a lake's first night: the evaluate step has no earlier lists to score, so it
/// is skipped as on the first run (a rerun used to fail it, and the night then read "failed,
/// published").
#[test]
fn a_rerun_skips_an_evaluate_step_with_no_earlier_lists() {
    let root = tempfile::tempdir().unwrap();
    let lake = one_day_lake(root.path());
    let first = run_ok(&lake, &["run", "--date", "2024-01-01"]);
    let again = run_ok(&lake, &["run", "--date", "2024-01-01", "--rerun"]);
    for out in [&first, &again] {
        assert!(
            out.contains("night 2024-01-01: succeeded, published"),
            "{out}"
        );
        let evaluate = out
            .lines()
            .find(|l| l.trim_start().starts_with("evaluate"))
            .unwrap_or_else(|| panic!("no evaluate line: {out}"));
        assert!(
            evaluate.contains("skipped")
                && evaluate.contains("night 2023-12-31 has no recommendations to evaluate"),
            "{evaluate}"
        );
    }
    // The rerun did run the other steps again.
    let train = again
        .lines()
        .find(|l| l.trim_start().starts_with("train"))
        .unwrap();
    assert!(train.contains("succeeded"), "{train}");
}
