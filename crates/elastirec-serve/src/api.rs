//! The HTTP API and the dashboard's files, as one axum [`Router`].
//!
//! Every answer is JSON except `/metrics` (OpenMetrics text) and the dashboard's files. Errors go
//! through [`AppError`], which maps an error's kind to a status code and writes
//! `{"error": {"code", "message"}}`; only messages written for clients (bad request, not found)
//! are shown, anything else is logged with the request id and answered with a generic message.
//! Every response carries `x-request-id`, and the request's log lines carry the same id.
//!
//! **Ids.** Clients name users and items by their external ids (what producers sent: strings
//! such as `A3CIUOJXQ5VDQ2`, a UUID or `42`), percent-encoded in paths (`SKU%2F12%20A` is the
//! id `SKU/12 A`; axum decodes a path parameter after routing, so an encoded `/` stays inside
//! its segment). The night's id dictionary ([`Snapshot::ids`]) turns them into the snapshot's
//! internal ids; an id it does not know is an unknown user or item (the popular fallback, or
//! 404), as a numeric id without data is. Every id of an answer is the external id, as a JSON
//! string (`"42"` too).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::Instrument;

use elastirec_core::ids::{IdKind, MAX_ID_BYTES, check_external};
use elastirec_core::manifest::{EvaluationReport, RunRecord, sources};
use elastirec_core::{ErrorKind, Night, layout};

use crate::Error;
use crate::snapshot::{
    MAX_FOLD_IN_ITEMS, MAX_FOLD_IN_K, MAX_HISTORY, Made, Snapshot, check_similar_k,
};
use crate::state::Served;

/// The dashboard's page and scripts, compiled into the binary (no build step, no CDN).
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
pub const APP_JS: &str = include_str!("../assets/app.js");
pub const STYLE_CSS: &str = include_str!("../assets/style.css");
/// The OpenAPI document of every route.
pub const OPENAPI_JSON: &str = include_str!("../assets/openapi.json");

/// Items returned when a request does not say `k`, at most the night's K.
const DEFAULT_K: usize = 10;
/// History entries returned when a request does not say `limit`.
const DEFAULT_HISTORY: usize = 50;
/// The largest body `POST /v1/recommendations` reads: the server's own limit (64 KiB), also
/// enforced here so that the router answers with a JSON error whatever front serves it.
pub const MAX_BODY: usize = 64 * 1024;
/// The longest `event_type` a request may give.
const MAX_EVENT_TYPE_BYTES: usize = 64;

type Shared = Arc<Served>;

/// The whole application: API routes (behind the token when one is set), `/healthz` and the
/// dashboard's files (open), a JSON 404/405 for anything else, and request ids and metrics on
/// every answer.
pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/v1/users/{id}/recommendations", get(recommendations))
        .route(
            "/v1/recommendations",
            post(post_recommendations).layer(DefaultBodyLimit::max(MAX_BODY)),
        )
        .route("/v1/users/{id}/history", get(history))
        .route("/v1/items/{id}", get(item))
        .route("/v1/items/{id}/similar", get(similar))
        .route("/v1/runs", get(runs))
        .route("/v1/runs/{date}", get(run))
        .route("/v1/evaluations", get(evaluations))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    // The page holds no data (it asks for the token and sends it with its API calls), so it
    // is served without one.
    let open = Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        );
    api.merge(open)
        .fallback(|| async { AppError::RouteNotFound })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// An error answer: a status code and `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub enum AppError {
    /// An error of serving; its kind picks the status.
    Api(Error),
    /// The token is missing or wrong.
    Unauthorized,
    RouteNotFound,
    MethodNotAllowed,
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Api(e)
    }
}

