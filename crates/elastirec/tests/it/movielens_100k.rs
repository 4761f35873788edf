//! The nightly flow on real data: MovieLens 100K, catching up history on 1998-03-25, then one
//! night at a time to 1998-03-31.

use std::collections::{HashMap, HashSet};

use elastirec_core::manifest::RecommendationsManifest;
use elastirec_core::{Night, layout};
use elastirec_lake::io::read_recommendations_internal;
use elastirec_warehouse::Warehouse;

use crate::harness::{evaluation, import_movielens_100k, movielens_100k, ok, open_lake, read_json};

/// (user, item, day) of every rating, read straight from the source file.
fn ratings() -> Vec<(i64, i64, Night)> {
    let text = std::fs::read_to_string(movielens_100k().join("ratings.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                Night::of_unix_seconds(f[3].parse().unwrap()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn nightly_runs_on_movielens_100k() {
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let out = import_movielens_100k(&lake_dir);
    assert!(
        out.contains("imported 100000 ratings of 943 users"),
        "{out}"
    );
    let all = ratings();

    let first: Night = "1998-03-25".parse().unwrap();
    let last: Night = "1998-03-31".parse().unwrap();
    for night in first.through(last) {
        let out = ok(&lake_dir, &["run", "--date", &night.to_string()]);
        assert!(out.contains(": succeeded"), "{out}");
    }

    let lake = open_lake(&lake_dir).await;
    let wh = Warehouse::open(&lake).await.unwrap();
    // Every raw file up to the last night is in the ledger exactly once, and the events table
    // holds exactly the ratings of those days.
    let raw_days: HashSet<Night> = all.iter().map(|r| r.2).filter(|d| *d <= last).collect();
    let ledger = wh
        .sql("SELECT COUNT(*) AS n, COUNT(DISTINCT path) AS d FROM loads WHERE target = 'events'")
        .await
        .unwrap();
    let n = ledger[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap()
        .value(0);
    let d = ledger[0]
        .column(1)
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!((n as usize, d as usize), (raw_days.len(), raw_days.len()));
    let expected_events = all.iter().filter(|r| r.2 <= last).count() as u64;
    assert_eq!(
        wh.count_events_through(last).await.unwrap(),
        expected_events
    );
    assert_eq!(
        wh.count_events_through(Night::from_ymd(2030, 1, 1).unwrap())
            .await
            .unwrap(),
        expected_events
    );

    // A rerun loads nothing.
    let out = ok(&lake_dir, &["ingest", "--date", &last.to_string()]);
    assert!(out.contains("loaded 0 rows from 0 files"), "{out}");
    assert_eq!(
        wh.count_events_through(last).await.unwrap(),
        expected_events
    );

    // Every user seen up to the night has a top-10 without any item they had seen.
    let mut seen: HashMap<i64, HashSet<i64>> = HashMap::new();
    for &(u, i, day) in &all {
        if day <= last {
            seen.entry(u).or_default().insert(i);
        }
    }
    let manifest: RecommendationsManifest = serde_json::from_value(read_json(
        &lake_dir,
        &layout::recommendations_manifest(last),
    ))
    .unwrap();
    // MovieLens ids are numeric: each is its own internal id, no dictionary needed.
    let lists = read_recommendations_internal(&lake, &manifest.files, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        lists.len(),
        seen.len(),
        "one list per user seen up to {last}"
    );
    for (user, items) in &seen {
        let list = &lists[user];
        assert_eq!(list.len(), 10, "user {user}");
        let ranks: Vec<i32> = list.iter().map(|r| r.1).collect();
        assert_eq!(ranks, (1..=10).collect::<Vec<_>>());
        for (item, _, _, _) in list {
            assert!(
                !items.contains(item),
                "user {user} was recommended seen item {item}"
            );
        }
    }
    let latest = read_json(&lake_dir, &layout::recommendations_latest());
    assert_eq!(latest["night"], last.to_string());

    // `recommend --fold-in`: lists for a user the night never saw (two Star Wars films and an
    // id nobody knows), for a known user with what they did since, and for an empty session.
    let requests = dir.path().join("signups.jsonl");
    std::fs::write(
        &requests,
        "{\"user_id\": \"new-1\", \"items\": [{\"item_id\": \"50\", \"event_type\": \
         \"purchase\"}, {\"item_id\": \"181\"}, {\"item_id\": \"no-such-film\"}]}\n\n\
         {\"user_id\": \"1\", \"items\": [{\"item_id\": \"50\", \"value\": 5}]}\n\
         {\"user_id\": \"new-2\"}\n",
    )
    .unwrap();
    let out_file = dir.path().join("folded.jsonl");
    let out = ok(
        &lake_dir,
        &[
            "recommend",
            "--date",
            &last.to_string(),
            "--fold-in",
            requests.to_str().unwrap(),
            "--out",
            out_file.to_str().unwrap(),
        ],
    );
    assert!(out.contains("3 lists (2 folded in, 1 popular)"), "{out}");
    let folded: Vec<serde_json::Value> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(folded.len(), 3);
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["item_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(folded[0]["user_id"], "new-1");
    assert_eq!(folded[0]["source"], "fold-in");
    assert_eq!(folded[0]["items_unknown"], 1);
    assert_eq!(ids(&folded[0]).len(), 10);
    assert!(!ids(&folded[0]).iter().any(|i| i == "50" || i == "181"));
    // The known user's list leaves out everything they had and what they did since.
    assert_eq!(folded[1]["source"], "fold-in");
    for item in ids(&folded[1]) {
        let item: i64 = item.parse().unwrap();
        assert!(
            item != 50 && !seen[&1].contains(&item),
            "user 1 got seen item {item}"
        );
    }
    assert_eq!(folded[2]["source"], "popular");
    // A line that is not a fold-in request is refused, naming the file and line.
    std::fs::write(&requests, "{\"user_id\": \"u\"}\n{\"user\": 1}\n").unwrap();
    let refused = crate::harness::run(
        &lake_dir,
        &[
            "recommend",
            "--date",
            &last.to_string(),
            "--fold-in",
            requests.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("signups.jsonl:2"), "{message}");

    // Score the last night against every later event: the model must not be below popularity.
    ok(&lake_dir, &["ingest", "--date", "1998-04-30"]);
    let out = ok(
        &lake_dir,
        &[
            "evaluate",
            "--date",
            &last.to_string(),
            "--horizon-days",
            "30",
        ],
    );
    println!("{out}");
    let report = evaluation(&lake_dir, last, 30);
    let model = report["model"]["ndcg"].as_f64().unwrap();
    let popular = report["popularity"]["ndcg"].as_f64().unwrap();
    assert!(report["users_scored"].as_u64().unwrap() > 50, "{report}");
    assert!(
        model >= popular,
        "model NDCG@10 {model} below popularity {popular}"
    );
}
