//! Raw event and item files parsed into rows, with a [`Reject`] (file, line, column, reason)
//! for every row that cannot be loaded.
//!
//! Parsing is per file and needs nothing but the file: ids stay as the producer wrote them
//! ([`ParsedIds`]: numeric ids as themselves, other strings interned per file) until the load
//! resolves them through the dictionary, after erased users' rows and duplicates are dropped.

use std::sync::Arc;

use chrono::TimeZone;
use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};

use elastirec_core::Night;
use elastirec_core::config::{EventMapping, TimestampFormat};
use elastirec_core::ids::{
    DICTIONARY_BASE, IdDictionary, IdKind, IdNames, check_external, numeric_id,
};
use elastirec_core::layout::Table;

use super::formats::{self, FileKind};
use super::records::{self, FieldSpec, Value};
use crate::tables::schema;
use crate::{Error, Result};

/// A row that could not be loaded, as written to `warehouse/rejects`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub file: String,
    /// The line (CSV, JSON lines) or row (Parquet), 1-based; 0 for a file that cannot be read.
    pub line: u64,
    /// The offending field's name, or `*` for the row or file as a whole.
    pub column: String,
    pub reason: String,
    pub raw_line: String,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(
                f,
                "{}:{}: column '{}': {}",
                self.file, self.line, self.column, self.reason
            )
        }
    }
}

/// Ids of one column as a file wrote them: a numeric id as itself (`>= 0`), any other string
/// as `-(k + 1)` for the k-th distinct string of the file in `names`.
///
/// While the file is parsed the strings live in `index` only (one allocation per distinct
/// string, one hash per row); [`ParsedIds::finish`] moves them into `names`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParsedIds {
    pub(crate) ids: Vec<i64>,
    pub(crate) names: Vec<String>,
    index: foldhash::HashMap<String, i64>,
}

impl ParsedIds {
    /// Records a row's id: a numeric id as itself, a string the dictionary already has (as of
    /// the load's part) as its dictionary id, any other string interned.
    fn push(&mut self, external: std::borrow::Cow<'_, str>, known: &IdNames) {
        let id = match numeric_id(&external).or_else(|| known.named(&external)) {
            Some(id) => id,
            None => {
                let next = -(self.index.len() as i64) - 1;
                *self.index.entry(external.into_owned()).or_insert(next)
            }
        };
        self.ids.push(id);
    }

    /// Moves the interned strings into `names`, in placeholder order; called once the file is
    /// read.
    fn finish(&mut self) {
        let mut names: Vec<(i64, String)> = self.index.drain().map(|(n, k)| (k, n)).collect();
        names.sort_unstable_by_key(|(k, _)| std::cmp::Reverse(*k));
        self.names = names.into_iter().map(|(_, n)| n).collect();
    }

    /// The external id of row `row`; `None` for a string the dictionary already had (given
    /// its dictionary id while the file was read).
    pub(crate) fn external(&self, row: usize) -> Option<std::borrow::Cow<'_, str>> {
        let id = self.ids[row];
        if id >= DICTIONARY_BASE {
            None
        } else if id >= 0 {
            Some(std::borrow::Cow::Owned(id.to_string()))
        } else {
            Some(std::borrow::Cow::Borrowed(&self.names[(-id - 1) as usize]))
        }
    }

    /// Which of `names` rows still use (after erased users' and duplicate rows were dropped).
    pub(crate) fn used(&self) -> Vec<bool> {
        let mut used = vec![false; self.names.len()];
        for &id in &self.ids {
            if id < 0 {
                used[(-id - 1) as usize] = true;
            }
        }
        used
    }
}

