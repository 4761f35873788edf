//! Whole nights on real businesses' event files configured only through `[events]`: the lists
//! carry the producers' own ids, and duplicate lines count once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use elastirec_core::Night;
use elastirec_lake::io::read_recommendations;
use elastirec_lake::{
    SeenPairs, read_export_ids, read_export_manifest, read_recommendations_manifest,
};

use crate::harness::{bin, copy_dir, ok, open_lake};

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

/// Lists by external user id, and every (user, item) pair the night's export saw, by external
/// ids (through the export's own id dictionary).
async fn lists_and_seen(
    lake_dir: &Path,
    night: Night,
) -> (
    elastirec_lake::io::ExternalLists,
    HashMap<String, HashSet<String>>,
) {
    let lake = open_lake(lake_dir).await;
    let export = read_export_manifest(&lake, night).await.unwrap();
    let names = read_export_ids(&lake, &export).await.unwrap();
    let mut seen: HashMap<String, HashSet<String>> = HashMap::new();
    for (u, i) in SeenPairs::read(&lake, &export).await.unwrap().iter() {
        seen.entry(names.users.external(u).into_owned())
            .or_default()
            .insert(names.items.external(i).into_owned());
    }
    let manifest = read_recommendations_manifest(&lake, night).await.unwrap();
    let lists = read_recommendations(&lake, &manifest.files).await.unwrap();
    (lists, seen)
}

