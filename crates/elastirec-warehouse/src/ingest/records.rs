//! The records of one raw file as named fields, whatever the file's format: a CSV header name, a
//! JSON field or dotted path into nested objects (`properties.product_id`), a Parquet column or
//! dotted path into struct columns. Each field is looked up by a list of names, the first one
//! present winning (`["userId", "anonymousId"]`).
//!
//! Positions name what a reject must: the line for CSV and JSON lines (1-based, the CSV header
//! being line 1), the row (1-based) for Parquet.

use std::borrow::Cow;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StructArray};
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::formats::Format;

/// One field's value as the file wrote it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    Float(f64),
    /// A typed timestamp (Parquet), in UTC microseconds.
    Micros(i64),
}

impl Value<'_> {
    /// The value as text, as a reject shows it and an id is read.
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match self {
            Value::Text(t) => Cow::Borrowed(t.as_ref()),
            Value::Int(i) => Cow::Owned(i.to_string()),
            Value::Float(f) => Cow::Owned(f.to_string()),
            Value::Micros(m) => Cow::Owned(m.to_string()),
        }
    }
}

/// Where a field is found: names tried in order; `setting` is the `[events]` key that names it.
#[derive(Debug, Clone)]
pub(crate) struct FieldSpec {
    pub(crate) names: Vec<String>,
    pub(crate) setting: &'static str,
    pub(crate) required: bool,
}

impl FieldSpec {
    fn describe(&self) -> String {
        self.names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

/// One record's fields, in the order of the specs; `None` where absent or null.
pub(crate) type Fields<'a> = Vec<Option<Value<'a>>>;

/// Where a record is in its file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position {
    /// Line (CSV, JSON lines) or row (Parquet), 1-based.
    pub(crate) line: u64,
    /// Byte offset of the record's line (CSV, JSON lines), for the reject's raw line.
    pub(crate) byte: Option<usize>,
}

/// A record that cannot be read: column (`*` for the whole record) and reason.
pub(crate) struct BadRecord {
    pub(crate) column: String,
    pub(crate) reason: String,
}

/// A file-level failure (no header, a required field absent from the header or schema).
pub(crate) type FileError = String;

/// Reads every record of a file, calling `on_record` with each record's fields (or why the
/// record cannot be read); stops early with an error for a file that cannot be read at all.
pub(crate) fn read_records(
    format: Format,
    body: &bytes::Bytes,
    delimiter: u8,
    specs: &[FieldSpec],
    mut on_record: impl FnMut(Position, Result<Fields<'_>, BadRecord>),
) -> Result<(), FileError> {
    match format {
        Format::Csv => read_csv(body, delimiter, specs, &mut on_record),
        Format::JsonLines => read_json_lines(body, specs, &mut on_record),
        Format::Parquet => read_parquet(body, specs, &mut on_record),
    }
}

fn read_csv(
    body: &[u8],
    delimiter: u8,
    specs: &[FieldSpec],
    on_record: &mut impl FnMut(Position, Result<Fields<'_>, BadRecord>),
) -> Result<(), FileError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let header = reader
        .byte_headers()
        .map_err(|e| format!("cannot read the header line: {e}"))?
        .clone();
    let names: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    if names.iter().all(|n| n.is_empty()) {
        return Err("the file is empty or its first line is not a CSV header".into());
    }
    let mut columns = Vec::with_capacity(specs.len());
    for spec in specs {
        let found = spec
            .names
            .iter()
            .find_map(|wanted| names.iter().position(|n| n == wanted));
        if found.is_none() && spec.required {
            let shown: String = names.join(",").chars().take(300).collect();
            return Err(format!(
                "no column {} in the header ({shown}); set [events] {} to the right name",
                spec.describe(),
                spec.setting
            ));
        }
        columns.push(found);
    }
    let mut record = csv::ByteRecord::new();
    // Lines are counted from byte offsets: the CSV reader's own count skips blank lines.
    let (mut counted_to, mut counted_lines) = (0usize, 1u64);
    let mut line_at = |byte: usize| {
        let byte = byte.min(body.len());
        if byte >= counted_to {
            counted_lines += body[counted_to..byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            counted_to = byte;
        }
        counted_lines
    };
    loop {
        let position = reader.position().clone();
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let byte = e.position().map_or(position.byte(), |p| p.byte()) as usize;
                on_record(
                    Position {
                        line: line_at(byte),
                        byte: Some(position.byte() as usize),
                    },
                    Err(BadRecord {
                        column: "*".into(),
                        reason: format!("unreadable CSV: {e}"),
                    }),
                );
                // The reader cannot resynchronise after a CSV syntax error.
                break;
            }
        }
        let start = record.position().cloned().unwrap_or(position);
        // A record's start includes the blank lines before it: skip them.
        let mut byte = start.byte() as usize;
        while body.get(byte).is_some_and(|b| *b == b'\n' || *b == b'\r') {
            byte += 1;
        }
        let pos = Position {
            line: line_at(byte),
            byte: Some(byte),
        };
        if record.len() == 1 && record[0].is_empty() {
            continue; // blank line
        }
        if record.len() != names.len() {
            on_record(
                pos,
                Err(BadRecord {
                    column: "*".into(),
                    reason: format!(
                        "expected {} fields like the header, found {}",
                        names.len(),
                        record.len()
                    ),
                }),
            );
            continue;
        }
        let mut fields = Vec::with_capacity(specs.len());
        let mut bad = None;
        for (spec, column) in specs.iter().zip(&columns) {
            let Some(i) = *column else {
                fields.push(None);
                continue;
            };
            match std::str::from_utf8(&record[i]) {
                Ok(t) => {
                    let t = t.trim();
                    fields.push((!t.is_empty()).then(|| Value::Text(Cow::Owned(t.to_string()))));
                }
                Err(_) => {
                    bad = Some(BadRecord {
                        column: names[i].clone(),
                        reason: format!("not valid UTF-8 ([events] {})", spec.setting),
                    });
                    break;
                }
            }
        }
        on_record(pos, bad.map_or(Ok(fields), Err));
    }
    Ok(())
}

/// Looks a dotted path up in a JSON object: the literal key first (`"a.b": 1`), then the path.
fn json_path<'v>(object: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    if let Some(v) = object.get(path) {
        return Some(v);
    }
    if !path.contains('.') {
        return None;
    }
    path.split('.').try_fold(object, |v, key| v.get(key))
}

