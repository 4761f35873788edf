//! Catalog feeds (`[items] id_column`): the files of `raw/items/` (and of its `YYYY/MM/DD/`
//! snapshot folders) in CSV, JSON lines or Parquet, compressed or not, as events are told
//! apart (`formats`). One row per item: its id column, optionally its title, genres and
//! deletion flag, and every other column an attribute.
//!
//! Attribute values are kept as text in `warehouse/item_attributes`, written canonically for
//! their type so the catalog view (`rules`) can type them back: numbers as Rust prints an
//! `f64`, booleans `true`/`false`, timestamps RFC 3339 in UTC, lists a JSON array of strings.
//! A value that is not of its declared type (`[items.attributes]`) rejects its row, as a bad
//! event row is rejected: file, line (row for Parquet), column, reason.

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use elastirec_core::config::{AttributeType, ItemsConfig};
use elastirec_core::ids::check_external;

use super::formats::{self, FileKind, Format};
use super::parse::Reject;
use super::records::{Value, parquet_value, raw_line};

/// The attribute name a deletion flag is kept under in `warehouse/item_attributes`; names
/// starting with `_` are not catalog columns.
pub(crate) const DELETED: &str = "_deleted";

/// One field of a feed row as the file wrote it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FeedValue {
    Text(String),
    Number(f64),
    Bool(bool),
    /// UTC microseconds (a Parquet timestamp or date).
    Micros(i64),
    List(Vec<String>),
}

/// One item of a feed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FeedRow {
    pub(crate) id: String,
    pub(crate) title: Option<String>,
    pub(crate) genres: Option<String>,
    pub(crate) deleted: Option<bool>,
    /// Every other column, its canonical text (`None`: empty or null, which clears it).
    pub(crate) attributes: Vec<(String, Option<String>)>,
}

/// What a feed file holds.
#[derive(Debug, Default)]
pub(crate) struct Feed {
    pub(crate) rows: Vec<FeedRow>,
    pub(crate) rejects: Vec<Reject>,
    /// A marker or hidden file (`_SUCCESS`), not read.
    pub(crate) marker: bool,
}

type Record = Vec<(String, Option<FeedValue>)>;

/// Reads one feed file; a file that cannot be read at all is one reject (line 0).
pub(crate) fn read_feed(file: &str, body: bytes::Bytes, cfg: &ItemsConfig) -> Feed {
    let base = file.rsplit('/').next().unwrap_or(file);
    let mut feed = Feed::default();
    let unreadable = |reason: String| Reject {
        file: file.to_string(),
        line: 0,
        column: "*".into(),
        reason,
        raw_line: String::new(),
    };
    let delimiter = cfg.delimiter as u8;
    let plain = match formats::classify(base, cfg.format) {
        Ok(FileKind::Marker) => {
            feed.marker = true;
            return feed;
        }
        Ok(FileKind::Data(format, compression)) => {
            formats::decompress(body, compression).and_then(|plain| {
                let format = match format {
                    Some(f) => f,
                    None => formats::content_format(&plain, delimiter)?,
                };
                Ok((format, plain))
            })
        }
        Err(e) => Err(e),
    };
    let (format, plain) = match plain {
        Ok(p) => p,
        Err(reason) => {
            feed.rejects
                .push(unreadable(reason.replace("[events]", "[items]")));
            return feed;
        }
    };
    // A UTF-8 byte order mark is not part of the first record.
    let plain = if plain.starts_with(&[0xef, 0xbb, 0xbf]) {
        plain.slice(3..)
    } else {
        plain
    };
    let id_column = cfg.id_column.as_deref().unwrap_or("item_id");
    let mut on_record = |line: u64, byte: Option<usize>, record: Result<Record, String>| {
        let reject = |column: &str, reason: String| Reject {
            file: file.to_string(),
            line,
            column: column.to_string(),
            reason,
            raw_line: byte.map(|b| raw_line(&plain, b)).unwrap_or_default(),
        };
        match record.map(|r| feed_row(r, cfg)) {
            Ok(Ok(row)) => feed.rows.push(row),
            Ok(Err((column, reason))) => feed.rejects.push(reject(&column, reason)),
            Err(reason) => feed.rejects.push(reject("*", reason)),
        }
    };
    let read = match format {
        Format::Csv => read_csv(&plain, delimiter, id_column, &mut on_record),
        Format::JsonLines => read_json_lines(&plain, &mut on_record),
        Format::Parquet => read_parquet(&plain, id_column, &mut on_record),
    };
    if let Err(reason) = read {
        feed.rows.clear();
        feed.rejects.push(unreadable(reason));
    }
    feed
}

