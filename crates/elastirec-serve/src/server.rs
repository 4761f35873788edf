//! The HTTP front: the axum [`Router`] on hyper's HTTP/1.1 server, with the limits a server
//! exposed to untrusted clients needs.
//!
//! - **Framing** is hyper's (RFC 9112): conflicting `Content-Length` values, a `Content-Length`
//!   beside `Transfer-Encoding`, malformed heads are answered 400 and the connection is closed;
//!   heads larger than [`Options::max_head`] get 431.
//! - **Deadlines are whole, not per read**: a request head must arrive completely within
//!   [`Options::header_timeout`] of the server starting to wait for it (an idle keep-alive
//!   connection is closed after the same time), a request must be answered within
//!   [`Options::request_timeout`] (body reading included; 503 otherwise), and a write that makes
//!   no progress for [`Options::write_timeout`] closes the connection (a client that never
//!   reads). A TLS handshake must finish within the header timeout.
//! - **Limits**: at most [`Options::max_connections`] connections at once (the next one is
//!   answered 503 with `retry-after` and closed, so clients do not wait in the backlog), request
//!   bodies up to [`Options::max_body`] bytes (413).
//! - **Security headers** on every answer (`nosniff`, no framing, no referrer, a same-origin
//!   content security policy, `no-store`; HSTS under TLS).
//! - **Graceful drain**: when `shutdown` resolves, no connection is accepted any more, requests
//!   in flight are answered and keep-alive connections closed after their current answer, for at
//!   most [`Options::drain_timeout`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;

/// The limits and deadlines of [`serve`].
#[derive(Clone)]
pub struct Options {
    /// Time for a whole request head to arrive, counted from when the server waits for it
    /// (so also the idle time of a keep-alive connection).
    pub header_timeout: Duration,
    /// Time from a request head to its answer, reading the body included.
    pub request_timeout: Duration,
    /// A write that makes no progress for this long closes the connection.
    pub write_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes.
    pub max_head: usize,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Time given to requests in flight when shutting down.
    pub drain_timeout: Duration,
    /// TLS, when set: the server configuration [`tls_config`] builds.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_head: 16 * 1024,
            max_body: 64 * 1024,
            drain_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("header_timeout", &self.header_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_head", &self.max_head)
            .field("max_body", &self.max_body)
            .field("drain_timeout", &self.drain_timeout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

pub use elastirec_core::tls::{TlsError, server_config as tls_config};

/// The security headers every answer carries; `Strict-Transport-Security` is added under TLS.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (header::CACHE_CONTROL, "no-store"),
];

/// Adds the security headers an answer does not set itself.
fn secure_headers<B>(mut response: Response<B>, tls: bool) -> Response<B> {
    let headers = response.headers_mut();
    // Room for all of them at once, rather than growing the map as they go in.
    headers.reserve(SECURITY_HEADERS.len() + 1);
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    if tls {
        headers
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert_with(|| HeaderValue::from_static("max-age=31536000"));
    }
    response
}

/// `answer`, or a 503 once `deadline` has passed. Most answers are ready when first polled (an
/// in-memory lookup): those never create a timer.
async fn answer_within(
    deadline: Duration,
    answer: impl Future<Output = Result<Response, Infallible>>,
) -> Result<Response, Infallible> {
    let mut answer = std::pin::pin!(answer);
    if let Poll::Ready(response) = futures::poll!(answer.as_mut()) {
        return response;
    }
    match tokio::time::timeout(deadline, answer).await {
        Ok(response) => response,
        Err(_) => Ok(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            &format!(
                "the request was not answered within {} s",
                deadline.as_secs_f64()
            ),
        )),
    }
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The answer to a connection over [`Options::max_connections`], written before closing it.
fn busy_answer() -> Vec<u8> {
    let body = r#"{"error":{"code":"busy","message":"too many connections: retry in a second"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Accepts connections until `shutdown` resolves, answering each request with `app`; then
/// drains (see the module documentation).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    // The per-request policy, once around the whole router: security headers on every answer
    // (the 413 and 503 ones included), the body limit, the request deadline. One statically
    // typed stack, not `Router::layer`, which wraps every route in each layer, boxed: that cost
    // a quarter of the requests per second.
    let (deadline, tls) = (options.request_timeout, options.tls.is_some());
    let service = TowerToHyperService::new(
        ServiceBuilder::new()
            .map_response(move |response| secure_headers(response, tls))
            .layer(RequestBodyLimitLayer::new(options.max_body))
            .map_future(move |answer| answer_within(deadline, answer))
            .service(app),
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_buf_size(options.max_head.max(8192))
        .max_header_size(options.max_head)
        .keep_alive(true);
    let http = Arc::new(http);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let tls = options.tls.clone().map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: wait, then go on accepting.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = options.max_connections, "too many connections");
            let plain = tls.is_none();
            tokio::spawn(async move {
                let mut stream = stream;
                if plain {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        stream.write_all(&busy_answer()),
                    )
                    .await;
                }
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = WriteDeadline::new(stream, options.write_timeout);
        let watcher = graceful.watcher();
        let (http, service, tls) = (http.clone(), service.clone(), tls.clone());
        let handshake = options.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let result = match tls {
                None => {
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let conn = http.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(conn).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    if open > 0 {
        tracing::info!(connections = open, "draining: answering requests in flight");
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!("drain timed out: connections still open are dropped");
        }
    }
    Ok(())
}

/// Whether serving `addr` reaches only this machine.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// A stream whose writes fail with `TimedOut` once one has made no progress for `limit`.
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            timer: None,
        }
    }

    /// What a write (or flush) of the inner stream gave: progress disarms the deadline; a
    /// pending write arms it, and fails once it has passed.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.timer = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the answer in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_is_well_framed() {
        let answer = busy_answer();
        let text = std::str::from_utf8(&answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "busy");
    }
}
