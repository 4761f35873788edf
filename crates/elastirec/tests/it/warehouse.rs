//! The warehouse for analysts and other tools: snapshots and restore, read-only SQL, and the
//! tables and outputs read by the `deltalake` package, pyarrow and DuckDB.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::orchestrator::{NIGHT_3, base_lake, elastirec, run_ok};

fn sql_json(lake: &Path, query: &str) -> Vec<serde_json::Value> {
    run_ok(lake, &["sql", query, "--format", "json"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn snapshots_restore_exact_row_counts_and_sql_reads_the_tables() {
    let root = tempfile::tempdir().unwrap();
    let lake = base_lake(root.path());
    let count = |table: &str| -> u64 {
        sql_json(&lake, &format!("SELECT COUNT(*) AS n FROM {table}"))[0]["n"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count("events"), 6000);
    let loads_before = count("loads");
    let snapshots = run_ok(&lake, &["warehouse", "snapshots"]);
    assert!(
        snapshots.contains("2024-01-01") && snapshots.contains("2024-01-02"),
        "{snapshots}"
    );

    run_ok(&lake, &["run", "--date", NIGHT_3]);
    assert_eq!(count("events"), 9000);
    let out = run_ok(&lake, &["warehouse", "restore", "2024-01-02"]);
    assert!(out.contains("events: restored version"), "{out}");
    // Exactly the snapshot's rows, in every table.
    assert_eq!(count("events"), 6000);
    assert_eq!(count("loads"), loads_before);
    let days = sql_json(
        &lake,
        "SELECT CAST(event_date AS VARCHAR) AS d, COUNT(*) AS n FROM events GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(days.len(), 2, "{days:?}");
    // The next load takes day 3 again, once.
    run_ok(&lake, &["run", "--date", NIGHT_3, "--rerun"]);
    assert_eq!(count("events"), 9000);
    let dupes = sql_json(
        &lake,
        "SELECT COUNT(*) AS n FROM (SELECT user_id, item_id, event_time, COUNT(*) AS c \
         FROM events GROUP BY 1, 2, 3 HAVING COUNT(*) > 1)",
    );
    assert_eq!(dupes[0]["n"], 0);

    let csv = run_ok(
        &lake,
        &[
            "sql",
            "SELECT item_id, title FROM items ORDER BY item_id LIMIT 2",
            "--format",
            "csv",
        ],
    );
    assert_eq!(csv.lines().next(), Some("item_id,title"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let table = run_ok(&lake, &["sql", "SELECT COUNT(*) AS n FROM rejects"]);
    assert!(
        table.contains("| n |") && table.contains("| 0 |"),
        "{table}"
    );

    // Analysts read; they do not write, and a mistake names itself.
    for (query, needle) in [
        ("DROP TABLE events", "DDL not supported"),
        ("SELECT nope FROM events", "nope"),
    ] {
        let out = elastirec(&lake, &["sql", query]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{query}: {stderr}");
        assert!(stderr.contains(needle), "{query}: {stderr}");
    }
    // The shell reads statements ended by ';' from standard input.
    let mut shell = elastirec(&lake, &["sql", "--format", "csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    shell
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT 1 AS x;\nSELECT COUNT(*) AS n\n  FROM events;\n")
        .unwrap();
    let out = shell.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x\n1\nn\n9000\n");
}

#[test]
fn other_tools_read_the_tables_and_outputs_with_the_same_counts() {
    let root = tempfile::tempdir().unwrap();
    let lake = base_lake(root.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/interop.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&lake)
        .arg("2024-01-02")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "interop.py failed (./scripts/test installs deltalake, pyarrow and duckdb):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for table in ["events", "items", "loads", "rejects"] {
        let ours = sql_json(&lake, &format!("SELECT * FROM {table} LIMIT 1"));
        let count = sql_json(&lake, &format!("SELECT COUNT(*) AS n FROM {table}"))[0]["n"].clone();
        assert_eq!(seen["tables"][table]["rows"], count, "{table}: {seen}");
        if let Some(row) = ours.first() {
            let mut theirs: Vec<String> = seen["tables"][table]["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            let mut mine: Vec<String> = row.as_object().unwrap().keys().cloned().collect();
            // JSON lines leave out null columns; every column we print must exist for them.
            theirs.sort();
            mine.sort();
            assert!(
                mine.iter().all(|c| theirs.contains(c)),
                "{table}: {mine:?} vs {theirs:?}"
            );
        }
    }
    assert_eq!(seen["tables"]["events"]["rows"], 6000);
    for what in ["export", "recommendations"] {
        let o = &seen["outputs"][what];
        assert_eq!(o["pyarrow_rows"], o["manifest_rows"], "{what}: {o}");
        assert_eq!(o["duckdb_rows"], o["manifest_rows"], "{what}: {o}");
        assert_eq!(o["columns"], o["manifest_columns"], "{what}: {o}");
        assert!(o["manifest_rows"].as_u64().unwrap() > 0, "{what}: {o}");
    }
    assert_eq!(
        seen["outputs"]["recommendations"]["columns"],
        serde_json::json!(["user_id", "item_id", "rank", "score", "source"])
    );
}

#[test]
fn ingest_reload_replaces_a_changed_files_rows() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    let day = lake.join("raw/events/2024/01/01");
    std::fs::create_dir_all(&day).unwrap();
    let file = day.join("app.csv");
    std::fs::write(
        &file,
        "userId,movieId,rating,timestamp\n1,2,3.0,1704067200\n",
    )
    .unwrap();
    run_ok(&lake, &["ingest", "--date", "2024-01-01"]);
    std::fs::write(
        &file,
        "userId,movieId,rating,timestamp\n1,2,4.0,1704067200\n1,3,4.0,1704067300\n",
    )
    .unwrap();
    let out = run_ok(&lake, &["ingest", "--date", "2024-01-01"]);
    assert!(
        out.contains("--reload raw/events/2024/01/01/app.csv"),
        "{out}"
    );
    let out = run_ok(
        &lake,
        &[
            "ingest",
            "--date",
            "2024-01-01",
            "--reload",
            "raw/events/2024/01/01/app.csv",
        ],
    );
    assert!(out.contains("removed its 1 loaded events"), "{out}");
    assert!(out.contains("loaded 2 rows from 1 files"), "{out}");
    let rows = sql_json(
        &lake,
        "SELECT SUM(value) AS total, COUNT(*) AS n FROM events",
    );
    assert_eq!(rows[0]["n"], 2);
    assert_eq!(rows[0]["total"], 8.0);
}