/// A record as a feed row, or the column at fault and why.
fn feed_row(record: Record, cfg: &ItemsConfig) -> Result<FeedRow, (String, String)> {
    let id_column = cfg.id_column.as_deref().unwrap_or("item_id");
    let mut row = FeedRow {
        id: String::new(),
        title: None,
        genres: None,
        deleted: None,
        attributes: Vec::new(),
    };
    for (name, value) in record {
        let bad = |reason: String| (name.clone(), reason);
        if name == id_column {
            let id = match &value {
                Some(FeedValue::Text(t)) => t.clone(),
                Some(FeedValue::Number(n)) if n.fract() == 0.0 && n.is_finite() => {
                    format!("{}", *n as i64)
                }
                Some(other) => return Err(bad(format!("{other:?} is not an item id"))),
                None => return Err(bad("no item id: every feed row needs one".into())),
            };
            check_external(&id).map_err(bad)?;
            row.id = id;
        } else if Some(name.as_str()) == cfg.title_column.as_deref() {
            row.title = value
                .map(|v| canonical(v, Some(AttributeType::String)))
                .transpose()
                .map_err(bad)?;
        } else if Some(name.as_str()) == cfg.genres_column.as_deref() {
            row.genres = match value {
                Some(FeedValue::List(l)) => Some(l.join("|")),
                v => v
                    .map(|v| canonical(v, Some(AttributeType::String)))
                    .transpose()
                    .map_err(bad)?,
            };
        } else if Some(name.as_str()) == cfg.deleted_column.as_deref() {
            row.deleted = value
                .map(|v| canonical(v, Some(AttributeType::Boolean)))
                .transpose()
                .map_err(bad)?
                .map(|b| b == "true");
        } else if name.starts_with('_') {
            // Reserved (`_deleted`) and hidden columns are not attributes.
            continue;
        } else {
            let declared = cfg.attributes.get(&name).copied();
            let text = value
                .map(|v| canonical(v, declared))
                .transpose()
                .map_err(bad)?;
            row.attributes.push((name, text));
        }
    }
    if row.id.is_empty() {
        return Err((
            id_column.to_string(),
            format!(
                "no item id: the row has no field '{id_column}' (set [items] id_column to the \
                 feed's id column)"
            ),
        ));
    }
    Ok(row)
}

