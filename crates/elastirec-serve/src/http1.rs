//! A small HTTP/1.1 front for the axum [`Router`]: keep-alive, pipelining, `Content-Length`
//! bodies, one task per connection.
//!
//! Why not `axum::serve`: it needs hyper's `server` feature and tower's `make`, and turning those
//! on changes the features of hyper and tower that object_store and the SQL stack share, which
//! recompiles all of it (tens of minutes on our 2-core machines). This front is enough for an API
//! that answers small JSON documents to GET requests; the Router, its extractors and middleware
//! are plain axum, so moving to `axum::serve` later changes only this module.
//!
//! Limits: request heads up to [`MAX_HEAD`] bytes and 64 headers (431 otherwise), bodies up to
//! [`MAX_BODY`] bytes (413), no chunked request bodies (411), a head must arrive within
//! [`HEAD_TIMEOUT`] and an idle connection is closed after [`IDLE_TIMEOUT`].

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, Version, header};
use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// Largest request head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Time allowed for a request head to arrive once its first byte has.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle keep-alive connection is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// Accepts connections until `shutdown` resolves, answering each request with `app`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, _)) => {
                        let app = app.clone();
                        tokio::spawn(async move {
                            if let Err(e) = connection(stream, app).await {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        });
                    }
                    // Running out of file descriptors and the like: wait, then go on accepting.
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            () = &mut shutdown => return Ok(()),
        }
    }
}

/// A parsed request head: the request without its body, and the body length it announced.
struct Head {
    request: Request<()>,
    content_length: usize,
    keep_alive: bool,
}

enum Parsed {
    Complete(Box<Head>, usize),
    Partial,
    Refuse(StatusCode, &'static str),
}

fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refuse(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many headers",
            );
        }
        Err(_) => return Parsed::Refuse(StatusCode::BAD_REQUEST, "malformed HTTP request"),
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Refuse(StatusCode::BAD_REQUEST, "malformed HTTP request");
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Refuse(StatusCode::BAD_REQUEST, "malformed method");
    };
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut builder = Request::builder().method(method).uri(path).version(version);
    let mut content_length = 0usize;
    // HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 only when asked.
    let mut keep_alive = minor == 1;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                Some(n) => content_length = n,
                None => return Parsed::Refuse(StatusCode::BAD_REQUEST, "bad content-length"),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Refuse(
                StatusCode::LENGTH_REQUIRED,
                "chunked request bodies are not accepted: send content-length",
            );
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        }
        builder = builder.header(h.name, h.value);
    }
    if content_length > MAX_BODY {
        return Parsed::Refuse(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    match builder.body(()) {
        Ok(request) => Parsed::Complete(
            Box::new(Head {
                request,
                content_length,
                keep_alive,
            }),
            consumed,
        ),
        Err(_) => Parsed::Refuse(
            StatusCode::BAD_REQUEST,
            "malformed request target or header",
        ),
    }
}

async fn connection(mut stream: TcpStream, app: Router) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    loop {
        // Read until a whole head is buffered (pipelined requests may already be there).
        let head = loop {
            match parse_head(&buf) {
                Parsed::Complete(head, consumed) => {
                    buf.advance(consumed);
                    break head;
                }
                Parsed::Refuse(status, why) => {
                    return refuse(&mut stream, status, why).await;
                }
                Parsed::Partial => {
                    if buf.len() >= MAX_HEAD {
                        return refuse(
                            &mut stream,
                            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                            "request head too large",
                        )
                        .await;
                    }
                    let limit = if buf.is_empty() {
                        IDLE_TIMEOUT
                    } else {
                        HEAD_TIMEOUT
                    };
                    match tokio::time::timeout(limit, stream.read_buf(&mut buf)).await {
                        Ok(Ok(0)) | Err(_) => return Ok(()),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(e),
                    }
                }
            }
        };
        while buf.len() < head.content_length {
            match tokio::time::timeout(HEAD_TIMEOUT, stream.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
        let body = buf.split_to(head.content_length).freeze();
        let Head {
            request,
            content_length: _,
            keep_alive,
        } = *head;
        let (parts, ()) = request.into_parts();
        let is_head = parts.method == Method::HEAD;
        let version = parts.version;
        let request = Request::from_parts(parts, Body::from(body));
        let response: Response<Body> = match app.clone().oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        out.clear();
        write_response(&mut out, response, version, keep_alive, is_head).await;
        stream.write_all(&out).await?;
        if !keep_alive {
            stream.shutdown().await.ok();
            return Ok(());
        }
    }
}

async fn write_response(
    out: &mut Vec<u8>,
    response: Response<Body>,
    version: Version,
    keep_alive: bool,
    is_head: bool,
) {
    let (parts, body) = response.into_parts();
    let (status, body) = match body.collect().await {
        Ok(collected) => (parts.status, collected.to_bytes()),
        Err(e) => {
            tracing::error!(error = %e, "response body failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                bytes::Bytes::from_static(
                    b"{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}",
                ),
            )
        }
    };
    let v = if version == Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    out.extend_from_slice(
        format!(
            "{v} {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in &parts.headers {
        if *name == header::CONTENT_LENGTH || *name == header::CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(if keep_alive {
        b"connection: keep-alive\r\n\r\n"
    } else {
        b"connection: close\r\n\r\n"
    });
    if !is_head {
        out.extend_from_slice(&body);
    }
}

/// Answers a request that cannot be read with a JSON error, and closes the connection.
async fn refuse(stream: &mut TcpStream, status: StatusCode, why: &str) -> io::Result<()> {
    let body = serde_json::json!({"error": {"code": "bad_request", "message": why}}).to_string();
    let text = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    stream.write_all(text.as_bytes()).await?;
    stream.shutdown().await.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_bad_ones_are_refused() {
        let raw = b"GET /v1/runs?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /";
        match parse_head(raw) {
            Parsed::Complete(head, n) => {
                assert_eq!(head.request.uri().path(), "/v1/runs");
                assert_eq!(head.request.uri().query(), Some("x=1"));
                assert!(!head.keep_alive);
                assert_eq!(&raw[n..], b"GET /");
            }
            _ => panic!("a complete head"),
        }
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nHost"),
            Parsed::Partial
        ));
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Parsed::Refuse(StatusCode::LENGTH_REQUIRED, _)
        ));
        assert!(matches!(
            parse_head(b"\x01\x02 nonsense\r\n\r\n"),
            Parsed::Refuse(StatusCode::BAD_REQUEST, _)
        ));
        match parse_head(b"GET / HTTP/1.0\r\n\r\n") {
            Parsed::Complete(head, _) => assert!(!head.keep_alive),
            _ => panic!("a complete head"),
        }
    }
}