/// Every user seen up to the night has a list of `k` unseen items, under the ids they came with.
fn check_lists(
    lists: &elastirec_lake::io::ExternalLists,
    seen: &HashMap<String, HashSet<String>>,
    k: usize,
) {
    assert_eq!(lists.len(), seen.len(), "one list per user seen");
    for (user, items) in seen {
        let list = lists
            .get(user)
            .unwrap_or_else(|| panic!("no list for user '{user}'"));
        assert_eq!(list.len(), k, "user {user}: {list:?}");
        for (item, _, _, _) in list {
            assert!(!items.contains(item), "user {user} got seen item {item}");
        }
    }
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("elastirec.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn amazon_beauty_night_lists_speak_reviewer_ids_and_asins() {
    let Some(file) = shared("amazon-beauty-5core/All_Beauty_5.json.gz") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    let day = lake.join("raw/events/2018/08/23");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::copy(&file, day.join("All_Beauty_5.json.gz")).unwrap();
    let cfg = write_config(
        root.path(),
        "[events]\nuser_column = \"reviewerID\"\nitem_column = \"asin\"\n\
         value_column = \"overall\"\ntimestamp_column = \"unixReviewTime\"\n",
    );
    let lake_s = lake.to_str().unwrap();
    let out = ok(&lake, &["--config", &cfg, "run", "--date", "2018-08-23"]);
    // 1,027 exact duplicate lines plus 76 lines that repeat an event with other review text.
    assert!(out.contains("1103 duplicate"), "{out}");
    let night: Night = "2018-08-23".parse().unwrap();
    let (lists, seen) = lists_and_seen(&lake, night).await;
    assert_eq!(lists.len(), 991, "every reviewer has a list");
    check_lists(&lists, &seen, 10);
    // The producers' ids, not the internal ones: reviewer ids and ASINs as they came.
    let list = &lists["A3CIUOJXQ5VDQ2"];
    for (item, _, _, _) in list {
        assert!(
            item.len() == 10 && item.chars().all(|c| c.is_ascii_alphanumeric()),
            "'{item}' is not an ASIN"
        );
    }
    assert!(lists.keys().all(|u| u.starts_with('A')), "reviewer ids");

    // `show` takes and prints the same ids.
    let shown = bin()
        .args([
            "--lake",
            lake_s,
            "--config",
            &cfg,
            "show",
            "--user",
            "A3CIUOJXQ5VDQ2",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    assert!(text.contains(&list[0].0), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rees46_clickstream_night_with_event_types_and_utc_suffixed_times() {
    let Some(file) = shared("rees46-sample/2019-Oct-head.csv") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    let day = lake.join("raw/events/2019/10/01");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::copy(&file, day.join("2019-Oct-head.csv")).unwrap();
    let cfg = write_config(
        root.path(),
        "[events]\nuser_column = \"user_id\"\nitem_column = \"product_id\"\nvalue_column = \"\"\n\
         timestamp_column = \"event_time\"\ntimestamp_format = \"%Y-%m-%d %H:%M:%S UTC\"\n\
         event_type_column = \"event_type\"\n",
    );
    ok(&lake, &["--config", &cfg, "run", "--date", "2019-10-01"]);
    let night: Night = "2019-10-01".parse().unwrap();
    let (lists, seen) = lists_and_seen(&lake, night).await;
    assert_eq!(lists.len(), 1755, "every shopper has a list");
    check_lists(&lists, &seen, 10);
    // REES46 ids are integers: the lists carry the same digits.
    let raw = std::fs::read_to_string(&file).unwrap();
    let products: HashSet<&str> = raw
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(2))
        .collect();
    for list in lists.values() {
        for (item, _, _, _) in list {
            assert!(products.contains(item.as_str()), "unknown product {item}");
        }
    }
}

/// Lines of every `.jsonl.gz` file under `dir`, by file.
fn segment_files(dir: &Path) -> Vec<(PathBuf, Vec<serde_json::Value>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".jsonl.gz") {
                let mut text = String::new();
                std::io::Read::read_to_string(
                    &mut flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap()),
                    &mut text,
                )
                .unwrap();
                let lines = text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                out.push((p, lines));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn simulated_segment_firehose_files_run_a_night_with_the_segment_preset() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    let out = ok(
        &lake,
        &[
            "simulate",
            "--start",
            "2024-01-01",
            "--days",
            "3",
            "--users",
            "300",
            "--items",
            "120",
            "--events-per-day",
            "3000",
            "--format",
            "segment",
        ],
    );
    assert!(out.contains("simulated 9000 events"), "{out}");
    let files = segment_files(&lake.join("raw/events"));
    // Arrival-hour folders: raw/events/YYYY/MM/DD/HH/segment-….jsonl.gz.
    for (p, _) in &files {
        let rel = p.strip_prefix(lake.join("raw/events")).unwrap();
        assert_eq!(rel.components().count(), 5, "{}", rel.display());
    }
    let lines: Vec<&serde_json::Value> = files.iter().flat_map(|(_, l)| l).collect();
    let ids: HashSet<&str> = lines
        .iter()
        .map(|l| l["messageId"].as_str().unwrap())
        .collect();
    let redelivered = lines.len() - ids.len();
    assert_eq!(ids.len(), 9000, "one messageId per event");
    assert!(
        (30..=200).contains(&redelivered),
        "about 1% delivered twice: {redelivered}"
    );
    assert!(
        out.contains(&format!("{redelivered} lines delivered twice")),
        "{out}"
    );
    let types: HashSet<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(types, HashSet::from(["view", "cart", "purchase"]));

    let cfg = write_config(root.path(), "[events]\npreset = \"segment\"\n");
    // Events of the last day that arrive after midnight sit in the next day's folders.
    let out = ok(&lake, &["--config", &cfg, "run", "--date", "2024-01-04"]);
    assert!(
        out.contains(&format!("{redelivered} duplicate")),
        "every redelivery counted once: {out}"
    );
    let night: Night = "2024-01-04".parse().unwrap();
    let (lists, seen) = lists_and_seen(&lake, night).await;
    check_lists(&lists, &seen, 10);
    let users: HashSet<&str> = lines
        .iter()
        .map(|l| l["userId"].as_str().unwrap())
        .collect();
    assert_eq!(lists.len(), users.len(), "a list for every user");
    for (user, list) in &lists {
        assert!(users.contains(user.as_str()), "unknown user {user}");
        assert_eq!(user.len(), 36, "a UUID: {user}");
        for (item, _, _, _) in list {
            assert!(item.starts_with("SKU-"), "a SKU: {item}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migrated_lake_makes_the_same_lists_with_external_ids() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    copy_dir(&crate::harness::fixtures().join("lake-v1"), &lake);
    let night: Night = "2024-01-01".parse().unwrap();
    // Migration leaves the night's outputs as they are (only a migrated lake opens).
    ok(&lake, &["migrate"]);
    // The lists the first released layout wrote (Int64 ids), read as consumers see them.
    let before = {
        let l = open_lake(&lake).await;
        let m = read_recommendations_manifest(&l, night).await.unwrap();
        assert!(
            m.schema
                .iter()
                .any(|c| c.name == "user_id" && c.data_type == "Int64"),
            "{:?}",
            m.schema
        );
        read_recommendations(&l, &m.files).await.unwrap()
    };
    assert!(!before.is_empty());
    // The same night's lists again, from the same model, written with string ids.
    ok(&lake, &["recommend", "--date", "2024-01-01"]);
    let l = open_lake(&lake).await;
    let m = read_recommendations_manifest(&l, night).await.unwrap();
    let schema = &m.schema;
    assert!(
        schema
            .iter()
            .any(|c| c.name == "user_id" && c.data_type == "Utf8"),
        "{schema:?}"
    );
    let after = read_recommendations(&l, &m.files).await.unwrap();
    assert_eq!(before.len(), after.len(), "users");
    for (user, list) in &before {
        let items = |l: &[(String, i32, f32, String)]| -> Vec<(String, i32, String)> {
            l.iter().map(|r| (r.0.clone(), r.1, r.3.clone())).collect()
        };
        assert_eq!(items(list), items(&after[user]), "user {user}");
    }
}
