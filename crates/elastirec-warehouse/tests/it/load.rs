//! The incremental load: exactly once, late files, and recovery from a crash between commits.

use elastirec_core::config::EventsConfig;
use elastirec_core::layout;
use elastirec_warehouse::{IngestOptions, Warehouse};

use crate::{lake, raw_file, scalar};

#[tokio::test(flavor = "multi_thread")]
async fn loads_each_file_once_and_catches_up_late_files() {
    let (_dir, lake) = lake().await;
    let cfg = EventsConfig::default();
    raw_file(
        &lake,
        "2024-01-01",
        "a.csv",
        &[(1, 10, 5.0, 10), (2, 10, 3.0, 20)],
    )
    .await;
    raw_file(&lake, "2024-01-02", "a.csv", &[(1, 11, 4.0, 10)]).await;
    raw_file(&lake, "2024-01-03", "a.csv", &[(3, 12, 1.0, 10)]).await;
    let wh = Warehouse::open(&lake).await.unwrap();

    let r = wh
        .ingest(
            "2024-01-02".parse().unwrap(),
            &cfg,
            IngestOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.files_loaded, r.rows_loaded, r.files_for_later_nights),
        (2, 3, 1)
    );
    let again = wh
        .ingest(
            "2024-01-02".parse().unwrap(),
            &cfg,
            IngestOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            again.files_loaded,
            again.rows_loaded,
            again.files_already_loaded
        ),
        (0, 0, 2)
    );
    assert_eq!(
        again.events_version, r.events_version,
        "a rerun commits nothing"
    );

    // A file that arrives late for an old day is loaded by the next run.
    raw_file(&lake, "2024-01-01", "late.csv", &[(4, 10, 2.0, 30)]).await;
    let r = wh
        .ingest(
            "2024-01-03".parse().unwrap(),
            &cfg,
            IngestOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((r.files_loaded, r.rows_loaded), (2, 2));
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM events").await, 5);
    assert_eq!(
        scalar(
            &wh,
            "SELECT COUNT(*) FROM events WHERE event_date = DATE '2024-01-01'"
        )
        .await,
        3
    );
    assert_eq!(
        scalar(&wh, "SELECT COUNT(*) FROM loads WHERE target = 'events'").await,
        4
    );

    // A loaded file that changes is reported, not reloaded.
    raw_file(
        &lake,
        "2024-01-02",
        "a.csv",
        &[(1, 11, 4.0, 10), (9, 9, 1.0, 1)],
    )
    .await;
    let r = wh
        .ingest(
            "2024-01-03".parse().unwrap(),
            &cfg,
            IngestOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.rows_loaded, 0);
    assert_eq!(
        r.files_changed,
        vec!["raw/events/2024/01/02/a.csv".to_string()]
    );
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM events").await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_data_and_ledger_commits_does_not_double_load() {
    let (dir, lake) = lake().await;
    let cfg = EventsConfig::default();
    raw_file(
        &lake,
        "2024-01-01",
        "a.csv",
        &[(1, 10, 5.0, 10), (2, 10, 3.0, 20)],
    )
    .await;
    raw_file(&lake, "2024-01-01", "b.csv", &[(3, 11, 4.0, 10)]).await;
    let wh = Warehouse::open(&lake).await.unwrap();
    wh.ingest(
        "2024-01-01".parse().unwrap(),
        &cfg,
        IngestOptions::default(),
    )
    .await
    .unwrap();

    // Undo the ledger commit, as if the process died right after the events commit.
    std::fs::remove_file(last_commit(dir.path(), "loads")).unwrap();
    let wh = Warehouse::open(&lake).await.unwrap();
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM loads").await, 0);

    let r = wh
        .ingest(
            "2024-01-01".parse().unwrap(),
            &cfg,
            IngestOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.files_recovered, 2);
    assert_eq!((r.files_loaded, r.rows_loaded), (0, 0));
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM events").await, 3);
    assert_eq!(scalar(&wh, "SELECT SUM(rows_loaded) FROM loads").await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_bad_row_is_rejected_with_its_reason() {
    let (_dir, lake) = lake().await;
    let night: elastirec_core::Night = "2024-01-02".parse().unwrap();
    let fixture = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/malformed-2024-01-02.csv"),
    )
    .unwrap();
    let path = elastirec_core::layout::raw_events_day(night).join("bad.csv");
    lake.put(&path, fixture).await.unwrap();
    let cfg = EventsConfig {
        value_min: Some(0.5),
        value_max: Some(5.0),
        ..EventsConfig::default()
    };
    let wh = Warehouse::open(&lake).await.unwrap();

    // max_errors 0 (the default): the load fails naming the first rejects and commits nothing.
    let e = wh
        .ingest(night, &cfg, IngestOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("10 rows rejected, more than max_errors = 0 allows"),
        "{e}"
    );
    assert!(
        e.contains("raw/events/2024/01/02/bad.csv:3: column '*': expected 4 fields"),
        "{e}"
    );
    let empty = "SELECT (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM rejects) \
                 + (SELECT COUNT(*) FROM loads)";
    assert_eq!(scalar(&wh, empty).await, 0);

    // A dry run validates and reports, and commits nothing either.
    let dry = IngestOptions {
        max_errors: 100,
        dry_run: true,
        ..IngestOptions::default()
    };
    let r = wh.ingest(night, &cfg, dry).await.unwrap();
    assert_eq!((r.rows_loaded, r.rows_rejected, r.dry_run), (4, 10, true));
    assert_eq!(scalar(&wh, empty).await, 0);

    // Within max_errors the good rows load and every bad row is visible with its reason.
    let options = IngestOptions {
        max_errors: 10,
        dry_run: false,
        ..IngestOptions::default()
    };
    let r = wh.ingest(night, &cfg, options).await.unwrap();
    assert_eq!((r.rows_loaded, r.rows_rejected), (4, 10));
    // Ids are strings: `u4` and `1x` load (as dictionary ids).
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM events").await, 4);
    assert_eq!(
        scalar(&wh, "SELECT SUM(rows_rejected) FROM loads").await,
        10
    );
    let batches = wh
        .sql("SELECT line, \"column\", reason, raw_line FROM rejects ORDER BY line")
        .await
        .unwrap();
    let text = |b: &arrow_array::RecordBatch, i: usize| -> Vec<String> {
        let c = arrow_cast_utf8(b.column(i));
        c.iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect()
    };
    let mut got = Vec::new();
    for b in &batches {
        let (l, c, r, raw) = (text(b, 0), text(b, 1), text(b, 2), text(b, 3));
        for i in 0..b.num_rows() {
            got.push((l[i].clone(), c[i].clone(), r[i].clone(), raw[i].clone()));
        }
    }
    let expected = [
        ("3", "*", "expected 4 fields like the header, found 2"),
        ("4", "*", "expected 4 fields like the header, found 5"),
        ("5", "userId", "no user id"),
        ("8", "rating", "'good' is not a number"),
        ("9", "rating", "'' is not a number"),
        ("10", "rating", "9.5 is outside the configured scale 0.5..5"),
        ("11", "timestamp", "'yesterday' is not a timestamp"),
        (
            "12",
            "timestamp",
            "after the file's day 2024-01-02 by more than 24 hours",
        ),
        ("13", "movieId", "not valid UTF-8"),
        ("14", "rating", "'NaN' is not a number"),
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for ((line, column, reason, raw), (el, ec, er)) in got.iter().zip(expected) {
        assert_eq!((line.as_str(), column.as_str()), (el, ec), "{reason}");
        assert!(reason.contains(er), "line {line}: '{reason}' lacks '{er}'");
        assert!(!raw.is_empty(), "line {line} keeps its raw text");
    }
    assert_eq!(got[0].3, "2,10");
}

fn arrow_cast_utf8(a: &arrow_array::ArrayRef) -> arrow_array::StringArray {
    let c =
        deltalake::arrow::compute::cast(a, &deltalake::arrow::datatypes::DataType::Utf8).unwrap();
    arrow_array::cast::AsArray::as_string::<i32>(&c).clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_of_unknown_items_are_loaded_and_counted() {
    let (_dir, lake) = lake().await;
    raw_file(
        &lake,
        "2024-01-03",
        "a.csv",
        &[
            (1, 10, 3.0, 10),
            (1, 99, 3.0, 20),
            (2, 99, 1.0, 30),
            (2, 98, 1.0, 40),
        ],
    )
    .await;
    let wh = Warehouse::open(&lake).await.unwrap();
    let night = "2024-01-03".parse().unwrap();
    // Without an item dimension there is nothing to compare with.
    let r = wh
        .ingest(night, &EventsConfig::default(), IngestOptions::default())
        .await
        .unwrap();
    assert_eq!(r.unknown_items, None);
    lake.put(
        &layout::raw_items_root().join("movies.csv"),
        b"movieId,title,genres\n10,Heat (1995),Action\n".to_vec(),
    )
    .await
    .unwrap();
    let r = wh
        .ingest(night, &EventsConfig::default(), IngestOptions::default())
        .await
        .unwrap();
    assert_eq!(
        r.unknown_items,
        Some(elastirec_warehouse::UnknownItems {
            events: 3,
            items: 2
        })
    );
    assert_eq!(r.rows_rejected, 0);
    assert_eq!(wh.count_events_through(night).await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_file_is_reported_then_reloaded_on_request() {
    let (_dir, lake) = lake().await;
    raw_file(
        &lake,
        "2024-01-03",
        "a.csv",
        &[(1, 10, 3.0, 10), (1, 11, 3.0, 20)],
    )
    .await;
    raw_file(&lake, "2024-01-03", "b.csv", &[(2, 10, 1.0, 10)]).await;
    let wh = Warehouse::open(&lake).await.unwrap();
    let night = "2024-01-03".parse().unwrap();
    let ingest = || async {
        wh.ingest(night, &EventsConfig::default(), IngestOptions::default())
            .await
            .unwrap()
    };
    ingest().await;
    // The producer rewrites a.csv with corrected data.
    raw_file(
        &lake,
        "2024-01-03",
        "a.csv",
        &[(1, 10, 4.0, 10), (1, 11, 4.0, 20), (1, 12, 4.0, 30)],
    )
    .await;
    let r = ingest().await;
    let a = layout::raw_events_day(night).join("a.csv").to_string();
    assert_eq!(
        r.files_changed,
        std::slice::from_ref(&a),
        "reported, not reloaded"
    );
    assert_eq!(r.rows_loaded, 0);
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM events").await, 3);

    assert_eq!(wh.forget_file(&a).await.unwrap(), 2);
    let r = ingest().await;
    assert_eq!((r.files_loaded, r.rows_loaded), (1, 3));
    assert!(r.files_changed.is_empty());
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM events").await, 4);
    assert_eq!(
        scalar(&wh, "SELECT COUNT(*) FROM events WHERE value = 3.0").await,
        0,
        "no old rows beside the new"
    );
    assert_eq!(
        scalar(
            &wh,
            &format!("SELECT COUNT(*) FROM loads WHERE path = '{a}'")
        )
        .await,
        1
    );
    let e = wh
        .forget_file("raw/events/2024/01/03/nope.csv")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no such event file"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn item_files_are_merged_by_id_not_replaced() {
    let (_dir, lake) = lake().await;
    let wh = Warehouse::open(&lake).await.unwrap();
    let night = "2024-01-03".parse().unwrap();
    let ingest = || async {
        wh.ingest(night, &EventsConfig::default(), IngestOptions::default())
            .await
            .unwrap()
    };
    lake.put(
        &layout::raw_items_root().join("movies.csv"),
        b"movieId,title,genres\n1,Heat (1995),Action\n2,Up (2009),Animation\n".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(ingest().await.items_loaded, Some(2));
    let version = |wh: &Warehouse| {
        let wh = wh.clone();
        async move { wh.versions().await.unwrap()["items"] }
    };
    let v1 = version(&wh).await;
    // Unchanged files: nothing to merge, no commit.
    assert_eq!(ingest().await.items_loaded, None);
    assert_eq!(version(&wh).await, v1);

    // A later file renames item 2 and adds item 3; item 1 appears in no new file and stays.
    lake.put(
        &layout::raw_items_root().join("movies-2.csv"),
        b"movieId,title,genres\n2,Up (2009),Adventure|Animation\n3,Ran (1985),Drama\n".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(
        ingest().await.items_loaded,
        Some(2),
        "one updated, one inserted"
    );
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM items").await, 3);
    assert_eq!(
        scalar(
            &wh,
            "SELECT COUNT(*) FROM items WHERE item_id = 2 AND genres = 'Adventure|Animation' \
             AND source_file = 'raw/items/movies-2.csv'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            &wh,
            "SELECT COUNT(*) FROM items WHERE item_id = 1 AND title = 'Heat (1995)'"
        )
        .await,
        1
    );
    // The same rows again under a new name: matched, identical, nothing updated.
    lake.put(
        &layout::raw_items_root().join("movies-3.csv"),
        b"movieId,title,genres\n3,Ran (1985),Drama\n".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(ingest().await.items_loaded, Some(0));
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM items").await, 3);
    assert_eq!(
        scalar(&wh, "SELECT COUNT(*) FROM loads WHERE target = 'items'").await,
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_load_tags_its_commits_with_one_application_transaction() {
    let (dir, lake) = lake().await;
    let cfg = EventsConfig::default();
    let wh = Warehouse::open(&lake).await.unwrap();
    for (day, n) in [("2024-01-01", 1), ("2024-01-02", 2)] {
        raw_file(&lake, day, "a.csv", &[(1, 10, 5.0, 10)]).await;
        wh.ingest(day.parse().unwrap(), &cfg, IngestOptions::default())
            .await
            .unwrap();
        // The newest commit of events and of loads both carry load number n.
        for table in ["events", "loads"] {
            let last = std::fs::read_to_string(last_commit(dir.path(), table)).unwrap();
            let txn: serde_json::Value = last
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find_map(|a| a.get("txn").cloned())
                .unwrap_or_else(|| panic!("{table}: no txn action in {last}"));
            assert_eq!(txn["appId"], elastirec_warehouse::INGEST_APP, "{table}");
            assert_eq!(txn["version"], n, "{table}");
        }
    }
    // A commit by someone else (a delete) is not mistaken for an unrecorded load.
    wh.forget_file("raw/events/2024/01/01/a.csv").await.unwrap();
    let r = wh
        .ingest(
            "2024-01-02".parse().unwrap(),
            &cfg,
            IngestOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.files_recovered, 0);
    assert_eq!(r.files_loaded, 1, "the forgotten file loads again");
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM events").await, 2);
}

/// The newest commit file of a warehouse table in a lake under `root`.
fn last_commit(root: &std::path::Path, table: &str) -> std::path::PathBuf {
    let log = root.join(format!("lake/warehouse/{table}/_delta_log"));
    std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .max()
        .unwrap()
}