/// A value as the canonical text of its declared type (undeclared: of what it is); an error
/// says why it is not of the declared type.
pub(crate) fn canonical(
    value: FeedValue,
    declared: Option<AttributeType>,
) -> Result<String, String> {
    use AttributeType as T;
    let natural = |v: &FeedValue| match v {
        FeedValue::Text(t) => t.clone(),
        FeedValue::Number(n) => n.to_string(),
        FeedValue::Bool(b) => b.to_string(),
        FeedValue::Micros(m) => rfc3339(*m).unwrap_or_else(|| m.to_string()),
        FeedValue::List(l) => serde_json::Value::from(l.clone()).to_string(),
    };
    let not = |v: &FeedValue, what: &str, how: &str| {
        Err(format!(
            "'{}' is not {what} ([items.attributes] declares it so; {how})",
            natural(v)
        ))
    };
    match (declared, &value) {
        (None | Some(T::String), v) => Ok(natural(v)),
        (Some(T::Number), FeedValue::Number(n)) if n.is_finite() => Ok(n.to_string()),
        (Some(T::Number), FeedValue::Text(t)) => match t.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(n.to_string()),
            _ => not(&value, "a number", "write digits with a '.' for decimals"),
        },
        (Some(T::Number), v) => not(v, "a number", "write digits with a '.' for decimals"),
        (Some(T::Boolean), FeedValue::Bool(b)) => Ok(b.to_string()),
        (Some(T::Boolean), FeedValue::Number(n)) if *n == 0.0 || *n == 1.0 => {
            Ok((*n == 1.0).to_string())
        }
        (Some(T::Boolean), FeedValue::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" => Ok("true".into()),
            "false" | "f" | "no" | "n" | "0" => Ok("false".into()),
            _ => not(&value, "a boolean", "write true or false"),
        },
        (Some(T::Boolean), v) => not(v, "a boolean", "write true or false"),
        (Some(T::Timestamp), FeedValue::Micros(m)) => {
            rfc3339(*m).ok_or_else(|| format!("timestamp {m} µs is out of range"))
        }
        (Some(T::Timestamp), FeedValue::Text(t)) => {
            parse_timestamp(t.trim()).and_then(rfc3339).map_or_else(
                || {
                    not(
                        &value,
                        "a timestamp",
                        "write RFC 3339 (2024-03-05T10:00:00Z) or a day (2024-03-05)",
                    )
                },
                Ok,
            )
        }
        (Some(T::Timestamp), v) => not(v, "a timestamp", "write RFC 3339 or YYYY-MM-DD"),
        (Some(T::List), FeedValue::List(l)) => Ok(serde_json::Value::from(l.clone()).to_string()),
        (Some(T::List), FeedValue::Text(t)) => {
            let t = t.trim();
            let items: Vec<String> = if t.starts_with('[') {
                match serde_json::from_str::<Vec<serde_json::Value>>(t) {
                    Ok(values) => values.iter().map(json_text).collect(),
                    Err(_) => return not(&value, "a list", "write a JSON array or a|b|c"),
                }
            } else {
                t.split('|')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            };
            Ok(serde_json::Value::from(items).to_string())
        }
        (Some(T::List), v) => Ok(serde_json::Value::from(vec![natural(v)]).to_string()),
    }
}

fn rfc3339(micros: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or `YYYY-MM-DD` (midnight UTC), in microseconds.
fn parse_timestamp(t: &str) -> Option<i64> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(at.timestamp_micros());
    }
    if let Ok(at) = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S") {
        return Some(at.and_utc().timestamp_micros());
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc().timestamp_micros())
}

/// A JSON scalar as text (a string without its quotes).
fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn json_field(v: &serde_json::Value) -> Option<FeedValue> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| FeedValue::Text(t.to_string()))
        }
        serde_json::Value::Number(n) => Some(match n.as_i64() {
            Some(i) if i.unsigned_abs() < (1 << 53) => FeedValue::Number(i as f64),
            Some(i) => FeedValue::Text(i.to_string()),
            None => match n.as_u64() {
                Some(u) => FeedValue::Text(u.to_string()),
                None => FeedValue::Number(n.as_f64().unwrap_or(f64::NAN)),
            },
        }),
        serde_json::Value::Bool(b) => Some(FeedValue::Bool(*b)),
        serde_json::Value::Array(a) => Some(FeedValue::List(a.iter().map(json_text).collect())),
        serde_json::Value::Object(_) => Some(FeedValue::Text(v.to_string())),
    }
}

/// The fields of a JSON object, nested objects flattened to dotted names (`price.amount`).
fn flatten(prefix: &str, object: &serde_json::Map<String, serde_json::Value>, out: &mut Record) {
    for (k, v) in object {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            serde_json::Value::Object(inner) => flatten(&name, inner, out),
            v => out.push((name, json_field(v))),
        }
    }
}

