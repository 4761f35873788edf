//! Publishing to the real Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, database
//! test) that `.ci/run` makes sure are running. Each test uses its own keys and table; the
//! AUTH test starts its own `redis-server` with a password, and the timeout tests a listener
//! that accepts and never answers.

use elastirec_core::config::{SinkConfig, SinkTarget};
use elastirec_sink::copy_night;
use redis::aio::MultiplexedConnection;

use crate::fixture::{self, NIGHT1, NIGHT2, night};

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{}_{nanos}", std::process::id())
}

async fn redis_at(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn hget(redis: &mut MultiplexedConnection, key: &str, field: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async(redis)
        .await
        .unwrap()
}

async fn del(redis: &mut MultiplexedConnection, key: &str) {
    redis::cmd("DEL")
        .arg(key)
        .query_async::<()>(redis)
        .await
        .unwrap();
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

    let mut redis = redis_at(&config.redis_url).await;
    let key = format!("{}7", config.redis_key_prefix);
    assert_eq!(
        hget(&mut redis, &key, "night").await.as_deref(),
        Some(NIGHT1)
    );
    let items = hget(&mut redis, &key, "items").await.unwrap();
    let items: serde_json::Value = serde_json::from_str(&items).unwrap();
    // Ids are the external ids, as JSON strings (a numeric id too).
    let ids: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["2", "4", "5"]);
    assert_eq!(items[0]["rank"], 1);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ttl > 500 && ttl <= 600, "{ttl}");
    let source = hget(
        &mut redis,
        &format!("{}8", config.redis_key_prefix),
        "source",
    )
    .await;
    assert_eq!(source.as_deref(), Some("popular"));

    // The next night replaces the user's hash whole.
    fixture::write_night(&f.lake, night(NIGHT2), &fixture::night2_lists()).await;
    copy_night(&f.lake, &config, night(NIGHT2)).await.unwrap();
    let items = hget(&mut redis, &key, "items").await.unwrap();
    assert!(items.starts_with("[{\"item_id\":\"4\","), "{items}");
    for user in [7, 8] {
        del(&mut redis, &format!("{}{user}", config.redis_key_prefix)).await;
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
    let got: Vec<(String, i32, String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(got.len(), 4);
    let row = |u: &str, rank, i: &str, source: &str| {
        (u.into(), rank, i.into(), source.into(), NIGHT1.to_string())
    };
    assert_eq!(got[0], row("7", 1, "2", "als"));
    assert_eq!(got[3], row("8", 1, "1", "popular"));

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
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [
            ("4".into(), NIGHT2.into()),
            ("2".into(), NIGHT2.into()),
            ("5".into(), NIGHT2.into())
        ]
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

/// Writes night `n`'s lists as one recommendations file (with a manifest) holding `rows`
/// (user, item, rank, score, source): string ids as layout 3 writes them, or with
/// `int64_ids` as files written before it hold them (every id numeric).
pub(crate) async fn write_lists(
    lake: &elastirec_core::Lake,
    n: elastirec_core::Night,
    rows: &[(&str, &str, i32, f32, &str)],
    int64_ids: bool,
) {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray};
    use elastirec_core::layout;
    use elastirec_core::manifest::{self, ColumnSpec, RecommendationsManifest};

    let ids = |column: usize| -> ArrayRef {
        let values: Vec<&str> = rows
            .iter()
            .map(|r| if column == 0 { r.0 } else { r.1 })
            .collect();
        if int64_ids {
            Arc::new(Int64Array::from_iter_values(
                values.iter().map(|v| v.parse::<i64>().unwrap()),
            ))
        } else {
            Arc::new(StringArray::from_iter_values(values))
        }
    };
    let columns: Vec<ArrayRef> = vec![
        ids(0),
        ids(1),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
        Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.3))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4))),
    ];
    let mut fields: Vec<arrow_schema::Field> = manifest::recommendations_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    if int64_ids {
        for f in fields.iter_mut().take(2) {
            *f = f.clone().with_data_type(arrow_schema::DataType::Int64);
        }
    }
    let schema = Arc::new(arrow_schema::Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let file = elastirec_lake::io::write_parquet(
        lake,
        &layout::recommendations_part(n, 0),
        schema,
        &[batch],
    )
    .await
    .unwrap();
    let users: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.0).collect();
    let m = RecommendationsManifest {
        night: n,
        created_at: chrono::Utc::now(),
        rows: file.rows,
        files: vec![file],
        schema: ColumnSpec::of_schema(&manifest::recommendations_schema()),
        users: users.len() as u64,
        k: 3,
        users_by_source: Default::default(),
        model: layout::model_info(n).to_string(),
        table_versions: Default::default(),
        rules: None,
        rows_by_source: Default::default(),
    };
    lake.put_json(&layout::recommendations_manifest(n), &m)
        .await
        .unwrap();
}