fn json_value(v: &serde_json::Value) -> Option<Value<'_>> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then_some(Value::Text(Cow::Borrowed(t)))
        }
        serde_json::Value::Number(n) => Some(match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::Text(Cow::Owned(u.to_string())),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        }),
        serde_json::Value::Bool(b) => Some(Value::Text(Cow::Borrowed(if *b {
            "true"
        } else {
            "false"
        }))),
        // An object or array where a scalar is expected: shown as JSON, refused by the reader.
        other => Some(Value::Text(Cow::Owned(other.to_string()))),
    }
}

fn read_json_lines(
    body: &[u8],
    specs: &[FieldSpec],
    on_record: &mut impl FnMut(Position, Result<Fields<'_>, BadRecord>),
) -> Result<(), FileError> {
    let mut offset = 0usize;
    let mut line_no = 0u64;
    // The fields are read straight from each line (see `json`); the whole-object reader below
    // is the reference, and serves the mappings the fast one cannot.
    let fast = super::json::JsonFields::new(specs);
    // A UTF-8 byte order mark is not part of the first record.
    if body.starts_with(&[0xef, 0xbb, 0xbf]) {
        offset = 3;
    }
    while offset < body.len() {
        let end = body[offset..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |p| offset + p);
        line_no += 1;
        let line = &body[offset..end];
        let pos = Position {
            line: line_no,
            byte: Some(offset),
        };
        offset = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = match std::str::from_utf8(line) {
            Ok(text) => text,
            Err(_) => {
                if line_no == 1 {
                    return Err(
                        "its first line is not UTF-8 text: is it compressed or binary? \
                                name it for its compression (.gz, .zst, .bz2) or set [events] \
                                format"
                            .into(),
                    );
                }
                on_record(
                    pos,
                    Err(BadRecord {
                        column: "*".into(),
                        reason: "not valid UTF-8".into(),
                    }),
                );
                continue;
            }
        };
        let read = |text| json_record(fast.as_ref(), text, specs);
        let record = read(text);
        // Kinesis Firehose concatenates records without a newline unless told to add one: a
        // line of several whole objects is read as that many records.
        if let Err(bad) = &record
            && bad.reason.contains("trailing characters")
            && let Some(objects) = concatenated_objects(text)
        {
            let line_start = pos.byte.unwrap_or(0);
            for (start, end) in objects {
                let at = Position {
                    line: pos.line,
                    byte: Some(line_start + start),
                };
                on_record(at, read(&text[start..end]));
            }
            continue;
        }
        on_record(pos, record);
    }
    Ok(())
}

/// The fields of one JSON object's text, through the fast reader when there is one.
fn json_record<'t>(
    fast: Option<&super::json::JsonFields>,
    text: &'t str,
    specs: &[FieldSpec],
) -> Result<Fields<'t>, BadRecord> {
    match fast {
        Some(fast) => fast.read(text).map_err(|e| BadRecord {
            column: "*".into(),
            reason: match e {
                super::json::LineError::NotObject => "a JSON line must be an object".into(),
                super::json::LineError::Syntax(e) => format!("not a JSON object: {e}"),
            },
        }),
        None => whole_line(text, specs),
    }
}

