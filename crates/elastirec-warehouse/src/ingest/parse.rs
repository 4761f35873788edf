//! Raw event and item files parsed into Arrow rows, with a [`Reject`] (file, line, column,
//! reason) for every row that cannot be loaded.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};

use elastirec_core::Night;
use elastirec_core::config::{EventsConfig, TimestampFormat};
use elastirec_core::layout::Table;

use crate::tables::schema;
use crate::{Error, Result};

/// A row that could not be loaded, as written to `warehouse/rejects`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub file: String,
    pub line: u64,
    /// The offending column's header name, or `*` for the row as a whole.
    pub column: String,
    pub reason: String,
    pub raw_line: String,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: column '{}': {}",
            self.file, self.line, self.column, self.reason
        )
    }
}

/// The loadable rows of one raw file and the rows it rejected.
pub(crate) struct ParsedEvents {
    pub batch: RecordBatch,
    pub rejects: Vec<Reject>,
}

/// The text of the line starting at `offset`, for reject records.
fn raw_line(body: &[u8], offset: usize) -> String {
    let rest = body.get(offset..).unwrap_or(&[]);
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .trim_end_matches('\r')
        .to_string()
}

/// Parses one raw event file of `day` into `warehouse/events` rows.
///
/// A malformed row becomes a [`Reject`] naming the file, line, column and reason; a header that
/// lacks a configured column fails the whole file.
pub(crate) fn parse_events(
    file: &str,
    day: Night,
    body: &[u8],
    cfg: &EventsConfig,
) -> Result<ParsedEvents> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(cfg.delimiter as u8)
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let header = reader
        .byte_headers()
        .map_err(|e| Error::BadFile {
            file: file.into(),
            reason: format!("cannot read the header line: {e}"),
        })?
        .clone();
    let names: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let find = |wanted: &str, setting: &str| {
        names
            .iter()
            .position(|n| n == wanted)
            .ok_or_else(|| Error::BadFile {
                file: file.into(),
                reason: format!(
                    "no column '{wanted}' in the header ({}); set [events] {setting} to the right \
                     name",
                    names.join(",")
                ),
            })
    };
    let user_col = find(&cfg.user_column, "user_column")?;
    let item_col = find(&cfg.item_column, "item_column")?;
    // No value column (clickstreams): every event has the value 1, weighted by its type in
    // `prepare`.
    let value_col = if cfg.value_column.is_empty() {
        None
    } else {
        Some(find(&cfg.value_column, "value_column")?)
    };
    let time_col = find(&cfg.timestamp_column, "timestamp_column")?;
    let type_col = match &cfg.event_type_column {
        Some(c) => Some(find(c, "event_type_column")?),
        None => None,
    };
    // Events may stray from their folder's day by the tolerance (clock skew, late uploads).
    let tolerance = i64::from(cfg.day_tolerance_hours) * 3_600_000_000;
    let earliest = day.start_unix_seconds() * 1_000_000 - tolerance;
    let latest = day.next().start_unix_seconds() * 1_000_000 - 1 + tolerance;

    let mut users = Vec::new();
    let mut items = Vec::new();
    let mut values = Vec::new();
    let mut times = Vec::new();
    let mut dates = Vec::new();
    let mut types: Vec<Option<String>> = Vec::new();
    let mut rejects = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let position = reader.position().clone();
        let more = match reader.read_byte_record(&mut record) {
            Ok(more) => more,
            Err(e) => {
                let line = e.position().map_or(position.line(), |p| p.line());
                rejects.push(Reject {
                    file: file.into(),
                    line,
                    column: "*".into(),
                    reason: format!("unreadable CSV: {e}"),
                    raw_line: raw_line(body, position.byte() as usize),
                });
                // The reader cannot resynchronise after a CSV syntax error.
                break;
            }
        };
        if !more {
            break;
        }
        let start = record.position().cloned().unwrap_or(position);
        let line = start.line();
        if record.len() == 1 && record[0].is_empty() {
            continue; // blank line
        }
        let reject = |column: &str, reason: String| Reject {
            file: file.into(),
            line,
            column: column.into(),
            reason,
            raw_line: raw_line(body, start.byte() as usize),
        };
        let row = (|| -> std::result::Result<_, Reject> {
            if record.len() != names.len() {
                return Err(reject(
                    "*",
                    format!(
                        "expected {} fields like the header, found {}",
                        names.len(),
                        record.len()
                    ),
                ));
            }
            let text = |i: usize, column: &str| {
                std::str::from_utf8(&record[i])
                    .map(str::trim)
                    .map_err(|_| reject(column, "not valid UTF-8".into()))
            };
            let id = |i: usize, column: &str| {
                let t = text(i, column)?;
                if t.is_empty() {
                    return Err(reject(column, "empty id".into()));
                }
                t.parse::<i64>()
                    .map_err(|_| reject(column, format!("'{t}' is not an integer id")))
            };
            let user = id(user_col, &cfg.user_column)?;
            let item = id(item_col, &cfg.item_column)?;
            let value: f32 = match value_col {
                Some(col) => {
                    let raw_value = text(col, &cfg.value_column)?;
                    raw_value
                        .parse()
                        .ok()
                        .filter(|v: &f32| v.is_finite())
                        .ok_or_else(|| {
                            reject(&cfg.value_column, format!("'{raw_value}' is not a number"))
                        })?
                }
                None => 1.0,
            };
            let below = cfg.value_min.is_some_and(|m| value < m);
            let above = cfg.value_max.is_some_and(|m| value > m);
            if below || above {
                return Err(reject(
                    &cfg.value_column,
                    format!(
                        "{value} is outside the configured scale {}..{} ([events] value_min, \
                         value_max)",
                        cfg.value_min.map_or("".into(), |v| v.to_string()),
                        cfg.value_max.map_or("".into(), |v| v.to_string())
                    ),
                ));
            }
            let raw_time = text(time_col, &cfg.timestamp_column)?;
            let micros = parse_timestamp(raw_time, cfg.timestamp_format).ok_or_else(|| {
                reject(
                    &cfg.timestamp_column,
                    format!(
                        "'{raw_time}' is not a timestamp in the configured format ({:?}); set \
                         [events] timestamp_format",
                        cfg.timestamp_format
                    ),
                )
            })?;
            if micros < earliest || micros > latest {
                return Err(reject(
                    &cfg.timestamp_column,
                    format!(
                        "'{raw_time}' is outside the file's day {day} by more than {} hours \
                         ([events] day_tolerance_hours)",
                        cfg.day_tolerance_hours
                    ),
                ));
            }
            let event_day =
                Night::of_unix_seconds(micros.div_euclid(1_000_000)).ok_or_else(|| {
                    reject(
                        &cfg.timestamp_column,
                        format!("'{raw_time}' is out of range"),
                    )
                })?;
            let event_type = match type_col {
                Some(i) => {
                    let t = text(i, cfg.event_type_column.as_deref().unwrap_or(""))?;
                    (!t.is_empty()).then(|| t.to_string())
                }
                None => None,
            };
            Ok((user, item, value, micros, event_day, event_type))
        })();
        match row {
            Ok((user, item, value, micros, event_day, event_type)) => {
                users.push(user);
                items.push(item);
                values.push(value);
                times.push(micros);
                dates.push(event_day.days_since_epoch());
                types.push(event_type);
            }
            Err(r) => rejects.push(r),
        }
    }
    let n = users.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(users)),
        Arc::new(Int64Array::from(items)),
        Arc::new(Float32Array::from(values)),
        Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
        Arc::new(StringArray::from(types)),
        Arc::new(StringArray::from(vec![file; n])),
        Arc::new(Date32Array::from(dates)),
    ];
    let batch = RecordBatch::try_new(schema(Table::Events), columns)
        .map_err(|e| Error::Internal(format!("events batch for {file}: {e}")))?;
    Ok(ParsedEvents { batch, rejects })
}