/// The loadable rows of one raw file, the rows it rejected, and what it skipped.
#[derive(Debug, Default)]
pub(crate) struct ParsedEvents {
    pub(crate) users: ParsedIds,
    pub(crate) items: ParsedIds,
    pub(crate) values: Vec<f32>,
    pub(crate) times: Vec<i64>,
    pub(crate) dates: Vec<i32>,
    pub(crate) types: Vec<Option<String>>,
    pub(crate) event_ids: Vec<Option<String>>,
    /// `[items] from_events` values by the item's external id: those of its latest event in
    /// the file (in the order of `ParseSettings::attributes`).
    pub(crate) attributes: foldhash::HashMap<String, (i64, Vec<Option<String>>)>,
    pub(crate) rejects: Vec<Reject>,
    /// Records of other kinds (Segment's identify, page, screen calls), skipped.
    pub(crate) skipped: u64,
    /// A file that is not a data file (a marker such as `_SUCCESS`), skipped whole.
    pub(crate) marker: bool,
    /// The file could not be read at all; its one reject says why.
    pub(crate) unreadable: bool,
}

impl ParsedEvents {
    /// A file that cannot be read at all: one reject (line 0) saying why, nothing to load.
    pub(crate) fn unreadable_file(file: &str, reason: String) -> ParsedEvents {
        let mut out = ParsedEvents {
            unreadable: true,
            ..ParsedEvents::default()
        };
        out.rejects.push(unreadable_reject(file, reason));
        out
    }

