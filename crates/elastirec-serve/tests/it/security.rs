//! The HTTP front against hostile clients, over real sockets: a head trickled a byte at a time,
//! a client that never reads, more connections than allowed, conflicting lengths, oversized
//! bodies, slow handlers, a drain on shutdown, TLS; security headers and the token.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use elastirec_serve::server::{self, Options};
use elastirec_serve::{Served, router};

use crate::fixture;

/// A server on a free port; dropping `stop` (or sending on it) starts the drain.
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(app: Router, options: Options) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, app, options, async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// A small app: `/fast`, `/slow` (sleeps 3 s), `/big` (200 KB).
fn test_app() -> Router {
    Router::new()
        .route("/fast", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "slow"
            }),
        )
        .route("/big", get(|| async { "x".repeat(200_000) }))
}

/// Everything the server sends until it closes (or 15 s pass: then the test fails).
async fn read_all(stream: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut raw)).await;
    let _ = read.expect("the server closes the connection within 15 s");
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test]
async fn a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_whole_head_deadline() {
    let options = Options {
        header_timeout: Duration::from_secs(2),
        ..Options::default()
    };
    let s = Running::start(test_app(), options).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    // One byte every 300 ms: each read is quick, the head never completes.
    let request =
        b"GET /fast HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed_after = None;
    for byte in request {
        if c.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut probe = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), c.read(&mut probe)).await
        {
            // Closed (0) or an error answer: either way the head was not waited for.
            let _ = n;
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after =
        closed_after.expect("the server closed the connection before the head ended");
    assert!(
        closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}, the whole-head deadline is 2 s"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected_by_the_write_deadline() {
    let options = Options {
        write_timeout: Duration::from_secs(1),
        ..Options::default()
    };
    let s = Running::start(test_app(), options).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    // 300 pipelined requests for 200 KB each (60 MB): far beyond the socket buffers.
    let requests = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(300);
    let _ = c.write_all(requests.as_bytes()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Now read: the server gave up on the connection, so fewer answers than requests arrive.
    let mut raw = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), c.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the server kept the connection of a client that did not read"),
        }
    }
    let answers = raw.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
    assert!(
        answers < 300,
        "all {answers} answers were written to a client that did not read"
    );
    s.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_get_503_and_the_slot_comes_back() {
    let options = Options {
        max_connections: 2,
        ..Options::default()
    };
    let s = Running::start(test_app(), options).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = c.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(c);
    }
    let mut third = TcpStream::connect(s.addr).await.unwrap();
    let text = read_all(&mut third).await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(text.contains("too many connections"), "{text}");
    drop(held.pop());
    // The slot is given back when the connection ends.
    let mut ok = None;
    for _ in 0..50 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let text = read_all(&mut c).await;
        if text.starts_with("HTTP/1.1 200") {
            ok = Some(text);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ok.is_some(),
        "a closed connection's slot was never given back"
    );
    drop(held);
    s.stop().await;
}

#[tokio::test]
async fn conflicting_lengths_and_oversized_bodies_are_refused() {
    let s = Running::start(test_app(), Options::default()).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"GET /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    )
    .await
    .unwrap();
    let text = read_all(&mut c).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");

    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"GET /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    // RFC 9112 section 6.3: the chunked framing wins over the length, and the connection is
    // closed after the answer, so nothing smuggled behind the body is answered.
    let text = read_all(&mut c).await;
    assert!(
        text.starts_with("HTTP/1.1 400")
            || (text.contains("connection: close") && text.matches("HTTP/1.1 ").count() == 1),
        "{text}"
    );

    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"GET /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_all(&mut c).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");

    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let huge = format!(
        "GET /fast HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = c.write_all(huge.as_bytes()).await;
    let text = read_all(&mut c).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    s.stop().await;
}

