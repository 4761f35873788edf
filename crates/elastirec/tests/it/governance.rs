//! Customer data governance through the binary: `forget` erases a user from every table,
//! export, model, recommendation file and the serving API, and no later night brings them back;
//! `warehouse vacuum --erasures` removes what history kept; offer rules shape the lists;
//! `migrate` upgrades a lake written by the first released layout.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use serde_json::Value;

use elastirec_core::{Lake, layout};

use crate::harness::{bin, copy_dir, fixtures, ok};
use crate::orchestrator::elastirec;
use crate::serve::{Killed, http};

/// The orchestrator tests' settings, and room for a few rejects.
fn gov(lake: &Path, args: &[&str]) -> Command {
    let mut c = elastirec(lake, args);
    c.env("ELASTIREC_EVENTS__MAX_ERRORS", "10");
    c
}

fn gov_ok(lake: &Path, args: &[&str]) -> String {
    let out = gov(lake, args).output().unwrap();
    crate::harness::succeeded(&out, format_args!("elastirec {args:?}"))
}

fn count(lake: &Path, query: &str) -> u64 {
    let out = gov_ok(lake, &["sql", query, "--format", "json"]);
    let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    row["n"].as_u64().unwrap()
}

/// Every file under `dir` whose name ends with `suffix`.
fn files_under(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&e.path(), suffix));
        } else if e.file_name().to_string_lossy().ends_with(suffix) {
            out.push(e.path());
        }
    }
    out
}

/// Rows of a user in every Parquet file under `dir` that has a `user_id` column (every file,
/// named by a manifest or not): by internal id `user` in an Int64 column (exports, models,
/// recommendation files before layout 3), by external id `name` in a Utf8 one (recommendation
/// files); and the number of such files read.
fn user_rows_in_parquet(root: &Path, dir: &str, user: i64, name: &str) -> (u64, usize) {
    let mut rows = 0;
    let mut files = 0;
    for b in parquet_batches_under(root, dir) {
        let Some(ids) = b.column_by_name("user_id") else {
            continue;
        };
        files += 1;
        rows += match ids.as_string_opt::<i32>() {
            Some(names) => names.iter().flatten().filter(|&u| u == name).count(),
            None => ids
                .as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .filter(|&u| u == user)
                .count(),
        } as u64;
    }
    (rows, files)
}

/// Every batch of every Parquet file under `dir` of the lake at `root` (named by a manifest or
/// not).
fn parquet_batches_under(root: &Path, dir: &str) -> Vec<arrow_array::RecordBatch> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let lake = Lake::open(root.to_str().unwrap(), Default::default())
            .await
            .unwrap();
        let mut out = Vec::new();
        for file in files_under(&root.join(dir), ".parquet") {
            let rel = file
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            out.extend(
                elastirec_lake::io::read_parquet(&lake, &rel.as_str().into())
                    .await
                    .unwrap(),
            );
        }
        out
    })
}

/// Rows of every Parquet file under `warehouse/rejects` whose raw line contains `text`.
fn reject_lines_with(root: &Path, text: &str) -> usize {
    parquet_batches_under(root, "warehouse/rejects")
        .iter()
        .filter_map(|b| b.column_by_name("raw_line"))
        .map(|lines| {
            lines
                .as_string::<i32>()
                .iter()
                .flatten()
                .filter(|l| l.contains(text))
                .count()
        })
        .sum()
}

/// Lines of `user` in the raw event files.
fn raw_lines_of(root: &Path, user: i64) -> usize {
    files_under(&root.join("raw/events"), ".csv")
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .skip(1)
                .filter(|l| l.split(',').next() == Some(user.to_string().as_str()))
                .count()
        })
        .sum()
}

/// A user with events on every simulated day.
fn user_of_every_day(root: &Path, days: &[&str]) -> i64 {
    let users_of = |day: &str| -> HashSet<i64> {
        let dir = root.join("raw/events").join(day.replace('-', "/"));
        files_under(&dir, ".csv")
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split(',').next()?.parse().ok())
                    .collect::<Vec<i64>>()
            })
            .collect()
    };
    let mut common = users_of(days[0]);
    for d in &days[1..] {
        let other = users_of(d);
        common.retain(|u| other.contains(u));
    }
    *common.iter().min().expect("a user active every day")
}