/// The byte ranges of the JSON objects written one after another on one line (`{…}{…}`,
/// optionally with blanks between), or `None` when the line is not wholly such objects.
fn concatenated_objects(line: &str) -> Option<Vec<(usize, usize)>> {
    let mut stream = serde_json::Deserializer::from_str(line).into_iter::<serde::de::IgnoredAny>();
    let mut ranges = Vec::new();
    let mut start = 0;
    while let Some(next) = stream.next() {
        next.ok()?;
        let end = stream.byte_offset();
        let begin = start + line[start..end].len() - line[start..end].trim_start().len();
        if !line[begin..].starts_with('{') {
            return None;
        }
        ranges.push((begin, end));
        start = end;
    }
    (ranges.len() > 1).then_some(ranges)
}

/// The fields of one JSON line read through a whole `serde_json::Value` (the reference for
/// `json::JsonFields`).
fn whole_line(text: &str, specs: &[FieldSpec]) -> Result<Fields<'static>, BadRecord> {
    let object: serde_json::Value = serde_json::from_str(text).map_err(|e| BadRecord {
        column: "*".into(),
        reason: format!("not a JSON object: {e}"),
    })?;
    if !object.is_object() {
        return Err(BadRecord {
            column: "*".into(),
            reason: "a JSON line must be an object".into(),
        });
    }
    Ok(specs
        .iter()
        .map(|spec| {
            spec.names
                .iter()
                .find_map(|n| json_path(&object, n).and_then(json_value))
                .map(|v| match v {
                    // Detach from `object`, which ends here.
                    Value::Text(t) => Value::Text(Cow::Owned(t.into_owned())),
                    Value::Int(i) => Value::Int(i),
                    Value::Float(f) => Value::Float(f),
                    Value::Micros(m) => Value::Micros(m),
                })
        })
        .collect())
}

/// A column of a batch by dotted path through struct columns (the literal name first).
fn parquet_column(batch: &RecordBatch, path: &str) -> Option<ArrayRef> {
    if let Some(c) = batch.column_by_name(path) {
        return Some(c.clone());
    }
    let mut parts = path.split('.');
    let mut current = batch.column_by_name(parts.next()?)?.clone();
    for part in parts {
        let s: &StructArray = current.as_struct_opt()?;
        current = s.column_by_name(part)?.clone();
    }
    Some(current)
}

pub(crate) fn parquet_value(
    array: &ArrayRef,
    row: usize,
) -> Result<Option<Value<'static>>, String> {
    if array.is_null(row) {
        return Ok(None);
    }
    use deltalake::arrow::datatypes as t;
    let micros = |v: i64, unit: &TimeUnit| match unit {
        TimeUnit::Second => v.checked_mul(1_000_000),
        TimeUnit::Millisecond => v.checked_mul(1_000),
        TimeUnit::Microsecond => Some(v),
        TimeUnit::Nanosecond => Some(v.div_euclid(1_000)),
    };
    Ok(Some(match array.data_type() {
        DataType::Utf8 => Value::Text(Cow::Owned(
            array.as_string::<i32>().value(row).trim().into(),
        )),
        DataType::LargeUtf8 => Value::Text(Cow::Owned(
            array.as_string::<i64>().value(row).trim().into(),
        )),
        DataType::Utf8View => {
            Value::Text(Cow::Owned(array.as_string_view().value(row).trim().into()))
        }
        DataType::Int8 => Value::Int(array.as_primitive::<t::Int8Type>().value(row).into()),
        DataType::Int16 => Value::Int(array.as_primitive::<t::Int16Type>().value(row).into()),
        DataType::Int32 => Value::Int(array.as_primitive::<t::Int32Type>().value(row).into()),
        DataType::Int64 => Value::Int(array.as_primitive::<t::Int64Type>().value(row)),
        DataType::UInt8 => Value::Int(array.as_primitive::<t::UInt8Type>().value(row).into()),
        DataType::UInt16 => Value::Int(array.as_primitive::<t::UInt16Type>().value(row).into()),
        DataType::UInt32 => Value::Int(array.as_primitive::<t::UInt32Type>().value(row).into()),
        DataType::UInt64 => {
            let v = array.as_primitive::<t::UInt64Type>().value(row);
            Value::Text(Cow::Owned(v.to_string()))
        }
        DataType::Float32 => Value::Float(array.as_primitive::<t::Float32Type>().value(row).into()),
        DataType::Float64 => Value::Float(array.as_primitive::<t::Float64Type>().value(row)),
        DataType::Boolean => Value::Text(Cow::Borrowed(if array.as_boolean().value(row) {
            "true"
        } else {
            "false"
        })),
        DataType::Date32 => {
            let days = array.as_primitive::<t::Date32Type>().value(row);
            Value::Micros(i64::from(days) * 86_400_000_000)
        }
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<t::TimestampSecondType>().value(row),
                TimeUnit::Millisecond => array
                    .as_primitive::<t::TimestampMillisecondType>()
                    .value(row),
                TimeUnit::Microsecond => array
                    .as_primitive::<t::TimestampMicrosecondType>()
                    .value(row),
                TimeUnit::Nanosecond => array
                    .as_primitive::<t::TimestampNanosecondType>()
                    .value(row),
            };
            Value::Micros(micros(v, unit).ok_or("the timestamp is out of range")?)
        }
        other => return Err(format!("a {other} column cannot be read as this field")),
    }))
}

