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

/// The `[events]` section of the REES46 sample: integer ids, `2019-10-01 00:00:00
/// UTC` times, view/cart/purchase types, no value column.
const REES46_EVENTS: &str = "[events]\nuser_column = \"user_id\"\nitem_column = \"product_id\"\n\
    value_column = \"\"\ntimestamp_column = \"event_time\"\n\
    timestamp_format = \"%Y-%m-%d %H:%M:%S UTC\"\nevent_type_column = \"event_type\"\n";

/// A lake in a new temporary folder with the REES46 sample as the raw events of 2019-10-01.
fn rees46_lake(file: &Path) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    let day = lake.join("raw/events/2019/10/01");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::copy(file, day.join("2019-Oct-head.csv")).unwrap();
    (root, lake)
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
    let (root, lake) = rees46_lake(&file);
    let cfg = write_config(root.path(), REES46_EVENTS);
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

/// (user, product) pairs of the REES46 sample with the given event type.
fn rees46_pairs(raw: &str, event_type: &str) -> HashSet<(String, String)> {
    raw.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.get(1) == Some(&event_type)).then(|| (f[7].to_string(), f[2].to_string()))
        })
        .collect()
}

/// How many (user, item) pairs of `lists` are in `pairs`.
fn listed(lists: &elastirec_lake::io::ExternalLists, pairs: &HashSet<(String, String)>) -> usize {
    lists
        .iter()
        .flat_map(|(u, l)| l.iter().map(move |(i, _, _, _)| (u.clone(), i.clone())))
        .filter(|p| pairs.contains(p))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn rees46_views_do_not_hide_items_purchases_do_until_their_repeat_window() {
    let Some(file) = shared("rees46-sample/2019-Oct-head.csv") else {
        return;
    };
    let (root, lake) = rees46_lake(&file);
    let cfg = write_config(
        root.path(),
        &format!(
            "{REES46_EVENTS}[events.types.view]\nweight = 1.0\nseen = false\n\
         [events.types.cart]\nweight = 3.0\nseen = false\n\
         [events.types.purchase]\nweight = 5.0\nrepeat_after_days = 30\n"
        ),
    );
    let raw = std::fs::read_to_string(&file).unwrap();
    let purchased = rees46_pairs(&raw, "purchase");
    let viewed: HashSet<(String, String)> = rees46_pairs(&raw, "view")
        .difference(&purchased)
        .cloned()
        .collect();
    assert!(purchased.len() > 20, "{} purchases", purchased.len());
    let purchasers = purchased
        .iter()
        .map(|(u, _)| u)
        .collect::<HashSet<_>>()
        .len();

    // Night of the events, and 29 days later: purchases hide their items, views do not.
    for date in ["2019-10-01", "2019-10-30"] {
        ok(&lake, &["--config", &cfg, "run", "--date", date]);
        let (lists, seen) = lists_and_seen(&lake, date.parse().unwrap()).await;
        assert_eq!(lists.len(), 1755, "{date}: every shopper has a list");
        // Only purchasers have seen items now; nobody is offered one.
        assert_eq!(seen.len(), purchasers, "{date}");
        for (user, list) in &lists {
            assert_eq!(list.len(), 10, "{date}: user {user}: {list:?}");
            let hidden = seen.get(user);
            for (item, _, _, _) in list {
                assert!(
                    hidden.is_none_or(|h| !h.contains(item)),
                    "{date}: user {user} got seen item {item}"
                );
            }
        }
        assert_eq!(
            listed(&lists, &purchased),
            0,
            "{date}: a purchase was offered back"
        );
        let views = listed(&lists, &viewed);
        assert!(
            views >= 100,
            "{date}: only {views} viewed items offered back: views must not hide items"
        );
    }
    // 30 days after the purchases their items may come back; nothing else changed.
    ok(&lake, &["--config", &cfg, "run", "--date", "2019-10-31"]);
    let (lists, _) = lists_and_seen(&lake, "2019-10-31".parse().unwrap()).await;
    let again = listed(&lists, &purchased);
    assert!(
        again > 0,
        "no purchased item came back after repeat_after_days"
    );
    // Serving keeps the same meaning: the history says which items may be offered again,
    // and fold-in leaves out a given item only when its event type makes it seen.
    let mut pairs: Vec<&(String, String)> = viewed.iter().collect();
    pairs.sort();
    let (user, item) = pairs[0];
    let (_server, addr) = crate::serve::start_server(&lake);
    let (status, body) = crate::serve::api(&addr, &format!("/v1/users/{user}/history?limit=1000"));
    assert_eq!(status, 200, "{body}");
    let entry = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["item_id"] == item.as_str())
        .unwrap_or_else(|| panic!("{item} not in {body}"));
    assert_eq!(entry["offered_again"], true, "{entry}");
    // The most viewed product, which a session's list (thin evidence, mostly popularity)
    // offers unless the session's event hides it.
    let mut views: HashMap<&str, usize> = HashMap::new();
    for line in raw.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f[1] == "view" {
            *views.entry(f[2]).or_default() += 1;
        }
    }
    let item = views
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(p, _)| p.to_string())
        .expect("a viewed product");
    let item = &item;
    let post = |event_type: &str| {
        let body = serde_json::json!({"k": 20,
            "items": [{"item_id": item, "event_type": event_type}]});
        let (status, text) = crate::serve::http(
            &addr,
            "POST",
            "/v1/recommendations",
            &[
                ("Authorization", &format!("Bearer {}", crate::serve::TOKEN)),
                ("Content-Type", "application/json"),
            ],
            &body.to_string(),
        );
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["item_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let after_view = post("view");
    assert!(
        after_view.contains(item),
        "viewed {item} not offered: {after_view:?}"
    );
    let after_purchase = post("purchase");
    assert!(
        !after_purchase.contains(item),
        "bought {item} offered: {after_purchase:?}"
    );
}

/// A Segment track call as one JSON object.
fn track(user: &str, sku: &str, event: &str, time: &str, message: &str) -> String {
    serde_json::json!({
        "type": "track", "event": event, "userId": user, "messageId": message,
        "timestamp": time, "properties": {"product_id": sku, "price": 9.5},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn firehose_objects_without_an_extension_or_newlines_and_day_first_local_dates_publish() {
    let root = tempfile::tempdir().unwrap();
    // Segment through Kinesis Firehose: object names without an extension (gzip or not), and
    // records written back to back without a newline delimiter.
    let lake = root.path().join("segment");
    let hour = lake.join("raw/events/2024/03/05/10");
    std::fs::create_dir_all(&hour).unwrap();
    let users = [
        "5b1c0e9e-0d1f-4c5e-9a57-0b6c8f1e2a01",
        "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
    ];
    let mut plain = String::new();
    let mut zipped = String::new();
    for (n, sku) in ["SKU-A", "SKU-B", "SKU-C", "SKU-D"].iter().enumerate() {
        for (u, user) in users.iter().enumerate() {
            // The first user never sees SKU-D, the second never SKU-A.
            if (u, n) == (0, 3) || (u, n) == (1, 0) {
                continue;
            }
            let line = track(
                user,
                sku,
                "Product Viewed",
                &format!("2024-03-05T10:0{n}:0{u}.250+01:00"),
                &format!("m-{n}-{u}"),
            );
            if u == 0 {
                plain.push_str(&line); // no newline between records
            } else {
                zipped.push_str(&line);
                zipped.push('\n');
            }
        }
    }
    std::fs::write(hour.join("segment-1-2024-03-05-10-00-00-7d1e"), &plain).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, zipped.as_bytes()).unwrap();
    std::fs::write(
        hour.join("segment-1-2024-03-05-10-00-00-8e2f.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    let cfg = write_config(root.path(), "[events]\npreset = \"segment\"\n");
    let out = ok(&lake, &["--config", &cfg, "run", "--date", "2024-03-05"]);
    assert!(out.contains("loaded 6 rows from 2 new files"), "{out}");
    assert!(out.contains("succeeded, published"), "{out}");
    let (lists, _) = lists_and_seen(&lake, "2024-03-05".parse().unwrap()).await;
    assert_eq!(lists[users[0]][0].0, "SKU-D", "{lists:?}");
    assert_eq!(lists[users[1]][0].0, "SKU-A", "{lists:?}");

    // Day-first dates in local time: midnight in Berlin is the day before in UTC, so every event
    // of the night's folder has the previous event day; the night's data still arrived.
    let lake = root.path().join("groceries");
    let day = lake.join("raw/events/2024/03/07");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::write(
        day.join("orders.csv"),
        "Customer ID;Product;Date;Quantity\nC1;whole milk;07-03-2024;2\nC2;yogurt;07-03-2024;1\n\
         C1;soda;07-03-2024;1\n",
    )
    .unwrap();
    let cfg = write_config(
        root.path(),
        "[events]\nuser_column = \"Customer ID\"\nitem_column = \"Product\"\n\
         value_column = \"Quantity\"\ntimestamp_column = \"Date\"\ntimestamp_format = \"%d-%m-%Y\"\n\
         timestamp_timezone = \"Europe/Berlin\"\ndelimiter = \";\"\n",
    );
    let out = ok(&lake, &["--config", &cfg, "run", "--date", "2024-03-07"]);
    assert!(out.contains("succeeded, published"), "{out}");
    let (lists, _) = lists_and_seen(&lake, "2024-03-07".parse().unwrap()).await;
    assert_eq!(lists["C2"][0].0, "whole milk", "{lists:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rees46_attributes_from_events_drive_sql_rules_and_caps_in_every_list() {
    let Some(file) = shared("rees46-sample/2019-Oct-head.csv") else {
        return;
    };
    let (root, lake) = rees46_lake(&file);
    let events = format!(
        "{REES46_EVENTS}[items]\nfrom_events = [\"category_code\", \"brand\", \"price\"]\n"
    );
    // A predicate naming a column the catalog lacks fails before any step, listing the columns.
    let cfg = write_config(
        root.path(),
        &format!("{events}[rules]\nexclude_where = \"prize > 100\"\n"),
    );
    let out = crate::harness::run(&lake, &["--config", &cfg, "run", "--date", "2019-10-01"]);
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("[rules] exclude_where"), "{text}");
    assert!(
        text.contains("the catalog's columns: item_id, title, genres, category_code, brand, price"),
        "{text}"
    );

    let cfg = write_config(
        root.path(),
        &format!(
            "{events}[prepare]\nmin_user_events = 3\n\
             [rules]\nexclude_where = \"price > 100\"\nmax_per = {{ category_code = 1 }}\n"
        ),
    );
    let out = ok(&lake, &["--config", &cfg, "run", "--date", "2019-10-01"]);
    assert!(out.contains("item attribute values observed"), "{out}");
    // The catalog as the events say it: each product's latest price and category.
    let raw = std::fs::read_to_string(&file).unwrap();
    let mut catalog: HashMap<String, (String, String, f64)> = HashMap::new();
    for line in raw.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (time, product, category, price) = (f[0], f[2], f[4], f[6]);
        let price: f64 = price.parse().unwrap();
        let newer = catalog
            .get(product)
            .is_none_or(|(t, _, _)| t.as_str() <= time);
        if newer {
            catalog.insert(product.into(), (time.into(), category.into(), price));
        }
    }
    let (lists, _) = lists_and_seen(&lake, "2019-10-01".parse().unwrap()).await;
    assert_eq!(lists.len(), 1755, "every shopper has a list");
    // Users left out of training (fewer than 3 events) get the popularity fill, flagged, under
    // the same rules (checked below with every other list).
    let filled = lists
        .values()
        .filter(|l| l.iter().all(|(_, _, _, source)| source == "popular"))
        .count();
    assert!(filled > 100, "only {filled} lists from the popularity fill");
    for (user, list) in &lists {
        assert_eq!(list.len(), 10, "user {user}: {list:?}");
        let mut categories = HashSet::new();
        for (item, _, _, source) in list {
            let (_, category, price) = &catalog[item];
            assert!(*price <= 100.0, "user {user} got {item} at {price}");
            if !category.is_empty() {
                assert!(
                    categories.insert(category.clone()),
                    "user {user}: two items of {category}: {list:?}"
                );
            }
            assert!(["als", "popular"].contains(&source.as_str()), "{source}");
        }
    }
    // Serving shows an item's attributes as the events last said them.
    let (product, (_, category, price)) = catalog
        .iter()
        .find(|(_, (_, c, _))| !c.is_empty())
        .expect("a product with a category");
    let (_server, addr) = crate::serve::start_server(&lake);
    let (status, body) = crate::serve::api(&addr, &format!("/v1/items/{product}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["attributes"]["category_code"],
        category.as_str(),
        "{body}"
    );
    assert_eq!(body["attributes"]["price"].as_f64(), Some(*price), "{body}");
    // A user's list carries them for the dashboard to show beside titles.
    let user = lists.keys().next().expect("a user");
    let (status, body) = crate::serve::api(&addr, &format!("/v1/users/{user}/recommendations"));
    assert_eq!(status, 200, "{body}");
    let first = &body["items"][0];
    let item = first["item_id"].as_str().expect("an item id");
    // Typed as the export recorded it: the price is a number.
    assert_eq!(
        first["attributes"]["price"].as_f64(),
        Some(catalog[item].2),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rees46_catalog_feeds_in_two_formats_type_attributes_delete_items_and_drive_rules() {
    use std::io::Write;
    let Some(file) = shared("rees46-sample/2019-Oct-head.csv") else {
        return;
    };
    let (root, lake) = rees46_lake(&file);
    // The store's catalog as a gzip JSON-lines feed of the day before: each product's latest
    // category and price from the events, a stock flag and a tag list.
    let raw = std::fs::read_to_string(&file).unwrap();
    let mut catalog: HashMap<String, (String, String, f64)> = HashMap::new();
    for line in raw.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (time, product, category, price) = (f[0], f[2], f[4], f[6]);
        let newer = catalog
            .get(product)
            .is_none_or(|(t, _, _)| t.as_str() <= time);
        if newer {
            catalog.insert(
                product.into(),
                (time.into(), category.into(), price.parse().unwrap()),
            );
        }
    }
    let in_stock = |product: &str| !product.ends_with('7');
    let mut feed = Vec::new();
    for (product, (_, category, price)) in &catalog {
        let row = serde_json::json!({
            "product_id": product.parse::<i64>().unwrap(),
            "category_code": if category.is_empty() { None } else { Some(category) },
            "price": price,
            "in_stock": in_stock(product),
            "tags": if price < &5.0 { vec!["cheap"] } else { vec![] },
        });
        writeln!(feed, "{row}").unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&feed).unwrap();
    let items = lake.join("raw/items/2019/09/30");
    std::fs::create_dir_all(&items).unwrap();
    std::fs::write(items.join("catalog.jsonl.gz"), gz.finish().unwrap()).unwrap();
    // The next day's CSV snapshot deletes the ten most viewed products.
    let mut views: HashMap<&str, usize> = HashMap::new();
    for line in raw.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        *views.entry(f[2]).or_default() += 1;
    }
    let mut by_views: Vec<(&str, usize)> = views.into_iter().collect();
    by_views.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let deleted: HashSet<String> = by_views
        .iter()
        .take(10)
        .map(|(p, _)| p.to_string())
        .collect();
    let mut csv = String::from("product_id,deleted\n");
    for p in &deleted {
        csv.push_str(&format!("{p},true\n"));
    }
    let day = lake.join("raw/items/2019/10/01");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::write(day.join("deletions.csv"), csv).unwrap();

    let cfg = write_config(
        root.path(),
        &format!(
            "{REES46_EVENTS}[items]\nid_column = \"product_id\"\ndeleted_column = \"deleted\"\n\
             [items.attributes]\nprice = \"number\"\n\
             [rules]\nexclude_where = \"price > 100 OR NOT in_stock\"\n\
             promote_where = \"array_has(tags, 'cheap') AND price < 1\"\n\
             max_per = {{ category_code = 1 }}\n"
        ),
    );
    let out = ok(&lake, &["--config", &cfg, "run", "--date", "2019-10-01"]);
    assert!(out.contains("item attribute values observed"), "{out}");
    let (lists, _) = lists_and_seen(&lake, "2019-10-01".parse().unwrap()).await;
    assert_eq!(lists.len(), 1755, "every shopper has a list");
    let mut offered_deleted = 0;
    for (user, list) in &lists {
        assert_eq!(list.len(), 10, "user {user}: {list:?}");
        let mut categories = HashSet::new();
        for (item, _, _, _) in list {
            let (_, category, price) = &catalog[item];
            assert!(*price <= 100.0, "user {user} got {item} at {price}");
            assert!(in_stock(item), "user {user} got {item}, out of stock");
            offered_deleted += usize::from(deleted.contains(item));
            if !category.is_empty() {
                assert!(
                    categories.insert(category.clone()),
                    "user {user}: two items of {category}: {list:?}"
                );
            }
        }
    }
    assert_eq!(offered_deleted, 0, "deleted products were offered");
    // The export records the types: declared price, inferred boolean and list.
    let export = read_export_manifest(&open_lake(&lake).await, "2019-10-01".parse().unwrap())
        .await
        .unwrap();
    let types = serde_json::to_value(&export.item_attribute_types).unwrap();
    assert_eq!(
        types,
        serde_json::json!({"category_code": "string", "in_stock": "boolean",
                           "price": "number", "tags": "list"})
    );
    // Serving shows them as JSON of their types.
    let (product, _) = catalog
        .iter()
        .find(|(p, (_, c, price))| !c.is_empty() && *price < 5.0 && !in_stock(p))
        .expect("a cheap product out of stock");
    let (_server, addr) = crate::serve::start_server(&lake);
    let (status, body) = crate::serve::api(&addr, &format!("/v1/items/{product}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attributes"]["in_stock"], false, "{body}");
    assert_eq!(
        body["attributes"]["tags"],
        serde_json::json!(["cheap"]),
        "{body}"
    );
    assert_eq!(
        body["attributes"]["price"].as_f64(),
        Some(catalog[product].2),
        "{body}"
    );
}
