//! `[events]`: how raw event files are read: where they are, their format, which field is the
//! user, the item, the time, the type, the value and the event id, and how times are written.
//!
//! A preset (`movielens`, the default; `segment`; `personalize`) fills in the fields of a
//! known producer; any key set beside it overrides the preset's. [`EventsConfig::mapping`]
//! resolves both into the [`EventMapping`] the readers use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The producers whose files elastirec reads without any field mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventPreset {
    /// MovieLens' `ratings.csv` (what `import movielens` and `simulate` write): `userId`,
    /// `movieId`, `rating`, `timestamp` in unix seconds.
    Movielens,
    /// Segment / RudderStack track calls, one JSON object per line: `event` is the type,
    /// `userId` else `anonymousId` the user, `properties.product_id` else `properties.sku` the
    /// item, `timestamp` (RFC 3339) the time, `messageId` the event id; calls other than
    /// `track` (`identify`, `page`, `screen`, …) are skipped and counted.
    Segment,
    /// Amazon Personalize's interactions CSV: `USER_ID`, `ITEM_ID`, `TIMESTAMP` (unix
    /// seconds), `EVENT_TYPE`, `EVENT_VALUE` (optional).
    Personalize,
}

/// How raw event files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventFormat {
    /// By each file's extension: `.csv`, `.json`/`.jsonl`/`.ndjson`, `.parquet`, each
    /// optionally followed by `.gz`, `.zst` or `.bz2`; a name without one (Kinesis Firehose's)
    /// by its content: Parquet, JSON objects, or text with the delimiter in its first line.
    #[default]
    Auto,
    Csv,
    Jsonl,
    Parquet,
}

/// How timestamps in raw event files are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampFormat {
    /// Seconds since 1970-01-01 UTC, as MovieLens writes them.
    UnixSeconds,
    /// Milliseconds since 1970-01-01 UTC.
    UnixMillis,
    /// RFC 3339 with any offset, such as `2024-01-01T12:00:00Z` or `…+02:00`.
    Rfc3339,
    /// A strftime pattern (`%d-%m-%Y`, `%Y-%m-%d %H:%M:%S UTC`); a time without an offset is in
    /// `[events] timestamp_timezone`, a date alone is its midnight.
    Pattern(String),
}

impl TimestampFormat {
    /// The name as written in the configuration.
    pub fn as_str(&self) -> &str {
        match self {
            TimestampFormat::UnixSeconds => "unix_seconds",
            TimestampFormat::UnixMillis => "unix_millis",
            TimestampFormat::Rfc3339 => "rfc3339",
            TimestampFormat::Pattern(p) => p,
        }
    }
}

impl std::str::FromStr for TimestampFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "unix_seconds" => Ok(TimestampFormat::UnixSeconds),
            "unix_millis" => Ok(TimestampFormat::UnixMillis),
            "rfc3339" => Ok(TimestampFormat::Rfc3339),
            p if p.contains('%') => {
                // A pattern chrono cannot use fails here, not on the first row of a night.
                let items: Vec<_> = chrono::format::StrftimeItems::new(p).collect();
                if items.contains(&chrono::format::Item::Error) {
                    return Err(format!("'{p}' is not a valid strftime pattern"));
                }
                Ok(TimestampFormat::Pattern(p.to_string()))
            }
            other => Err(format!(
                "timestamp_format = '{other}' is not unix_seconds, unix_millis, rfc3339 or a \
                 strftime pattern such as '%Y-%m-%d %H:%M:%S'"
            )),
        }
    }
}

impl Serialize for TimestampFormat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TimestampFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Field names: one, or a list meaning "the first one present" (`["userId", "anonymousId"]`).
/// A name is a CSV header, a JSON field or a dotted path into nested objects
/// (`properties.product_id`), or a Parquet column or dotted path into struct columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldNames {
    One(String),
    Many(Vec<String>),
}

impl FieldNames {
    /// The names, without empty ones (`""` means "no such field").
    pub fn names(&self) -> Vec<String> {
        match self {
            FieldNames::One(s) => vec![s.clone()],
            FieldNames::Many(v) => v.clone(),
        }
        .into_iter()
        .filter(|n| !n.trim().is_empty())
        .collect()
    }
}

impl From<&str> for FieldNames {
    fn from(s: &str) -> Self {
        FieldNames::One(s.to_string())
    }
}