fn read_parquet(
    body: &bytes::Bytes,
    specs: &[FieldSpec],
    on_record: &mut impl FnMut(Position, Result<Fields<'_>, BadRecord>),
) -> Result<(), FileError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(body.clone())
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let schema = builder.schema().clone();
    let reader = builder
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let mut row_no = 0u64;
    let mut checked = false;
    for batch in reader {
        let batch = batch.map_err(|e| format!("cannot read row group: {e}"))?;
        let columns: Vec<Option<(String, ArrayRef)>> = specs
            .iter()
            .map(|spec| {
                spec.names
                    .iter()
                    .find_map(|n| parquet_column(&batch, n).map(|c| (n.clone(), c)))
            })
            .collect();
        if !checked {
            checked = true;
            if let Some(spec) = specs
                .iter()
                .zip(&columns)
                .find(|(s, c)| s.required && c.is_none())
                .map(|(s, _)| s)
            {
                let shown: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(format!(
                    "no column {} in the Parquet schema ({}); set [events] {} to the right name",
                    spec.describe(),
                    shown.join(","),
                    spec.setting
                ));
            }
        }
        for row in 0..batch.num_rows() {
            row_no += 1;
            let pos = Position {
                line: row_no,
                byte: None,
            };
            let mut fields = Vec::with_capacity(specs.len());
            let mut bad = None;
            for column in &columns {
                match column {
                    None => fields.push(None),
                    Some((name, array)) => match parquet_value(array, row) {
                        Ok(v) => fields.push(v),
                        Err(reason) => {
                            bad = Some(BadRecord {
                                column: name.clone(),
                                reason,
                            });
                            break;
                        }
                    },
                }
            }
            on_record(pos, bad.map_or(Ok(fields), Err));
        }
    }
    Ok(())
}

