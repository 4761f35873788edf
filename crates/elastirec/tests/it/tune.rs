//! `elastirec tune`: a grid on an inner temporal split of a small simulated lake, kept in the
//! run record.

use elastirec_core::{Night, layout};

use crate::harness::{ok, read_json, run};

#[test]
fn tune_records_the_grid_and_picks_the_best_validation_ndcg() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ok(
        &lake,
        &[
            "simulate",
            "--days",
            "10",
            "--users",
            "300",
            "--items",
            "150",
            "--events-per-day",
            "1500",
        ],
    );
    let night: Night = "2024-01-10".parse().unwrap();
    ok(&lake, &["ingest", "--date", &night.to_string()]);
    let out = ok(
        &lake,
        &[
            "tune",
            "--date",
            &night.to_string(),
            "--horizon-days",
            "3",
            "--factors",
            "2,16",
            "--regularization",
            "0.05",
            "--alpha",
            "1,10",
            "--iterations",
            "5",
        ],
    );
    println!("{out}");
    assert!(
        out.contains("tuning night 2024-01-10: 4 grid points"),
        "{out}"
    );
    assert!(out.contains("chosen: factors"), "{out}");
    assert!(out.contains("the configuration is unchanged"), "{out}");

    let record = read_json(&lake, &layout::run_record(night));
    let tuning = &record["tuning"];
    assert_eq!(tuning["train_night"], "2024-01-07", "{tuning}");
    assert_eq!(tuning["validation_end"], "2024-01-10", "{tuning}");
    assert_eq!(tuning["last_event_day"], "2024-01-10", "{tuning}");
    assert!(tuning["users_scored"].as_u64().unwrap() > 50, "{tuning}");
    let grid = tuning["grid"].as_array().unwrap();
    let points: Vec<(u64, f64, f64)> = grid
        .iter()
        .map(|p| {
            (
                p["factors"].as_u64().unwrap(),
                p["alpha"].as_f64().unwrap(),
                p["scores"]["ndcg"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        points.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
        vec![(2, 1.0), (2, 10.0), (16, 1.0), (16, 10.0)],
        "grid order: factors slowest"
    );
    for p in grid {
        let s = &p["scores"];
        for m in [
            "ndcg",
            "precision",
            "recall",
            "map",
            "hit_rate",
            "catalog_coverage",
        ] {
            let v = s[m].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{m} = {v} in {p}");
        }
    }
    // The points must differ, or picking the maximum would test nothing.
    let max = points.iter().map(|p| p.2).fold(f64::MIN, f64::max);
    let min = points.iter().map(|p| p.2).fold(f64::MAX, f64::min);
    assert!(max > min, "every point scored {max}: {tuning}");
    let chosen = tuning["chosen"].as_u64().unwrap() as usize;
    assert_eq!(points[chosen].2, max, "{tuning}");
    assert!(
        points[..chosen].iter().all(|p| p.2 < max),
        "the first maximum is chosen: {tuning}"
    );
    // Popularity on the same validation days is kept for reference.
    assert!(
        tuning["popularity"]["ndcg"].as_f64().unwrap() > 0.0,
        "{tuning}"
    );
    // Tuning reads nothing after the night and writes no model: the export of night D−H was
    // made by `prepare` (recorded under that night), and the night D record has no step but
    // the test's own `ingest`.
    assert!(
        lake.join("exports/training/2024/01/07/_manifest.json")
            .exists()
    );
    assert!(!lake.join("exports/training/2024/01/10").exists());
    assert!(!lake.join("models").exists());
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["ingest"], "{record}");
    let status = ok(&lake, &["status", "--date", &night.to_string()]);
    assert!(status.contains("tuning (4 points"), "{status}");

    // A bad grid is refused with exit code 2, naming the flag.
    let bad = run(&lake, &["tune", "--date", "2024-01-10", "--factors", "0"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("--factors 0"), "{stderr}");
    let help = ok(&lake, &["tune", "--help"]);
    for needle in [
        "inner temporal split",
        "run record",
        "--regularization",
        "not changed",
    ] {
        assert!(help.contains(needle), "{needle} not in:\n{help}");
    }
}