/// Rejects as a batch of `warehouse/rejects` rows.
pub(super) fn rejects_batch(rejects: &[Reject], night: Night) -> Result<RecordBatch> {
    let now = chrono::Utc::now().timestamp_micros();
    let n = rejects.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rejects.iter().map(|r| r.file.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            rejects.iter().map(|r| r.line as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            rejects.iter().map(|r| r.column.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rejects.iter().map(|r| r.reason.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rejects.iter().map(|r| r.raw_line.as_str()),
        )),
        Arc::new(Date32Array::from(vec![night.days_since_epoch(); n])),
        Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
    ];
    RecordBatch::try_new(schema(Table::Rejects), columns)
        .map_err(|e| Error::Internal(format!("rejects batch: {e}")))
}

fn parse_timestamp(raw: &str, format: TimestampFormat) -> Option<i64> {
    match format {
        TimestampFormat::UnixSeconds => match raw.parse::<i64>() {
            Ok(s) => s.checked_mul(1_000_000),
            Err(_) => raw
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && s.abs() < 1e12)
                .map(|s| (s * 1e6).round() as i64),
        },
        TimestampFormat::UnixMillis => raw.parse::<i64>().ok()?.checked_mul(1_000),
        TimestampFormat::Rfc3339 => chrono::DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| t.timestamp_micros()),
    }
}

