//! Catalog feeds (`[items] id_column`): one catalog written in every format and compression
//! loads the same typed attributes; a newer snapshot wins; deletions and bad rows.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use elastirec_core::config::{AttributeType, EventsConfig, ItemRules, ItemsConfig, PrepareConfig};
use elastirec_core::{Lake, Night};
use elastirec_warehouse::{IngestOptions, Warehouse};

use crate::lake;

const CSV: &str = "sku,name,category,price,in_stock,launched,tags,deleted\n\
    A1,Soap,care.soap,4.5,true,2024-03-01,eco|refill,false\n\
    A2,Gel,care.gel,120,false,2024-02-01T10:00:00Z,,false\n\
    A3,Knife,kitchen,15,true,,adult,\n\
    7,\"Plain, item\",kitchen,,true,2024-01-01,,\n";

const JSONL: &str = "{\"sku\":\"A1\",\"name\":\"Soap\",\"category\":\"care.soap\",\"price\":4.5,\
    \"in_stock\":true,\"launched\":\"2024-03-01\",\"tags\":[\"eco\",\"refill\"],\"deleted\":false}\n\
    {\"sku\":\"A2\",\"name\":\"Gel\",\"category\":\"care.gel\",\"price\":120,\"in_stock\":false,\
    \"launched\":\"2024-02-01T11:00:00+01:00\",\"tags\":null,\"deleted\":false}\n\
    {\"sku\":\"A3\",\"name\":\"Knife\",\"category\":\"kitchen\",\"price\":15.0,\"in_stock\":true,\
    \"tags\":[\"adult\"]}\n\
    {\"sku\":7,\"name\":\"Plain, item\",\"category\":\"kitchen\",\"price\":null,\"in_stock\":true,\
    \"launched\":\"2024-01-01\"}\n";

