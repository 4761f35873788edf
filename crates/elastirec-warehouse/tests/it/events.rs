//! Real businesses' event files: string ids, JSON lines, compression, hour folders, markers,
//! field mapping, presets and de-duplication, on the shared real data sets where they exist.

use std::io::Write;
use std::path::{Path, PathBuf};

use elastirec_core::config::EventsConfig;
use elastirec_core::{Lake, Night};
use elastirec_warehouse::{IngestOptions, Warehouse};

use crate::{lake, scalar};

fn shared(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} not found", p.display());
        None
    }
}

fn config(toml_text: &str) -> EventsConfig {
    toml::from_str(toml_text).unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

async fn put(lake: &Lake, path: &str, body: Vec<u8>) {
    lake.put(&path.into(), body).await.unwrap();
}

fn night(s: &str) -> Night {
    s.parse().unwrap()
}

fn options(max_errors: u64) -> IngestOptions {
    IngestOptions {
        max_errors,
        dry_run: false,
        ..IngestOptions::default()
    }
}

#[tokio::test]
async fn amazon_beauty_gzip_json_lines_with_string_ids_and_duplicate_lines() {
    let Some(file) = shared("amazon-beauty-5core/All_Beauty_5.json.gz") else {
        return;
    };
    let (_dir, lake) = lake().await;
    put(
        &lake,
        "raw/events/2018/08/23/All_Beauty_5.json.gz",
        std::fs::read(file).unwrap(),
    )
    .await;
    let cfg = config(
        r#"user_column = "reviewerID"
           item_column = "asin"
           value_column = "overall"
           timestamp_column = "unixReviewTime""#,
    );
    let wh = Warehouse::open(&lake).await.unwrap();
    let r = wh
        .ingest(night("2018-08-23"), &cfg, options(0))
        .await
        .unwrap();
    // 5,269 lines: 1,027 exact duplicates of another line (the data set's README), and 76 more
    // that differ from another line only in fields an event does not keep (review text, style):
    // the same user, product, rating and time, so the same event.
    assert_eq!((r.rows_loaded, r.rows_duplicate), (4166, 1103), "{r:?}");
    assert_eq!(r.rows_rejected, 0, "{:?}", r.first_rejects);
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM events").await, 4166);
    assert_eq!(
        scalar(
            &wh,
            "SELECT COUNT(*) FROM (SELECT DISTINCT user_id, item_id, value, event_time FROM events)"
        )
        .await,
        4166,
        "what loads is free of duplicates"
    );
    assert_eq!(
        scalar(&wh, "SELECT COUNT(DISTINCT user_id) FROM events").await,
        991
    );
    assert_eq!(
        scalar(&wh, "SELECT COUNT(DISTINCT item_id) FROM events").await,
        85
    );
    // Every reviewer id is a string: the dictionary names each one once.
    assert_eq!(
        scalar(&wh, "SELECT COUNT(*) FROM ids WHERE kind = 'user'").await,
        991
    );
    let names = wh.id_names().await.unwrap();
    let id = names
        .users
        .internal("A3CIUOJXQ5VDQ2")
        .expect("a known reviewer");
    assert_eq!(names.users.external(id), "A3CIUOJXQ5VDQ2");
    // A rerun loads nothing and gives no new ids.
    let again = wh
        .ingest(night("2018-08-24"), &cfg, options(0))
        .await
        .unwrap();
    assert_eq!((again.rows_loaded, again.ids_assigned), (0, 0));
}

#[tokio::test]
async fn rees46_csv_with_utc_suffixed_times_and_event_types() {
    let Some(file) = shared("rees46-sample/2019-Oct-head.csv") else {
        return;
    };
    let (_dir, lake) = lake().await;
    put(
        &lake,
        "raw/events/2019/10/01/2019-Oct-head.csv",
        std::fs::read(file).unwrap(),
    )
    .await;
    let cfg = config(
        r#"user_column = "user_id"
           item_column = "product_id"
           value_column = ""
           timestamp_column = "event_time"
           timestamp_format = "%Y-%m-%d %H:%M:%S UTC"
           event_type_column = "event_type""#,
    );
    let wh = Warehouse::open(&lake).await.unwrap();
    let r = wh
        .ingest(night("2019-10-01"), &cfg, options(0))
        .await
        .unwrap();
    assert_eq!(r.rows_rejected, 0, "{:?}", r.first_rejects);
    assert_eq!(r.rows_loaded + r.rows_duplicate, 5019, "{r:?}");
    assert_eq!(
        scalar(&wh, "SELECT COUNT(DISTINCT user_id) FROM events").await,
        1755
    );
    assert_eq!(
        scalar(&wh, "SELECT COUNT(DISTINCT item_id) FROM events").await,
        2312
    );
    assert_eq!(
        scalar(
            &wh,
            "SELECT COUNT(DISTINCT event_type) FROM events WHERE event_type IN \
             ('view', 'cart', 'purchase')"
        )
        .await,
        3
    );
    // Integer ids are their own internal ids: nothing enters the dictionary.
    assert_eq!(
        (
            r.ids_assigned,
            scalar(&wh, "SELECT COUNT(*) FROM ids").await
        ),
        (0, 0)
    );
    // The first row: 2019-10-01 00:00:00 UTC.
    assert_eq!(
        scalar(
            &wh,
            "SELECT CAST(MIN(to_unixtime(event_time)) AS BIGINT) FROM events"
        )
        .await,
        1_569_888_000
    );
}

fn segment_line(kind: &str, event: &str, user: &str, sku: &str, at: &str, id: &str) -> String {
    format!(
        r#"{{"type":"{kind}","event":"{event}","userId":"{user}","properties":{{"product_id":"{sku}"}},"timestamp":"{at}","messageId":"{id}"}}"#
    ) + "\n"
}

#[tokio::test]
async fn segment_hour_folders_redelivery_markers_and_unreadable_files() {
    let (_dir, lake) = lake().await;
    let hour1 = [
        segment_line(
            "track",
            "Product Viewed",
            "u-1",
            "SKU-1",
            "2024-03-05T09:59:00Z",
            "m1",
        ),
        segment_line(
            "track",
            "Order Completed",
            "u-1",
            "SKU-2",
            "2024-03-05T10:01:00+01:00",
            "m2",
        ),
        r#"{"type":"identify","userId":"u-1","traits":{"plan":"pro"},"messageId":"m3"}"#
            .to_string()
            + "\n",
        // An anonymous visitor: userId null, anonymousId used.
        r#"{"type":"track","event":"Product Viewed","userId":null,"anonymousId":"anon-9","properties":{"sku":"SKU-1"},"timestamp":"2024-03-05T10:30:00Z","messageId":"m4"}"#
            .to_string()
            + "\n",
    ]
    .concat();
    put(
        &lake,
        "raw/events/2024/03/05/10/firehose-1.json.gz",
        gzip(hour1.as_bytes()),
    )
    .await;
    put(&lake, "raw/events/2024/03/05/10/_SUCCESS", Vec::new()).await;
    put(
        &lake,
        "raw/events/2024/03/05/10/.firehose-1.json.gz.crc",
        b"x".to_vec(),
    )
    .await;
    let cfg = config("preset = \"segment\"");
    let wh = Warehouse::open(&lake).await.unwrap();
    let r = wh
        .ingest(night("2024-03-05"), &cfg, options(0))
        .await
        .unwrap();
    assert_eq!(
        (r.rows_loaded, r.records_skipped, r.files_skipped),
        (3, 1, 2),
        "{r:?}"
    );
    assert_eq!(r.ids_assigned, 4, "u-1, anon-9, SKU-1, SKU-2");
    assert_eq!(
        scalar(&wh, "SELECT COUNT(*) FROM events WHERE event_id = 'm2'").await,
        1
    );

    // The next hour redelivers m2 (at-least-once) and adds m5; a truncated gzip file and a file
    // of unknown format are rejected with their fix; nothing loads while max_errors = 0.
    let hour2 = segment_line(
        "track",
        "Order Completed",
        "u-1",
        "SKU-2",
        "2024-03-05T10:01:00+01:00",
        "m2",
    ) + &segment_line(
        "track",
        "Product Viewed",
        "u-2",
        "SKU-3",
        "2024-03-06T00:10:00Z",
        "m5",
    );
    put(
        &lake,
        "raw/events/2024/03/06/00/firehose-2.json.gz",
        gzip(hour2.as_bytes()),
    )
    .await;
    let broken = gzip(hour2.as_bytes());
    put(
        &lake,
        "raw/events/2024/03/06/00/firehose-3.json.gz",
        broken[..broken.len() / 2].to_vec(),
    )
    .await;
    put(
        &lake,
        "raw/events/2024/03/06/00/notes.docx",
        b"PK\x03\x04".to_vec(),
    )
    .await;
    let e = wh
        .ingest(night("2024-03-06"), &cfg, options(0))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("firehose-3.json.gz: cannot decompress it as gzip")
            && e.contains("truncated or corrupt")
            && e.contains("--skip-file"),
        "{e}"
    );
    assert!(e.contains("notes.docx: cannot tell how to read it"), "{e}");
    // Skipping the unreadable files lets the night load the rest, with m2 counted once.
    wh.skip_file(
        night("2024-03-06"),
        &cfg,
        "raw/events/2024/03/06/00/firehose-3.json.gz",
    )
    .await
    .unwrap();
    let r = wh
        .ingest(night("2024-03-06"), &cfg, options(1))
        .await
        .unwrap();
    assert_eq!(
        (
            r.rows_loaded,
            r.rows_duplicate,
            r.files_unreadable,
            r.rows_rejected
        ),
        (1, 1, 1, 1),
        "{r:?}"
    );
    let rejects = wh
        .sql("SELECT file, line, reason FROM rejects")
        .await
        .unwrap();
    assert_eq!(rejects.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    assert_eq!(
        scalar(&wh, "SELECT COUNT(*) FROM events WHERE event_id = 'm2'").await,
        1
    );
    assert_eq!(scalar(&wh, "SELECT COUNT(*) FROM events").await, 4);
    // The next night runs: the rejected file is in the ledger and is not read again.
    let r = wh
        .ingest(night("2024-03-07"), &cfg, options(0))
        .await
        .unwrap();
    assert_eq!((r.rows_loaded, r.rows_rejected), (0, 0), "{r:?}");
}

#[tokio::test]
async fn day_first_dates_in_a_time_zone_and_bad_rows_named() {
    let (_dir, lake) = lake().await;
    let body = "Member_number,Date,itemDescription\n\
                1808,21-07-2015,tropical fruit\n\
                2552,05-01-2015,whole milk\n\
                2552,05-01-2015,whole milk\n\
                2300,31-02-2015,pip fruit\n\
                ,19-09-2015,other vegetables\n";
    put(
        &lake,
        "raw/events/2015/12/30/groceries.csv",
        body.as_bytes().to_vec(),
    )
    .await;
    let cfg = config(
        r#"user_column = "Member_number"
           item_column = "itemDescription"
           timestamp_column = "Date"
           timestamp_format = "%d-%m-%Y"
           timestamp_timezone = "Europe/Berlin"
           value_column = """#,
    );
    let wh = Warehouse::open(&lake).await.unwrap();
    let r = wh
        .ingest(night("2015-12-30"), &cfg, options(2))
        .await
        .unwrap();
    assert_eq!(
        (r.rows_loaded, r.rows_duplicate, r.rows_rejected),
        (2, 1, 2),
        "{r:?}"
    );
    let got: Vec<String> = r.first_rejects.iter().map(|x| x.to_string()).collect();
    assert!(
        got[0].starts_with("raw/events/2015/12/30/groceries.csv:5: column 'Date': '31-02-2015'"),
        "{got:?}"
    );
    assert!(
        got[1].starts_with(
            "raw/events/2015/12/30/groceries.csv:6: column 'Member_number': no user id"
        ),
        "{got:?}"
    );
    // Midnight in Berlin is 23:00 UTC the day before.
    assert_eq!(
        scalar(
            &wh,
            "SELECT CAST(MIN(to_unixtime(event_time)) AS BIGINT) FROM events"
        )
        .await,
        1_420_412_400
    );
}

#[tokio::test]
async fn a_producers_prefix_outside_the_lake_is_read_named_by_url_and_left_alone() {
    let (dir, lake) = lake().await;
    // The producer's folder is beside the lake, not in it.
    let firehose = dir.path().join("producer/firehose");
    let hour = firehose.join("2024/03/05/09");
    std::fs::create_dir_all(&hour).unwrap();
    let good = segment_line(
        "track",
        "Product Viewed",
        "u-1",
        "SKU-1",
        "2024-03-05T09:10:00Z",
        "m1",
    ) + &segment_line(
        "track",
        "Order Completed",
        "u-2",
        "SKU-1",
        "2024-03-05T09:20:00Z",
        "m2",
    );
    std::fs::write(hour.join("f-1.json.gz"), gzip(good.as_bytes())).unwrap();
    std::fs::write(hour.join("f-2.json.gz"), &gzip(good.as_bytes())[..10]).unwrap();
    let url = url::Url::from_directory_path(&firehose).unwrap();
    let cfg = config(&format!(
        "preset = \"segment\"\nraw_prefix = \"{url}\"",
        url = url.as_str()
    ));
    let wh = Warehouse::open(&lake).await.unwrap();
    // The truncated file is named by its URL, with the fix.
    let e = wh
        .ingest(night("2024-03-05"), &cfg, options(0))
        .await
        .unwrap_err()
        .to_string();
    let bad = format!("{url}2024/03/05/09/f-2.json.gz");
    assert!(e.contains(&bad) && e.contains("--skip-file"), "{e}");
    wh.skip_file(night("2024-03-05"), &cfg, &bad).await.unwrap();
    let r = wh
        .ingest(night("2024-03-05"), &cfg, options(0))
        .await
        .unwrap();
    assert_eq!((r.files_loaded, r.rows_loaded), (1, 2), "{r:?}");
    let good_name = format!("{url}2024/03/05/09/f-1.json.gz");
    assert_eq!(
        scalar(
            &wh,
            &format!("SELECT COUNT(*) FROM events WHERE source_file = '{good_name}'")
        )
        .await,
        2
    );
    assert_eq!(
        scalar(
            &wh,
            &format!("SELECT COUNT(*) FROM loads WHERE path IN ('{good_name}', '{bad}')")
        )
        .await,
        2
    );
    // A rerun loads nothing; the producer's folder holds only its own two files.
    let again = wh
        .ingest(night("2024-03-05"), &cfg, options(0))
        .await
        .unwrap();
    assert_eq!((again.files_loaded, again.files_already_loaded), (0, 2));
    assert_eq!(std::fs::read_dir(&hour).unwrap().count(), 2);
    assert!(!dir.path().join("lake/raw/events").exists());
    let first = elastirec_warehouse::first_raw_event_day(&lake, &cfg)
        .await
        .unwrap();
    assert_eq!(first, Some(night("2024-03-05")));

    // A prefix that does not exist says which setting to fix.
    let missing = config("raw_prefix = \"file:///no/such/firehose/\"");
    let e = wh
        .ingest(night("2024-03-05"), &missing, options(0))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("raw_prefix") && e.contains("/no/such/firehose"),
        "{e}"
    );
}

/// A symbolic link in a local lake's raw folder (to a file, or a folder of files, outside the
/// lake) is not followed: one reject per file says so, and nothing of the target is read into
/// the tables or the rejects.
#[tokio::test]
async fn symbolic_links_under_raw_are_rejected_not_followed() {
    let (dir, lake) = lake().await;
    put(
        &lake,
        "raw/events/2024/01/01/real.csv",
        b"userId,movieId,rating,timestamp\n1,10,4.0,1704070800\n".to_vec(),
    )
    .await;
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(outside.join("folder")).unwrap();
    let secret = "userId,movieId,rating,timestamp\n999,999,5,1704070800\nsecret-first-line\n";
    std::fs::write(outside.join("secret.csv"), secret).unwrap();
    std::fs::write(outside.join("folder/inner.csv"), secret).unwrap();
    let day = dir.path().join("lake/raw/events/2024/01/01");
    std::os::unix::fs::symlink(outside.join("secret.csv"), day.join("link.csv")).unwrap();
    std::os::unix::fs::symlink(outside.join("folder"), day.join("13")).unwrap();

    let wh = Warehouse::open(&lake).await.unwrap();
    let r = wh
        .ingest(night("2024-01-01"), &EventsConfig::default(), options(10))
        .await
        .unwrap();
    assert_eq!((r.rows_loaded, r.files_unreadable), (1, 2), "{r:?}");
    assert_eq!(
        scalar(&wh, "SELECT COUNT(*) FROM events WHERE user_id = 999").await,
        0
    );
    let reasons: Vec<String> = wh
        .sql("SELECT file || ' ' || reason || ' ' || COALESCE(raw_line, '') AS r FROM rejects ORDER BY file")
        .await
        .unwrap()
        .iter()
        .flat_map(|b| {
            // The concatenation is a string view column.
            let c = arrow_array::cast::AsArray::as_string_view(b.column(0)).clone();
            (0..arrow_array::Array::len(&c)).map(move |i| c.value(i).to_string())
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].starts_with("raw/events/2024/01/01/13/inner.csv"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("raw/events/2024/01/01/link.csv"),
        "{reasons:?}"
    );
    for r in &reasons {
        assert!(r.contains("symbolic link"), "{r}");
        assert!(!r.contains("secret") && !r.contains("999"), "{r}");
    }
}
