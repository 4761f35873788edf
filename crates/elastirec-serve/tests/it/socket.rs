//! One real socket: the HTTP/1.1 front with keep-alive, pipelining and malformed requests.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use elastirec_serve::{Served, router, server};

use crate::fixture::{self, NIGHT1};

/// The server closes the connection: the next read ends (within five seconds).
async fn assert_closed(stream: &mut TcpStream) {
    let mut rest = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut rest))
        .await
        .expect("the server kept the connection open")
        .unwrap_or(0);
    assert_eq!(n, 0, "more bytes after the answer: {:?}", &rest[..n]);
}

/// Reads one response: (status, headers lowercased, body).
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, String, String) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec())
                .unwrap()
                .to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            while buf.len() < end + 4 + length {
                read_more(stream, buf).await;
            }
            let body = String::from_utf8(buf[end + 4..end + 4 + length].to_vec()).unwrap();
            buf.drain(..end + 4 + length);
            let status = head[9..12].parse().unwrap();
            return (status, head, body);
        }
        read_more(stream, buf).await;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
        .await
        .expect("the server answers within 10 s")
        .unwrap();
    assert!(n > 0, "the server closed the connection early");
    buf.extend_from_slice(&chunk[..n]);
}

#[tokio::test]
async fn answers_over_a_real_socket_with_keep_alive_and_pipelining() {
    let f = fixture::published().await;
    let served = Served::new(f.lake.clone(), Some("tok".into()));
    served.refresh().await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        listener,
        router(served),
        server::Options::default(),
        async move {
            let _ = stopped.await;
        },
    ));

    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    // Two requests in one write: both are answered, in order, on the same connection.
    s.write_all(
        b"GET /v1/users/7/recommendations?k=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let (status, head, body) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("x-request-id: "), "{head}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["items"][0]["item_id"], "2");
    assert_eq!(json["model_date"], NIGHT1);
    let (status, _, body) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 200, "{body}");
    // The same connection goes on: no token is a 401, with a JSON error.
    s.write_all(b"GET /v1/runs HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, head, body) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 401, "{head}");
    assert!(body.contains("\"unauthorized\""), "{body}");

    // Garbage is a 400 with a JSON error, and the connection is closed.
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(b"\x00\x01 hello\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let (status, _, _) = read_response(&mut bad, &mut buf).await;
    assert_eq!(status, 400);
    assert_closed(&mut bad).await;

    // A client's request id is kept; HTTP/1.0 closes after the answer.
    let mut old = TcpStream::connect(addr).await.unwrap();
    old.write_all(b"GET /healthz HTTP/1.0\r\nX-Request-Id: abc-123\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (status, head, _) = read_response(&mut old, &mut buf).await;
    assert_eq!(status, 200);
    assert!(head.contains("x-request-id: abc-123"), "{head}");
    assert_closed(&mut old).await;

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
