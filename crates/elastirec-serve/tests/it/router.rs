//! The API through the router, without a socket: the known answers of the fixture lake, every
//! kind of bad request, the token, metrics and the OpenAPI document.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use elastirec_serve::{Served, router};

use crate::fixture::{self, NIGHT1};

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

pub async fn call(app: &Router, method: Method, uri: &str, token: Option<&str>) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(app, req.body(Body::empty()).unwrap()).await
}

/// Sends one request through the router and reads the whole answer.
pub async fn send(app: &Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

pub async fn get(app: &Router, uri: &str) -> Answer {
    call(app, Method::GET, uri, None).await
}

/// A router over the published fixture lake, with the night loaded.
pub async fn app(token: Option<&str>) -> (fixture::Fixture, Arc<Served>, Router) {
    let f = fixture::published().await;
    let served = Served::new(f.lake.clone(), token.map(str::to_string));
    assert!(
        served.refresh().await.unwrap(),
        "the first refresh loads night 1"
    );
    let app = router(served.clone());
    (f, served, app)
}

/// The `item_id`s of a list of items: JSON strings, numeric ids too.
pub fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| {
            x["item_id"]
                .as_str()
                .unwrap_or_else(|| panic!("item_id is not a string: {x}"))
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_known_user_gets_the_stored_list_with_titles_and_because() {
    let (_f, _s, app) = app(None).await;
    let a = get(&app, "/v1/users/7/recommendations").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.headers["content-type"], "application/json");
    let body = a.json();
    assert_eq!(body["user_id"], "7");
    assert_eq!(body["model_date"], NIGHT1);
    assert_eq!(body["fallback"], false);
    assert_eq!(body["source"], "als");
    assert!(body["generated_at"].as_str().unwrap().starts_with("20"));
    assert_eq!(ids(&body["items"]), ["2", "4", "5"]);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items[0]["title"], "Item 2");
    assert_eq!(items[0]["rank"], 1);
    assert_eq!(items[1]["score"], 0.75);
    // Cosine with the history {1, 3, 6}: item 2 is nearest 1; item 4 nearest 3; item 5 is as
    // near 1 as 3 (ties by the lower id); item 6 points away from all three.
    let because: Vec<Value> = items.iter().map(|i| i["because"].clone()).collect();
    assert_eq!(
        because,
        [
            serde_json::json!(["1", "3", "6"]),
            serde_json::json!(["3", "1", "6"]),
            serde_json::json!(["1", "3", "6"])
        ]
    );

    let two = get(&app, "/v1/users/7/recommendations?k=2").await.json();
    assert_eq!(ids(&two["items"]), ["2", "4"]);
    // A stored popularity list is served as stored, with no `because`.
    let popular = get(&app, "/v1/users/8/recommendations").await.json();
    assert_eq!(popular["source"], "popular");
    assert_eq!(popular["fallback"], false);
    assert_eq!(popular["items"][0]["because"], serde_json::json!([]));
}

#[tokio::test]
async fn an_unknown_user_gets_popular_items_as_a_fallback() {
    let (_f, _s, app) = app(None).await;
    let body = get(&app, "/v1/users/12345/recommendations").await.json();
    assert_eq!(body["user_id"], "12345");
    assert_eq!(body["fallback"], true);
    assert_eq!(body["source"], "popular");
    // Users per item in the window: item 1 has two (users 7 and 9), the others one each.
    assert_eq!(ids(&body["items"]), ["1", "2", "3"]);
    assert_eq!(body["items"][0]["score"], 2.0);
    assert_eq!(body["items"][0]["title"], "Item 1");
    // Any string is an id: one the night does not know is an unknown user, never a 400 (a
    // leading zero makes "07" a string id, not user 7; so is a number past the numeric range).
    for (uri, user) in [
        ("/v1/users/abc/recommendations", "abc"),
        ("/v1/users/07/recommendations", "07"),
        ("/v1/users/-7/recommendations", "-7"),
        (
            "/v1/users/99999999999999999999/recommendations",
            "99999999999999999999",
        ),
    ] {
        let a = get(&app, uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.text);
        let body = a.json();
        assert_eq!(body["user_id"], user, "{uri}");
        assert_eq!(body["fallback"], true, "{uri}");
        assert_eq!(ids(&body["items"]), ["1", "2", "3"], "{uri}");
    }
}