/// `[events]`: where raw event files are and how to read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// A known producer's field mapping (`movielens`, `segment`, `personalize`); keys set
    /// beside it override it. Without one, unset keys take MovieLens' names.
    pub preset: Option<EventPreset>,
    /// `auto` (by extension), `csv`, `jsonl` or `parquet`.
    pub format: EventFormat,
    /// Where producers write event files, when not the lake's `raw/events/`: a folder of the
    /// lake (`firehose/`) or a producer's own prefix anywhere (`s3://bucket/firehose/`,
    /// `file:///data/events/`), read with the lake's `[lake]` settings (its options when both
    /// are on S3) and the `AWS_*` environment, and never written. Files go in day folders
    /// `YYYY/MM/DD/` or hour folders `YYYY/MM/DD/HH/` below it; files outside the lake are
    /// named by their URL in the ledger and in rejects.
    pub raw_prefix: Option<String>,
    /// The user id field (any string, or an integer).
    pub user_column: Option<FieldNames>,
    /// The item id field (any string, or an integer).
    pub item_column: Option<FieldNames>,
    /// The value field (a rating or an interaction strength); `""` when there is none
    /// (clickstreams): each event then counts 1, weighted by its type in
    /// `[prepare] event_weights`.
    pub value_column: Option<FieldNames>,
    /// The timestamp field.
    pub timestamp_column: Option<FieldNames>,
    /// How the timestamp is written: `unix_seconds`, `unix_millis`, `rfc3339` or a strftime
    /// pattern.
    pub timestamp_format: Option<TimestampFormat>,
    /// The time zone of timestamps written without an offset (an IANA name such as
    /// `Europe/Paris`; default `UTC`).
    pub timestamp_timezone: Option<String>,
    /// The event type field (view, cart, purchase); none for ratings.
    pub event_type_column: Option<FieldNames>,
    /// The event id field: each id is loaded once across all loads for ever (at-least-once
    /// delivery redelivers events). Without one, identical rows count once.
    pub event_id_column: Option<FieldNames>,
    /// Field delimiter of CSV files, one ASCII character.
    pub delimiter: char,
    /// Values below this are rejected (the low end of a rating scale).
    pub value_min: Option<f32>,
    /// Values above this are rejected (the high end of a rating scale).
    pub value_max: Option<f32>,
    /// How far, in hours, an event's time may lie outside its folder's day before it is rejected.
    pub day_tolerance_hours: u32,
    /// Rows (and unreadable files) a load may reject before it fails and loads nothing; they go
    /// to `warehouse/rejects`.
    pub max_errors: u64,
    /// What each event type means (`[events.types.purchase]`): its weight, whether it makes an
    /// item seen, and after how many days a seen item may come back. Types not listed weigh 1
    /// and make their items seen for ever (MovieLens' ratings).
    pub types: BTreeMap<String, EventTypeConfig>,
    /// Time decay of event values for training: an event this many days before the night
    /// counts half, twice as long a quarter (unset: no decay).
    pub half_life_days: Option<f32>,
}

/// `[items]`: where the item catalog comes from: `raw/items/` feeds and the events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ItemsConfig {
    /// Item attributes carried on the events themselves (REES46's `category_code`, `brand`,
    /// `price`): each named event field (a CSV header, JSON field or dotted path) becomes a
    /// catalog column of the event's item; the value of the latest event wins. `[rules]`
    /// predicates and `max_per` caps can use them.
    pub from_events: Vec<String>,
    /// The item id column of catalog feeds in `raw/items/` (and `raw/items/YYYY/MM/DD/`
    /// snapshots): set, every file there is a feed in CSV, JSON lines or Parquet (compressed or
    /// not, told as for events), each of its other columns an attribute. Unset: `raw/items/*.csv`
    /// are MovieLens-shaped `id,title,genres` files, read by position.
    pub id_column: Option<String>,
    /// The feed column that is the item's title (shown beside ids); unset: no title.
    pub title_column: Option<String>,
    /// The feed column of `|`-separated genres (`[rules] max_per = { genres = N }`).
    pub genres_column: Option<String>,
    /// A boolean feed column that deletes the item when true: it leaves the catalog and every
    /// list until a newer feed row says false. (An item that is only out of stock is better an
    /// attribute and a rule: `exclude_where = "NOT in_stock"`.)
    pub deleted_column: Option<String>,
    /// How feeds are written: `auto` (by each file's name, else its content), `csv`, `jsonl`
    /// or `parquet`.
    pub format: EventFormat,
    /// The CSV delimiter of feeds.
    pub delimiter: char,
    /// Declared attribute types (`price = "number"`): `string`, `number`, `boolean`,
    /// `timestamp` (RFC 3339 or `YYYY-MM-DD`) or `list` (a JSON or Parquet list, or
    /// `a|b|c`). A feed value that is not of its declared type rejects its row. Undeclared
    /// attributes get the type every value they have fits (number, boolean, timestamp, list,
    /// else string), recorded in each night's export manifest.
    pub attributes: BTreeMap<String, AttributeType>,
}