impl AppError {
    fn status_code_message(&self) -> (StatusCode, &'static str, String) {
        match self {
            AppError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token: send 'Authorization: Bearer <token>'".into(),
            ),
            AppError::RouteNotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route: see /openapi.json".into(),
            ),
            AppError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not answer this method: see /openapi.json".into(),
            ),
            AppError::Api(e) => match (e, e.kind()) {
                // Messages written for clients.
                (Error::BadRequest(m), _) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
                (Error::InvalidField { message, .. }, _) => {
                    (StatusCode::BAD_REQUEST, "bad_request", message.clone())
                }
                (Error::TooLarge(m), _) => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    m.clone(),
                ),
                (Error::NotFound(m), _) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
                (Error::Unavailable(m), _) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m.clone())
                }
                // Anything else may name files and hosts: log it, say little.
                (_, ErrorKind::Transient) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the lake could not be read just now; retry later".into(),
                ),
                (_, _) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the server log has the details under this request's \
                     x-request-id"
                        .into(),
                ),
            },
        }
    }
}

/// The full error of a failed request, for the log line [`observe`] writes with the request id
/// (the client gets only the message chosen by [`AppError`]).
#[derive(Debug, Clone)]
struct ErrorDetail(String);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.status_code_message();
        let mut body = serde_json::json!({"error": {"code": code, "message": message}});
        let field = match &self {
            AppError::Api(Error::InvalidField { field, .. }) => Some(field.as_str()),
            AppError::Api(Error::TooLarge(_)) => Some("body"),
            _ => None,
        };
        if let Some(field) = field {
            body["error"]["field"] = serde_json::Value::from(field);
        }
        let mut response = (status, json_bytes(&body)).into_response();
        set_json(&mut response);
        if let AppError::Api(e) = &self {
            let detail = format!("{e} (kind {})", e.kind());
            response.extensions_mut().insert(ErrorDetail(detail));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type ApiResult = Result<Response, AppError>;

fn json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Our response types serialize infallibly (no maps with non-string keys, no foreign Serialize
    // impls that fail); an empty object is still valid JSON if that ever changes.
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

fn set_json(response: &mut Response) {
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
}

fn json<T: Serialize>(value: &T) -> Response {
    let mut response = Response::new(Body::from(json_bytes(value)));
    set_json(&mut response);
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Request ids: this process's start time and a counter, unique enough to grep logs.
fn next_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| Utc::now().timestamp() as u32);
    format!(
        "{start:08x}-{:06x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Gives the request an id (the client's `x-request-id` when it sends a sane one), runs it in a
/// span carrying that id, counts it by route pattern, status and latency, and logs it with the
/// id: server errors at `error` with their full cause, everything else at `debug`.
async fn observe(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map_or_else(next_request_id, str::to_string);
    let method = request.method().clone();
    let span = tracing::debug_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state.metrics.observe(&route, status, elapsed);
    let micros = elapsed.as_micros() as u64;
    match response.extensions().get::<ErrorDetail>() {
        Some(ErrorDetail(detail)) if status >= 500 => {
            tracing::error!(request_id = %id, %method, %route, status, micros, error = %detail, "request failed");
        }
        Some(ErrorDetail(detail)) => {
            tracing::debug!(request_id = %id, %method, %route, status, micros, error = %detail, "request refused");
        }
        None => tracing::debug!(request_id = %id, %method, %route, status, micros, "answered"),
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// Refuses a request without the bearer token, when one is set.
async fn require_token(State(state): State<Shared>, request: Request, next: Next) -> Response {
    if let Some(expected) = state.token() {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes())) {
            return AppError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

/// Compares the SHA-256 digests of both without an early exit: timing tells neither how much
/// of a guess was right nor how long the token is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest;
    let (a, b) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// An id as messages show it: at most 64 characters, control characters escaped.
fn shown(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars().take(64) {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if raw.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

/// The external id of a path's `{id}` segment, percent-decoded, if it is one (1 to
/// [`MAX_ID_BYTES`] bytes of UTF-8, no control characters).
fn path_id(kind: IdKind, path: Result<Path<String>, PathRejection>) -> Result<String, Error> {
    let what = kind.as_str();
    let raw = path.map_err(|e| {
        Error::BadRequest(format!(
            "the {what} id of this path cannot be read ({}): percent-encode it as UTF-8",
            e.body_text()
        ))
    })?;
    let Path(raw) = raw;
    check_external(&raw).map_err(|why| {
        Error::BadRequest(format!(
            "{what} id '{}' is not an id: {why} (an id is 1 to {MAX_ID_BYTES} bytes of UTF-8 \
             without control characters, percent-encoded in the path)",
            shown(&raw)
        ))
    })?;
    Ok(raw)
}

/// Query parameters; unknown ones are ignored.
fn query(raw: Option<String>) -> HashMap<String, String> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn count_param(
    params: &HashMap<String, String>,
    name: &str,
    default: usize,
) -> Result<usize, Error> {
    match params.get(name) {
        None => Ok(default),
        Some(raw) => raw.parse::<usize>().map_err(|_| {
            Error::BadRequest(format!("{name} = '{raw}' is not a non-negative integer"))
        }),
    }
}

fn current(state: &Served) -> Result<Arc<Snapshot>, Error> {
    state.snapshot().ok_or_else(|| {
        Error::Unavailable(
            "no recommendations are published yet: run a night (elastirec run --date D)".into(),
        )
    })
}

fn title(s: &Snapshot, item_id: i64) -> Option<&str> {
    s.item_meta(item_id).and_then(|m| m.title.as_deref())
}

/// The external id of an internal item id.
fn item_name(s: &Snapshot, item_id: i64) -> Cow<'_, str> {
    s.ids().items.external(item_id)
}

#[derive(Serialize)]
struct RecItem<'a> {
    item_id: Cow<'a, str>,
    title: Option<&'a str>,
    /// Item attributes, for the dashboard to show beside titles.
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<&'a std::collections::BTreeMap<String, serde_json::Value>>,
    score: f32,
    rank: u32,
    because: Vec<Cow<'a, str>>,
}

#[derive(Serialize)]
struct RecsBody<'a> {
    user_id: String,
    items: Vec<RecItem<'a>>,
    model_date: Night,
    generated_at: DateTime<Utc>,
    fallback: bool,
    source: &'static str,
}

async fn recommendations(
    State(state): State<Shared>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let user = path_id(IdKind::User, path)?;
    let s = current(&state)?;
    let k = count_param(&query(q), "k", DEFAULT_K.min(s.k))?;
    // An id the night's dictionary does not know is a user without a list: the fallback.
    let (source, fallback, items) = match s.ids().users.internal(&user) {
        Some(user_id) => {
            let recs = s.recommendations(user_id, k)?;
            (recs.source, recs.fallback, recs.items)
        }
        None => (sources::POPULAR, true, s.fallback(k)?),
    };
    let body = RecsBody {
        user_id: user,
        items: items
            .iter()
            .map(|&(item_id, score, rank, because)| RecItem {
                item_id: item_name(&s, item_id),
                title: title(&s, item_id),
                attributes: s
                    .item_meta(item_id)
                    .map(|m| &m.attributes)
                    .filter(|a| !a.is_empty()),
                score,
                rank,
                because: because.iter().map(|&b| item_name(&s, b)).collect(),
            })
            .collect(),
        model_date: s.night(),
        generated_at: s.generated_at,
        fallback,
        source,
    };
    state.metrics.served_rows(body.items.len());
    Ok(json(&body))
}

/// One interaction of a `POST /v1/recommendations` body.
#[derive(Debug)]
struct GivenItem {
    item_id: String,
    event_type: Option<String>,
    value: Option<f32>,
}

/// A `POST /v1/recommendations` body, checked.
#[derive(Debug)]
struct RecsRequest {
    user_id: Option<String>,
    items: Option<Vec<GivenItem>>,
    k: Option<usize>,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::InvalidField {
        field: field.into(),
        message: message.into(),
    }
}

/// An external id in a body field, checked as path ids are.
fn body_id(field: &str, v: &serde_json::Value) -> Result<String, Error> {
    let Some(raw) = v.as_str() else {
        return Err(invalid(
            field,
            format!("{field} must be a string (ids are JSON strings, \"42\" too), got {v}"),
        ));
    };
    check_external(raw).map_err(|why| {
        invalid(
            field,
            format!(
                "{field} '{}' is not an id: {why} (an id is 1 to {MAX_ID_BYTES} bytes of UTF-8 \
                 without control characters)",
                shown(raw)
            ),
        )
    })?;
    Ok(raw.to_string())
}

/// Reads and checks the body: every problem names its field.
fn parse_recs_request(body: &[u8]) -> Result<RecsRequest, Error> {
    use serde_json::Value;
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        invalid(
            "body",
            format!(
                "the body is not JSON ({e}): send {{\"user_id\": …, \"items\": […], \"k\": …}}"
            ),
        )
    })?;
    let Value::Object(fields) = value else {
        return Err(invalid(
            "body",
            "the body must be a JSON object with user_id, items and/or k",
        ));
    };
    if let Some(other) = fields
        .keys()
        .find(|f| !["user_id", "items", "k"].contains(&f.as_str()))
    {
        return Err(invalid(
            shown(other),
            format!(
                "unknown field '{}': the body has user_id, items and k",
                shown(other)
            ),
        ));
    }
    let user_id = match fields.get("user_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(body_id("user_id", v)?),
    };
    let items = match fields.get("items") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => {
            if list.len() > MAX_FOLD_IN_ITEMS {
                return Err(invalid(
                    "items",
                    format!(
                        "{} items: give at most {MAX_FOLD_IN_ITEMS} (the most recent ones)",
                        list.len()
                    ),
                ));
            }
            let mut out = Vec::with_capacity(list.len());
            for (n, entry) in list.iter().enumerate() {
                let at = format!("items[{n}]");
                let Value::Object(item) = entry else {
                    return Err(invalid(
                        at.clone(),
                        format!(
                            "{at} must be an object such as {{\"item_id\": \"42\", \"event_type\": \"purchase\"}}"
                        ),
                    ));
                };
                if let Some(other) = item
                    .keys()
                    .find(|f| !["item_id", "event_type", "value"].contains(&f.as_str()))
                {
                    return Err(invalid(
                        format!("{at}.{}", shown(other)),
                        format!(
                            "unknown field '{}' in {at}: an item has item_id, event_type and value",
                            shown(other)
                        ),
                    ));
                }
                let field = format!("{at}.item_id");
                let item_id = match item.get("item_id") {
                    None | Some(Value::Null) => {
                        return Err(invalid(field.clone(), format!("{field} is missing")));
                    }
                    Some(v) => body_id(&field, v)?,
                };
                let field = format!("{at}.event_type");
                let event_type = match item.get("event_type") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(t))
                        if !t.is_empty()
                            && t.len() <= MAX_EVENT_TYPE_BYTES
                            && !t.chars().any(char::is_control) =>
                    {
                        Some(t.clone())
                    }
                    Some(v) => {
                        return Err(invalid(
                            field.clone(),
                            format!(
                                "{field} must be a string of 1 to {MAX_EVENT_TYPE_BYTES} bytes \
                                 without control characters, got {}",
                                shown(&v.to_string())
                            ),
                        ));
                    }
                };
                let field = format!("{at}.value");
                let value = match item.get("value") {
                    None | Some(Value::Null) => None,
                    Some(v) => match v.as_f64() {
                        Some(x) if x.is_finite() && (0.0..=1e9).contains(&x) => Some(x as f32),
                        _ => {
                            return Err(invalid(
                                field.clone(),
                                format!(
                                    "{field} must be a number from 0 to 1e9, got {}",
                                    shown(&v.to_string())
                                ),
                            ));
                        }
                    },
                };
                out.push(GivenItem {
                    item_id,
                    event_type,
                    value,
                });
            }
            Some(out)
        }
        Some(v) => {
            return Err(invalid(
                "items",
                format!(
                    "items must be a list of objects, got {}",
                    shown(&v.to_string())
                ),
            ));
        }
    };
    let k = match fields.get("k") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(k) => Some(usize::try_from(k).unwrap_or(usize::MAX)),
            None => {
                return Err(invalid(
                    "k",
                    format!(
                        "k must be a whole number from 1 to {MAX_FOLD_IN_K}, got {}",
                        shown(&v.to_string())
                    ),
                ));
            }
        },
    };
    if user_id.is_none() && items.is_none() {
        return Err(invalid(
            "body",
            "give a user_id (the user's lists), items (an anonymous session) or both",
        ));
    }
    Ok(RecsRequest { user_id, items, k })
}

