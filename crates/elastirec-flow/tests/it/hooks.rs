//! The webhook receives the night's JSON summary by POST.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use chrono::Utc;

use elastirec_core::config::HooksConfig;
use elastirec_core::manifest::{RunRecord, StepRecord, StepState};
use elastirec_flow::hooks::{NightSummary, notify};

use crate::night;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_gets_the_failed_nights_summary() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .unwrap();
        (request_line, body)
    });
    let now = Utc::now();
    let record = RunRecord {
        night: night("2024-01-05"),
        state: StepState::Failed,
        started_at: now,
        ended_at: Some(now),
        steps: vec![StepRecord {
            name: "train".into(),
            state: StepState::Failed,
            started_at: Some(now),
            ended_at: Some(now),
            rows_in: None,
            rows_out: None,
            outcome: Some("no training export for night 2024-01-05".into()),
            error_kind: Some("not_found".into()),
            attempt: 1,
            bytes_out: None,
            cpu_seconds: None,
            peak_memory_bytes: None,
            job: None,
        }],
        publish: None,
        cost: None,
        tuning: None,
    };
    let config = HooksConfig {
        webhook_url: Some(format!("http://127.0.0.1:{port}/alerts/elastirec")),
        ..HooksConfig::default()
    };
    notify(&config, &NightSummary::of(&record, "file:///lake/")).await;
    let (request_line, body) = server.join().unwrap();
    assert_eq!(request_line.trim(), "POST /alerts/elastirec HTTP/1.1");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["night"], "2024-01-05");
    assert_eq!(json["state"], "failed");
    assert_eq!(json["failed_step"], "train");
    assert_eq!(json["error_kind"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_hangs_is_killed_with_its_children_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("child.pid");
    let now = Utc::now();
    let record = RunRecord {
        night: night("2024-01-06"),
        state: StepState::Succeeded,
        started_at: now,
        ended_at: Some(now),
        steps: Vec::new(),
        publish: None,
        cost: None,
        tuning: None,
    };
    // The hook starts a child that would outlive it, then hangs without reading its input.
    let config = HooksConfig {
        on_success: Some(format!(
            "sleep 300 & echo $! > {}; sleep 300",
            marker.display()
        )),
        timeout_seconds: 1,
        ..HooksConfig::default()
    };
    let started = std::time::Instant::now();
    notify(&config, &NightSummary::of(&record, "file:///lake/")).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "notify waited {:?} for a hook with a 1 s timeout",
        started.elapsed()
    );
    let child: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
    let running = state
        .rsplit(')')
        .next()
        .is_some_and(|r| !r.trim_start().starts_with('Z') && !r.is_empty());
    assert!(
        !running,
        "the hook's child {child} is still running: {state}"
    );
}