fn read_csv(
    body: &[u8],
    delimiter: u8,
    id_column: &str,
    on_record: &mut impl FnMut(u64, Option<usize>, Result<Record, String>),
) -> Result<(), String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let names: Vec<String> = reader
        .headers()
        .map_err(|e| format!("cannot read the header line: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if !names.iter().any(|n| n == id_column) {
        let shown: String = names.join(",").chars().take(300).collect();
        return Err(format!(
            "no column '{id_column}' in the header ({shown}); set [items] id_column to the \
             feed's id column"
        ));
    }
    for record in reader.records() {
        let (line, byte) = match &record {
            Ok(r) => r
                .position()
                .map_or((0, None), |p| (p.line(), Some(p.byte() as usize))),
            Err(e) => e
                .position()
                .map_or((0, None), |p| (p.line(), Some(p.byte() as usize))),
        };
        let record: Result<Record, String> =
            record.map_err(|e| format!("not a CSV row: {e}")).map(|r| {
                names
                    .iter()
                    .zip(r.iter())
                    .map(|(n, v)| {
                        let v = v.trim();
                        (
                            n.clone(),
                            (!v.is_empty()).then(|| FeedValue::Text(v.to_string())),
                        )
                    })
                    .collect()
            });
        on_record(line, byte, record);
    }
    Ok(())
}

fn read_json_lines(
    body: &[u8],
    on_record: &mut impl FnMut(u64, Option<usize>, Result<Record, String>),
) -> Result<(), String> {
    let mut offset = 0;
    let mut line_no = 0u64;
    while offset < body.len() {
        let end = body[offset..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |p| offset + p);
        line_no += 1;
        let start = offset;
        let line = &body[offset..end];
        offset = end + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(object)) => {
                let mut record = Vec::with_capacity(object.len());
                flatten("", &object, &mut record);
                Ok(record)
            }
            Ok(_) => Err("a JSON line must be an object".to_string()),
            Err(e) if line_no == 1 && std::str::from_utf8(line).is_err() => {
                return Err(format!(
                    "its first line is not UTF-8 text ({e}): is it compressed or binary? name \
                     it for its compression (.gz, .zst, .bz2) or set [items] format"
                ));
            }
            Err(e) => Err(format!("not a JSON object: {e}")),
        };
        on_record(line_no, Some(start), record);
    }
    Ok(())
}

/// A Parquet value; lists are read element by element, types the event reader does not know
/// (decimals, structs) as arrow displays them.
fn parquet_field(array: &ArrayRef, row: usize) -> Result<Option<FeedValue>, String> {
    if array.is_null(row) {
        return Ok(None);
    }
    let list = match array.data_type() {
        DataType::List(_) => Some(array.as_list::<i32>().value(row)),
        DataType::LargeList(_) => Some(array.as_list::<i64>().value(row)),
        _ => None,
    };
    if let Some(values) = list {
        let mut out = Vec::with_capacity(values.len());
        for i in 0..values.len() {
            if let Some(v) = parquet_field(&values, i)? {
                out.push(match v {
                    FeedValue::Text(t) => t,
                    other => canonical(other, None)?,
                });
            }
        }
        return Ok(Some(FeedValue::List(out)));
    }
    if array.data_type() == &DataType::Boolean {
        return Ok(Some(FeedValue::Bool(array.as_boolean().value(row))));
    }
    match parquet_value(array, row) {
        Ok(Some(Value::Text(t))) => Ok((!t.is_empty()).then(|| FeedValue::Text(t.into_owned()))),
        Ok(Some(Value::Int(i))) => Ok(Some(FeedValue::Number(i as f64))),
        Ok(Some(Value::Float(f))) => Ok(Some(FeedValue::Number(f))),
        Ok(Some(Value::Micros(m))) => Ok(Some(FeedValue::Micros(m))),
        Ok(None) => Ok(None),
        Err(_) => {
            let options = FormatOptions::default();
            let formatter =
                ArrayFormatter::try_new(array.as_ref(), &options).map_err(|e| e.to_string())?;
            Ok(Some(FeedValue::Text(formatter.value(row).to_string())))
        }
    }
}