fn get(addr: &str, path: &str) -> (u16, Value) {
    let (status, body) = http(addr, "GET", path, &[], "");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn start_server(lake: &Path) -> (Killed, String) {
    let mut child = bin()
        .arg("--lake")
        .arg(lake)
        .args(["serve", "--port", "0", "--poll-seconds", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Killed(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("serve prints its address").unwrap();
        if let Some(rest) = line.strip_prefix("listening on http://") {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    (guard, addr)
}

#[test]
fn forget_erases_a_user_everywhere_and_no_later_night_brings_them_back() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    ok(
        &lake,
        &[
            "simulate",
            "--days",
            "3",
            "--users",
            "60",
            "--items",
            "40",
            "--events-per-day",
            "900",
        ],
    );
    let days = ["2024-01-01", "2024-01-02", "2024-01-03"];
    let user = user_of_every_day(&lake, &days);
    let name = user.to_string();
    // A malformed row of the user (ids are strings, so a bad rating): its reject keeps their
    // raw line.
    let day1 = files_under(&lake.join("raw/events/2024/01/01"), ".csv")[0].clone();
    let mut text = std::fs::read_to_string(&day1).unwrap();
    text.push_str(&format!("{user},1,not-a-rating,1704067300\n"));
    std::fs::write(&day1, text).unwrap();
    gov_ok(
        &lake,
        &["run", "--from", days[0], "--to", days[1], "--force-publish"],
    );
    let of_user = format!("SELECT COUNT(*) AS n FROM events WHERE user_id = {user}");
    let events_before = count(&lake, &of_user);
    assert!(events_before > 0);
    let rejects_of_user =
        format!("SELECT COUNT(*) AS n FROM rejects WHERE raw_line LIKE '{user},%'");
    assert_eq!(count(&lake, &rejects_of_user), 1);
    for dir in ["exports", "models", "recommendations"] {
        assert!(user_rows_in_parquet(&lake, dir, user, &name).0 > 0, "{dir}");
    }
    let (_server, addr) = start_server(&lake);
    let recs = format!("/v1/users/{user}/recommendations?k=5");
    let (status, body) = get(&addr, &recs);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fallback"], false, "{body}");

    let out = gov_ok(&lake, &["forget", "--user", &user.to_string()]);
    assert!(
        out.contains(&format!("deleted {events_before} events and 1 reject rows")),
        "{out}"
    );
    assert!(
        out.contains("snapshots still holding their rows") && out.contains("2024-01-02"),
        "{out}"
    );
    // No table holds the user; the erasure is recorded by hash only.
    assert_eq!(count(&lake, &of_user), 0);
    assert_eq!(count(&lake, &rejects_of_user), 0);
    let erasures = gov_ok(
        &lake,
        &[
            "sql",
            "SELECT id_hash, events_deleted, rejects_deleted, completed_at, details FROM erasures",
            "--format",
            "json",
        ],
    );
    let rows: Vec<Value> = erasures
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{erasures}");
    let hash = rows[0]["id_hash"].as_str().unwrap();
    assert!(
        hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash}"
    );
    assert_eq!(rows[0]["events_deleted"], events_before);
    assert_eq!(rows[0]["rejects_deleted"], 1);
    assert!(!rows[0]["completed_at"].is_null());
    let details: Value = serde_json::from_str(rows[0]["details"].as_str().unwrap()).unwrap();
    assert!(details["export_rows"].as_u64().unwrap() > 0, "{details}");
    assert!(
        details["recommendation_rows"].as_u64().unwrap() > 0,
        "{details}"
    );
    // The delete's commit does not quote its predicate (the ids) in the Delta log.
    for f in files_under(&lake.join("warehouse/events/_delta_log"), ".json") {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(!text.contains("user_id IN"), "{}: {text}", f.display());
    }
    // No export, model or recommendation file holds them, named by a manifest or not.
    for dir in ["exports", "models", "recommendations"] {
        let (rows, files) = user_rows_in_parquet(&lake, dir, user, &name);
        assert_eq!(rows, 0, "{dir}");
        assert!(files > 0, "{dir}");
    }
    // Manifests were rewritten with the new files and counts.
    let m: Value = crate::harness::read_json(
        &lake,
        &layout::recommendations_manifest(days[1].parse().unwrap()),
    );
    let listed: u64 = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(m["rows"].as_u64(), Some(listed));
    // Serving reloads and answers for them as for a stranger: the generic fallback, no history.
    let started = Instant::now();
    loop {
        let (status, body) = get(&addr, &recs);
        if status == 200 && body["fallback"] == true {
            let (_, stranger) = get(&addr, "/v1/users/987654321/recommendations?k=5");
            let ids = |v: &Value| -> Vec<Value> {
                v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["item_id"].clone())
                    .collect()
            };
            assert_eq!(ids(&body), ids(&stranger));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serving still answers for the user: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, _) = get(&addr, &format!("/v1/users/{user}/history"));
    assert_eq!(status, 404);

    // A later night loads the user's new raw events: they are dropped and counted.
    let out = gov_ok(&lake, &["run", "--date", days[2], "--force-publish"]);
    let record = crate::harness::read_json(&lake, &layout::run_record(days[2].parse().unwrap()));
    let ingest = record["steps"][0]["outcome"].as_str().unwrap().to_string();
    assert!(
        ingest.contains("events of erased users dropped"),
        "{ingest}\n{out}"
    );
    // Rerunning an earlier night does not bring them back either.
    gov_ok(
        &lake,
        &["run", "--date", days[1], "--rerun", "--force-publish"],
    );
    assert_eq!(count(&lake, &of_user), 0);
    for dir in ["exports", "models", "recommendations"] {
        assert_eq!(user_rows_in_parquet(&lake, dir, user, &name).0, 0, "{dir}");
    }

    // --purge-raw: the raw files lose the user's lines; the ledger follows, so nothing is
    // reported as changed and nothing loads again.
    assert!(raw_lines_of(&lake, user) > 0);
    let out = gov_ok(
        &lake,
        &["forget", "--user", &user.to_string(), "--purge-raw"],
    );
    assert!(out.contains("(load ledger updated)"), "{out}");
    assert_eq!(raw_lines_of(&lake, user), 0);
    let events_now = count(&lake, "SELECT COUNT(*) AS n FROM events");
    let out = gov_ok(&lake, &["ingest", "--date", days[2]]);
    assert!(!out.contains("changed after it was loaded"), "{out}");
    assert!(out.contains("loaded 0 rows from 0 files"), "{out}");
    assert_eq!(count(&lake, "SELECT COUNT(*) AS n FROM events"), events_now);

    // Restoring a snapshot from before the erasure does not resurrect them.
    gov_ok(&lake, &["warehouse", "restore", days[0]]);
    assert_eq!(count(&lake, &of_user), 0);

    // Until the vacuum, table history still holds the rows (files the deletes replaced).
    assert!(user_rows_in_parquet(&lake, "warehouse/events", user, &name).0 > 0);
    assert!(reject_lines_with(&lake, "not-a-rating") > 0);
    // The vacuum removes every snapshot, Delta file and log entry that still held them.
    let out = gov_ok(&lake, &["warehouse", "vacuum", "--erasures"]);
    assert!(out.contains("erasure vacuum: removed"), "{out}");
    assert!(out.contains(days[0]), "{out}");
    let snapshots = gov_ok(&lake, &["warehouse", "snapshots"]);
    assert!(!snapshots.contains(days[0]), "{snapshots}");
    let (rows, files) = user_rows_in_parquet(&lake, "warehouse", user, &name);
    assert_eq!(rows, 0, "a warehouse file still holds the user");
    assert!(files > 0);
    assert_eq!(reject_lines_with(&lake, "not-a-rating"), 0);
    let again = gov_ok(&lake, &["warehouse", "vacuum", "--erasures"]);
    assert!(again.contains("no erasure waits"), "{again}");
    // The tables still read, and the next night runs.
    assert_eq!(count(&lake, &of_user), 0);
    gov_ok(
        &lake,
        &["run", "--date", days[2], "--rerun", "--force-publish"],
    );
    assert_eq!(count(&lake, &of_user), 0);
}

/// Every file under `root` whose bytes hold `needle` (Parquet statistics and dictionary pages
/// hold short strings as they are; the column scans below read the values themselves).
fn files_holding(root: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(root, "")
        .into_iter()
        .filter(|f| {
            std::fs::read(f)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
        .collect()
}

/// Cells equal to `value` in every Utf8 column of every Parquet file under `dir`.
fn string_cells(root: &Path, dir: &str, value: &str) -> u64 {
    let mut n = 0;
    for b in parquet_batches_under(root, dir) {
        for c in b.columns() {
            if let Some(strings) = c.as_string_opt::<i32>() {
                n += strings.iter().flatten().filter(|s| *s == value).count() as u64;
            }
        }
    }
    n
}

/// Raw event files of a shop whose users and items have string ids (`u-alice`, `u-07`,
/// `sku-12`, and a few numeric users), in its own column names: every user rates six items a
/// day; `u-alice` on every day, with one malformed row on the first.
fn write_shop_events(lake: &Path, days: &[&str]) {
    let mut users: Vec<String> = (0..24).map(|j| format!("u-{j:02}")).collect();
    users.extend(["u-alice".to_string(), "17".to_string(), "18".to_string()]);
    let mut seed = 12345u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for (d, day) in days.iter().enumerate() {
        let start = 1_704_067_200 + d as i64 * 86_400;
        let mut text = String::from("customer,sku,stars,ts\n");
        for (j, user) in users.iter().enumerate() {
            for k in 0..6 {
                let item = next() % 30;
                let stars = 1 + next() % 5;
                let ts = start + (j * 6 + k) as i64 * 60;
                text.push_str(&format!("{user},sku-{item},{stars},{ts}\n"));
            }
        }
        if d == 0 {
            text.push_str(&format!("u-alice,sku-1,not-a-rating,{}\n", start + 9_000));
        }
        let dir = lake.join("raw/events").join(day.replace('-', "/"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("shop.csv"), text).unwrap();
    }
}

/// Lines of `user` (first field) in the raw event files.
fn raw_lines_of_named(root: &Path, user: &str) -> usize {
    files_under(&root.join("raw/events"), ".csv")
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .skip(1)
                .filter(|l| l.split(',').next() == Some(user))
                .count()
        })
        .sum()
}

/// Recommendation lists of a night, by external user id.
fn lists_of(root: &Path, night: &str) -> elastirec_lake::io::ExternalLists {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let lake = crate::harness::open_lake(root).await;
        let m = elastirec_lake::read_recommendations_manifest(&lake, night.parse().unwrap())
            .await
            .unwrap();
        elastirec_lake::io::read_recommendations(&lake, &m.files)
            .await
            .unwrap()
    })
}

/// The internal id a night's export gives an external user id, through its `ids-*.parquet`.
fn export_user_id(root: &Path, night: &str, user: &str) -> Option<i64> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let lake = crate::harness::open_lake(root).await;
        let export = elastirec_lake::read_export_manifest(&lake, night.parse().unwrap())
            .await
            .unwrap();
        assert!(!export.id_files.is_empty(), "night {night} has string ids");
        elastirec_lake::read_export_ids(&lake, &export)
            .await
            .unwrap()
            .users
            .internal(user)
    })
}