/// Parses an item file: a header, then `id,title,genres` (RFC 4180 quoting).
pub(super) fn parse_items(file: &str, body: &[u8]) -> Result<Vec<(i64, String, String)>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| Error::BadFile {
            file: file.into(),
            reason: format!("unreadable item CSV: {e}"),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() < 2 {
            return Err(Error::BadRow {
                file: file.into(),
                line,
                column: "*".into(),
                reason: "expected id,title,genres".into(),
            });
        }
        let id = record[0].trim().parse().map_err(|_| Error::BadRow {
            file: file.into(),
            line,
            column: "movieId".into(),
            reason: format!("'{}' is not an integer id", &record[0]),
        })?;
        out.push((
            id,
            record[1].to_string(),
            record.get(2).unwrap_or("").to_string(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_configured_columns_and_rejects_bad_rows() {
        let cfg = EventsConfig::default();
        let day: Night = "1997-12-04".parse().unwrap();
        let body = b"userId,movieId,rating,timestamp\n1,10,4.0,881250949\n2,11,3.5,881250950\n";
        let p = parse_events("raw/events/1997/12/04/a.csv", day, body, &cfg).unwrap();
        assert_eq!((p.batch.num_rows(), p.rejects.len()), (2, 0));
        let bad = b"userId,movieId,rating,timestamp\n1,10,4.0,881250949\n2,x,3.5,881250950\n";
        let p = parse_events("f.csv", day, bad, &cfg).unwrap();
        assert_eq!(p.batch.num_rows(), 1);
        assert_eq!(
            p.rejects[0].to_string(),
            "f.csv:3: column 'movieId': 'x' is not an integer id"
        );
        assert_eq!(p.rejects[0].raw_line, "2,x,3.5,881250950");
        let e = parse_events("f.csv", day, b"user,item\n1,2\n", &cfg)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("set [events] user_column"), "{e}");
    }

    #[test]
    fn timestamp_formats() {
        assert_eq!(
            parse_timestamp("10", TimestampFormat::UnixSeconds),
            Some(10_000_000)
        );
        assert_eq!(
            parse_timestamp("10.5", TimestampFormat::UnixSeconds),
            Some(10_500_000)
        );
        assert_eq!(
            parse_timestamp("10", TimestampFormat::UnixMillis),
            Some(10_000)
        );
        assert_eq!(
            parse_timestamp("1970-01-01T00:00:01Z", TimestampFormat::Rfc3339),
            Some(1_000_000)
        );
        assert_eq!(parse_timestamp("x", TimestampFormat::UnixSeconds), None);
    }
}