#[tokio::test]
async fn bad_requests_get_4xx_with_a_json_error() {
    let (_f, _s, app) = app(None).await;
    for (uri, status, says) in [
        (
            "/v1/users/7/recommendations?k=4",
            StatusCode::BAD_REQUEST,
            "1 to 3",
        ),
        (
            "/v1/users/7/recommendations?k=1000000000000",
            StatusCode::BAD_REQUEST,
            "1 to 3",
        ),
        (
            "/v1/users/7/recommendations?k=0",
            StatusCode::BAD_REQUEST,
            "out of range",
        ),
        (
            "/v1/users/7/recommendations?k=ten",
            StatusCode::BAD_REQUEST,
            "'ten'",
        ),
        (
            "/v1/users/a%0Ab/recommendations",
            StatusCode::BAD_REQUEST,
            "user id 'a\\nb' is not an id: an id with control characters",
        ),
        (
            "/v1/users/%FF%FE/recommendations",
            StatusCode::BAD_REQUEST,
            "percent-encode it as UTF-8",
        ),
        (
            "/v1/items/%00/similar",
            StatusCode::BAD_REQUEST,
            "item id '\\0' is not an id",
        ),
        (
            "/v1/users/99999999999999999999/history",
            StatusCode::NOT_FOUND,
            "user 99999999999999999999 has no history",
        ),
        (
            "/v1/items/x1/similar",
            StatusCode::NOT_FOUND,
            "item x1 not found",
        ),
        (
            "/v1/items/x1/similar?k=101",
            StatusCode::BAD_REQUEST,
            "1 to 100",
        ),
        ("/v1/items/x1", StatusCode::NOT_FOUND, "item x1 not found"),
        (
            "/v1/items/1/similar?k=101",
            StatusCode::BAD_REQUEST,
            "1 to 100",
        ),
        (
            "/v1/users/7/history?limit=0",
            StatusCode::BAD_REQUEST,
            "1 to 1000",
        ),
        ("/v1/runs/yesterday", StatusCode::BAD_REQUEST, "YYYY-MM-DD"),
        (
            "/v1/runs/2023-01-01",
            StatusCode::NOT_FOUND,
            "no run record",
        ),
        ("/v1/items/999", StatusCode::NOT_FOUND, "item 999"),
        ("/v1/items/999/similar", StatusCode::NOT_FOUND, "item 999"),
        (
            "/v1/users/12345/history",
            StatusCode::NOT_FOUND,
            "no history",
        ),
        ("/v2/nothing", StatusCode::NOT_FOUND, "no such route"),
        ("/v1/users/7", StatusCode::NOT_FOUND, "no such route"),
    ] {
        let a = get(&app, uri).await;
        assert_eq!(a.status, status, "{uri}: {}", a.text);
        assert_eq!(a.headers["content-type"], "application/json", "{uri}");
        let body = a.json();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{uri}: {message}");
        assert!(a.headers.contains_key("x-request-id"), "{uri}");
    }
    // An id longer than the longest external id.
    let long = "x".repeat(elastirec_core::ids::MAX_ID_BYTES + 1);
    for uri in [
        format!("/v1/users/{long}/recommendations"),
        format!("/v1/users/{long}/history"),
        format!("/v1/items/{long}"),
        format!("/v1/items/{long}/similar"),
    ] {
        let a = get(&app, &uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {}", a.text);
        let message = a.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("257 bytes, longer than 256"), "{message}");
        assert!(message.len() < 300, "the id is shortened: {message}");
    }
    // The longest id is an id (unknown here).
    let longest = "x".repeat(elastirec_core::ids::MAX_ID_BYTES);
    let a = get(&app, &format!("/v1/users/{longest}/recommendations")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["user_id"], longest.as_str());

    let post = call(&app, Method::POST, "/v1/users/7/recommendations", None).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.json()["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn items_similar_items_and_history() {
    let (_f, _s, app) = app(None).await;
    let item = get(&app, "/v1/items/2").await.json();
    assert_eq!(item["item_id"], "2");
    assert_eq!(item["title"], "Item 2");
    assert_eq!(item["genres"], "A|B");
    assert_eq!(item["in_model"], true);
    assert_eq!(item["users_in_window"], 1);

    let similar = get(&app, "/v1/items/1/similar?k=2").await.json();
    assert_eq!(similar["item_id"], "1");
    assert_eq!(ids(&similar["items"]), ["2", "5"]);
    let s0 = similar["items"][0]["similarity"].as_f64().unwrap();
    assert!((s0 - 0.9 / (0.82f64).sqrt()).abs() < 1e-5, "{s0}");
    let all = get(&app, "/v1/items/1/similar").await.json();
    assert_eq!(
        ids(&all["items"]),
        ["2", "5", "4", "3", "6"],
        "every other item, most similar first"
    );

    let history = get(&app, "/v1/users/7/history").await.json();
    assert_eq!(history["user_id"], "7");
    assert_eq!(history["total"], 3);
    assert_eq!(ids(&history["items"]), ["1", "3", "6"]);
    assert_eq!(history["items"][0]["value"], 5.0);
    assert_eq!(history["items"][0]["events"], 2);
    assert_eq!(history["items"][2]["before_window"], true);
    assert_eq!(history["items"][2]["value"], Value::Null);
    let first = get(&app, "/v1/users/7/history?limit=1").await.json();
    assert_eq!(ids(&first["items"]), ["1"]);
}

#[tokio::test]
async fn runs_and_evaluations_come_from_the_ledger() {
    let (_f, _s, app) = app(None).await;
    let runs = get(&app, "/v1/runs").await.json();
    let nights: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["night"].as_str().unwrap())
        .collect();
    assert_eq!(nights, ["2024-01-09", NIGHT1]);
    assert_eq!(runs["serving"], NIGHT1);
    assert_eq!(runs["runs"][1]["steps"][1]["state"], "failed");

    let one = get(&app, "/v1/runs/2024-01-09").await.json();
    assert_eq!(one["state"], "succeeded");
    assert_eq!(one["evaluations"][0]["model"]["ndcg"], 0.3);
    let none = get(&app, &format!("/v1/runs/{NIGHT1}")).await.json();
    assert_eq!(none["evaluations"], serde_json::json!([]));

    let evals = get(&app, "/v1/evaluations").await.json();
    assert_eq!(evals["evaluations"].as_array().unwrap().len(), 1);
    assert_eq!(evals["evaluations"][0]["popularity"]["ndcg"], 0.2);
}

