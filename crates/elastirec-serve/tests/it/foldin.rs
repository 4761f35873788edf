//! `POST /v1/recommendations`: stored lists by user, lists folded in for an anonymous session
//! or for a known user's history merged with today's items, unknown ids counted, and every kind
//! of bad body answered with a JSON 4xx naming the field. Through the router, and once over a
//! real socket behind the token and the server's body limit.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use elastirec_core::foldin::{DEFAULT_PRIOR, EventValues, FoldIn, FoldInParams, mean_rows};
use elastirec_core::manifest::{FileEntry, ModelInfo, columns};
use elastirec_core::{Lake, Night, layout};
use elastirec_lake::io;
use elastirec_serve::{Served, router, server};

use crate::fixture::{self, NIGHT1};
use crate::router::{Answer, ids, send};

/// The fixture's item factors (items 1 to 6) and the user factors written beside them.
const ITEMS: [f32; 12] = [1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9, 1.0, 1.0, -1.0, 0.0];
const USERS: [f32; 6] = [1.0, 0.5, 0.5, 1.0, 1.0, 0.0];

/// The model's settings the fixture's model.json records (log confidence, to see them used).
fn model_params() -> Value {
    json!({"feedback": "implicit", "factors": 2, "regularization": 0.1, "alpha": 2.0,
           "confidence": "log", "epsilon": 1.0})
}

/// Writes night `n`'s user factors and a model.json naming both factor files (the fixture
/// writes the item factors only).
async fn write_model(lake: &Lake, n: Night) {
    let users = io::factors_batch(columns::USER_ID, &[7, 8, 9], &USERS, 2).unwrap();
    let user_file = io::write_parquet(
        lake,
        &layout::model_user_factors(n),
        users.schema(),
        &[users],
    )
    .await
    .unwrap();
    let item_file = FileEntry {
        path: layout::model_item_factors(n).to_string(),
        rows: 6,
        bytes: 0,
    };
    let info = ModelInfo {
        night: n,
        created_at: chrono::Utc::now(),
        algorithm: "implicit_als_cholesky".into(),
        params: model_params(),
        users: 3,
        items: 6,
        interactions: 5,
        factors: 2,
        loss: vec![1.0],
        train_seconds: 0.1,
        export_manifest: layout::training_export_manifest(n).to_string(),
        table_versions: Default::default(),
        files: vec![item_file, user_file],
    };
    lake.put_json(&layout::model_info(n), &info).await.unwrap();
}

/// The fixture lake with a model.json, loaded.
async fn app(token: Option<&str>) -> (fixture::Fixture, Arc<Served>, Router) {
    let f = fixture::published().await;
    write_model(&f.lake, fixture::night(NIGHT1)).await;
    let served = Served::new(f.lake.clone(), token.map(str::to_string));
    assert!(served.refresh().await.unwrap());
    let app = router(served.clone());
    (f, served, app)
}

async fn post(app: &Router, body: impl Into<Body>, token: Option<&str>) -> Answer {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/v1/recommendations")
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(app, req.body(body.into()).unwrap()).await
}

async fn post_json(app: &Router, body: Value) -> Answer {
    post(app, body.to_string(), None).await
}

/// What the fold-in should answer, computed here with the solver directly: fixture item `i`
/// is row `i − 1`, and `skip` are fixture ids left out.
fn expected(observed: &[(u32, f32)], skip: &[u32], k: usize) -> Vec<String> {
    let params = FoldInParams::from_recorded(&model_params(), DEFAULT_PRIOR).unwrap();
    let fold = FoldIn::new(ITEMS.to_vec(), 2, params, Some(&mean_rows(&USERS, 2))).unwrap();
    let rows: Vec<(u32, f32)> = observed.iter().map(|&(i, v)| (i - 1, v)).collect();
    let x = fold.solve(&rows).unwrap();
    let skip: Vec<u32> = skip.iter().map(|i| i - 1).collect();
    fold.top(&x, k, &skip)
        .into_iter()
        .map(|(row, _)| (row + 1).to_string())
        .collect()
}