#[test]
fn forget_erases_a_string_id_user_and_blanks_her_dictionary_entry() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    let days = ["2024-01-01", "2024-01-02", "2024-01-03"];
    write_shop_events(&lake, &days);
    let cfg_path = root.path().join("shop.toml");
    // The nights are also copied to the local Redis (the sink tests' 127.0.0.1:6379), under a
    // prefix of this test's own, so forget has keys to delete there.
    let prefix = format!(
        "elastirec-test:{}-{}:",
        std::process::id(),
        root.path().file_name().unwrap().to_string_lossy()
    );
    std::fs::write(
        &cfg_path,
        format!(
            "[events]\nuser_column = \"customer\"\nitem_column = \"sku\"\n\
             value_column = \"stars\"\ntimestamp_column = \"ts\"\n\
             [sink]\ntarget = \"redis\"\nredis_key_prefix = \"{prefix}\"\nttl_seconds = 600\n"
        ),
    )
    .unwrap();
    let cfg = cfg_path.to_str().unwrap();
    let with_cfg = |args: &[&str]| -> String {
        let mut all = vec!["--config", cfg];
        all.extend_from_slice(args);
        gov_ok(&lake, &all)
    };
    with_cfg(&["run", "--from", days[0], "--to", days[1], "--force-publish"]);

    // Her string id has a dictionary id, which events, exports and models hold; the lists and
    // the export's dictionary hold her name.
    let alice = count(
        &lake,
        "SELECT id AS n FROM ids WHERE kind = 'user' AND external = 'u-alice'",
    ) as i64;
    assert!(alice >= elastirec_core::ids::DICTIONARY_BASE, "{alice}");
    let of_alice = format!("SELECT COUNT(*) AS n FROM events WHERE user_id = {alice}");
    let events_before = count(&lake, &of_alice);
    assert!(events_before > 0);
    let rejects_of_alice = "SELECT COUNT(*) AS n FROM rejects WHERE raw_line LIKE 'u-alice,%'";
    assert_eq!(count(&lake, rejects_of_alice), 1);
    assert_eq!(export_user_id(&lake, days[1], "u-alice"), Some(alice));
    assert!(lists_of(&lake, days[1]).contains_key("u-alice"));
    for dir in ["exports", "models", "recommendations"] {
        assert!(
            user_rows_in_parquet(&lake, dir, alice, "u-alice").0 > 0,
            "{dir}"
        );
    }
    let shown = with_cfg(&["show", "--user", "u-alice"]);
    assert!(shown.contains("user u-alice, night 2024-01-02"), "{shown}");
    assert!(
        shown.contains("history (") && !shown.contains("fallback"),
        "{shown}"
    );
    assert!(shown.contains("sku-"), "items by their own ids: {shown}");

    // Forget her, and a user the lake never saw (from a file, with a comment and blank lines).
    let users_file = root.path().join("erase.txt");
    std::fs::write(&users_file, "# this week's requests\n\n  u-nobody  \n").unwrap();
    let out = with_cfg(&[
        "forget",
        "--user",
        "u-alice",
        "--users-file",
        users_file.to_str().unwrap(),
    ]);
    assert!(
        out.contains(&format!(
            "2 users; deleted {events_before} events and 1 reject rows"
        )),
        "{out}"
    );
    assert!(out.contains("the string ids of 1 users blanked"), "{out}");
    assert!(out.contains("snapshots still holding their rows"), "{out}");
    // The live night's copy of her list in Redis went too (u-nobody had no key).
    assert!(out.contains("[sink] redis: deleted 1 keys"), "{out}");
    assert_eq!(count(&lake, &of_alice), 0);
    assert_eq!(count(&lake, rejects_of_alice), 0);
    // Her dictionary row keeps its id, without her name; the other users keep theirs.
    assert_eq!(
        count(
            &lake,
            &format!(
                "SELECT COUNT(*) AS n FROM ids WHERE kind = 'user' AND id = {alice} \
                 AND external IS NULL"
            )
        ),
        1
    );
    assert_eq!(
        count(
            &lake,
            "SELECT COUNT(*) AS n FROM ids WHERE external = 'u-alice'"
        ),
        0
    );
    assert_eq!(
        count(
            &lake,
            "SELECT COUNT(*) AS n FROM ids WHERE external IS NULL"
        ),
        1
    );
    // Both requests are recorded, by hash only; the unknown user had nothing to delete.
    let erasures = gov_ok(
        &lake,
        &[
            "sql",
            "SELECT id_hash, events_deleted, details FROM erasures ORDER BY events_deleted",
            "--format",
            "json",
        ],
    );
    let rows: Vec<Value> = erasures
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{erasures}");
    assert_eq!(rows[0]["events_deleted"], 0);
    assert_eq!(rows[1]["events_deleted"], events_before);
    assert_ne!(rows[0]["id_hash"], rows[1]["id_hash"]);
    assert!(!erasures.contains("u-alice") && !erasures.contains("u-nobody"));
    let details: Value = serde_json::from_str(rows[1]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["warehouse"]["ids_blanked"], 1, "{details}");
    assert_eq!(details["sink"]["deleted"], 1, "{details}");
    assert!(details["export_rows"].as_u64().unwrap() > 0, "{details}");
    assert!(
        details["recommendation_rows"].as_u64().unwrap() > 0,
        "{details}"
    );
    // No export, model or recommendation file holds her, by either id, in its values or its
    // statistics; the export dictionaries lost her entry and kept the others.
    for dir in ["exports", "models", "recommendations"] {
        let (rows, files) = user_rows_in_parquet(&lake, dir, alice, "u-alice");
        assert_eq!(rows, 0, "{dir}");
        assert!(files > 0, "{dir}");
        assert_eq!(string_cells(&lake, dir, "u-alice"), 0, "{dir}");
        assert_eq!(
            files_holding(&lake.join(dir), "u-alice"),
            Vec::<PathBuf>::new()
        );
    }
    for night in &days[..2] {
        assert_eq!(export_user_id(&lake, night, "u-alice"), None);
        assert!(export_user_id(&lake, night, "u-07").is_some());
    }
    let lists = lists_of(&lake, days[1]);
    assert!(!lists.contains_key("u-alice") && lists.contains_key("u-07"));
    // The delete and the blanking do not quote their predicates (the ids) in the Delta logs.
    for table in ["events", "ids"] {
        for f in files_under(
            &lake.join("warehouse").join(table).join("_delta_log"),
            ".json",
        ) {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(!text.contains("id IN"), "{}: {text}", f.display());
        }
    }
    // `show` answers for her as for a stranger.
    let shown = with_cfg(&["show", "--user", "u-alice"]);
    assert!(shown.contains("history: none"), "{shown}");
    assert!(shown.contains("fallback: user unknown"), "{shown}");

    // The next night drops her new events (the hash is of the id she came with) and gives her
    // no new id.
    with_cfg(&["run", "--date", days[2], "--force-publish"]);
    let record = crate::harness::read_json(&lake, &layout::run_record(days[2].parse().unwrap()));
    let ingest = record["steps"][0]["outcome"].as_str().unwrap().to_string();
    assert!(
        ingest.contains("events of erased users dropped"),
        "{ingest}"
    );
    assert_eq!(
        count(
            &lake,
            "SELECT COUNT(*) AS n FROM ids WHERE external = 'u-alice'"
        ),
        0
    );
    assert!(!lists_of(&lake, days[2]).contains_key("u-alice"));
    assert!(lists_of(&lake, days[2]).contains_key("u-07"));

    // --purge-raw finds her lines by the configured user column.
    assert_eq!(raw_lines_of_named(&lake, "u-alice"), 3 * 6 + 1);
    let others = raw_lines_of_named(&lake, "u-07");
    let out = with_cfg(&["forget", "--user", "u-alice", "--purge-raw"]);
    assert!(out.contains("(load ledger updated)"), "{out}");
    assert_eq!(raw_lines_of_named(&lake, "u-alice"), 0);
    assert_eq!(raw_lines_of_named(&lake, "u-07"), others);

    // A restore of a snapshot from before the erasure brings her rows back in the events and
    // rejects; they go again at once (her blanked dictionary row says she was erased).
    with_cfg(&["warehouse", "restore", days[0]]);
    assert_eq!(count(&lake, &of_alice), 0);
    assert_eq!(count(&lake, rejects_of_alice), 0);

    // After the vacuum, no file of the lake holds her name, nor any Parquet cell.
    assert!(!files_holding(&lake, "u-alice").is_empty());
    let out = with_cfg(&["warehouse", "vacuum", "--erasures"]);
    assert!(out.contains("erasure vacuum: removed"), "{out}");
    assert_eq!(files_holding(&lake, "u-alice"), Vec::<PathBuf>::new());
    assert_eq!(string_cells(&lake, "", "u-alice"), 0);
    // The tables still read (the dictionary too), and the next night runs.
    assert_eq!(
        count(
            &lake,
            "SELECT COUNT(*) AS n FROM ids WHERE external IS NULL"
        ),
        1
    );
    with_cfg(&["run", "--date", days[2], "--rerun", "--force-publish"]);
    assert_eq!(count(&lake, &of_alice), 0);
    let lists = lists_of(&lake, days[2]);
    assert!(!lists.contains_key("u-alice") && lists.contains_key("u-07"));
}

