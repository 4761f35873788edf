//! The demo, which is the simulator's acceptance check: on the defaults, night 23's model must
//! reach at least 1.5× popularity's NDCG@10 over the following 7 days.

use elastirec_core::Night;

use crate::harness::{bin, evaluation, read_json};

#[test]
fn demo_runs_every_night_and_beats_popularity() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("demo-lake");
    let out = bin()
        .current_dir(dir.path())
        .arg("demo")
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    let start: Night = "2024-01-01".parse().unwrap();
    for night in start.through(start.plus_days(29)) {
        let record = read_json(&lake, &elastirec_core::layout::run_record(night));
        assert_eq!(record["state"], "succeeded", "{record}");
        assert_eq!(record["steps"].as_array().unwrap().len(), 4);
    }
    let report = evaluation(&lake, "2024-01-23".parse().unwrap(), 7);
    let model = report["model"]["ndcg"].as_f64().unwrap();
    let popular = report["popularity"]["ndcg"].as_f64().unwrap();
    assert!(popular > 0.0, "{report}");
    assert!(
        model >= 1.5 * popular,
        "NDCG@10 {model:.4} is not 1.5× popularity's {popular:.4}"
    );
    assert_eq!(report["last_event_day"], "2024-01-30");
}
