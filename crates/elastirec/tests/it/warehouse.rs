//! The warehouse for analysts and other tools: snapshots and restore, read-only SQL, and the
//! tables and outputs read by the `deltalake` package, pyarrow and DuckDB.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

    // Vacuum keeps what the newest snapshots read. Snapshots now: 01, 02, 03 (03 retaken by the
    // rerun); the restore to 02 left day 3's first files unreferenced.
    let loads_after = count("loads");
    let dry = run_ok(&lake, &["warehouse", "vacuum", "--keep", "2", "--dry-run"]);
    assert!(dry.contains("would delete"), "{dry}");
    assert_eq!(count("events"), 9000);
    let deleted_events = |out: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix("events: deleted "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no events line: {out}"))
    };
    // By default, files that left the tables within 24 hours stay for readers of those
    // versions (a `warehouse serve` client, a night in progress).
    let out = run_ok(&lake, &["warehouse", "vacuum", "--keep", "2"]);
    assert!(
        out.contains("snapshot records deleted: 2024-01-01"),
        "{out}"
    );
    assert_eq!(deleted_events(&out), 0, "{out}");
    let out = run_ok(
        &lake,
        &["warehouse", "vacuum", "--keep", "2", "--retain-hours", "0"],
    );
    assert!(deleted_events(&out) >= 1, "{out}");
    let snapshots = run_ok(&lake, &["warehouse", "snapshots"]);
    assert!(!snapshots.contains("2024-01-01"), "{snapshots}");
    // A kept snapshot still restores exactly; a dropped one is gone.
    run_ok(&lake, &["warehouse", "restore", "2024-01-02"]);
    assert_eq!(count("events"), 6000);
    let out = elastirec(&lake, &["warehouse", "restore", "2024-01-01"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("snapshot '2024-01-01'"), "{stderr}");
    run_ok(&lake, &["warehouse", "restore", "2024-01-03"]);
    assert_eq!(count("events"), 9000);
    assert_eq!(count("loads"), loads_after);
}

