//! `import movielens` on each published layout, and its errors.

use crate::harness::{fixtures, ok, run};

fn raw_day(lake: &std::path::Path, day: &str) -> String {
    std::fs::read_to_string(lake.join(format!("raw/events/{day}/movielens-ratings.csv"))).unwrap()
}

#[test]
fn every_layout_gives_the_same_daily_files() {
    let layouts = [
        ("ml-20m/ratings.csv", "ml-20m/movies.csv"),
        ("ml-1m/ratings.dat", "ml-1m/movies.dat"),
        ("ml-100k/u.data", "ml-100k/u.item"),
    ];
    let mut days = Vec::new();
    for (ratings, items) in layouts {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let out = ok(
            &lake,
            &[
                "import",
                "movielens",
                "--ratings",
                fixtures().join(ratings).to_str().unwrap(),
                "--items",
                fixtures().join(items).to_str().unwrap(),
            ],
        );
        assert!(out.contains("imported 5 ratings of 3 users"), "{out}");
        assert!(
            out.contains("into 2 daily files, 1997-12-04 to 1997-12-05"),
            "{out}"
        );
        assert!(out.contains("imported 3 items"), "{out}");
        let first = raw_day(&lake, "1997/12/04");
        let second = raw_day(&lake, "1997/12/05");
        assert!(
            first.starts_with("userId,movieId,rating,timestamp\n"),
            "{first}"
        );
        assert_eq!(first.lines().count(), 1 + 3, "{first}");
        assert_eq!(second.lines().count(), 1 + 2, "{second}");
        let movies = std::fs::read_to_string(lake.join("raw/items/movielens-movies.csv")).unwrap();
        assert!(
            movies.contains("\"American President, The (1995)\""),
            "{movies}"
        );
        days.push((
            first
                .lines()
                .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
                .collect::<Vec<_>>(),
            movies,
        ));
    }
    // The same user–item pairs whatever the layout (ratings differ: ml-20m has half stars).
    assert_eq!(days[0].0, days[1].0);
    assert_eq!(days[1].0, days[2].0);
    // u.item is latin-1: the accented title survives as UTF-8.
    assert!(
        days[2].1.contains("Cité des enfants perdus"),
        "{}",
        days[2].1
    );
}

#[test]
fn a_malformed_line_fails_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = fixtures().join("bad/ratings.dat");
    let out = run(
        &dir.path().join("lake"),
        &["import", "movielens", "--ratings", bad.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "invalid input exits 2: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:3: rating 'five' is not a number",
            bad.display()
        )),
        "{stderr}"
    );
    assert!(
        !dir.path().join("lake/raw/events").exists(),
        "nothing is written on failure"
    );
}

#[test]
fn a_malformed_raw_event_fails_ingest_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let day = lake.join("raw/events/2024/01/02");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::write(
        day.join("app.csv"),
        "userId,movieId,rating,timestamp\n1,2,3.0,1704153600\n1,3,abc,1704153601\n",
    )
    .unwrap();
    let out = run(&lake, &["ingest", "--date", "2024-01-02"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("raw/events/2024/01/02/app.csv:3: column 'rating': 'abc' is not a number"),
        "{stderr}"
    );
    // The failure is in the run record, with whose fault it was.
    let record = crate::harness::read_json(
        &lake,
        &elastirec_core::layout::run_record("2024-01-02".parse().unwrap()),
    );
    assert_eq!(record["steps"][0]["state"], "failed");
    assert_eq!(record["steps"][0]["error_kind"], "invalid_input");
    // Fixing the file lets the next run load it.
    std::fs::write(
        day.join("app.csv"),
        "userId,movieId,rating,timestamp\n1,2,3.0,1704153600\n1,3,4.0,1704153601\n",
    )
    .unwrap();
    let out = ok(&lake, &["ingest", "--date", "2024-01-02"]);
    assert!(out.contains("loaded 2 rows from 1 files"), "{out}");
}