fn check_body_k(k: usize, max: usize, what: &str) -> Result<(), Error> {
    if k == 0 || k > max {
        return Err(invalid(
            "k",
            format!("k = {k} is out of range: ask for 1 to {max} ({what})"),
        ));
    }
    Ok(())
}

#[derive(Serialize)]
struct MadeItem<'a> {
    item_id: Cow<'a, str>,
    title: Option<&'a str>,
    score: f32,
    rank: u32,
    source: &'static str,
    because: Vec<Cow<'a, str>>,
}

#[derive(Serialize)]
struct MadeBody<'a> {
    user_id: Option<String>,
    items: Vec<MadeItem<'a>>,
    model_date: Night,
    generated_at: DateTime<Utc>,
    source: &'static str,
    fallback: bool,
    /// Entries of `items` in the request.
    items_given: usize,
    /// Given entries whose item id the night does not know: ignored.
    items_unknown: usize,
    /// Distinct given items the model has factors for.
    items_in_model: usize,
}

/// `POST /v1/recommendations`: a user's lists (`user_id`), a list for an anonymous session
/// (`items`), or the user's history merged with what they did since (both), folded in against
/// the night's item factors (see `Snapshot::fold_in`).
async fn post_recommendations(
    State(state): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge(format!(
                "the body is larger than {MAX_BODY} bytes: give at most {MAX_FOLD_IN_ITEMS} items"
            ))
        } else {
            invalid(
                "body",
                format!("the body could not be read: {}", e.body_text()),
            )
        }
    })?;
    let request = parse_recs_request(&body)?;
    let s = current(&state)?;
    let user_id = request
        .user_id
        .as_deref()
        .and_then(|u| s.ids().users.internal(u));
    let items_given = request.items.as_ref().map_or(0, Vec::len);
    let (made, items_unknown): (Made, usize) = match request.items {
        None => {
            let k = request.k.unwrap_or(DEFAULT_K.min(s.k));
            check_body_k(k, s.k, "the night stored that many items per user")?;
            (s.stored(user_id, k)?, 0)
        }
        Some(items) => {
            let k = request.k.unwrap_or(DEFAULT_K);
            check_body_k(k, MAX_FOLD_IN_K, "the longest list made for given items")?;
            let values = s.event_values();
            let given: Vec<(i64, f32)> = items
                .iter()
                .filter_map(|item| {
                    let id = s
                        .ids()
                        .items
                        .internal(&item.item_id)
                        .filter(|&i| s.item_known(i))?;
                    Some((id, values.value(item.event_type.as_deref(), item.value)))
                })
                .collect();
            let unknown = items.len() - given.len();
            // Given items are left out of the list when their event type makes them seen.
            let given_seen: Vec<i64> = items
                .iter()
                .filter(|item| values.makes_seen(item.event_type.as_deref()))
                .filter_map(|item| s.ids().items.internal(&item.item_id))
                .collect();
            // One k×k solve and one pass over the item factors, no I/O: computed on the worker
            // that holds the request, like every other answer of this server.
            (s.fold_in(user_id, &given, &given_seen, k)?, unknown)
        }
    };
    let body = MadeBody {
        user_id: request.user_id,
        items: made
            .items
            .iter()
            .map(|p| MadeItem {
                item_id: item_name(&s, p.item_id),
                title: title(&s, p.item_id),
                score: p.score,
                rank: p.rank,
                source: p.source,
                because: p.because.iter().map(|&b| item_name(&s, b)).collect(),
            })
            .collect(),
        model_date: s.night(),
        generated_at: s.generated_at,
        source: made.source,
        fallback: made.fallback,
        items_given,
        items_unknown,
        items_in_model: made.items_in_model,
    };
    state.metrics.served_rows(body.items.len());
    Ok(json(&body))
}