impl Default for ItemsConfig {
    fn default() -> Self {
        ItemsConfig {
            from_events: Vec::new(),
            id_column: None,
            title_column: None,
            genres_column: None,
            deleted_column: None,
            format: EventFormat::Auto,
            delimiter: ',',
            attributes: BTreeMap::new(),
        }
    }
}

/// The type of an item attribute, as `[rules]` predicates see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeType {
    String,
    Number,
    Boolean,
    Timestamp,
    List,
}

impl AttributeType {
    pub fn name(self) -> &'static str {
        match self {
            AttributeType::String => "string",
            AttributeType::Number => "number",
            AttributeType::Boolean => "boolean",
            AttributeType::Timestamp => "timestamp",
            AttributeType::List => "list",
        }
    }
}

impl ItemsConfig {
    /// The catalog column of an event field: its last dotted segment (`properties.brand` is
    /// `brand`).
    pub fn column(field: &str) -> &str {
        field.rsplit('.').next().unwrap_or(field)
    }
}

/// `[events.types.<type>]`: what events of one type mean for training and for lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventTypeConfig {
    /// Multiplies the event's value before aggregation; negative for a return or a dislike (a
    /// pair whose events add up to 0 or less is left out of training, and stays seen if any of
    /// its events makes it so). Unset: the type's `[prepare] event_weights` entry, else 1.
    pub weight: Option<f32>,
    /// Whether an event of this type makes its item seen, never offered to the user again;
    /// `false` for views, so a viewed item can still be recommended.
    pub seen: bool,
    /// An item this type made seen is offered again in lists made this many days after the
    /// event or later (a consumable bought again); unset: seen for ever.
    pub repeat_after_days: Option<u32>,
}

impl Default for EventTypeConfig {
    fn default() -> Self {
        EventTypeConfig {
            weight: None,
            seen: true,
            repeat_after_days: None,
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            preset: None,
            format: EventFormat::Auto,
            raw_prefix: None,
            user_column: None,
            item_column: None,
            value_column: None,
            timestamp_column: None,
            timestamp_format: None,
            timestamp_timezone: None,
            event_type_column: None,
            event_id_column: None,
            delimiter: ',',
            value_min: None,
            value_max: None,
            day_tolerance_hours: 24,
            max_errors: 0,
            types: BTreeMap::new(),
            half_life_days: None,
        }
    }
}

/// A field as the readers look it up: names tried in order, the `[events]` key that names it,
/// and whether a file without it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMapping {
    pub names: Vec<String>,
    pub setting: &'static str,
    pub required: bool,
}

/// The resolved `[events]` mapping: the preset's fields with the keys set beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMapping {
    pub user: FieldMapping,
    pub item: FieldMapping,
    /// No names: each event counts 1.
    pub value: FieldMapping,
    pub timestamp: FieldMapping,
    pub timestamp_format: TimestampFormat,
    pub timezone: chrono_tz::Tz,
    pub event_type: FieldMapping,
    pub event_id: FieldMapping,
    /// Records are kept only when this field, where present, is one of `record_types`
    /// (Segment: `type` = `track`); the others are skipped and counted.
    pub record_type: FieldMapping,
    pub record_types: Vec<String>,
}

impl EventsConfig {
    /// The preset in effect.
    pub fn preset(&self) -> EventPreset {
        self.preset.unwrap_or(EventPreset::Movielens)
    }