#[tokio::test]
async fn a_request_past_its_deadline_is_answered_503() {
    let options = Options {
        request_timeout: Duration::from_secs(1),
        ..Options::default()
    };
    let s = Running::start(test_app(), options).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    c.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let text = read_all(&mut c).await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("\"timeout\""), "{text}");
    assert!(started.elapsed() < Duration::from_millis(2500));
    s.stop().await;
}

#[tokio::test]
async fn shutdown_answers_the_requests_in_flight_and_accepts_no_more() {
    let s = Running::start(test_app(), Options::default()).await;
    let addr = s.addr;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(s.stop());
    // The slow request started before the shutdown is answered, then the connection closes.
    let text = read_all(&mut c).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("slow"), "{text}");
    stopping.await.unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a new connection was accepted after the shutdown"
    );
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_the_token_is_required() {
    let f = fixture::published().await;
    let served = Served::new(f.lake.clone(), Some("s3cr3t-token".into()));
    served.refresh().await.unwrap();
    let s = Running::start(router(served), Options::default()).await;
    for (path, auth, status) in [
        ("/", "", 200),
        ("/healthz", "", 200),
        ("/v1/runs", "", 401),
        ("/v1/runs", "Authorization: Bearer wrong\r\n", 401),
        (
            "/v1/runs",
            "Authorization: Bearer s3cr3t-token-longer\r\n",
            401,
        ),
        ("/v1/runs", "Authorization: Bearer s3cr3t-token\r\n", 200),
    ] {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        c.write_all(request.as_bytes()).await.unwrap();
        let text = read_all(&mut c).await;
        let head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with(&format!("http/1.1 {status}")),
            "{path} {auth}: {head}"
        );
        for h in [
            "x-content-type-options: nosniff",
            "x-frame-options: deny",
            "referrer-policy: no-referrer",
            "content-security-policy: default-src 'self'",
        ] {
            assert!(head.contains(h), "{path}: no '{h}' in\n{head}");
        }
        // Answers are not stored by caches; the dashboard's page (no data in it) may be
        // revalidated instead.
        let cache = if path == "/" {
            "cache-control: no-cache"
        } else {
            "cache-control: no-store"
        };
        {
            let h = cache;
            assert!(head.contains(h), "{path}: no '{h}' in\n{head}");
        }
        assert!(!text.contains("s3cr3t"), "the token was echoed: {text}");
    }
    s.stop().await;
}

#[tokio::test]
async fn https_with_a_certificate_from_files() {
    let Ok(out) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        eprintln!("skipped: the openssl command is missing (it makes the test certificate)");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let tls = server::tls_config(&cert, &key).unwrap();
    let s = Running::start(
        test_app(),
        Options {
            tls: Some(tls),
            ..Options::default()
        },
    )
    .await;
    let url = format!("https://localhost:{}/fast", s.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", s.addr.port());
    let cacert = cert.clone();
    let curl = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "-i",
                "--max-time",
                "10",
                "--resolve",
                &resolve,
                "--cacert",
            ])
            .arg(&cacert)
            .arg(&url)
            .output()
    })
    .await
    .unwrap();
    let Ok(curl) = curl else {
        eprintln!("skipped the client half: the curl command is missing");
        s.stop().await;
        return;
    };
    let text = String::from_utf8_lossy(&curl.stdout).to_ascii_lowercase();
    assert!(
        curl.status.success(),
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("strict-transport-security: max-age="),
        "{text}"
    );
    assert!(text.ends_with("ok"), "{text}");
    // Plain HTTP to the TLS port gets no answer.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let _ = c.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let text = read_all(&mut c).await;
    assert!(!text.contains("200 OK"), "{text}");
    s.stop().await;

    // A key that does not match, and a missing file, are errors naming the file.
    let other = dir.path().join("other.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-out",
        ])
        .arg(&other)
        .output()
        .unwrap();
    assert!(made.status.success());
    let e = server::tls_config(&cert, &other).unwrap_err().to_string();
    assert!(e.contains("other.pem"), "{e}");
    let e = server::tls_config(&dir.path().join("nope.pem"), &key)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.pem"), "{e}");
}
