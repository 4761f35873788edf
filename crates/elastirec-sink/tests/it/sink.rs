//! Publishing to the real Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, database
//! test) that `.ci/run` makes sure are running. Each test uses its own keys and table.

use elastirec_core::config::{SinkConfig, SinkTarget};
use elastirec_sink::{Redis, Reply, copy_night};

use crate::fixture::{self, NIGHT1, NIGHT2, night};

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{}_{nanos}", std::process::id())
}

fn bulk(r: &Reply) -> String {
    match r {
        Reply::Bulk(Some(b)) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("not a bulk string: {other:?}"),
    }
}

#[tokio::test]
async fn redis_gets_one_expiring_hash_per_user() {
    let f = fixture::published().await;
    let config = SinkConfig {
        target: SinkTarget::Redis,
        redis_key_prefix: unique("elastirec-test:"),
        ttl_seconds: 600,
        ..SinkConfig::default()
    };
    let report = copy_night(&f.lake, &config, night(NIGHT1)).await.unwrap();
    assert_eq!((report.users, report.rows), (2, 4));

    let mut redis = Redis::connect(&config.redis_url).await.unwrap();
    let key = format!("{}7", config.redis_key_prefix);
    let night_field = redis
        .command(&[b"HGET", key.as_bytes(), b"night"])
        .await
        .unwrap();
    assert_eq!(bulk(&night_field), NIGHT1);
    let items = redis
        .command(&[b"HGET", key.as_bytes(), b"items"])
        .await
        .unwrap();
    let items: serde_json::Value = serde_json::from_str(&bulk(&items)).unwrap();
    let ids: Vec<i64> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [2, 4, 5]);
    assert_eq!(items[0]["rank"], 1);
    let Reply::Integer(ttl) = redis.command(&[b"TTL", key.as_bytes()]).await.unwrap() else {
        panic!("TTL is an integer");
    };
    assert!(ttl > 500 && ttl <= 600, "{ttl}");
    let source = redis
        .command(&[
            b"HGET",
            format!("{}8", config.redis_key_prefix).as_bytes(),
            b"source",
        ])
        .await
        .unwrap();
    assert_eq!(bulk(&source), "popular");

    // The next night replaces the user's hash whole.
    fixture::write_night(&f.lake, night(NIGHT2), &fixture::night2_lists()).await;
    copy_night(&f.lake, &config, night(NIGHT2)).await.unwrap();
    let items = redis
        .command(&[b"HGET", key.as_bytes(), b"items"])
        .await
        .unwrap();
    assert!(
        bulk(&items).starts_with("[{\"item_id\":4,"),
        "{}",
        bulk(&items)
    );
    for user in [7, 8] {
        redis
            .command(&[
                b"DEL",
                format!("{}{user}", config.redis_key_prefix).as_bytes(),
            ])
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn postgres_gets_the_table_swapped_in_one_transaction() {
    let f = fixture::published().await;
    let config = SinkConfig {
        target: SinkTarget::Postgres,
        postgres_table: unique("elastirec_test_"),
        ..SinkConfig::default()
    };
    let report = copy_night(&f.lake, &config, night(NIGHT1)).await.unwrap();
    assert_eq!(report.rows, 4);

    let (client, connection) = tokio_postgres::connect(&config.postgres_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let table = &config.postgres_table;
    let rows = client
        .query(&format!("SELECT user_id, rank, item_id, source, night::text FROM {table} ORDER BY user_id, rank"), &[])
        .await
        .unwrap();
    let got: Vec<(i64, i32, i64, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0], (7, 1, 2, "als".to_string(), NIGHT1.to_string()));
    assert_eq!(got[3], (8, 1, 1, "popular".to_string(), NIGHT1.to_string()));

    // Night 2 replaces the whole table (user 8 has no list that night), and can run again.
    fixture::write_night(&f.lake, night(NIGHT2), &fixture::night2_lists()).await;
    copy_night(&f.lake, &config, night(NIGHT2)).await.unwrap();
    copy_night(&f.lake, &config, night(NIGHT2)).await.unwrap();
    let rows = client
        .query(
            &format!("SELECT item_id, night::text FROM {table} ORDER BY user_id, rank"),
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [(4, NIGHT2.into()), (2, NIGHT2.into()), (5, NIGHT2.into())]
    );
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn no_target_is_a_configuration_error() {
    let f = fixture::published().await;
    let err = copy_night(&f.lake, &SinkConfig::default(), night(NIGHT1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), elastirec_core::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("[sink] target"), "{err}");
}