/// The text of the line starting at `offset`, as a reject keeps it (at most 1,000 bytes).
pub(crate) fn raw_line(body: &[u8], offset: usize) -> String {
    let rest = body.get(offset..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = &rest[..end.min(1000)];
    String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(names: &[&str], required: bool) -> FieldSpec {
        FieldSpec {
            names: names.iter().map(|s| s.to_string()).collect(),
            setting: "user_column",
            required,
        }
    }

    fn collect(format: Format, body: &'static [u8], specs: &[FieldSpec]) -> Vec<String> {
        let mut out = Vec::new();
        read_records(
            format,
            &bytes::Bytes::from_static(body),
            b',',
            specs,
            |p, r| {
                out.push(match r {
                    Ok(f) => format!(
                        "{}:{}",
                        p.line,
                        f.iter()
                            .map(|v| v.as_ref().map_or("-".into(), |v| v.text().into_owned()))
                            .collect::<Vec<_>>()
                            .join("|")
                    ),
                    Err(b) => format!("{}:!{}:{}", p.line, b.column, b.reason),
                })
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn json_paths_first_present_and_rejects() {
        let body = b"{\"userId\":\"u1\",\"properties\":{\"product_id\":\"SKU-1\"}}\n\
                     {\"anonymousId\":\"a2\",\"properties\":{\"sku\":7}}\n\
                     \n\
                     not json\n\
                     {\"userId\":null,\"anonymousId\":\"a3\",\"properties.product_id\":\"lit\"}\n";
        let specs = [
            spec(&["userId", "anonymousId"], true),
            spec(&["properties.product_id", "properties.sku"], true),
        ];
        let got = collect(Format::JsonLines, body, &specs);
        assert_eq!(got[0], "1:u1|SKU-1");
        assert_eq!(got[1], "2:a2|7");
        assert!(got[2].starts_with("4:!*:not a JSON object"), "{}", got[2]);
        assert_eq!(got[3], "5:a3|lit");
    }

    #[test]
    fn the_fast_json_reader_reads_what_the_whole_object_reader_reads() {
        let specs = [
            spec(&["userId", "anonymousId"], true),
            spec(&["properties.product_id", "properties.sku"], true),
            spec(&["rating"], false),
            spec(&["context.page.path"], false),
            spec(&["flag"], false),
        ];
        let fast = crate::ingest::json::JsonFields::new(&specs).expect("no ambiguous key");
        let lines = [
            r#"{"userId":"u1","properties":{"product_id":"SKU-1"},"rating":4.5}"#,
            r#"{"userId":null,"anonymousId":"  a2 ","properties":{"sku":7}}"#,
            r#"{"userId":"","anonymousId":"a3","properties.product_id":"lit","properties":{"product_id":"nested"}}"#,
            r#"{"userId":"esc"apedé","properties":{"product_id":18446744073709551615},"rating":-3}"#,
            r#"{"userId":{"id":1},"properties":"not an object","rating":[1,2],"flag":true}"#,
            r#"{"userId":"u5","properties":{"product_id":["a"]},"context":{"page":{"path":"/x"}}}"#,
            r#"{"userId":"u6","userId":"u7","properties":{"sku":"s","product_id":null},"rating":1e3}"#,
            r#"{"a":{"b":[{"c":{}}]},"userId":"u8","context":{"page":5}}"#,
            r#"[1, 2]"#,
            r#""just a string""#,
            r#"{"userId":"u9""#,
            r#"{"userId":"u9"} trailing"#,
        ];
        let show = |r: Result<Fields<'_>, BadRecord>| match r {
            Ok(f) => format!("{f:?}"),
            Err(b) => b.reason.split(':').next().unwrap_or_default().to_string(),
        };
        for line in lines {
            let reference = show(whole_line(line, &specs));
            let read = show(fast.read(line).map_err(|e| BadRecord {
                column: "*".into(),
                reason: match e {
                    crate::ingest::json::LineError::NotObject => {
                        "a JSON line must be an object".into()
                    }
                    crate::ingest::json::LineError::Syntax(e) => format!("not a JSON object: {e}"),
                },
            }));
            assert_eq!(read, reference, "{line}");
        }
        // A name that is also the start of a longer path is read whole.
        assert!(
            crate::ingest::json::JsonFields::new(&[spec(&["properties", "properties.sku"], true)])
                .is_none()
        );
    }

    #[test]
    fn objects_concatenated_on_one_line_are_records_of_their_own() {
        // As Kinesis Firehose writes records without a newline delimiter.
        let body: &[u8] =
            b"{\"u\":\"a\",\"i\":\"x\"}{\"u\":\"b\",\"i\":\"y\"} {\"u\":\"c\",\"i\":\"z\"}\n\
            {\"u\":\"d\",\"i\":\"w\"}{broken\n";
        let specs = [spec(&["u"], true), spec(&["i"], true)];
        let got = collect(Format::JsonLines, body, &specs);
        assert_eq!(got[..3], ["1:a|x", "1:b|y", "1:c|z"], "{got:?}");
        // A line that is not wholly objects stays one reject.
        assert!(got[3].starts_with("2:!*:not a JSON object"), "{got:?}");
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            concatenated_objects("{\"a\":\"}{\"} {\"b\":2}"),
            Some(vec![(0, 10), (11, 18)])
        );
        assert_eq!(concatenated_objects("{\"a\":1} 7"), None);
    }

    #[test]
    fn csv_header_lookup() {
        let specs = [spec(&["USER_ID", "user_id"], true), spec(&["x"], false)];
        let got = collect(Format::Csv, b"user_id,b\nu1,2\n\nu2\n", &specs);
        assert_eq!(
            got,
            ["2:u1|-", "4:!*:expected 2 fields like the header, found 1"]
        );
        let mut seen = 0;
        let e = read_records(
            Format::Csv,
            &bytes::Bytes::from_static(b"a,b\n1,2\n"),
            b',',
            &specs,
            |_, _| seen += 1,
        )
        .unwrap_err();
        assert!(
            e.contains("no column 'USER_ID' or 'user_id' in the header (a,b)"),
            "{e}"
        );
        assert_eq!(seen, 0);
    }
}
