//! A lake with string ids (issue 20): the export lists an id dictionary (`ids-*.parquet`), the
//! recommendation files hold external ids, and the API takes and answers external ids only,
//! percent-encoded in paths.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use elastirec_core::ids::DICTIONARY_BASE;
use elastirec_serve::{Served, router, server};

use crate::fixture::{self, ITEM1, ITEM2, ITEM3, ITEM5, ITEM6, NIGHT1, Names, USER7, USER8, USER9};
use crate::router::{get, ids};

async fn app() -> (fixture::Fixture, std::sync::Arc<Served>, axum::Router) {
    let f = fixture::published_with(&Names::strings()).await;
    let served = Served::new(f.lake.clone(), None);
    assert!(served.refresh().await.unwrap(), "night 1 loads");
    let app = router(served.clone());
    (f, served, app)
}

/// An id as a path segment: every byte but unreserved ones percent-encoded.
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn the_snapshot_keeps_internal_ids_and_the_dictionary() {
    let (_f, served, _app) = app().await;
    let s = served.snapshot().unwrap();
    let names = Names::strings();
    assert_eq!(s.users(), 2);
    assert_eq!(s.ids().users.len(), 3);
    assert_eq!(s.ids().items.len(), 5, "item 4 is numeric: no entry");
    assert_eq!(s.ids().users.internal(USER7), Some(names.user(7)));
    assert!(names.user(7) >= DICTIONARY_BASE);
    let recs = s.recommendations(names.user(7), 3).unwrap();
    assert!(!recs.fallback);
    let items: Vec<i64> = recs.items.iter().map(|r| r.0).collect();
    assert_eq!(items, [names.item(2), 4, names.item(5)]);
    assert_eq!(s.ids().items.external(names.item(5)), ITEM5);
}

#[tokio::test]
async fn string_ids_in_and_out() {
    let (_f, _s, app) = app().await;
    let a = get(&app, &format!("/v1/users/{USER7}/recommendations")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let body = a.json();
    assert_eq!(body["user_id"], USER7);
    assert_eq!(body["model_date"], NIGHT1);
    assert_eq!(body["fallback"], false);
    assert_eq!(body["source"], "als");
    // The same list as the numeric lake's 2, 4, 5 (item 4 kept its numeric id: a string "4").
    assert_eq!(ids(&body["items"]), [ITEM2, "4", ITEM5]);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items[0]["title"], "Item 2");
    let because: Vec<Value> = items.iter().map(|i| i["because"].clone()).collect();
    assert_eq!(
        because,
        [
            json!([ITEM1, ITEM3, ITEM6]),
            json!([ITEM3, ITEM1, ITEM6]),
            json!([ITEM1, ITEM3, ITEM6])
        ]
    );

    // A UUID; a stored popularity list.
    let popular = get(&app, &format!("/v1/users/{USER8}/recommendations"))
        .await
        .json();
    assert_eq!(popular["user_id"], USER8);
    assert_eq!(popular["fallback"], false);
    assert_eq!(popular["source"], "popular");
    assert_eq!(ids(&popular["items"]), [ITEM1]);

    // Percent-encoded: '/', ' ' and UTF-8 (user/9 ä), spaces and '/' (SKU/12 A), '%' (100%).
    let history = get(&app, &format!("/v1/users/{}/history", encode(USER9)))
        .await
        .json();
    assert_eq!(history["user_id"], USER9, "{history}");
    assert_eq!(ids(&history["items"]), [ITEM1]);
    let history7 = get(&app, &format!("/v1/users/{USER7}/history"))
        .await
        .json();
    assert_eq!(ids(&history7["items"]), [ITEM1, ITEM3, ITEM6]);
    assert_eq!(history7["items"][2]["before_window"], true);

    let a = get(&app, "/v1/items/SKU%2F12%20A").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let item = a.json();
    assert_eq!(item["item_id"], ITEM1);
    assert_eq!(item["title"], "Item 1");
    assert_eq!(item["users_in_window"], 2);
    assert_eq!(item["in_model"], true);
    let item5 = get(&app, "/v1/items/100%25").await.json();
    assert_eq!(item5["item_id"], ITEM5);
    assert_eq!(item5["title"], "Item 5");
    let item4 = get(&app, "/v1/items/4").await.json();
    assert_eq!(item4["item_id"], "4");
    assert_eq!(item4["title"], "Item 4");
    // "007" is a string id (leading zero), not item 7.
    let item3 = get(&app, "/v1/items/007").await.json();
    assert_eq!(item3["item_id"], ITEM3);
    assert_eq!(item3["title"], "Item 3");

    let similar = get(&app, &format!("/v1/items/{}/similar", encode(ITEM1)))
        .await
        .json();
    assert_eq!(similar["item_id"], ITEM1);
    assert_eq!(similar["title"], "Item 1");
    assert_eq!(ids(&similar["items"]), [ITEM2, ITEM5, "4", ITEM3, ITEM6]);
}

#[tokio::test]
async fn an_unknown_string_id_is_an_unknown_user_or_item() {
    let (_f, _s, app) = app().await;
    let unknown = get(&app, "/v1/users/NO-SUCH-USER/recommendations").await;
    assert_eq!(unknown.status, StatusCode::OK, "{}", unknown.text);
    let body = unknown.json();
    assert_eq!(body["user_id"], "NO-SUCH-USER");
    assert_eq!(body["fallback"], true);
    assert_eq!(body["source"], "popular");
    assert_eq!(ids(&body["items"]), [ITEM1, ITEM2, ITEM3]);
    assert_eq!(body["items"][0]["score"], 2.0);
    assert_eq!(body["items"][0]["because"], json!([]));

    // Internal ids are no ids of the API: user 7's dictionary id, the fixture's numeric 7.
    let names = Names::strings();
    for internal in [names.user(7).to_string(), "7".to_string()] {
        let body = get(&app, &format!("/v1/users/{internal}/recommendations"))
            .await
            .json();
        assert_eq!(body["fallback"], true, "{internal}: {body}");
        assert_eq!(body["user_id"], internal.as_str());
    }

    for (uri, says) in [
        (
            "/v1/users/NO-SUCH-USER/history".to_string(),
            format!("user NO-SUCH-USER has no history up to night {NIGHT1}"),
        ),
        (
            "/v1/items/NO%20SUCH%2FITEM".to_string(),
            "item NO SUCH/ITEM not found".to_string(),
        ),
        (
            "/v1/items/NO%20SUCH%2FITEM/similar".to_string(),
            "item NO SUCH/ITEM not found".to_string(),
        ),
        (
            format!("/v1/items/{}", names.item(1)),
            format!("item {} not found", names.item(1)),
        ),
    ] {
        let a = get(&app, &uri).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{uri}: {}", a.text);
        assert_eq!(a.json()["error"]["code"], "not_found");
        let message = a.json()["error"]["message"].as_str().unwrap().to_string();
        assert_eq!(message, says, "{uri}");
    }
}

#[tokio::test]
async fn percent_encoded_ids_over_a_real_socket() {
    let (_f, served, _app) = app().await;
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
    let request = format!(
        "GET /v1/users/{}/history?limit=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        encode(USER9)
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["user_id"], USER9);
    assert_eq!(ids(&body["items"]), [ITEM1]);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
