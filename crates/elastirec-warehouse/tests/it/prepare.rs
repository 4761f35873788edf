//! The training export: window, seen pairs, manifest, and reruns of old nights.

use elastirec_core::config::{Aggregate, EventsConfig, PrepareConfig};
use elastirec_core::layout;
use elastirec_core::manifest::ExportManifest;
use elastirec_warehouse::{IngestOptions, Warehouse};

use crate::{lake, raw_file};

/// (user, item, value if the files have one) rows of export files, sorted.
async fn rows(
    lake: &elastirec_core::Lake,
    files: &[elastirec_core::manifest::FileEntry],
) -> Vec<(i64, i64, Option<f32>)> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int64Type};
    let mut out = Vec::new();
    for b in crate::read_files(lake, files).await {
        let u = b
            .column_by_name("user_id")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        let i = b
            .column_by_name("item_id")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        let v = b
            .column_by_name("value")
            .map(|c| c.as_primitive::<Float32Type>().clone());
        for r in 0..b.num_rows() {
            out.push((u.value(r), i.value(r), v.as_ref().map(|v| v.value(r))));
        }
    }
    out.sort_by_key(|r| (r.0, r.1));
    out
}

async fn pairs(
    lake: &elastirec_core::Lake,
    files: &[elastirec_core::manifest::FileEntry],
) -> Vec<(i64, i64)> {
    rows(lake, files)
        .await
        .into_iter()
        .map(|(u, i, _)| (u, i))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_window_is_the_whole_history() {
    let (_dir, lake) = lake().await;
    // A user whose only events are six years before the night, and one from the night itself.
    raw_file(&lake, "2018-01-01", "a.csv", &[(1, 10, 5.0, 10)]).await;
    raw_file(&lake, "2024-01-03", "a.csv", &[(2, 11, 3.0, 10)]).await;
    let wh = Warehouse::open(&lake).await.unwrap();
    let night = "2024-01-03".parse().unwrap();
    wh.ingest(night, &EventsConfig::default(), IngestOptions::default())
        .await
        .unwrap();
    let params = PrepareConfig::default();
    assert_eq!(params.window_days, 0);
    let m = wh.prepare(night, &params).await.unwrap();
    // Both users are trained (a personal list each); nothing is older than the window.
    assert_eq!(pairs(&lake, &m.files).await, vec![(1, 10), (2, 11)]);
    assert_eq!(m.seen_rows, 0);
    assert_eq!(m.window_text(), "the whole history to 2024-01-03");
    // A one-year window leaves the first user's pair to the seen pairs (popularity list).
    let m = wh
        .prepare(
            night,
            &PrepareConfig {
                window_days: 365,
                ..PrepareConfig::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(pairs(&lake, &m.files).await, vec![(2, 11)]);
    assert_eq!(pairs(&lake, &m.seen_files).await, vec![(1, 10)]);
    assert_eq!(m.window_text(), "2023-01-04 to 2024-01-03");
}

#[tokio::test(flavor = "multi_thread")]
async fn exports_the_window_and_older_seen_pairs() {
    let (_dir, lake) = lake().await;
    raw_file(
        &lake,
        "2024-01-01",
        "a.csv",
        &[(1, 10, 5.0, 10), (1, 11, 1.0, 20)],
    )
    .await;
    raw_file(
        &lake,
        "2024-01-03",
        "a.csv",
        &[(1, 12, 4.0, 10), (2, 10, 3.0, 10), (2, 10, 4.0, 99)],
    )
    .await;
    raw_file(&lake, "2024-01-04", "a.csv", &[(3, 13, 4.0, 10)]).await;
    let wh = Warehouse::open(&lake).await.unwrap();
    wh.ingest(
        "2024-01-04".parse().unwrap(),
        &EventsConfig::default(),
        IngestOptions::default(),
    )
    .await
    .unwrap();

    let params = PrepareConfig {
        window_days: 2,
        min_value: None,
        aggregate: Aggregate::Max,
        ..PrepareConfig::default()
    };
    let m = wh
        .prepare("2024-01-03".parse().unwrap(), &params)
        .await
        .unwrap();
    // Window 2024-01-02..03: pairs (1,12) and (2,10) (two events, strongest value 4).
    assert_eq!(m.rows, 2);
    assert_eq!((m.users, m.items), (2, 2));
    assert_eq!(m.window_start.to_string(), "2024-01-02");
    assert_eq!(pairs(&lake, &m.files).await, vec![(1, 12), (2, 10)]);
    // Seen before the window: (1,10), (1,11). Day 4 is after the night: not there.
    assert_eq!(pairs(&lake, &m.seen_files).await, vec![(1, 10), (1, 11)]);
    assert!(m.table_versions["events"] >= 1);
    let on_disk: ExportManifest = lake
        .get_json(
            &layout::training_export_manifest("2024-01-03".parse().unwrap()),
            "m",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(on_disk, m);
    for f in m.files.iter().chain(&m.seen_files) {
        assert!(
            f.path.starts_with("exports/training/2024/01/03/"),
            "{}",
            f.path
        );
    }

    // min_value drops weak events from training; they stay seen.
    let params = PrepareConfig {
        window_days: 10,
        min_value: Some(2.0),
        aggregate: Aggregate::Max,
        ..PrepareConfig::default()
    };
    let m = wh
        .prepare("2024-01-03".parse().unwrap(), &params)
        .await
        .unwrap();
    assert_eq!(
        pairs(&lake, &m.files).await,
        vec![(1, 10), (1, 12), (2, 10)]
    );
    assert_eq!(pairs(&lake, &m.seen_files).await, vec![(1, 11)]);
    // A redo leaves only the files its manifest lists.
    let listed: Vec<String> = lake
        .list(&layout::training_export_dir("2024-01-03".parse().unwrap()))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.location.to_string())
        .filter(|p| p.ends_with(".parquet"))
        .collect();
    let mut expected: Vec<String> = m
        .files
        .iter()
        .chain(&m.seen_files)
        .chain(&m.item_files)
        .map(|f| f.path.clone())
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregates_turn_a_pairs_events_into_one_value() {
    let (_dir, lake) = lake().await;
    // Pair (2, 10): 3.0 then 4.0 later in the day, then 1.0 the next day.
    raw_file(
        &lake,
        "2024-01-03",
        "a.csv",
        &[(2, 10, 3.0, 10), (2, 10, 4.0, 99)],
    )
    .await;
    raw_file(
        &lake,
        "2024-01-04",
        "a.csv",
        &[(2, 10, 1.0, 5), (1, 10, 2.0, 5)],
    )
    .await;
    let wh = Warehouse::open(&lake).await.unwrap();
    wh.ingest(
        "2024-01-04".parse().unwrap(),
        &EventsConfig::default(),
        IngestOptions::default(),
    )
    .await
    .unwrap();
    for (aggregate, expected) in [
        (Aggregate::Sum, 8.0),
        (Aggregate::Max, 4.0),
        (Aggregate::Last, 1.0),
        (Aggregate::Count, 3.0),
    ] {
        let params = PrepareConfig {
            aggregate,
            ..PrepareConfig::default()
        };
        let m = wh
            .prepare("2024-01-04".parse().unwrap(), &params)
            .await
            .unwrap();
        let got = rows(&lake, &m.files).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], (2, 10, Some(expected)), "{aggregate:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_delivered_twice_counts_once() {
    let (_dir, lake) = lake().await;
    // The producer retried an upload: the same event is in two files, next to a distinct one.
    raw_file(
        &lake,
        "2024-01-03",
        "a.csv",
        &[(2, 10, 3.0, 10), (2, 11, 1.0, 20)],
    )
    .await;
    raw_file(&lake, "2024-01-03", "a-retry.csv", &[(2, 10, 3.0, 10)]).await;
    // The same pair again at another time is a second event, not a duplicate.
    raw_file(&lake, "2024-01-03", "b.csv", &[(2, 10, 3.0, 30)]).await;
    let wh = Warehouse::open(&lake).await.unwrap();
    let night = "2024-01-03".parse().unwrap();
    wh.ingest(night, &EventsConfig::default(), IngestOptions::default())
        .await
        .unwrap();
    // Every delivered row is kept with its source file...
    assert_eq!(wh.count_events_through(night).await.unwrap(), 4);
    // ...and training counts each distinct event once.
    for (aggregate, expected) in [(Aggregate::Sum, 6.0), (Aggregate::Count, 2.0)] {
        let params = PrepareConfig {
            aggregate,
            ..PrepareConfig::default()
        };
        let m = wh.prepare(night, &params).await.unwrap();
        let got = rows(&lake, &m.files).await;
        assert_eq!(
            got,
            [(2, 10, Some(expected)), (2, 11, Some(1.0))],
            "{aggregate:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn users_and_items_below_the_minimum_events_are_left_out_of_training() {
    let (_dir, lake) = lake().await;
    // User 1: 3 events; user 2: 1 event. Item 10: 3 events; items 11, 12: 1 each.
    raw_file(
        &lake,
        "2024-01-03",
        "a.csv",
        &[
            (1, 10, 1.0, 10),
            (1, 11, 1.0, 20),
            (1, 12, 1.0, 30),
            (2, 10, 1.0, 40),
            (3, 10, 1.0, 50),
        ],
    )
    .await;
    let wh = Warehouse::open(&lake).await.unwrap();
    let night = "2024-01-03".parse().unwrap();
    wh.ingest(night, &EventsConfig::default(), IngestOptions::default())
        .await
        .unwrap();
    let params = PrepareConfig {
        min_user_events: 2,
        min_item_events: 2,
        ..PrepareConfig::default()
    };
    let m = wh.prepare(night, &params).await.unwrap();
    assert_eq!(pairs(&lake, &m.files).await, [(1, 10)]);
    // What training leaves out is still seen, so those users get the popularity fallback and
    // are never recommended what they already have.
    assert_eq!(
        pairs(&lake, &m.seen_files).await,
        [(1, 11), (1, 12), (2, 10), (3, 10)]
    );
    assert_eq!((m.users, m.items), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn exports_the_item_dimension_for_serving() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let (_dir, lake) = lake().await;
    raw_file(&lake, "2024-01-03", "a.csv", &[(1, 10, 3.0, 10)]).await;
    lake.put(
        &layout::raw_items_root().join("movies.csv"),
        b"movieId,title,genres\n10,\"Heat, the film (1995)\",Action|Crime\n12,Up,Animation\n"
            .to_vec(),
    )
    .await
    .unwrap();
    let wh = Warehouse::open(&lake).await.unwrap();
    let night = "2024-01-03".parse().unwrap();
    wh.ingest(night, &EventsConfig::default(), IngestOptions::default())
        .await
        .unwrap();
    let m = wh.prepare(night, &PrepareConfig::default()).await.unwrap();
    assert_eq!(m.item_rows, 2);
    let mut items = Vec::new();
    for f in &m.item_files {
        assert!(
            f.path.starts_with("exports/training/2024/01/03/items-"),
            "{}",
            f.path
        );
        let body = lake.get(&f.path.as_str().into()).await.unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            let ids = b
                .column_by_name("item_id")
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone();
            let titles = b
                .column_by_name("title")
                .unwrap()
                .as_string::<i32>()
                .clone();
            let genres = b
                .column_by_name("genres")
                .unwrap()
                .as_string::<i32>()
                .clone();
            for r in 0..b.num_rows() {
                items.push((
                    ids.value(r),
                    titles.value(r).to_string(),
                    genres.value(r).to_string(),
                ));
            }
        }
    }
    items.sort();
    assert_eq!(
        items,
        [
            (
                10,
                "Heat, the film (1995)".to_string(),
                "Action|Crime".to_string()
            ),
            (12, "Up".to_string(), "Animation".to_string()),
        ]
    );
}