fn read_parquet(
    body: &bytes::Bytes,
    id_column: &str,
    on_record: &mut impl FnMut(u64, Option<usize>, Result<Record, String>),
) -> Result<(), String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(body.clone())
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    if !names.iter().any(|n| n == id_column) {
        return Err(format!(
            "no column '{id_column}' in the Parquet schema ({}); set [items] id_column to the \
             feed's id column",
            names.join(",")
        ));
    }
    let reader = builder
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let mut row_no = 0u64;
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| format!("cannot read row group: {e}"))?;
        for row in 0..batch.num_rows() {
            row_no += 1;
            let mut record = Vec::with_capacity(names.len());
            let mut bad = None;
            for (name, column) in names.iter().zip(batch.columns()) {
                match parquet_field(column, row) {
                    Ok(v) => record.push((name.clone(), v)),
                    Err(reason) => {
                        bad = Some(format!("column '{name}': {reason}"));
                        break;
                    }
                }
            }
            on_record(row_no, None, bad.map_or(Ok(record), Err));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg() -> ItemsConfig {
        ItemsConfig {
            id_column: Some("sku".into()),
            title_column: Some("name".into()),
            deleted_column: Some("deleted".into()),
            attributes: BTreeMap::from([
                ("price".to_string(), AttributeType::Number),
                ("launched".to_string(), AttributeType::Timestamp),
                ("tags".to_string(), AttributeType::List),
            ]),
            ..ItemsConfig::default()
        }
    }

    fn attrs(row: &FeedRow) -> BTreeMap<&str, Option<&str>> {
        row.attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect()
    }

    #[test]
    fn csv_and_json_feeds_give_the_same_canonical_rows() {
        let csv = "sku,name,price,launched,tags,in_stock,deleted\n\
                   A1,Soap,4.50,2024-03-05,a|b,true,\n\
                   A2,Gel,x,2024-03-05,,false,no\n\
                   ,Nameless,1,,,,\n";
        let feed = read_feed("raw/items/f.csv", bytes::Bytes::from(csv), &cfg());
        assert_eq!(feed.rows.len(), 1, "{:?}", feed.rejects);
        assert_eq!(feed.rejects.len(), 2);
        assert_eq!(feed.rejects[0].line, 3);
        assert_eq!(feed.rejects[0].column, "price");
        assert!(feed.rejects[0].reason.contains("'x' is not a number"));
        assert!(feed.rejects[0].raw_line.starts_with("A2,Gel,x"));
        assert_eq!(feed.rejects[1].column, "sku");
        let row = &feed.rows[0];
        assert_eq!(row.title.as_deref(), Some("Soap"));
        assert_eq!(row.deleted, None);
        let want = BTreeMap::from([
            ("price", Some("4.5")),
            ("launched", Some("2024-03-05T00:00:00Z")),
            ("tags", Some("[\"a\",\"b\"]")),
            ("in_stock", Some("true")),
        ]);
        assert_eq!(attrs(row), want);

        let json = "{\"sku\":\"A1\",\"name\":\"Soap\",\"price\":4.5,\"launched\":\
                    \"2024-03-05T00:00:00+00:00\",\"tags\":[\"a\",\"b\"],\"in_stock\":true}\n";
        let feed = read_feed("raw/items/f.jsonl", bytes::Bytes::from(json), &cfg());
        assert!(feed.rejects.is_empty(), "{:?}", feed.rejects);
        assert_eq!(attrs(&feed.rows[0]), want);
    }

    #[test]
    fn deletions_and_missing_id_columns() {
        let feed = read_feed(
            "raw/items/d.csv",
            bytes::Bytes::from("sku,deleted\nA1,true\nA2,maybe\n"),
            &cfg(),
        );
        assert_eq!(feed.rows[0].deleted, Some(true));
        assert_eq!(feed.rejects[0].column, "deleted");
        let feed = read_feed(
            "raw/items/d.csv",
            bytes::Bytes::from("id,name\n1,x\n"),
            &cfg(),
        );
        assert!(feed.rows.is_empty());
        assert_eq!(feed.rejects[0].line, 0);
        assert!(
            feed.rejects[0].reason.contains("set [items] id_column"),
            "{}",
            feed.rejects[0].reason
        );
        assert!(read_feed("raw/items/_SUCCESS", bytes::Bytes::new(), &cfg()).marker);
    }
}