#[tokio::test]
async fn an_anonymous_session_gets_a_folded_in_list_with_unknown_ids_counted() {
    let (_f, _s, app) = app(None).await;
    let a = post_json(
        &app,
        json!({"items": [{"item_id": "3", "event_type": "purchase"},
                         {"item_id": "no-such-item"}, {"item_id": "3", "value": 2}], "k": 4}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let body = a.json();
    assert_eq!(body["user_id"], Value::Null);
    assert_eq!(body["source"], "fold-in");
    assert_eq!(body["fallback"], false);
    assert_eq!(
        (
            &body["items_given"],
            &body["items_unknown"],
            &body["items_in_model"]
        ),
        (&json!(3), &json!(1), &json!(1))
    );
    assert_eq!(body["model_date"], NIGHT1);
    let items = body["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["source"] == "fold-in"), "{body}");
    // Item 3's two events sum (the export's default aggregate), weight 1 each: 1 + 2.
    let sum = EventValues::default().merge(&[], &[(3, 1.0), (3, 2.0)]);
    assert_eq!(sum, vec![(3, 3.0)]);
    assert_eq!(ids(&body["items"]), expected(&[(3, 3.0)], &[3], 4));
    assert!(!ids(&body["items"]).contains(&"3".to_string()));
    // Every item is there because of item 3, the only one given.
    let first = items[0]["item_id"].as_str().unwrap();
    assert_eq!(items[0]["title"], format!("Item {first}"));
    assert!(items.iter().all(|i| i["because"] == json!(["3"])), "{body}");
    assert_eq!(items[0]["rank"], 1);
}

#[tokio::test]
async fn a_user_alone_gets_the_stored_list_with_each_items_source() {
    let (_f, _s, app) = app(None).await;
    let body = post_json(&app, json!({"user_id": "7", "k": 2}))
        .await
        .json();
    assert_eq!(ids(&body["items"]), ["2", "4"]);
    assert_eq!(body["source"], "als");
    assert!(
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["source"] == "als")
    );
    assert_eq!(body["items"][0]["because"], json!(["1", "3", "6"]));
    let body = post_json(&app, json!({"user_id": "8"})).await.json();
    assert_eq!(
        (&body["source"], &body["fallback"]),
        (&json!("popular"), &json!(false))
    );
    assert_eq!(body["items"][0]["source"], "popular");
    // A user the night does not know: the popularity fallback.
    let body = post_json(&app, json!({"user_id": "somebody-new"}))
        .await
        .json();
    assert_eq!(
        (&body["source"], &body["fallback"]),
        (&json!("popular"), &json!(true))
    );
    assert_eq!(body["items_given"], 0);
}

#[tokio::test]
async fn a_known_users_history_is_merged_with_todays_items() {
    let (_f, _s, app) = app(None).await;
    // User 7 had 1 (value 5) and 3 (value 4) in the window and 6 before it; today item 3
    // again and item 4.
    let a = post_json(
        &app,
        json!({"user_id": "7", "items": [{"item_id": "4"}, {"item_id": "3", "value": 2}],
               "k": 5}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let body = a.json();
    assert_eq!(body["user_id"], "7");
    assert_eq!(body["source"], "fold-in");
    assert_eq!(body["items_in_model"], 2);
    // Everything the user had, and today's items, are left out: only 2 and 5 remain.
    let want = expected(&[(1, 5.0), (3, 6.0), (4, 1.0)], &[1, 3, 4, 6], 5);
    assert_eq!(want.len(), 2);
    assert_eq!(ids(&body["items"]), want);
    // With none of today's items known, the window history alone is folded in.
    let body = post_json(&app, json!({"user_id": "7", "items": [{"item_id": "zzz"}]}))
        .await
        .json();
    assert_eq!(body["source"], "fold-in");
    assert_eq!(body["items_unknown"], 1);
    assert_eq!(
        ids(&body["items"]),
        expected(&[(1, 5.0), (3, 4.0)], &[1, 3, 6], 10)
    );
    // An anonymous session of unknown items only: the popular items, flagged.
    let body = post_json(&app, json!({"items": [{"item_id": "zzz"}]}))
        .await
        .json();
    assert_eq!(
        (&body["source"], &body["fallback"]),
        (&json!("popular"), &json!(true))
    );
    assert!(
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["source"] == "popular")
    );
}

#[tokio::test]
async fn a_folded_in_list_obeys_the_rules_the_nights_lists_were_made_with() {
    let f = fixture::published().await;
    let n = fixture::night(NIGHT1);
    write_model(&f.lake, n).await;
    // Without rules, an anonymous session of item 3 gets the other five items in this order.
    let plain = expected(&[(3, 1.0)], &[3], 5);
    assert_eq!(plain.len(), 5);
    // The night's lists were made never offering the best of them and pinning the last.
    let path = layout::recommendations_manifest(n);
    let mut manifest: Value = f.lake.get_json(&path, "manifest").await.unwrap().unwrap();
    manifest["rules"] = json!({"exclude_items": [plain[0]], "promoted_items": [plain[4]],
                               "exclude_unavailable": false});
    f.lake.put_json(&path, &manifest).await.unwrap();
    let served = Served::new(f.lake.clone(), None);
    assert!(served.refresh().await.unwrap());
    let app = router(served);

    let a = post_json(&app, json!({"items": [{"item_id": "3"}], "k": 4})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let body = a.json();
    let got: Vec<(String, String)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let text = |v: &Value| v.as_str().unwrap().to_string();
            (text(&i["item_id"]), text(&i["source"]))
        })
        .collect();
    let want: Vec<(String, String)> = [
        (&plain[4], "promoted"),
        (&plain[1], "fold-in"),
        (&plain[2], "fold-in"),
        (&plain[3], "fold-in"),
    ]
    .into_iter()
    .map(|(i, s)| (i.clone(), s.to_string()))
    .collect();
    assert_eq!(got, want, "{body}");
    // The popularity fallback obeys them too: the excluded item is never offered.
    let body = post_json(&app, json!({"items": [{"item_id": "zzz"}], "k": 5}))
        .await
        .json();
    assert_eq!(body["fallback"], true);
    assert!(!ids(&body["items"]).contains(&plain[0]), "{body}");
    assert!(!body["items"].as_array().unwrap().is_empty(), "{body}");
    // Items of the window's popularity only (1, 2, 3, 5), the promoted one first when it is one.
    for i in ids(&body["items"]) {
        assert!(["1", "2", "3", "5"].contains(&i.as_str()), "{body}");
    }
    if ["1", "2", "3", "5"].contains(&plain[4].as_str()) {
        assert_eq!(body["items"][0]["item_id"], plain[4].as_str(), "{body}");
        assert_eq!(body["items"][0]["source"], "promoted", "{body}");
    }
}

#[tokio::test]
async fn rules_this_version_cannot_read_keep_the_lists_served_and_refuse_fold_in() {
    let f = fixture::published().await;
    let n = fixture::night(NIGHT1);
    write_model(&f.lake, n).await;
    let path = layout::recommendations_manifest(n);
    let mut manifest: Value = f.lake.get_json(&path, "manifest").await.unwrap().unwrap();
    manifest["rules"] = json!({"a_rule_from_a_later_version": true});
    f.lake.put_json(&path, &manifest).await.unwrap();
    let served = Served::new(f.lake.clone(), None);
    assert!(served.refresh().await.unwrap());
    let app = router(served);
    let body = post_json(&app, json!({"user_id": "7", "k": 2}))
        .await
        .json();
    assert_eq!(ids(&body["items"]), ["2", "4"], "{body}");
    let a = post_json(&app, json!({"items": [{"item_id": "3"}]})).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text);
    assert!(
        a.text.contains("recorded [rules] do not read"),
        "{}",
        a.text
    );
}

/// Asserts a 4xx JSON error naming `field`.
fn assert_refused(a: &Answer, status: StatusCode, field: &str) {
    assert_eq!(a.status, status, "{}", a.text);
    assert_eq!(a.headers["content-type"], "application/json");
    let body = a.json();
    assert_eq!(body["error"]["field"], field, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().len() > 10);
}

#[tokio::test]
async fn bad_bodies_are_4xx_json_errors_naming_the_field() {
    let (_f, _s, app) = app(None).await;
    let bad = StatusCode::BAD_REQUEST;
    assert_refused(&post(&app, "{\"items\": [", None).await, bad, "body");
    assert_refused(&post(&app, "", None).await, bad, "body");
    assert_refused(&post(&app, "[1, 2]", None).await, bad, "body");
    assert_refused(&post_json(&app, json!({})).await, bad, "body");
    assert_refused(&post_json(&app, json!({"user": "7"})).await, bad, "user");
    assert_refused(
        &post_json(&app, json!({"user_id": 7})).await,
        bad,
        "user_id",
    );
    assert_refused(
        &post_json(&app, json!({"user_id": ""})).await,
        bad,
        "user_id",
    );
    assert_refused(&post_json(&app, json!({"items": "3"})).await, bad, "items");
    assert_refused(
        &post_json(&app, json!({"items": [3]})).await,
        bad,
        "items[0]",
    );
    let missing = json!({"items": [{"item_id": "3"}, {"event_type": "view"}]});
    assert_refused(&post_json(&app, missing).await, bad, "items[1].item_id");
    let control = json!({"items": [{"item_id": "a\u{0007}b"}]});
    assert_refused(&post_json(&app, control).await, bad, "items[0].item_id");
    let negative = json!({"items": [{"item_id": "3", "value": -1}]});
    assert_refused(&post_json(&app, negative).await, bad, "items[0].value");
    let kind = json!({"items": [{"item_id": "3", "event_type": 5}]});
    assert_refused(&post_json(&app, kind).await, bad, "items[0].event_type");
    let extra = json!({"items": [{"item_id": "3", "rating": 5}]});
    assert_refused(&post_json(&app, extra).await, bad, "items[0].rating");
    for k in [json!(0), json!(101), json!(-1), json!("ten"), json!(2.5)] {
        let a = post_json(&app, json!({"items": [{"item_id": "3"}], "k": k})).await;
        assert_refused(&a, bad, "k");
    }
    // A stored list holds the night's K (3) items at most.
    assert_refused(
        &post_json(&app, json!({"user_id": "7", "k": 4})).await,
        bad,
        "k",
    );
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"item_id": i.to_string()}))
        .collect();
    assert_refused(&post_json(&app, json!({"items": many})).await, bad, "items");
    let thousand: Vec<Value> = (0..1000)
        .map(|i| json!({"item_id": i.to_string()}))
        .collect();
    let a = post_json(&app, json!({"items": thousand})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["items_unknown"], 994);
    // Over the body limit: 413, still JSON.
    let huge = format!("{{\"user_id\": \"{}\"}}", "x".repeat(70 * 1024));
    assert_refused(
        &post(&app, huge, None).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body",
    );
    // Another method on the route: 405 in JSON.
    let get = crate::router::get(&app, "/v1/recommendations").await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_night_without_model_json_serves_stored_lists_but_cannot_fold_in() {
    let (_f, _s, app) = crate::router::app(None).await;
    let a = post_json(&app, json!({"items": [{"item_id": "3"}]})).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model.json")
    );
    let a = post_json(&app, json!({"user_id": "7"})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
}

async fn exchange(addr: std::net::SocketAddr, request: Vec<u8>) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may refuse (and close) before a large body is all written.
    let _ = s.write_all(&request).await;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server answers and closes within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn posts_over_a_real_socket_need_the_token_and_fit_the_body_limit() {
    let f = fixture::published().await;
    write_model(&f.lake, fixture::night(NIGHT1)).await;
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
    let body = r#"{"items": [{"item_id": "3", "event_type": "purchase"}], "k": 2}"#;
    let request = |token: &str, body: &str| {
        format!(
            "POST /v1/recommendations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{token}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let answer = exchange(addr, request("Authorization: Bearer tok\r\n", body)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"source\":\"fold-in\""), "{answer}");
    let answer = exchange(addr, request("", body)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // A body over the server's limit is refused before it is read.
    let huge = format!("{{\"user_id\": \"{}\"}}", "x".repeat(70 * 1024));
    let answer = exchange(addr, request("Authorization: Bearer tok\r\n", &huge)).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    let _ = stop.send(());
    let _ = server.await;
}