#[derive(Serialize)]
struct HistoryItem<'a> {
    item_id: Cow<'a, str>,
    title: Option<&'a str>,
    value: Option<f32>,
    events: Option<i64>,
    before_window: bool,
    /// The item may be offered to the user again (a view; a purchase past its repeat window).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    offered_again: bool,
}

async fn history(
    State(state): State<Shared>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let user = path_id(IdKind::User, path)?;
    let limit = count_param(&query(q), "limit", DEFAULT_HISTORY)?;
    if limit == 0 || limit > MAX_HISTORY {
        return Err(Error::BadRequest(format!(
            "limit = {limit} is out of range: ask for 1 to {MAX_HISTORY}"
        ))
        .into());
    }
    let s = current(&state)?;
    let entries = s
        .ids()
        .users
        .internal(&user)
        .and_then(|user_id| s.history(user_id))
        .ok_or_else(|| {
            Error::NotFound(format!(
                "user {user} has no history up to night {}",
                s.night()
            ))
        })?;
    let items: Vec<HistoryItem> = entries
        .iter()
        .take(limit)
        .map(|e| HistoryItem {
            item_id: item_name(&s, e.item_id),
            title: title(&s, e.item_id),
            value: e.value,
            events: e.events,
            before_window: e.before_window,
            offered_again: e.offered_again,
        })
        .collect();
    Ok(json(&serde_json::json!({
        "user_id": user,
        "total": entries.len(),
        "items": items,
        "model_date": s.night(),
    })))
}