#[test]
fn a_forget_killed_after_the_warehouse_finds_the_outputs_again_when_rerun() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    let days = ["2024-01-01", "2024-01-02"];
    write_shop_events(&lake, &days);
    let cfg_path = root.path().join("shop.toml");
    std::fs::write(
        &cfg_path,
        "[events]\nuser_column = \"customer\"\nitem_column = \"sku\"\n\
         value_column = \"stars\"\ntimestamp_column = \"ts\"\n",
    )
    .unwrap();
    let cfg = cfg_path.to_str().unwrap();
    gov_ok(
        &lake,
        &[
            "--config",
            cfg,
            "run",
            "--from",
            days[0],
            "--to",
            days[1],
            "--force-publish",
        ],
    );
    let alice = count(
        &lake,
        "SELECT id AS n FROM ids WHERE kind = 'user' AND external = 'u-alice'",
    ) as i64;
    let of_alice = format!("SELECT COUNT(*) AS n FROM events WHERE user_id = {alice}");
    assert!(count(&lake, &of_alice) > 0);

    // Killed once the warehouse is done: her events are gone and her name blanked, the
    // outputs still hold her.
    let killed = gov(&lake, &["--config", cfg, "forget", "--user", "u-alice"])
        .env(
            elastirec_core::failpoint::ENV,
            "forget.after-warehouse=kill",
        )
        .output()
        .unwrap();
    assert!(!killed.status.success());
    assert_eq!(count(&lake, &of_alice), 0);
    assert_eq!(
        count(
            &lake,
            "SELECT COUNT(*) AS n FROM ids WHERE external = 'u-alice'"
        ),
        0
    );
    for dir in ["exports", "models", "recommendations"] {
        assert!(
            user_rows_in_parquet(&lake, dir, alice, "u-alice").0 > 0,
            "{dir}"
        );
    }
    assert_eq!(export_user_id(&lake, days[1], "u-alice"), Some(alice));

    // The rerun no longer finds her in the warehouse's dictionary, but in the exports' own.
    gov_ok(&lake, &["--config", cfg, "forget", "--user", "u-alice"]);
    for dir in ["exports", "models", "recommendations"] {
        assert_eq!(
            user_rows_in_parquet(&lake, dir, alice, "u-alice").0,
            0,
            "{dir}"
        );
        assert_eq!(
            files_holding(&lake.join(dir), "u-alice"),
            Vec::<PathBuf>::new()
        );
    }
    for night in days {
        assert_eq!(export_user_id(&lake, night, "u-alice"), None);
    }
    assert!(lists_of(&lake, days[1]).contains_key("u-07"));
}