#[tokio::test]
async fn a_token_guards_every_route_but_healthz_and_the_page() {
    let (_f, _s, app) = app(Some("s3cret")).await;
    for uri in [
        "/v1/users/7/recommendations",
        "/v1/users/7/history",
        "/v1/items/1",
        "/v1/items/1/similar",
        "/v1/runs",
        "/v1/runs/2024-01-09",
        "/v1/evaluations",
        "/metrics",
        "/openapi.json",
    ] {
        let none = get(&app, uri).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(none.json()["error"]["code"], "unauthorized");
        assert_eq!(none.headers["www-authenticate"], "Bearer");
        let wrong = call(&app, Method::GET, uri, Some("s3creT")).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{uri}");
        let right = call(&app, Method::GET, uri, Some("s3cret")).await;
        assert_eq!(right.status, StatusCode::OK, "{uri}: {}", right.text);
    }
    assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);
    let page = get(&app, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("/assets/app.js"));
    assert_eq!(get(&app, "/assets/app.js").await.status, StatusCode::OK);
}

#[tokio::test]
async fn healthz_and_metrics_tell_what_is_served() {
    let (_f, served, app) = app(None).await;
    let health = get(&app, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["model_date"], NIGHT1);
    assert_eq!(health.json()["users"], 2);
    for _ in 0..3 {
        get(&app, "/v1/users/7/recommendations?k=2").await;
    }
    get(&app, "/v1/users/x%0A/recommendations").await;
    get(&app, "/no/such/route").await;
    assert_eq!(
        served
            .metrics
            .requests("/v1/users/{id}/recommendations", 200),
        3
    );
    let text = get(&app, "/metrics").await.text;
    assert!(text.contains("elastirec_http_requests_total{route=\"/v1/users/{id}/recommendations\",status=\"200\"} 3"), "{text}");
    assert!(text.contains("elastirec_http_requests_total{route=\"/v1/users/{id}/recommendations\",status=\"400\"} 1"), "{text}");
    assert!(
        text.contains("elastirec_http_requests_total{route=\"unmatched\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(text.contains("elastirec_http_request_duration_seconds_count{route=\"/v1/users/{id}/recommendations\"} 4"), "{text}");
    assert!(text.contains("elastirec_rows_served_total 6"), "{text}");
    assert!(
        text.contains(&format!("elastirec_model_info{{night=\"{NIGHT1}\"}} 1")),
        "{text}"
    );
}

#[tokio::test]
async fn nothing_published_yet_is_503_not_an_error() {
    let f = fixture::lake().await;
    fixture::write_run(
        &f.lake,
        fixture::night(NIGHT1),
        elastirec_core::manifest::StepState::Running,
    )
    .await;
    let served = Served::new(f.lake.clone(), None);
    assert!(!served.refresh().await.unwrap());
    let app = router(served);
    let recs = get(&app, "/v1/users/7/recommendations").await;
    assert_eq!(recs.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        recs.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no recommendations are published yet")
    );
    assert_eq!(
        get(&app, "/healthz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // The ledger is still there for the dashboard.
    assert_eq!(
        get(&app, "/v1/runs").await.json()["runs"][0]["state"],
        "running"
    );
}

#[tokio::test]
async fn the_openapi_document_names_every_route_and_they_all_answer() {
    let (_f, _s, app) = app(None).await;
    let doc = get(&app, "/openapi.json").await.json();
    let paths = doc["paths"].as_object().unwrap();
    let concrete = [
        (
            "/v1/users/{id}/recommendations",
            "/v1/users/7/recommendations",
        ),
        ("/v1/users/{id}/history", "/v1/users/7/history"),
        ("/v1/items/{id}", "/v1/items/1"),
        ("/v1/items/{id}/similar", "/v1/items/1/similar"),
        ("/v1/runs", "/v1/runs"),
        ("/v1/runs/{date}", "/v1/runs/2024-01-09"),
        ("/v1/evaluations", "/v1/evaluations"),
        ("/healthz", "/healthz"),
        ("/metrics", "/metrics"),
        ("/openapi.json", "/openapi.json"),
        ("/", "/"),
        ("/assets/app.js", "/assets/app.js"),
        ("/assets/style.css", "/assets/style.css"),
    ];
    // The one POST route: `crate::foldin` calls it.
    assert!(paths["/v1/recommendations"]["post"].is_object());
    assert_eq!(
        paths.len(),
        concrete.len() + 1,
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (pattern, uri) in concrete {
        assert!(
            paths.contains_key(pattern),
            "{pattern} is not in /openapi.json"
        );
        assert_eq!(get(&app, uri).await.status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn internal_errors_do_not_leak_paths() {
    let (f, _s, app) = app(None).await;
    // A run record that does not parse: the lake path must not reach the client.
    let path = elastirec_core::layout::run_record(fixture::night("2024-01-05"));
    f.lake.put(&path, b"{not json".to_vec()).await.unwrap();
    let a = get(&app, "/v1/runs/2024-01-05").await;
    assert!(
        a.status.is_client_error() || a.status.is_server_error(),
        "{}",
        a.status
    );
    let message = a.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(!message.contains("runs/"), "{message}");
    assert!(!message.contains("file:"), "{message}");
}

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_request_is_logged_with_its_request_id_and_full_cause() {
    let (f, _s, app) = app(None).await;
    let path = elastirec_core::layout::run_record(fixture::night("2024-01-05"));
    f.lake.put(&path, b"{not json".to_vec()).await.unwrap();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let res = app
        .clone()
        .oneshot(
            Request::get("/v1/runs/2024-01-05")
                .header("x-request-id", "req-42")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.headers()["x-request-id"], "req-42");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("runs/2024-01-05.json"));
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The client got a generic message; the log has the id, the route and the cause.
    assert!(log.contains("req-42"), "{log}");
    assert!(log.contains("/v1/runs/{date}"), "{log}");
    assert!(log.contains("runs/2024-01-05.json"), "{log}");
}
