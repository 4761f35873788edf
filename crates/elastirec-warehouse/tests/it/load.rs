//! The incremental load: exactly once, late files, and recovery from a crash between commits.

use elastirec_core::config::EventsConfig;
use elastirec_warehouse::Warehouse;

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
        .ingest("2024-01-02".parse().unwrap(), &cfg)
        .await
        .unwrap();
    assert_eq!(
        (r.files_loaded, r.rows_loaded, r.files_for_later_nights),
        (2, 3, 1)
    );
    let again = wh
        .ingest("2024-01-02".parse().unwrap(), &cfg)
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
        .ingest("2024-01-03".parse().unwrap(), &cfg)
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
        .ingest("2024-01-03".parse().unwrap(), &cfg)
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
    wh.ingest("2024-01-01".parse().unwrap(), &cfg)
        .await
        .unwrap();

    // Undo the ledger commit, as if the process died right after the events commit.
    let log = dir.path().join("lake/warehouse/loads/_delta_log");
    let mut commits: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    commits.sort();
    std::fs::remove_file(commits.last().unwrap()).unwrap();
    let wh = Warehouse::open(&lake).await.unwrap();
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM loads").await, 0);

    let r = wh
        .ingest("2024-01-01".parse().unwrap(), &cfg)
        .await
        .unwrap();
    assert_eq!(r.files_recovered, 2);
    assert_eq!((r.files_loaded, r.rows_loaded), (0, 0));
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM events").await, 3);
    assert_eq!(scalar(&wh, "SELECT SUM(rows_loaded) FROM loads").await, 3);
}
