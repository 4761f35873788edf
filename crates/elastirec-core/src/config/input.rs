//! The sections about where data comes from: `[lake]` and `[prepare]` (how the warehouse makes
//! the recommender's input); `[events]` has its own module.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Night;
use crate::lake::DEFAULT_LAKE_ROOT;

/// `[lake]`: where the lake lives and how patiently elastirec talks to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    /// A local folder or an object store URL (`s3://bucket/prefix`).
    pub root: String,
    /// Object store options (`endpoint`, `region`, `allow_http`, `access_key_id`, ...), passed
    /// to the `object_store` crate and to delta-rs. `AWS_*` environment variables fill in what
    /// is not set here.
    pub options: HashMap<String, String>,
    /// Seconds one request to an object store may take before it fails (and is retried).
    pub timeout_seconds: u64,
    /// Seconds to wait for a connection to an object store.
    pub connect_timeout_seconds: u64,
    /// Retries of a request that failed transiently (5xx, throttling, a dropped connection).
    pub max_retries: usize,
    /// Seconds after a request's first attempt when it is no longer retried.
    pub retry_timeout_seconds: u64,
    /// Seconds the preflight check (one listing, never retried) may take before the lake is
    /// declared unreachable.
    pub preflight_timeout_seconds: u64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            root: DEFAULT_LAKE_ROOT.to_string(),
            options: HashMap::new(),
            timeout_seconds: 30,
            connect_timeout_seconds: 5,
            max_retries: 3,
            retry_timeout_seconds: 60,
            preflight_timeout_seconds: 10,
        }
    }
}

/// How the events of one (user, item) pair in the window become one training value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The sum of the event values: repeated interactions add up (views, purchases).
    Sum,
    /// The largest value.
    Max,
    /// The value of the latest event (a re-rating replaces the old rating).
    Last,
    /// The number of events, whatever their values.
    Count,
}

impl Aggregate {
    /// The SQL aggregate over the `events` table's columns.
    pub fn sql(self) -> &'static str {
        match self {
            Aggregate::Sum => "SUM(value)",
            Aggregate::Max => "MAX(value)",
            Aggregate::Last => "last_value(value ORDER BY event_time)",
            Aggregate::Count => "CAST(COUNT(*) AS REAL)",
        }
    }
}

/// `[prepare]`: how the warehouse prepares the recommender's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrepareConfig {
    /// Days of history, ending with the night itself, that training sees; 0 (the default): the
    /// whole history, so every user with any event gets a personal list.
    pub window_days: u32,
    /// Events with a value below this are left out of training (they still count as seen).
    pub min_value: Option<f32>,
    /// How a pair's events become its training value.
    pub aggregate: Aggregate,
    /// Users with fewer distinct events in the window are left out of training (they still get
    /// recommendations: the popularity fallback, `source = popular`).
    pub min_user_events: u32,
    /// Items with fewer distinct events in the window are left out of training (and so are
    /// never recommended by the model that night).
    pub min_item_events: u32,
    /// Weight of each event type for implicit feedback (`{ view = 1, cart = 3, purchase = 5 }`):
    /// an event's value is multiplied by its type's weight before aggregation. Types not listed,
    /// and events without a type, weigh 1.
    pub event_weights: BTreeMap<String, f32>,
    /// What each event type means, from `[events.types]` (copied there when the configuration
    /// is loaded; not a `[prepare]` key). Recorded in the export's params.
    #[serde(skip_deserializing, skip_serializing_if = "BTreeMap::is_empty")]
    pub event_types: BTreeMap<String, crate::config::EventTypeConfig>,
    /// `[events] half_life_days`, copied here when the configuration is loaded.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub half_life_days: Option<f32>,
    /// The SQL parts of `[rules]` (copied here when the configuration is loaded; not a
    /// `[prepare]` key): prepare evaluates them over the catalog into the export.
    #[serde(
        skip_deserializing,
        skip_serializing_if = "crate::config::ItemRules::is_empty"
    )]
    pub item_rules: crate::config::ItemRules,
    /// A folder whose `training.sql`, `seen.sql`, `items.sql` or `availability.sql` replace the
    /// built-in queries (`elastirec sql-files --write DIR` writes them to start from). Relative
    /// to the config file's folder.
    pub sql_dir: Option<PathBuf>,
}

impl PrepareConfig {
    /// Takes the event types' meaning from `[events]`: their weights join `event_weights` (a
    /// type weighed in both places must agree), the rest is kept for the prepare queries.
    pub fn take_event_types(&mut self, events: &crate::config::EventsConfig) -> Result<(), String> {
        for (kind, t) in &events.types {
            if let Some(weight) = t.weight {
                match self.event_weights.get(kind) {
                    Some(&w) if w != weight => {
                        return Err(format!(
                            "the weight of event type '{kind}' is {weight} in [events.types.{kind}] \
                             but {w} in [prepare] event_weights: keep one"
                        ));
                    }
                    _ => {
                        self.event_weights.insert(kind.clone(), weight);
                    }
                }
            }
        }
        self.event_types = events.types.clone();
        self.half_life_days = events.half_life_days;
        Ok(())
    }

    /// The first day of night `night`'s training window ([`Night::beginning`] for the whole
    /// history).
    pub fn window_start(&self, night: Night) -> Night {
        match self.window_days {
            0 => Night::beginning(),
            days => night.minus_days(u64::from(days) - 1),
        }
    }
}

impl Default for PrepareConfig {
    fn default() -> Self {
        PrepareConfig {
            window_days: 0,
            min_value: None,
            aggregate: Aggregate::Sum,
            min_user_events: 1,
            min_item_events: 1,
            event_weights: BTreeMap::new(),
            event_types: BTreeMap::new(),
            half_life_days: None,
            item_rules: Default::default(),
            sql_dir: None,
        }
    }
}
