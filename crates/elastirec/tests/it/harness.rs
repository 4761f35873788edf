//! Running the real binary and reading what it left in the lake.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use elastirec_core::{Lake, Night, layout};

/// The binary under test.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_elastirec"));
    // Tests must not pick up a developer's configuration.
    for (k, _) in std::env::vars() {
        if k.starts_with("ELASTIREC_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs `elastirec --lake LAKE ARGS…` and returns its output, whatever the exit status.
pub fn run(lake: &Path, args: &[&str]) -> Output {
    bin()
        .arg("--lake")
        .arg(lake)
        .args(args)
        .output()
        .expect("the elastirec binary runs")
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(lake: &Path, args: &[&str]) -> String {
    succeeded(&run(lake, args), format_args!("elastirec {args:?}"))
}

/// The stdout of a finished command that must have succeeded; otherwise fails the test with
/// `what`, the exit status, stdout and stderr.
pub fn succeeded(out: &Output, what: std::fmt::Arguments<'_>) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The test fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The shared MovieLens 100K copy (`../shared/data/movielens-100k` beside the repository).
pub fn movielens_100k() -> PathBuf {
    if let Ok(p) = std::env::var("MOVIELENS_100K") {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/movielens-100k");
    assert!(
        dir.join("ratings.csv").exists(),
        "MovieLens 100K not found at {}: set MOVIELENS_100K to the folder holding ratings.csv",
        dir.display()
    );
    dir
}

/// Imports MovieLens 100K (ratings and movies) into a local lake with `import movielens`;
/// returns the command's output.
pub fn import_movielens_100k(lake: &Path) -> String {
    let data = movielens_100k();
    ok(
        lake,
        &[
            "import",
            "movielens",
            "--ratings",
            data.join("ratings.csv").to_str().unwrap(),
            "--items",
            data.join("movies.csv").to_str().unwrap(),
        ],
    )
}

/// Opens a lake the binary wrote.
pub async fn open_lake(dir: &Path) -> Lake {
    Lake::open(dir.to_str().unwrap(), Default::default())
        .await
        .unwrap()
}

/// Reads a JSON document the binary wrote.
pub fn read_json(lake: &Path, path: &object_store::path::Path) -> serde_json::Value {
    let file = lake.join(path.as_ref());
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    serde_json::from_str(&text).unwrap()
}

/// The evaluation report of a night.
pub fn evaluation(lake: &Path, night: Night, horizon: u32) -> serde_json::Value {
    read_json(lake, &layout::evaluation(night, horizon))
}

/// The steps of a night without a sink, in order.
pub const NIGHTLY_STEPS: [&str; 7] = [
    "ingest",
    "prepare",
    "snapshot",
    "train",
    "recommend",
    "evaluate",
    "publish",
];

/// The step names of a run record, in order.
pub fn step_names(record: &serde_json::Value) -> Vec<&str> {
    record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect()
}

/// Copies the folder `from` (recursively) to `to`, which is created.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