#[test]
fn offer_rules_shape_every_list_and_evaluation_reports_both() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    ok(
        &lake,
        &[
            "simulate",
            "--days",
            "2",
            "--users",
            "60",
            "--items",
            "120",
            "--events-per-day",
            "500",
        ],
    );
    // Items 1 and 2 are out of stock from 2024-01-02 on; item 3 only in another region.
    let dir = lake.join("raw/availability");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("stock.csv"),
        "item_id,available_from,available_to,region\n\
         1,2023-01-01,2024-01-01,\n2,,2024-01-01,\n3,2023-01-01,,us\n3,2030-01-01,,\n",
    )
    .unwrap();
    let config = root.path().join("rules.toml");
    std::fs::write(
        &config,
        "[rules]\nexclude_items = [4, 5]\nmax_per_genre = 1\npromoted_items = [6]\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    gov_ok(
        &lake,
        &[
            "--config",
            cfg,
            "run",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
            "--force-publish",
        ],
    );
    assert_eq!(count(&lake, "SELECT COUNT(*) AS n FROM availability"), 4);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let night: elastirec_core::Night = "2024-01-02".parse().unwrap();
    let (lists, manifest) = rt.block_on(async {
        let l = Lake::open(lake.to_str().unwrap(), Default::default())
            .await
            .unwrap();
        let m = elastirec_lake::read_recommendations_manifest(&l, night)
            .await
            .unwrap();
        let lists = elastirec_lake::io::read_recommendations(&l, &m.files)
            .await
            .unwrap();
        (lists, m)
    });
    assert!(manifest.rules.is_some());
    assert!(!lists.is_empty());
    let mut promoted_first = 0;
    for (user, list) in &lists {
        let items: Vec<i64> = list.iter().map(|r| r.0.parse().unwrap()).collect();
        for banned in [1, 2, 3, 4, 5] {
            assert!(!items.contains(&banned), "user {user}: {items:?}");
        }
        // Simulated item i has genre `Genre (i % 12)`: at most one of each.
        let genres: HashSet<i64> = items.iter().map(|i| i % 12).collect();
        assert_eq!(genres.len(), items.len(), "user {user}: {items:?}");
        // Lists of K = 10 from 120 items in 12 genres under the rules: always full.
        assert_eq!(items.len(), 10, "user {user}: {items:?}");
        for r in list {
            assert!(
                ["als", "popular", "promoted"].contains(&r.3.as_str()),
                "{r:?}"
            );
            assert_eq!(r.0 == "6", r.3 == "promoted", "user {user}: {r:?}");
        }
        if list[0].0 == "6" {
            promoted_first += 1;
        }
    }
    assert!(promoted_first > 0);
    assert_eq!(manifest.rows_by_source.values().sum::<u64>(), manifest.rows);
    let out = gov_ok(
        &lake,
        &[
            "--config",
            cfg,
            "evaluate",
            "--date",
            "2024-01-01",
            "--horizon-days",
            "1",
        ],
    );
    let report = crate::harness::evaluation(&lake, "2024-01-01".parse().unwrap(), 1);
    assert!(
        report["model_without_rules"]["ndcg"].is_number(),
        "{report}\n{out}"
    );
    assert!(report["model"]["ndcg"].is_number());
}