    /// Rows to load.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// Keeps the rows whose `keep` is true.
    pub(crate) fn retain(&mut self, keep: &[bool]) {
        fn filter<T: Clone>(v: &mut Vec<T>, keep: &[bool]) {
            let mut i = 0;
            v.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        filter(&mut self.users.ids, keep);
        filter(&mut self.items.ids, keep);
        filter(&mut self.values, keep);
        filter(&mut self.times, keep);
        filter(&mut self.dates, keep);
        filter(&mut self.types, keep);
        filter(&mut self.event_ids, keep);
    }

    /// The rows as a `warehouse/events` batch, with the file's interned strings (`-(k + 1)`)
    /// given the dictionary ids `users[k]` and `items[k]`.
    pub(crate) fn batch(&self, file: &str, users: &[i64], items: &[i64]) -> Result<RecordBatch> {
        let n = self.len();
        let resolve = |ids: &[i64], names: &[i64]| -> Result<Int64Array> {
            ids.iter()
                .map(|&i| {
                    if i >= 0 {
                        Ok(i)
                    } else {
                        names.get((-i - 1) as usize).copied().ok_or_else(|| {
                            Error::Internal(format!("an id of {file} has no dictionary id"))
                        })
                    }
                })
                .collect()
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(resolve(&self.users.ids, users)?),
            Arc::new(resolve(&self.items.ids, items)?),
            Arc::new(Float32Array::from(self.values.clone())),
            Arc::new(TimestampMicrosecondArray::from(self.times.clone()).with_timezone("UTC")),
            Arc::new(StringArray::from(self.types.clone())),
            Arc::new(StringArray::from(vec![file; n])),
            Arc::new(Date32Array::from(self.dates.clone())),
            Arc::new(StringArray::from(self.event_ids.clone())),
        ];
        RecordBatch::try_new(schema(Table::Events), columns)
            .map_err(|e| Error::Internal(format!("events batch for {file}: {e}")))
    }
}

fn spec(f: &elastirec_core::config::FieldMapping) -> FieldSpec {
    FieldSpec {
        names: f.names.clone(),
        setting: f.setting,
        required: f.required,
    }
}

/// What [`parse_events`] needs of `[events]`.
#[derive(Debug, Clone)]
pub(crate) struct ParseSettings {
    pub(crate) mapping: EventMapping,
    pub(crate) format: elastirec_core::config::EventFormat,
    pub(crate) delimiter: u8,
    pub(crate) day_tolerance_hours: u32,
    pub(crate) value_min: Option<f32>,
    pub(crate) value_max: Option<f32>,
    /// Event fields that are item attributes (`[items] from_events`).
    pub(crate) attributes: Vec<String>,
}

impl ParseSettings {
    /// The settings of `[events]`; an error names the key to fix.
    pub(crate) fn of(events: &elastirec_core::config::EventsConfig) -> Result<ParseSettings> {
        Ok(ParseSettings {
            mapping: events
                .mapping()
                .map_err(|e| Error::Lake(elastirec_core::Error::Config(e)))?,
            format: events.format,
            delimiter: events.delimiter as u8,
            day_tolerance_hours: events.day_tolerance_hours,
            value_min: events.value_min,
            value_max: events.value_max,
            attributes: Vec::new(),
        })
    }
}

// The order of the fields `parse_events` asks the reader for.
const USER: usize = 0;
const ITEM: usize = 1;
const VALUE: usize = 2;
const TIME: usize = 3;
const TYPE: usize = 4;
const EVENT_ID: usize = 5;
const RECORD_TYPE: usize = 6;

/// The largest event value accepted, in magnitude: a finite `3e38` would overflow the sums of
/// `prepare` to infinity and poison every later night, while no rating, count or price comes
/// near this.
pub(crate) const MAX_ABS_VALUE: f32 = 1e9;

/// The one reject of a file that cannot be read at all.
fn unreadable_reject(file: &str, reason: String) -> Reject {
    Reject {
        file: file.into(),
        line: 0,
        column: "*".into(),
        reason: format!(
            "{reason} (to load the other files, move this one out of the raw folder or run \
             `elastirec ingest --skip-file {file}`)"
        ),
        raw_line: String::new(),
    }
}

/// Parses one raw event file that arrived on `day` into `warehouse/events` rows.
///
/// A malformed row becomes a [`Reject`] naming the file, line, column and reason; a file that
/// cannot be read at all (unknown format, corrupt compression, a header without a configured
/// field) becomes one reject with line 0, and loads nothing.
pub(crate) fn parse_events(
    file: &str,
    day: Night,
    body: bytes::Bytes,
    settings: &ParseSettings,
    known: &IdDictionary,
) -> ParsedEvents {
    let ParseSettings {
        mapping,
        format,
        delimiter,
        day_tolerance_hours,
        value_min,
        value_max,
        attributes,
    } = settings;
    let (format, delimiter, day_tolerance_hours) = (*format, *delimiter, *day_tolerance_hours);
    let (value_min, value_max) = (*value_min, *value_max);
    let mut out = ParsedEvents::default();
    let name = file.rsplit('/').next().unwrap_or(file);
    let unreadable = |out: &mut ParsedEvents, reason: String| {
        out.unreadable = true;
        out.rejects.push(unreadable_reject(file, reason));
    };
    let (format, compression) = match formats::classify(name, format) {
        Ok(FileKind::Marker) => {
            out.marker = true;
            return out;
        }
        Ok(FileKind::Data(f, c)) => (f, c),
        Err(reason) => {
            unreadable(&mut out, format!("cannot tell how to read it: {reason}"));
            return out;
        }
    };
    let body = match formats::decompress(body, compression) {
        Ok(b) => b,
        Err(reason) => {
            unreadable(&mut out, reason);
            return out;
        }
    };
    let format = match format.map_or_else(|| formats::content_format(&body, delimiter), Ok) {
        Ok(f) => f,
        Err(reason) => {
            unreadable(&mut out, format!("cannot tell how to read it: {reason}"));
            return out;
        }
    };
    let mut specs = vec![
        spec(&mapping.user),
        spec(&mapping.item),
        spec(&mapping.value),
        spec(&mapping.timestamp),
        spec(&mapping.event_type),
        spec(&mapping.event_id),
        spec(&mapping.record_type),
    ];
    specs.extend(attributes.iter().map(|name| FieldSpec {
        names: vec![name.clone()],
        setting: "[items] from_events",
        required: false,
    }));
    // Events may lie ahead of their folder's day by the tolerance (clock skew); events before
    // it (late arrivals, a backfill of history) load on the day of their own time.
    let tolerance = i64::from(day_tolerance_hours) * 3_600_000_000;
    let latest = day.next().start_unix_seconds() * 1_000_000 - 1 + tolerance;
    let mut rejects = Vec::new();
    let result = records::read_records(format, &body, delimiter, &specs, |pos, record| {
        let reject = |column: &str, reason: String| Reject {
            file: file.into(),
            line: pos.line,
            column: column.into(),
            reason,
            raw_line: pos
                .byte
                .map(|b| records::raw_line(&body, b))
                .unwrap_or_default(),
        };
        let fields = match record {
            Ok(f) => f,
            Err(bad) => {
                rejects.push(reject(&bad.column, bad.reason));
                return;
            }
        };
        if !mapping.record_types.is_empty()
            && let Some(kind) = &fields[RECORD_TYPE]
            && !mapping.record_types.iter().any(|t| *t == kind.text())
        {
            out.skipped += 1;
            return;
        }
        let field_name = |i: usize| specs[i].names.first().map_or("*", String::as_str);
        let row = (|| -> std::result::Result<_, Reject> {
            let id = |i: usize| {
                let Some(v) = &fields[i] else {
                    return Err(reject(
                        field_name(i),
                        format!(
                            "no {} id ([events] {})",
                            if i == USER { "user" } else { "item" },
                            specs[i].setting
                        ),
                    ));
                };
                let text = v.text();
                if let Value::Float(_) = v {
                    return Err(reject(field_name(i), format!("'{text}' is not an id")));
                }
                check_external(&text).map_err(|why| reject(field_name(i), why))?;
                Ok::<_, Reject>(text)
            };
            let user = id(USER)?;
            let item = id(ITEM)?;
            let value: f32 = match &fields[VALUE] {
                None if specs[VALUE].names.is_empty() || !specs[VALUE].required => 1.0,
                None => return Err(reject(field_name(VALUE), "'' is not a number".into())),
                Some(Value::Int(i)) => *i as f32,
                Some(Value::Float(f)) => *f as f32,
                Some(other) => {
                    let t = other.text();
                    t.parse::<f32>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| {
                            reject(field_name(VALUE), format!("'{t}' is not a number"))
                        })?
                }
            };
            if !value.is_finite() {
                return Err(reject(
                    field_name(VALUE),
                    "the value is not a finite number".into(),
                ));
            }
            if value.abs() > MAX_ABS_VALUE {
                return Err(reject(
                    field_name(VALUE),
                    format!(
                        "{value:e} is larger than {MAX_ABS_VALUE:e} in magnitude: sums of such \
                         values overflow (fix the producer, or scale the column)"
                    ),
                ));
            }
            let below = value_min.is_some_and(|m| value < m);
            let above = value_max.is_some_and(|m| value > m);
            if below || above {
                return Err(reject(
                    field_name(VALUE),
                    format!(
                        "{value} is outside the configured scale {}..{} ([events] value_min, \
                         value_max)",
                        value_min.map_or("".into(), |v| v.to_string()),
                        value_max.map_or("".into(), |v| v.to_string())
                    ),
                ));
            }
            let Some(raw_time) = &fields[TIME] else {
                return Err(reject(field_name(TIME), "no timestamp".into()));
            };
            let micros = parse_time(raw_time, &mapping.timestamp_format, mapping.timezone)
                .ok_or_else(|| {
                    reject(
                        field_name(TIME),
                        format!(
                            "'{}' is not a timestamp in the configured format ({}); set [events] \
                             timestamp_format",
                            raw_time.text(),
                            mapping.timestamp_format.as_str()
                        ),
                    )
                })?;
            if micros > latest {
                return Err(reject(
                    field_name(TIME),
                    format!(
                        "'{}' is after the file's day {day} by more than {} hours ([events] \
                         day_tolerance_hours)",
                        raw_time.text(),
                        day_tolerance_hours
                    ),
                ));
            }
            let event_day =
                Night::of_unix_seconds(micros.div_euclid(1_000_000)).ok_or_else(|| {
                    reject(
                        field_name(TIME),
                        format!("'{}' is out of range", raw_time.text()),
                    )
                })?;
            let text = |i: usize| fields[i].as_ref().map(|v| v.text().into_owned());
            Ok((
                user,
                item,
                value,
                micros,
                event_day,
                text(TYPE),
                text(EVENT_ID),
            ))
        })();
        match row {
            Ok((user, item, value, micros, event_day, event_type, event_id)) => {
                if !attributes.is_empty() {
                    let values: Vec<Option<String>> = fields[RECORD_TYPE + 1..]
                        .iter()
                        .map(|v| v.as_ref().map(|v| v.text().into_owned()))
                        .collect();
                    if values.iter().any(Option::is_some) {
                        let latest = out.attributes.get(item.as_ref()).map(|(t, _)| *t);
                        if latest.is_none_or(|t| t <= micros) {
                            out.attributes.insert(item.to_string(), (micros, values));
                        }
                    }
                }
                out.users.push(user, known.of(IdKind::User));
                out.items.push(item, known.of(IdKind::Item));
                out.values.push(value);
                out.times.push(micros);
                out.dates.push(event_day.days_since_epoch());
                out.types.push(event_type);
                out.event_ids.push(event_id);
            }
            Err(r) => rejects.push(r),
        }
    });
    out.rejects = rejects;
    out.users.finish();
    out.items.finish();
    if let Err(reason) = result {
        // Rows read before the failure are not loaded: the file is rejected whole.
        out = ParsedEvents::default();
        unreadable(
            &mut out,
            format!("cannot read it as {}: {reason}", format.name()),
        );
    }
    out
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

/// A timestamp as UTC microseconds, per the configured format; `None` when it does not parse.
pub(crate) fn parse_time(
    value: &Value<'_>,
    format: &TimestampFormat,
    timezone: chrono_tz::Tz,
) -> Option<i64> {
    match (value, format) {
        (Value::Micros(m), _) => Some(*m),
        (Value::Int(s), TimestampFormat::UnixSeconds) => s.checked_mul(1_000_000),
        (Value::Int(ms), TimestampFormat::UnixMillis) => ms.checked_mul(1_000),
        (Value::Float(s), TimestampFormat::UnixSeconds) => {
            (s.is_finite() && s.abs() < 1e12).then(|| (s * 1e6).round() as i64)
        }
        (Value::Float(ms), TimestampFormat::UnixMillis) => {
            (ms.is_finite() && ms.abs() < 1e15).then(|| (ms * 1e3).round() as i64)
        }
        (v, f) => parse_timestamp(&v.text(), f, timezone),
    }
}

/// A timestamp written as text.
fn parse_timestamp(raw: &str, format: &TimestampFormat, timezone: chrono_tz::Tz) -> Option<i64> {
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
        TimestampFormat::Pattern(p) => {
            if let Ok(t) = chrono::DateTime::parse_from_str(raw, p) {
                return Some(t.timestamp_micros());
            }
            let local = match chrono::NaiveDateTime::parse_from_str(raw, p) {
                Ok(t) => t,
                Err(_) => chrono::NaiveDate::parse_from_str(raw, p)
                    .ok()?
                    .and_hms_opt(0, 0, 0)?,
            };
            // A local time that a clock change skips has no instant; one it repeats, the first.
            timezone
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.timestamp_micros())
        }
    }
}