    /// The fields and time format in effect; an error names the key to fix.
    pub fn mapping(&self) -> Result<EventMapping, String> {
        struct Defaults {
            user: &'static [&'static str],
            item: &'static [&'static str],
            value: &'static [&'static str],
            value_required: bool,
            timestamp: &'static [&'static str],
            format: TimestampFormat,
            event_type: &'static [&'static str],
            event_id: &'static [&'static str],
            record_type: &'static [&'static str],
            record_types: &'static [&'static str],
        }
        let d = match self.preset() {
            EventPreset::Movielens => Defaults {
                user: &["userId"],
                item: &["movieId"],
                value: &["rating"],
                value_required: true,
                timestamp: &["timestamp"],
                format: TimestampFormat::UnixSeconds,
                event_type: &[],
                event_id: &[],
                record_type: &[],
                record_types: &[],
            },
            EventPreset::Segment => Defaults {
                user: &["userId", "anonymousId"],
                item: &["properties.product_id", "properties.sku"],
                value: &[],
                value_required: false,
                timestamp: &["timestamp"],
                format: TimestampFormat::Rfc3339,
                event_type: &["event"],
                event_id: &["messageId"],
                record_type: &["type"],
                record_types: &["track"],
            },
            EventPreset::Personalize => Defaults {
                user: &["USER_ID"],
                item: &["ITEM_ID"],
                value: &["EVENT_VALUE"],
                value_required: false,
                timestamp: &["TIMESTAMP"],
                format: TimestampFormat::UnixSeconds,
                event_type: &["EVENT_TYPE"],
                event_id: &[],
                record_type: &[],
                record_types: &[],
            },
        };
        // A key set by the user is required in every file; a preset's optional fields are not
        // (Personalize's EVENT_VALUE, say). Ids and the time are always required, and so is
        // MovieLens' rating.
        let field =
            |set: &Option<FieldNames>, default: &[&str], setting: &'static str, always: bool| {
                let (names, explicit) = match set {
                    Some(f) => (f.names(), true),
                    None => (default.iter().map(|s| s.to_string()).collect(), false),
                };
                let required = !names.is_empty() && (always || explicit);
                FieldMapping {
                    names,
                    setting,
                    required,
                }
            };
        let user = field(&self.user_column, d.user, "user_column", true);
        let item = field(&self.item_column, d.item, "item_column", true);
        let timestamp = field(
            &self.timestamp_column,
            d.timestamp,
            "timestamp_column",
            true,
        );
        for f in [&user, &item, &timestamp] {
            if f.names.is_empty() {
                return Err(format!(
                    "[events] {} is empty: name the field that holds it",
                    f.setting
                ));
            }
        }
        let timezone = match &self.timestamp_timezone {
            None => chrono_tz::UTC,
            Some(name) => name.parse().map_err(|_| {
                format!(
                    "[events] timestamp_timezone = '{name}' is not an IANA time zone name such \
                     as 'UTC' or 'Europe/Paris'"
                )
            })?,
        };
        Ok(EventMapping {
            user,
            item,
            value: field(
                &self.value_column,
                d.value,
                "value_column",
                d.value_required,
            ),
            timestamp,
            timestamp_format: self.timestamp_format.clone().unwrap_or(d.format),
            timezone,
            event_type: field(
                &self.event_type_column,
                d.event_type,
                "event_type_column",
                false,
            ),
            event_id: field(&self.event_id_column, d.event_id, "event_id_column", false),
            record_type: FieldMapping {
                names: d.record_type.iter().map(|s| s.to_string()).collect(),
                setting: "preset",
                required: false,
            },
            record_types: d.record_types.iter().map(|s| s.to_string()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> EventsConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn movielens_is_the_default() {
        let m = EventsConfig::default().mapping().unwrap();
        assert_eq!(m.user.names, ["userId"]);
        assert_eq!(m.item.names, ["movieId"]);
        assert_eq!(m.value.names, ["rating"]);
        assert_eq!(m.timestamp_format, TimestampFormat::UnixSeconds);
        assert!(m.event_id.names.is_empty() && m.record_types.is_empty());
    }

    #[test]
    fn presets_and_overrides() {
        let m = parse("preset = \"segment\"\nitem_column = \"properties.asin\"")
            .mapping()
            .unwrap();
        assert_eq!(m.user.names, ["userId", "anonymousId"]);
        assert_eq!(m.item.names, ["properties.asin"]);
        assert!(m.value.names.is_empty());
        assert_eq!(m.event_id.names, ["messageId"]);
        assert_eq!(m.record_types, ["track"]);
        assert_eq!(m.timestamp_format, TimestampFormat::Rfc3339);
        let p = parse("preset = \"personalize\"").mapping().unwrap();
        assert_eq!(p.value.names, ["EVENT_VALUE"]);
        assert!(!p.value.required, "a preset's value field is optional");
        let c = parse("value_column = \"\"\ntimestamp_format = \"%d-%m-%Y\"")
            .mapping()
            .unwrap();
        assert!(c.value.names.is_empty());
        assert_eq!(
            c.timestamp_format,
            TimestampFormat::Pattern("%d-%m-%Y".into())
        );
    }

    #[test]
    fn bad_settings_name_the_key() {
        let e = toml::from_str::<EventsConfig>("timestamp_format = \"dd-mm\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("strftime pattern"), "{e}");
        let e = parse("timestamp_timezone = \"Mars/Base\"")
            .mapping()
            .unwrap_err();
        assert!(e.contains("timestamp_timezone"), "{e}");
        let e = parse("user_column = \"\"").mapping().unwrap_err();
        assert!(e.contains("[events] user_column is empty"), "{e}");
    }
}