/// The fixture lake written by elastirec's first released layout (version 1).
fn v1_lake(root: &Path) -> PathBuf {
    let to = root.join("v1-lake");
    copy_dir(&fixtures().join("lake-v1"), &to);
    to
}

#[test]
fn migrate_upgrades_a_first_layout_lake_and_newer_lakes_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let lake = v1_lake(root.path());
    let marker = |lake: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(lake.join("lake.json")).unwrap()).unwrap()
    };
    assert_eq!(marker(&lake)["layout_version"], 1);
    // Every command but migrate refuses the old lake, saying what to run.
    let out = gov(&lake, &["runs"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("layout version 1") && err.contains("elastirec migrate"),
        "{err}"
    );
    let out = gov_ok(&lake, &["migrate"]);
    assert!(out.contains("migrated layout version 1 to 3"), "{out}");
    assert!(out.contains("warehouse/erasures"), "{out}");
    // 2 -> 3: the id dictionary and the events' event_id column.
    assert!(out.contains("warehouse/ids"), "{out}");
    assert!(
        out.contains("added the column event_id to warehouse/events"),
        "{out}"
    );
    let m = marker(&lake);
    assert_eq!(m["layout_version"], 3);
    assert_eq!(m["migrations"][0]["from"], 1);
    assert_eq!(m["migrations"][1]["from"], 2);
    assert!(lake.join("warehouse/ids/_delta_log").is_dir());
    assert!(lake.join("warehouse/availability/_delta_log").is_dir());
    assert!(lake.join("governance/salt.json").is_file());
    let out = gov_ok(&lake, &["migrate"]);
    assert!(out.contains("nothing to do"), "{out}");
    // The migrated lake works: its history reads, the next night runs, a user can be forgotten.
    let runs = gov_ok(&lake, &["runs"]);
    assert!(runs.contains("2024-01-01"), "{runs}");
    let before = count(&lake, "SELECT COUNT(*) AS n FROM events");
    gov_ok(&lake, &["run", "--date", "2024-01-02", "--force-publish"]);
    assert!(count(&lake, "SELECT COUNT(*) AS n FROM events") > before);
    let user = count(&lake, "SELECT MIN(user_id) AS n FROM events") as i64;
    gov_ok(&lake, &["forget", "--user", &user.to_string()]);
    assert_eq!(
        count(
            &lake,
            &format!("SELECT COUNT(*) AS n FROM events WHERE user_id = {user}")
        ),
        0
    );

    // A lake from a newer elastirec is refused by every command, migrate included.
    let mut newer = marker(&lake);
    newer["layout_version"] = 4.into();
    std::fs::write(lake.join("lake.json"), newer.to_string()).unwrap();
    for args in [&["runs"][..], &["migrate"][..]] {
        let out = gov(&lake, args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("newer") && err.contains("upgrade elastirec"),
            "{err}"
        );
    }
}