async fn item(State(state): State<Shared>, path: Result<Path<String>, PathRejection>) -> ApiResult {
    let item = path_id(IdKind::Item, path)?;
    let s = current(&state)?;
    let Some(item_id) = s.ids().items.internal(&item).filter(|&i| s.item_known(i)) else {
        return Err(Error::NotFound(format!("item {item} not found")).into());
    };
    let meta = s.item_meta(item_id);
    Ok(json(&serde_json::json!({
        "item_id": item,
        "title": meta.and_then(|m| m.title.as_deref()),
        "genres": meta.and_then(|m| m.genres.as_deref()),
        "attributes": meta.map(|m| m.attributes.clone()).unwrap_or_default(),
        "users_in_window": s.item_users(item_id),
        "in_model": s.item_in_model(item_id),
        "model_date": s.night(),
    })))
}

#[derive(Serialize)]
struct SimilarItem<'a> {
    item_id: Cow<'a, str>,
    title: Option<&'a str>,
    similarity: f32,
}

async fn similar(
    State(state): State<Shared>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let item = path_id(IdKind::Item, path)?;
    let k = count_param(&query(q), "k", DEFAULT_K)?;
    let s = current(&state)?;
    let Some(item_id) = s.ids().items.internal(&item) else {
        // A bad k is a 400 whatever the id, as for a known one.
        check_similar_k(k)?;
        return Err(Error::NotFound(format!("item {item} not found")).into());
    };
    let items: Vec<SimilarItem> = s
        .similar(item_id, k)?
        .into_iter()
        .map(|(id, similarity)| SimilarItem {
            item_id: item_name(&s, id),
            title: title(&s, id),
            similarity,
        })
        .collect();
    Ok(json(&serde_json::json!({
        "item_id": item,
        "title": title(&s, item_id),
        "items": items,
        "model_date": s.night(),
    })))
}