/// The training export is kept unless --overwrite, and its SQL can be replaced by files.
#[test]
fn prepare_keeps_an_export_unless_overwrite_and_reads_sql_files() {
    let root = tempfile::tempdir().unwrap();
    let lake = base_lake(root.path());
    let manifest = |lake: &Path| -> serde_json::Value {
        let text = std::fs::read_to_string(lake.join("exports/training/2024/01/02/_manifest.json"))
            .unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let before = manifest(&lake);
    let out = elastirec(&lake, &["prepare", "--date", "2024-01-02"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--overwrite"), "{stderr}");
    assert_eq!(manifest(&lake)["created_at"], before["created_at"]);
    run_ok(&lake, &["prepare", "--date", "2024-01-02", "--overwrite"]);
    let again = manifest(&lake);
    assert_ne!(again["created_at"], before["created_at"]);
    assert_eq!(again["rows"], before["rows"]);
    assert_eq!(again["sql_hash"], before["sql_hash"]);

    // The user's own training.sql: only ratings of 4 and more train.
    let sql = root.path().join("sql");
    let out = run_ok(&lake, &["sql-files", "--write", sql.to_str().unwrap()]);
    assert!(out.contains("training.sql"), "{out}");
    let training = std::fs::read_to_string(sql.join("training.sql")).unwrap();
    std::fs::write(
        sql.join("training.sql"),
        training.replace("AND value >= ${min_value}", "AND value >= 4"),
    )
    .unwrap();
    let config = root.path().join("elastirec.toml");
    std::fs::write(&config, "[prepare]\nsql_dir = \"sql\"\n").unwrap();
    let cfg = config.to_str().unwrap();
    let printed = run_ok(
        &lake,
        &["--config", cfg, "sql-files", "--date", "2024-01-02"],
    );
    assert!(printed.contains("AND value >= 4"), "{printed}");
    run_ok(
        &lake,
        &[
            "--config",
            cfg,
            "prepare",
            "--date",
            "2024-01-02",
            "--overwrite",
        ],
    );
    let custom = manifest(&lake);
    assert_ne!(custom["sql_hash"], before["sql_hash"]);
    assert!(
        custom["rows"].as_u64().unwrap() < before["rows"].as_u64().unwrap(),
        "{custom} vs {before}"
    );
    let low = sql_json(
        &lake,
        "SELECT COUNT(*) AS n FROM events WHERE value < 4 AND event_date <= DATE '2024-01-02'",
    )[0]["n"]
        .as_u64()
        .unwrap();
    assert!(low > 0);
    // A mistake in the user's file names the file and is the user's fault (exit 2).
    std::fs::write(sql.join("seen.sql"), "SELECT user_id FROM ${nights}\n").unwrap();
    let out = elastirec(
        &lake,
        &[
            "--config",
            cfg,
            "prepare",
            "--date",
            "2024-01-02",
            "--overwrite",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("seen.sql:1") && stderr.contains("${nights}"),
        "{stderr}"
    );
}

/// A `warehouse serve` process and the real psql client against it.
struct PgServer {
    child: std::process::Child,
    port: u16,
}

/// A psql invocation's outcome: success, standard output (trimmed), standard error.
struct Psql {
    ok: bool,
    out: String,
    err: String,
}

impl PgServer {
    /// Starts `warehouse serve` on `host` with the `[pgwire]` settings in `env`
    /// (ELASTIREC_PGWIRE__*), without waiting for it to listen.
    fn start(lake: &Path, host: &str, env: &[(&str, &str)]) -> PgServer {
        if Command::new("psql").arg("--version").output().is_err() {
            panic!("psql is not installed: apt-get install postgresql-client");
        }
        let port = free_port();
        let mut command = elastirec(
            lake,
            &[
                "warehouse",
                "serve",
                "--host",
                host,
                "--port",
                &port.to_string(),
            ],
        );
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        PgServer { child, port }
    }

    /// psql as `user` (password from PGPASSWORD, never argv; `-w`: never prompt), running each
    /// of `commands` in one session and going on after errors; `conn` adds libpq settings.
    fn psql_as(&self, user: &str, password: Option<&str>, conn: &str, commands: &[&str]) -> Psql {
        let mut c = Command::new("psql");
        c.arg(format!(
            "host=127.0.0.1 port={} user={user} dbname=elastirec connect_timeout=5 {conn}",
            self.port
        ))
        .args(["-X", "-A", "-t", "-q", "-w"]);
        for command in commands {
            c.args(["-c", command]);
        }
        c.env_remove("PGPASSWORD").env("PGSSLMODE", "disable");
        if conn.contains("sslmode") {
            c.env_remove("PGSSLMODE");
        }
        if let Some(p) = password {
            c.env("PGPASSWORD", p);
        }
        let o = c.output().unwrap();
        Psql {
            // psql exits 0 after an error of a -c command unless ON_ERROR_STOP; an error is on
            // stderr.
            ok: o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("ERROR"),
            out: String::from_utf8_lossy(&o.stdout).trim().to_string(),
            err: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Waits up to a minute for `query` to succeed as `user`.
    fn wait(&mut self, user: &str, password: Option<&str>, query: &str) -> Psql {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.psql_as(user, password, "", &[query]);
            if out.ok || Instant::now() > deadline {
                return out;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "the server exited"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// SIGTERM, then the exit status and standard error.
    fn stop(self) -> (std::process::ExitStatus, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let out = self.child.wait_with_output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// `warehouse serve`: the real psql client reads the tables; every statement that is not a read
/// query over them is refused, on every path (issue 21: COPY TO, CREATE EXTERNAL TABLE and a
/// cursor around INSERT ran); DataFusion settings stay the server's.
#[test]
fn psql_reads_the_warehouse_over_the_postgres_protocol() {
    let root = tempfile::tempdir().unwrap();
    let lake = base_lake(root.path());
    let mut server = PgServer::start(&lake, "127.0.0.1", &[]);
    // No password configured: any user on loopback.
    let first = server.wait("analyst", None, "SELECT COUNT(*) FROM events");
    let psql = |query: &str| server.psql_as("analyst", None, "", &[query]);
    assert!(first.ok, "{}", first.err);
    assert_eq!(first.out, "6000");
    let elastirec_count = sql_json(&lake, "SELECT COUNT(*) AS n FROM loads")[0]["n"].clone();
    assert_eq!(
        psql("SELECT COUNT(*) FROM loads").out,
        elastirec_count.to_string()
    );
    let days =
        psql("SELECT CAST(event_date AS VARCHAR), COUNT(*) FROM events GROUP BY 1 ORDER BY 1");
    assert_eq!(days.out, "2024-01-01|3000\n2024-01-02|3000");
    assert!(psql("SELECT title FROM items WHERE item_id = 1").ok);
    // What tools run: the catalog, EXPLAIN, cursors over queries.
    let listed = psql("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'events'");
    assert_eq!(listed.out, "1", "{}", listed.err);
    let cursor = server.psql_as(
        "analyst",
        None,
        "",
        &[
            "BEGIN",
            "DECLARE c CURSOR FOR SELECT item_id FROM items ORDER BY item_id",
            "FETCH 2 FROM c",
            "CLOSE c",
            "COMMIT",
        ],
    );
    assert!(cursor.ok, "{}", cursor.err);
    let ids = sql_json(&lake, "SELECT item_id FROM items ORDER BY item_id LIMIT 2");
    assert_eq!(
        cursor.out,
        format!("{}\n{}", ids[0]["item_id"], ids[1]["item_id"])
    );

    let outside = root.path().join("copied.csv");
    let copy = format!("COPY (SELECT 42 AS x) TO '{}'", outside.display());
    let copy_table = format!("COPY events TO '{}'", outside.display());
    let shadow = root.path().join("shadow");
    let external = format!(
        "CREATE EXTERNAL TABLE shadow STORED AS PARQUET LOCATION '{}'",
        shadow.display()
    );
    let cursor_copy = format!(
        "DECLARE d CURSOR FOR SELECT * FROM (COPY (SELECT 1) TO '{}')",
        outside.display()
    );
    for write in [
        "INSERT INTO events SELECT * FROM events",
        "DELETE FROM events",
        "CREATE TABLE x AS SELECT 1",
        "DROP TABLE events",
        copy.as_str(),
        copy_table.as_str(),
        external.as_str(),
        "DECLARE c CURSOR FOR INSERT INTO erasures SELECT * FROM erasures",
        "EXPLAIN ANALYZE INSERT INTO erasures SELECT * FROM erasures",
        "PREPARE p AS SELECT 1",
        "SET datafusion.execution.batch_size = 1",
        "SET datafusion.runtime.memory_limit = '100G'",
    ] {
        let out = psql(write);
        assert!(!out.ok, "{write} was accepted: {}", out.out);
        assert!(out.err.contains("read-only"), "{write}: {}", out.err);
    }
    // Refused or not even parsed: nothing runs either way.
    let out = psql(&cursor_copy);
    assert!(!out.ok, "{cursor_copy} was accepted");
    assert!(!outside.exists(), "COPY wrote {}", outside.display());
    assert!(
        !shadow.exists(),
        "CREATE EXTERNAL TABLE made {}",
        shadow.display()
    );
    let tables = psql("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'shadow'");
    assert_eq!(tables.out, "0", "{}", tables.err);
    assert_eq!(psql("SELECT COUNT(*) FROM events").out, "6000");
    assert_eq!(
        psql("SELECT COUNT(*) FROM erasures").out,
        sql_json(&lake, "SELECT COUNT(*) AS n FROM erasures")[0]["n"].to_string()
    );
    // What clients send on connecting still runs.
    let settings = server.psql_as(
        "analyst",
        None,
        "",
        &[
            "SET extra_float_digits = 3",
            "SET application_name = 'bi'",
            "SET client_min_messages = warning",
            "SELECT 1",
        ],
    );
    assert!(settings.ok, "{}", settings.err);
    // A DataFusion SET is refused in its session and changes nothing there or in another.
    let batch = "SELECT value FROM information_schema.df_settings \
                 WHERE name = 'datafusion.execution.batch_size'";
    let one = server.psql_as(
        "analyst",
        None,
        "",
        &["SET datafusion.execution.batch_size = 7", batch],
    );
    assert!(one.err.contains("read-only"), "{}", one.err);
    assert_eq!(one.out, "8192");
    assert_eq!(psql(batch).out, "8192");

    // A nightly run commits; the server sees the new version within seconds.
    run_ok(&lake, &["run", "--date", NIGHT_3]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = psql("SELECT COUNT(*) FROM events").out;
        if n == "9000" {
            break;
        }
        assert!(Instant::now() < deadline, "still {n} after the run");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (status, _) = server.stop();
    assert!(status.success(), "{status:?}");
}

/// `[pgwire] password` (from ELASTIREC_PGWIRE__PASSWORD only) with SCRAM-SHA-256 for
/// `[pgwire] user`, TLS, the connection limit and the statement timeout; a public address
/// needs the password.
#[test]
fn psql_logs_in_with_a_password_over_tls_within_the_limits() {
    let root = tempfile::tempdir().unwrap();
    let lake = base_lake(root.path());

    // No password: a non-loopback address is refused before anything listens.
    let refused = elastirec(
        &lake,
        &["warehouse", "serve", "--host", "0.0.0.0", "--port", "0"],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("without a password") && stderr.contains("ELASTIREC_PGWIRE__PASSWORD"),
        "{stderr}"
    );

    // A self-signed certificate for TLS.
    let cert = root.path().join("server.crt");
    let key = root.path().join("server.key");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is not installed: apt-get install openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let password = "correct horse 1234";
    let mut server = PgServer::start(
        &lake,
        "0.0.0.0",
        &[
            ("ELASTIREC_PGWIRE__PASSWORD", password),
            ("ELASTIREC_PGWIRE__MAX_CONNECTIONS", "2"),
            ("ELASTIREC_PGWIRE__STATEMENT_TIMEOUT_SECS", "2"),
            ("ELASTIREC_PGWIRE__TLS_CERT", cert.to_str().unwrap()),
            ("ELASTIREC_PGWIRE__TLS_KEY", key.to_str().unwrap()),
        ],
    );
    let first = server.wait("elastirec", Some(password), "SELECT COUNT(*) FROM events");
    assert!(first.ok, "{}", first.err);
    assert_eq!(first.out, "6000");

    for (user, given) in [
        ("elastirec", Some("wrong")),
        ("elastirec", None),
        ("postgres", Some(password)),
    ] {
        let out = server.psql_as(user, given, "", &["SELECT COUNT(*) FROM events"]);
        assert!(!out.ok, "{user} {given:?} got in: {}", out.out);
        assert!(out.out.is_empty(), "{user} {given:?} read {}", out.out);
        assert!(
            out.err
                .to_lowercase()
                .contains("password authentication failed")
                || out.err.contains("no password supplied"),
            "{user} {given:?}: {}",
            out.err
        );
    }

    // TLS: libpq asks for it and gets it.
    let tls = server.psql_as(
        "elastirec",
        Some(password),
        "sslmode=require",
        &["\\conninfo"],
    );
    assert!(tls.ok, "{}", tls.err);
    assert!(tls.out.contains("SSL connection"), "{}", tls.out);

    // The statement timeout cancels a long query, rows and all.
    let long = server.psql_as(
        "elastirec",
        Some(password),
        "",
        &["SELECT COUNT(*) FROM generate_series(1, 20000000000) AS g WHERE g.value % 7 = 3"],
    );
    assert!(
        long.err.contains("statement timeout"),
        "{} / {}",
        long.out,
        long.err
    );

    // max_connections = 2: two open sessions, a third is refused, and admitted once one ends.
    let session = || {
        let mut c = Command::new("psql");
        c.arg(format!(
            "host=127.0.0.1 port={} user=elastirec dbname=elastirec sslmode=disable",
            server.port
        ))
        .args(["-X", "-A", "-t", "-q", "-w", "-f", "-"])
        .env("PGPASSWORD", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"SELECT 'open';\n").unwrap();
        stdin.flush().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "open");
        (child, stdin)
    };
    let held = [session(), session()];
    let third = server.psql_as("elastirec", Some(password), "", &["SELECT 1"]);
    assert!(!third.ok, "a third connection got in");
    assert!(third.err.contains("too many clients"), "{}", third.err);
    for (mut child, stdin) in held {
        drop(stdin);
        child.wait().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut again = server.psql_as("elastirec", Some(password), "", &["SELECT 1"]);
    while !again.ok && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        again = server.psql_as("elastirec", Some(password), "", &["SELECT 1"]);
    }
    assert!(again.ok, "{}", again.err);

    let (status, stderr) = server.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        !stderr.contains(password),
        "the password is in the log: {stderr}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// Commands that only read refuse a lake that does not exist, and create nothing there: a
/// mistyped `--lake` is not taken for a new, empty lake.
#[test]
fn read_only_commands_refuse_a_mistyped_lake_and_create_nothing() {
    let root = tempfile::tempdir().unwrap();
    let typo = root.path().join("lkae");
    for args in [
        &["runs"][..],
        &["status"],
        &["cost"],
        &["show", "--user", "1"],
        &["sql", "SELECT 1"],
        &["warehouse", "snapshots"],
    ] {
        let out = crate::harness::run(&typo, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no lake at") && stderr.contains("lkae"),
            "{args:?}: {stderr}"
        );
        assert!(!typo.exists(), "{args:?} created {typo:?}");
    }
    // A folder that is not a lake is not made one either.
    std::fs::create_dir(&typo).unwrap();
    let out = crate::harness::run(&typo, &["runs"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lake.json"));
    assert_eq!(std::fs::read_dir(&typo).unwrap().count(), 0);
}