fn parquet() -> Vec<u8> {
    let micros = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    };
    let mut tags =
        arrow_array::builder::ListBuilder::new(arrow_array::builder::StringBuilder::new());
    tags.values().append_value("eco");
    tags.values().append_value("refill");
    tags.append(true);
    tags.append(false);
    tags.values().append_value("adult");
    tags.append(true);
    tags.append(false);
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "sku",
            Arc::new(StringArray::from(vec!["A1", "A2", "A3", "7"])),
        ),
        (
            "name",
            Arc::new(StringArray::from(vec![
                "Soap",
                "Gel",
                "Knife",
                "Plain, item",
            ])),
        ),
        (
            "category",
            Arc::new(StringArray::from(vec![
                "care.soap",
                "care.gel",
                "kitchen",
                "kitchen",
            ])),
        ),
        (
            "price",
            Arc::new(Float64Array::from(vec![
                Some(4.5),
                Some(120.0),
                Some(15.0),
                None,
            ])),
        ),
        (
            "in_stock",
            Arc::new(BooleanArray::from(vec![true, false, true, true])),
        ),
        (
            "launched",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(micros("2024-03-01T00:00:00Z")),
                    Some(micros("2024-02-01T10:00:00Z")),
                    None,
                    Some(micros("2024-01-01T00:00:00Z")),
                ])
                .with_timezone("UTC"),
            ),
        ),
        ("tags", Arc::new(tags.finish())),
        (
            "deleted",
            Arc::new(BooleanArray::from(vec![
                Some(false),
                Some(false),
                None,
                None,
            ])),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn bzip2(bytes: &[u8]) -> Vec<u8> {
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(bytes).unwrap();
    bz.finish().unwrap()
}

fn items_config() -> ItemsConfig {
    ItemsConfig {
        id_column: Some("sku".into()),
        title_column: Some("name".into()),
        deleted_column: Some("deleted".into()),
        attributes: BTreeMap::from([
            ("launched".to_string(), AttributeType::Timestamp),
            ("tags".to_string(), AttributeType::List),
        ]),
        ..ItemsConfig::default()
    }
}

fn options(items: &ItemsConfig, max_errors: u64) -> IngestOptions {
    IngestOptions {
        max_errors,
        items: items.clone(),
        ..IngestOptions::default()
    }
}

fn night(s: &str) -> Night {
    s.parse().unwrap()
}

/// Events of 2024-03-05 naming the feed's items.
async fn events(lake: &Lake) {
    let body = "userId,movieId,rating,timestamp\nu1,A1,5,1709640000\nu1,A3,4,1709640001\n\
                u2,A2,3,1709640002\nu2,7,5,1709640003\n";
    lake.put(
        &"raw/events/2024/03/05/e.csv".into(),
        body.as_bytes().to_vec(),
    )
    .await
    .unwrap();
}

/// Every item's latest attributes by external id (`_deleted` included), and its title.
async fn catalog(wh: &Warehouse) -> BTreeMap<String, (Option<String>, BTreeMap<String, String>)> {
    let sql = "WITH names AS (SELECT id, external FROM ids WHERE kind = 'item'), \
        latest AS (SELECT item_id, name, last_value(value ORDER BY observed_at, source_file) \
        AS value FROM item_attributes GROUP BY item_id, name) \
        SELECT COALESCE(n.external, CAST(l.item_id AS VARCHAR)) AS sku, i.title, l.name, l.value \
        FROM latest l LEFT JOIN names n ON n.id = l.item_id \
        LEFT JOIN items i ON i.item_id = l.item_id WHERE l.value IS NOT NULL";
    let mut out: BTreeMap<String, (Option<String>, BTreeMap<String, String>)> = BTreeMap::new();
    for b in wh.sql(sql).await.unwrap() {
        let col = |name: &str| {
            deltalake::arrow::compute::cast(
                b.column_by_name(name).unwrap(),
                &deltalake::arrow::datatypes::DataType::Utf8,
            )
            .unwrap()
        };
        let (sku, title, name, value) = (col("sku"), col("title"), col("name"), col("value"));
        let (sku, title, name, value) = (
            sku.as_string::<i32>(),
            title.as_string::<i32>(),
            name.as_string::<i32>(),
            value.as_string::<i32>(),
        );
        for r in 0..b.num_rows() {
            let entry = out.entry(sku.value(r).to_string()).or_default();
            entry.0 = (!title.is_null(r)).then(|| title.value(r).to_string());
            entry
                .1
                .insert(name.value(r).to_string(), value.value(r).to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_feed_in_every_format_and_compression_loads_the_same_typed_attributes() {
    let items = items_config();
    let feeds: Vec<(&str, Vec<u8>)> = vec![
        ("catalog.csv", CSV.as_bytes().to_vec()),
        ("catalog.csv.gz", gzip(CSV.as_bytes())),
        ("catalog.jsonl", JSONL.as_bytes().to_vec()),
        (
            "catalog.ndjson.zst",
            zstd::stream::encode_all(JSONL.as_bytes(), 1).unwrap(),
        ),
        ("catalog.json.bz2", bzip2(JSONL.as_bytes())),
        ("catalog.parquet", parquet()),
        // A name that says nothing (Firehose): the content tells.
        ("export-2024-03-04-9f1c", gzip(JSONL.as_bytes())),
    ];
    let mut first: Option<(String, BTreeMap<_, _>, BTreeMap<String, AttributeType>)> = None;
    for (name, body) in feeds {
        let (_dir, lake) = lake().await;
        events(&lake).await;
        lake.put(
            &format!("raw/items/2024/03/04/{name}").as_str().into(),
            body,
        )
        .await
        .unwrap();
        let wh = Warehouse::open(&lake).await.unwrap();
        let report = wh
            .ingest(
                night("2024-03-05"),
                &EventsConfig::default(),
                options(&items, 0),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(report.items_loaded, Some(4), "{name}: {report:?}");
        assert_eq!(report.rows_rejected, 0, "{name}: {report:?}");
        let got = catalog(&wh).await;
        let manifest = wh
            .prepare(
                night("2024-03-05"),
                &PrepareConfig {
                    item_rules: ItemRules {
                        types: items.attributes.clone(),
                        ..ItemRules::default()
                    },
                    ..PrepareConfig::default()
                },
            )
            .await
            .unwrap();
        let types = manifest.item_attribute_types.clone();
        match &first {
            None => {
                // What the CSV says, typed: numbers, booleans, RFC 3339 UTC, JSON lists.
                let a1 = &got["A1"];
                assert_eq!(a1.0.as_deref(), Some("Soap"));
                assert_eq!(a1.1["price"], "4.5");
                assert_eq!(a1.1["in_stock"], "true");
                assert_eq!(a1.1["launched"], "2024-03-01T00:00:00Z");
                assert_eq!(a1.1["tags"], "[\"eco\",\"refill\"]");
                assert_eq!(a1.1["_deleted"], "false");
                assert_eq!(got["A2"].1["launched"], "2024-02-01T10:00:00Z");
                assert_eq!(got["7"].0.as_deref(), Some("Plain, item"));
                assert!(!got["7"].1.contains_key("price"), "{:?}", got["7"]);
                assert_eq!(
                    types,
                    BTreeMap::from([
                        ("category".to_string(), AttributeType::String),
                        ("in_stock".to_string(), AttributeType::Boolean),
                        ("launched".to_string(), AttributeType::Timestamp),
                        ("price".to_string(), AttributeType::Number),
                        ("tags".to_string(), AttributeType::List),
                    ])
                );
                first = Some((name.to_string(), got, types));
            }
            Some((first_name, want, want_types)) => {
                assert_eq!(&got, want, "{name} against {first_name}");
                assert_eq!(&types, want_types, "{name} against {first_name}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_snapshot_wins_deletes_items_and_rejects_bad_rows_and_rules_see_typed_columns() {
    let items = items_config();
    let (_dir, lake) = lake().await;
    events(&lake).await;
    lake.put(
        &"raw/items/2024/03/04/catalog.csv".into(),
        CSV.as_bytes().to_vec(),
    )
    .await
    .unwrap();
    let wh = Warehouse::open(&lake).await.unwrap();
    wh.ingest(
        night("2024-03-05"),
        &EventsConfig::default(),
        options(&items, 0),
    )
    .await
    .unwrap();
    // The next snapshot: A1's price goes up, A2 is deleted, one row is bad.
    let newer = "sku,price,launched,deleted\nA1,200,2024-03-01,false\nA9,1,soon,false\n\
                 A2,,,true\n";
    lake.put(
        &"raw/items/2024/03/06/catalog.csv".into(),
        newer.as_bytes().to_vec(),
    )
    .await
    .unwrap();
    // Beyond max_errors nothing is loaded, and the error names the file, line and column.
    let e = wh
        .ingest(
            night("2024-03-06"),
            &EventsConfig::default(),
            options(&items, 0),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "raw/items/2024/03/06/catalog.csv:3: column 'launched': 'soon' is not a timestamp"
        ),
        "{e}"
    );
    assert_eq!(catalog(&wh).await["A1"].1["price"], "4.5");
    let report = wh
        .ingest(
            night("2024-03-06"),
            &EventsConfig::default(),
            options(&items, 1),
        )
        .await
        .unwrap();
    assert_eq!(report.rows_rejected, 1, "{report:?}");
    let rejected = crate::scalar(
        &wh,
        "SELECT COUNT(*) FROM rejects WHERE file = 'raw/items/2024/03/06/catalog.csv' \
         AND line = 3 AND \"column\" = 'launched' AND raw_line = 'A9,1,soon,false'",
    )
    .await;
    assert_eq!(rejected, 1);
    let now = catalog(&wh).await;
    assert_eq!(now["A1"].1["price"], "200");
    // Columns the newer feed does not have keep their values; its title too.
    assert_eq!(now["A1"].1["category"], "care.soap");
    assert_eq!(now["A1"].0.as_deref(), Some("Soap"));
    assert_eq!(now["A2"].1["_deleted"], "true");
    assert!(!now.contains_key("A9"));

    // Rules see typed columns: numbers compare, booleans negate, lists are arrays; a deleted
    // item is excluded whatever the rules say.
    let rules = ItemRules {
        exclude_where: Some("price > 100 OR array_has(tags, 'adult')".into()),
        promote_where: Some("launched < TIMESTAMP '2024-02-15 00:00:00' AND in_stock".into()),
        types: items.attributes.clone(),
        deletions: true,
        ..ItemRules::default()
    };
    wh.check_item_rules(&rules).await.unwrap();
    let m = wh
        .prepare(
            night("2024-03-06"),
            &PrepareConfig {
                item_rules: rules,
                ..PrepareConfig::default()
            },
        )
        .await
        .unwrap();
    let mut flags = BTreeSet::new();
    let names = crate::read_files(&lake, &m.id_files).await;
    let mut external = BTreeMap::new();
    for b in &names {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let ext = b.column_by_name("external").unwrap().as_string::<i32>();
        let kind = b.column_by_name("kind").unwrap().as_string::<i32>();
        for r in 0..b.num_rows() {
            if kind.value(r) == "item" {
                external.insert(ids.value(r), ext.value(r).to_string());
            }
        }
    }
    for b in crate::read_files(&lake, &m.item_rule_files).await {
        let ids = b
            .column_by_name("item_id")
            .unwrap()
            .as_primitive::<Int64Type>();
        let excluded = b.column_by_name("excluded").unwrap().as_boolean();
        let promoted = b.column_by_name("promoted").unwrap().as_boolean();
        for r in 0..b.num_rows() {
            let id = ids.value(r);
            let sku = external.get(&id).cloned().unwrap_or_else(|| id.to_string());
            flags.insert((sku, excluded.value(r), promoted.value(r)));
        }
    }
    assert_eq!(
        flags,
        BTreeSet::from([
            ("A1".to_string(), true, false),
            ("A2".to_string(), true, false),
            ("A3".to_string(), true, false),
            ("7".to_string(), false, true),
        ])
    );
}