/// Every run record, oldest night first (read from the lake on each request: the ledger changes
/// while a night runs).
async fn read_runs(state: &Served) -> Result<Vec<RunRecord>, Error> {
    let lake = state.lake();
    let metas = lake.list(&layout::runs_root()).await?;
    let reads = metas
        .iter()
        .filter_map(|m| layout::run_record_night(&m.location))
        .map(|night| async move {
            lake.get_json::<RunRecord>(&layout::run_record(night), "run record")
                .await
        });
    let records = futures::future::try_join_all(reads).await?;
    Ok(records.into_iter().flatten().collect())
}

/// Evaluation reports, oldest night first; of one night when `night` is given.
async fn read_evaluations(
    state: &Served,
    night: Option<Night>,
) -> Result<Vec<EvaluationReport>, Error> {
    let lake = state.lake();
    let prefix = match night {
        Some(n) => layout::evaluations_dir(n),
        None => layout::evaluations_root(),
    };
    let metas = lake.list(&prefix).await?;
    let reads = metas
        .iter()
        .filter_map(|m| layout::evaluation_of_path(&m.location))
        .map(|(n, h)| async move {
            lake.get_json::<EvaluationReport>(&layout::evaluation(n, h), "evaluation")
                .await
        });
    let reports = futures::future::try_join_all(reads).await?;
    Ok(reports.into_iter().flatten().collect())
}