/// Parses an item file: a header, then `id,title,genres` (RFC 4180 quoting); ids are external
/// ids, as in event files.
pub(super) fn parse_items(file: &str, body: &[u8]) -> Result<Vec<(String, String, String)>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let id_column = reader
        .headers()
        .ok()
        .and_then(|h| h.get(0).map(str::to_string))
        .unwrap_or_else(|| "id".into());
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
        let id = record[0].trim();
        check_external(id).map_err(|why| Error::BadRow {
            file: file.into(),
            line,
            column: id_column.clone(),
            reason: why,
        })?;
        out.push((
            id.to_string(),
            record[1].to_string(),
            record.get(2).unwrap_or("").to_string(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use elastirec_core::config::EventsConfig;

    fn parse(name: &str, body: &'static [u8], cfg: &EventsConfig) -> ParsedEvents {
        let day: Night = "1997-12-04".parse().unwrap();
        parse_events(
            name,
            day,
            bytes::Bytes::from_static(body),
            &ParseSettings::of(cfg).unwrap(),
            &IdDictionary::default(),
        )
    }

    #[test]
    fn numeric_ids_stay_and_strings_are_interned_per_file() {
        let cfg = EventsConfig::default();
        let body = b"userId,movieId,rating,timestamp\n1,10,4.0,881250949\nA7,10,3.5,881250950\n\
                     A7,007,2,881250951\n";
        let p = parse("raw/events/1997/12/04/a.csv", body, &cfg);
        assert!(p.rejects.is_empty(), "{:?}", p.rejects);
        assert_eq!(p.users.ids, [1, -1, -1]);
        assert_eq!(
            p.items.ids,
            [10, 10, -1],
            "'007' is a string id, kept as written"
        );
        assert_eq!(p.users.external(1).as_deref(), Some("A7"));
        assert_eq!(p.items.external(2).as_deref(), Some("007"));
        assert_eq!(p.values, [4.0, 3.5, 2.0]);
        // A string the dictionary already has gets its id while the file is read.
        let mut known = IdDictionary::default();
        known.users.insert(DICTIONARY_BASE + 5, "A7");
        let p = parse_events(
            "raw/events/1997/12/04/a.csv",
            "1997-12-04".parse().unwrap(),
            bytes::Bytes::from_static(body),
            &ParseSettings::of(&cfg).unwrap(),
            &known,
        );
        assert_eq!(p.users.ids, [1, DICTIONARY_BASE + 5, DICTIONARY_BASE + 5]);
        assert!(p.users.names.is_empty());
        assert_eq!(p.users.external(1), None);
        assert_eq!(p.items.ids, [10, 10, -1], "items are another id space");
    }

    #[test]
    fn huge_finite_values_are_rejected_not_summed_to_infinity() {
        let cfg = EventsConfig::default();
        let body = b"userId,movieId,rating,timestamp\n1,10,3e38,881250949\n2,10,-2e9,881250950\n\
                     3,10,1e9,881250951\n";
        let p = parse("raw/events/1997/12/04/a.csv", body, &cfg);
        assert_eq!(p.values, [1e9], "only the value within the bound loads");
        assert_eq!(p.rejects.len(), 2, "{:?}", p.rejects);
        let r = p.rejects[0].to_string();
        assert!(
            r.starts_with("raw/events/1997/12/04/a.csv:2: column 'rating'"),
            "{r}"
        );
        assert!(r.contains("larger than 1e9"), "{r}");
    }

    #[test]
    fn a_file_without_a_configured_field_is_one_reject() {
        let cfg = EventsConfig::default();
        let p = parse("f.csv", b"user,item\n1,2\n", &cfg);
        assert!(p.unreadable && p.len() == 0);
        let r = p.rejects[0].to_string();
        assert!(
            r.starts_with("f.csv: cannot read it as CSV: no column 'userId'"),
            "{r}"
        );
        assert!(
            r.contains("set [events] user_column") && r.contains("--skip-file f.csv"),
            "{r}"
        );
    }

    #[test]
    fn timestamp_formats() {
        let utc = chrono_tz::UTC;
        let text = |s: &'static str| Value::Text(std::borrow::Cow::Borrowed(s));
        let t = |v: Value<'_>, f: TimestampFormat| parse_time(&v, &f, utc);
        assert_eq!(
            t(text("10"), TimestampFormat::UnixSeconds),
            Some(10_000_000)
        );
        assert_eq!(
            t(text("10.5"), TimestampFormat::UnixSeconds),
            Some(10_500_000)
        );
        assert_eq!(t(Value::Int(10), TimestampFormat::UnixMillis), Some(10_000));
        assert_eq!(
            t(text("1970-01-01T01:00:01+01:00"), TimestampFormat::Rfc3339),
            Some(1_000_000)
        );
        let pattern = |p: &str| TimestampFormat::Pattern(p.into());
        assert_eq!(
            t(
                text("1970-01-01 00:00:02 UTC"),
                pattern("%Y-%m-%d %H:%M:%S UTC")
            ),
            Some(2_000_000)
        );
        assert_eq!(
            t(text("02-01-1970"), pattern("%d-%m-%Y")),
            Some(86_400_000_000)
        );
        let paris: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        assert_eq!(
            parse_time(&text("02-01-1970"), &pattern("%d-%m-%Y"), paris),
            Some(86_400_000_000 - 3_600_000_000)
        );
        assert_eq!(t(text("x"), TimestampFormat::UnixSeconds), None);
        assert_eq!(t(text("31-02-1970"), pattern("%d-%m-%Y")), None);
    }
}