/// String ids as producers sent them (a UUID-like id, spaces, a backslash, non-ASCII).
const STRING_LISTS: [(&str, &str, i32, f32, &str); 4] = [
    ("u-alice", "SKU/12 A", 1, 0.9, "als"),
    ("u-alice", "42", 2, 0.5, "als"),
    (r"dom\bob", "sku-é", 1, 3.0, "popular"),
    ("0042", "42", 1, 2.0, "popular"),
];

#[tokio::test]
async fn string_ids_reach_redis_as_they_came() {
    let f = fixture::lake().await;
    write_lists(&f.lake, night(NIGHT1), &STRING_LISTS, false).await;
    let config = SinkConfig {
        target: SinkTarget::Redis,
        redis_key_prefix: unique("elastirec-test:"),
        ttl_seconds: 600,
        ..SinkConfig::default()
    };
    let report = copy_night(&f.lake, &config, night(NIGHT1)).await.unwrap();
    assert_eq!((report.users, report.rows), (3, 4));
    let mut redis = redis_at(&config.redis_url).await;
    let items_of = |user: &str| format!("{}{user}", config.redis_key_prefix);
    let mut got = Vec::new();
    for user in ["u-alice", r"dom\bob", "0042", "42"] {
        let key = items_of(user);
        got.push(hget(&mut redis, &key, "items").await.map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|i| i["item_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }));
        del(&mut redis, &key).await;
    }
    assert_eq!(
        got,
        [
            Some(vec!["SKU/12 A".to_string(), "42".to_string()]),
            Some(vec!["sku-é".to_string()]),
            Some(vec!["42".to_string()]),
            // "0042" is a string id, not user 42.
            None,
        ]
    );
}

#[tokio::test]
async fn string_ids_reach_postgres_as_text_and_a_bigint_table_from_before_is_replaced() {
    let f = fixture::lake().await;
    let config = SinkConfig {
        target: SinkTarget::Postgres,
        postgres_table: unique("elastirec_test_"),
        ..SinkConfig::default()
    };
    let table = &config.postgres_table;
    let (client, connection) = tokio_postgres::connect(&config.postgres_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // The table as an elastirec before string ids made it: bigint ids.
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (user_id bigint NOT NULL, rank integer NOT NULL, \
             item_id bigint NOT NULL, score real NOT NULL, source text NOT NULL, \
             night date NOT NULL); \
             ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (user_id, rank); \
             INSERT INTO {table} VALUES (7, 1, 2, 1.0, 'als', '2024-01-09')"
        ))
        .await
        .unwrap();
    // A night written before layout 3 (Int64 ids in the files) goes over that table...
    write_lists(
        &f.lake,
        night(NIGHT1),
        &[("7", "2", 1, 1.0, "als"), ("7", "5", 2, 0.5, "als")],
        true,
    )
    .await;
    copy_night(&f.lake, &config, night(NIGHT1)).await.unwrap();
    let types = format!(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_name = '{table}' AND column_name IN ('user_id', 'item_id') \
         ORDER BY column_name"
    );
    let types: Vec<(String, String)> = client
        .query(&types, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        types,
        [
            ("item_id".to_string(), "text".to_string()),
            ("user_id".to_string(), "text".to_string())
        ]
    );
    let rows = client
        .query(
            &format!("SELECT user_id, item_id, night::text FROM {table} ORDER BY user_id, rank"),
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            ("7".into(), "2".into(), NIGHT1.into()),
            ("7".into(), "5".into(), NIGHT1.into())
        ]
    );
    // ...and a night of string ids after it, escaped for COPY where they need it.
    write_lists(&f.lake, night(NIGHT2), &STRING_LISTS, false).await;
    copy_night(&f.lake, &config, night(NIGHT2)).await.unwrap();
    let rows = client
        .query(
            &format!("SELECT user_id, rank, item_id FROM {table} ORDER BY user_id, rank"),
            &[],
        )
        .await
        .unwrap();
    let mut got: Vec<(String, i32, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    got.sort();
    let mut want: Vec<(String, i32, String)> = STRING_LISTS
        .iter()
        .map(|r| (r.0.to_string(), r.2, r.1.to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want);
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}