async fn runs(State(state): State<Shared>) -> ApiResult {
    let runs = read_runs(&state).await?;
    let serving = state.snapshot().map(|s| s.night());
    Ok(json(&serde_json::json!({"runs": runs, "serving": serving})))
}

async fn run(State(state): State<Shared>, Path(date): Path<String>) -> ApiResult {
    let night: Night = date.parse().map_err(|_| {
        Error::BadRequest(format!("'{date}' is not a night: write it as YYYY-MM-DD"))
    })?;
    let record: RunRecord = state
        .lake()
        .get_json(&layout::run_record(night), "run record")
        .await
        .map_err(Error::from)?
        .ok_or_else(|| Error::NotFound(format!("night {night} has no run record")))?;
    let evaluations = read_evaluations(&state, Some(night)).await?;
    let mut body = serde_json::to_value(&record)
        .map_err(|e| Error::Internal(format!("run record of {night}: {e}")))?;
    if let Some(obj) = body.as_object_mut() {
        obj.insert(
            "evaluations".into(),
            serde_json::to_value(evaluations)
                .map_err(|e| Error::Internal(format!("evaluations of {night}: {e}")))?,
        );
    }
    Ok(json(&body))
}

async fn evaluations(State(state): State<Shared>) -> ApiResult {
    let reports = read_evaluations(&state, None).await?;
    Ok(json(&serde_json::json!({"evaluations": reports})))
}

async fn healthz(State(state): State<Shared>) -> Response {
    let reload_failing = state.last_error().is_some();
    let mut response = match state.snapshot() {
        Some(s) => json(&serde_json::json!({
            "status": "ok",
            "model_date": s.night(),
            "generated_at": s.generated_at,
            "loaded_at": s.loaded_at,
            "users": s.users(),
            "reload_failing": reload_failing,
        })),
        None => json(&serde_json::json!({
            "status": "no_data",
            "model_date": null,
            "reload_failing": reload_failing,
        })),
    };
    if state.snapshot().is_none() {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    response
}

async fn metrics(State(state): State<Shared>) -> Response {
    let text = state.metrics.render(state.snapshot().as_deref());
    let mut response = Response::new(Body::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

async fn openapi() -> Response {
    let mut response = Response::new(Body::from(OPENAPI_JSON));
    set_json(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn the_openapi_document_is_json() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    }
}
