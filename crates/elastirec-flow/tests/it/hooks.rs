//! The webhook receives the night's JSON summary by POST.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use chrono::Utc;

use elastirec_core::config::HooksConfig;
use elastirec_core::manifest::{RunRecord, StepRecord, StepState};
use elastirec_flow::hooks::{NightSummary, notify, webhook, webhook_origin};

use crate::night;

/// The record of a night that has just ended in `state` with `steps`.
fn ended_night(day: &str, state: StepState, steps: Vec<StepRecord>) -> RunRecord {
    let now = Utc::now();
    RunRecord {
        night: night(day),
        state,
        started_at: now,
        ended_at: Some(now),
        steps,
        publish: None,
        cost: None,
        tuning: None,
    }
}

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
    let record = ended_night(
        "2024-01-05",
        StepState::Failed,
        vec![StepRecord {
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
    );
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
    let record = ended_night("2024-01-06", StepState::Succeeded, Vec::new());
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

/// A private CA and a certificate it signed for 127.0.0.1, made with the openssl command; `None`
/// when openssl is missing.
fn private_ca(dir: &std::path::Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca: Vec<&str> = ["req", "-x509"]
        .into_iter()
        .chain(ec)
        .chain(["-days", "1", "-subj", "/CN=elastirec test CA"])
        .chain(["-keyout", "ca.key", "-out", "ca.pem"])
        .collect();
    openssl(&ca)?;
    let csr: Vec<&str> = ["req"]
        .into_iter()
        .chain(ec)
        .chain([
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
        ])
        .collect();
    openssl(&csr)?;
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ])?;
    Some((
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_is_checked_against_its_ca_and_its_secret_stays_out_of_errors() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = private_ca(dir.path()) else {
        eprintln!("skipped: the openssl command is missing (it makes the test certificates)");
        return;
    };
    let acceptor =
        tokio_rustls::TlsAcceptor::from(elastirec_core::tls::server_config(&cert, &key).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Answers every connection that completes a handshake; sends back what each POSTed.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // The summary is small: read until the JSON body's closing brace.
                while !seen.ends_with(b"}") {
                    let n = tls.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                tls.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tls.shutdown().await;
                tx.send(String::from_utf8_lossy(&seen).into_owned())
                    .unwrap();
            });
        }
    });
    let record = ended_night("2024-01-06", StepState::Succeeded, Vec::new());
    let summary = NightSummary::of(&record, "file:///lake/");
    let url = format!("https://127.0.0.1:{port}/services/T0/B0/s3cr3t-path?token=s3cr3t-query");

    // Without the private CA the certificate is not trusted: nothing is sent, and the error
    // says why without the URL's secrets.
    let untrusted = HooksConfig {
        webhook_url: Some(url.clone()),
        ..HooksConfig::default()
    };
    let err = webhook(&untrusted, &summary).await.unwrap_err();
    assert!(!err.contains("s3cr3t"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(webhook_origin(&url), format!("https://127.0.0.1:{port}/…"));

    let trusted = HooksConfig {
        webhook_url: Some(url),
        webhook_ca_file: Some(ca),
        ..HooksConfig::default()
    };
    webhook(&trusted, &summary).await.unwrap();
    let request = rx.recv().await.unwrap();
    assert!(
        request.starts_with("POST /services/T0/B0/s3cr3t-path?token=s3cr3t-query HTTP/1.1"),
        "{request}"
    );
    let body = &request[request.find("\r\n\r\n").unwrap() + 4..];
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["night"], "2024-01-06");
    assert_eq!(json["state"], "succeeded");

    // Not a web URL: refused before anything is sent.
    let ftp = HooksConfig {
        webhook_url: Some("ftp://127.0.0.1/x".into()),
        ..HooksConfig::default()
    };
    let err = webhook(&ftp, &summary).await.unwrap_err();
    assert!(err.contains("http:// or https://"), "{err}");
}
