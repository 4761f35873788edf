//! `elastirec.toml`: the validated configuration of a lake's nightly flow.
//!
//! Precedence, lowest first: built-in defaults, the config file, environment variables named
//! `ELASTIREC_<SECTION>__<KEY>` (for example `ELASTIREC_MODEL__FACTORS=64`), then command-line
//! flags (applied by the binary). Unknown sections or keys are errors, so a typo never silently
//! falls back to a default.

use std::path::Path as FsPath;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod events;
mod input;
mod model;
mod ops;
mod pgwire;

pub use events::*;
pub use input::*;
pub use model::*;
pub use ops::*;
pub use pgwire::PgwireConfig;

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub lake: LakeConfig,
    pub events: EventsConfig,
    pub items: ItemsConfig,
    pub prepare: PrepareConfig,
    pub model: ModelConfig,
    pub recommend: RecommendConfig,
    pub rules: RulesConfig,
    pub evaluate: EvaluateConfig,
    pub publish: PublishConfig,
    pub run: RunConfig,
    pub schedule: ScheduleConfig,
    pub cost: CostConfig,
    pub hooks: HooksConfig,
    pub serve: ServeConfig,
    pub sink: SinkConfig,
    pub spark: SparkConfig,
    pub pgwire: PgwireConfig,
}

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "ELASTIREC_";

impl Config {
    /// Loads the configuration: defaults, then `file` if given, then overrides from `env`.
    ///
    /// `env` is passed in (normally `std::env::vars()`) so tests do not touch the process.
    pub fn load(
        file: Option<&FsPath>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!("cannot read config file {}: {e}", path.display()))
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    Error::Config(format!(
                        "config file {} is not valid TOML: {e}",
                        path.display()
                    ))
                })?
            }
            None => toml::Table::new(),
        };
        let origin = file.map_or("defaults".to_string(), |p| p.display().to_string());
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section_table) = entry else {
                return Err(Error::Config(format!(
                    "{name}: [{section}] in {origin} is not a section"
                )));
            };
            // A secret is text even when it looks like a number.
            let value = if (section.as_str(), key.as_str()) == ("serve", "token")
                || pgwire::is_text_key(&section, &key)
            {
                toml::Value::String(value)
            } else {
                env_value(&value)
            };
            section_table.insert(key, value);
        }
        let mut config: Config = toml::Value::Table(table).try_into().map_err(|e| {
            Error::Config(format!(
                "invalid configuration ({origin} and ELASTIREC_* variables): {e}"
            ))
        })?;
        // Paths in the file are relative to the file's folder, not to the working directory.
        if let (Some(file), Some(dir)) = (file, config.prepare.sql_dir.as_mut())
            && dir.is_relative()
            && let Some(parent) = file.parent()
        {
            *dir = parent.join(&*dir);
        }
        if let Some(parent) = file.and_then(|f| f.parent()) {
            for path in [&mut config.serve.tls_cert, &mut config.serve.tls_key]
                .into_iter()
                .flatten()
            {
                if path.is_relative() {
                    *path = parent.join(&*path);
                }
            }
        }
        // [pgwire] TLS files too.
        if let Some(dir) = file.and_then(FsPath::parent) {
            config.pgwire.resolve_paths(dir);
        }
        config
            .prepare
            .take_event_types(&config.events)
            .map_err(Error::Config)?;
        config.prepare.item_rules = config.rules.item_rules();
        config.prepare.item_rules.deletions = config.items.deleted_column.is_some();
        config.prepare.item_rules.types = config.items.attributes.clone();
        if !config.prepare.item_rules.is_empty() {
            let rules = &mut config.prepare.item_rules;
            for name in config
                .items
                .from_events
                .iter()
                .map(|f| ItemsConfig::column(f).to_string())
                .chain(config.items.attributes.keys().cloned())
            {
                if !rules.declared.contains(&name) {
                    rules.declared.push(name);
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges that the types cannot express.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        let items = &self.items;
        if items.id_column.is_none() {
            for (key, set) in [
                ("title_column", items.title_column.is_some()),
                ("genres_column", items.genres_column.is_some()),
                ("deleted_column", items.deleted_column.is_some()),
            ] {
                if set {
                    return fail(format!(
                        "[items] {key} is set but id_column is not: catalog feeds need \
                         [items] id_column, the column of their item ids"
                    ));
                }
            }
        }
        if !items.delimiter.is_ascii() {
            return fail(format!(
                "[items] delimiter = {:?} is not one ASCII character",
                items.delimiter
            ));
        }
        if self.model.factors == 0 || self.model.factors > 1024 {
            return fail(format!(
                "[model] factors = {} is out of range: use 1 to 1024",
                self.model.factors
            ));
        }
        if self.model.solver == SolverKind::Cg && self.model.cg_steps == 0 {
            return fail("[model] cg_steps must be at least 1 with solver = \"cg\"".into());
        }
        if self.model.iterations == 0 {
            return fail("[model] iterations must be at least 1".into());
        }
        if !(self.model.regularization.is_finite() && self.model.regularization >= 0.0) {
            return fail("[model] regularization must be a finite number >= 0".into());
        }
        if !(self.model.alpha.is_finite() && self.model.alpha > 0.0) {
            return fail("[model] alpha must be a finite number > 0".into());
        }
        if !(self.model.epsilon.is_finite() && self.model.epsilon > 0.0) {
            return fail(format!(
                "[model] epsilon = {} must be a finite number > 0 (the scale of confidence = \
                 \"log\")",
                self.model.epsilon
            ));
        }
        if !(self.model.tolerance.is_finite() && (0.0..1.0).contains(&self.model.tolerance)) {
            return fail(format!(
                "[model] tolerance = {} is out of range: use 0 (never stop early) to below 1",
                self.model.tolerance
            ));
        }
        if self.recommend.k == 0 || self.recommend.k > 1000 {
            return fail(format!(
                "[recommend] k = {} is out of range: use 1 to 1000",
                self.recommend.k
            ));
        }
        for (kind, weight) in &self.prepare.event_weights {
            if !weight.is_finite() {
                return fail(format!(
                    "the weight of event type '{kind}' must be a finite number (negative for a \
                     return or a dislike)"
                ));
            }
        }
        for (kind, t) in &self.events.types {
            match t.repeat_after_days {
                Some(0) => {
                    return fail(format!(
                        "[events.types.{kind}] repeat_after_days must be at least 1"
                    ));
                }
                Some(_) if !t.seen => {
                    return fail(format!(
                        "[events.types.{kind}] repeat_after_days has no effect with seen = \
                         false: events of this type never hide their item"
                    ));
                }
                _ => {}
            }
        }
        if let Some(h) = self.events.half_life_days
            && !(h.is_finite() && h > 0.0)
        {
            return fail(format!(
                "[events] half_life_days = {h} must be a number of days > 0 (leave it out for no \
                 decay)"
            ));
        }
        for id in self
            .rules
            .exclude_items
            .iter()
            .chain(&self.rules.promoted_items)
        {
            if let Err(why) = crate::ids::check_external(id) {
                return fail(format!("[rules] item id '{id}': {why}"));
            }
        }
        if let Some(&n) = self.rules.max_per.get("genres")
            && self.rules.max_per_genre > 0
            && n != self.rules.max_per_genre
        {
            return fail(format!(
                "[rules] max_per_genre = {} but max_per.genres = {n}: keep one",
                self.rules.max_per_genre
            ));
        }
        for (key, predicate) in [
            ("exclude_where", &self.rules.exclude_where),
            ("include_where", &self.rules.include_where),
            ("promote_where", &self.rules.promote_where),
        ] {
            if predicate.as_ref().is_some_and(|p| p.trim().is_empty()) {
                return fail(format!(
                    "[rules] {key} is empty: write an SQL predicate over the catalog's columns, \
                     or leave the key out"
                ));
            }
        }
        if !self.rules.boost.is_finite() {
            return fail("[rules] boost must be a finite number".into());
        }
        if self.run.max_attempts == 0 {
            return fail("[run] max_attempts must be at least 1 (1 means no retry)".into());
        }
        if self.run.lease_seconds < 5 {
            return fail("[run] lease_seconds must be at least 5".into());
        }
        if !(self.publish.min_users_ratio.is_finite() && self.publish.min_users_ratio >= 0.0) {
            return fail("[publish] min_users_ratio must be a number >= 0".into());
        }
        if !(self.cost.price_per_hour >= 0.0 && self.cost.always_on_price_per_hour >= 0.0) {
            return fail("[cost] prices must be numbers >= 0".into());
        }
        for (name, value) in [
            ("timeout_seconds", self.lake.timeout_seconds),
            ("connect_timeout_seconds", self.lake.connect_timeout_seconds),
            ("retry_timeout_seconds", self.lake.retry_timeout_seconds),
            (
                "preflight_timeout_seconds",
                self.lake.preflight_timeout_seconds,
            ),
        ] {
            if value == 0 || value > 3600 {
                return fail(format!(
                    "[lake] {name} = {value} is out of range: use 1 to 3600"
                ));
            }
        }
        if self.lake.max_retries > 100 {
            return fail(format!(
                "[lake] max_retries = {} is out of range: use 0 to 100",
                self.lake.max_retries
            ));
        }
        if self.serve.poll_seconds == 0 {
            return fail("[serve] poll_seconds must be at least 1".into());
        }
        if self
            .serve
            .token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return fail("[serve] token is empty: unset it, or give a non-empty token".into());
        }
        if self.serve.tls_cert.is_some() != self.serve.tls_key.is_some() {
            return fail(
                "[serve] tls_cert and tls_key go together: set both for HTTPS, or neither".into(),
            );
        }
        for (name, value) in [
            ("max_connections", self.serve.max_connections as u64),
            ("header_timeout_secs", self.serve.header_timeout_secs),
            ("request_timeout_secs", self.serve.request_timeout_secs),
            ("write_timeout_secs", self.serve.write_timeout_secs),
        ] {
            if value == 0 {
                return fail(format!("[serve] {name} must be at least 1"));
            }
        }
        if self.sink.timeout_seconds == 0 || self.sink.timeout_seconds > 3600 {
            return fail(format!(
                "[sink] timeout_seconds = {} is out of range: use 1 to 3600",
                self.sink.timeout_seconds
            ));
        }
        let table = &self.sink.postgres_table;
        if table.is_empty()
            || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || table.starts_with(|c: char| c.is_ascii_digit())
        {
            return fail(format!(
                "[sink] postgres_table = '{table}' is not a plain SQL name: use letters, \
                 digits and _"
            ));
        }
        if self.spark.submit.split_whitespace().next().is_none() {
            return fail(
                "[spark] submit is empty: give the submit command, such as \"spark-submit \
                 --master local[2]\""
                    .into(),
            );
        }
        if self.spark.timeout_seconds == 0 || self.spark.timeout_seconds > 7 * 24 * 3600 {
            return fail(format!(
                "[spark] timeout_seconds = {} is out of range: use 1 to 604800",
                self.spark.timeout_seconds
            ));
        }
        if self.spark.output_files == 0 || self.spark.output_files > 10_000 {
            return fail(format!(
                "[spark] output_files = {} is out of range: use 1 to 10000",
                self.spark.output_files
            ));
        }
        for (key, value) in &self.spark.conf {
            if key.trim().is_empty() || key.contains(['=', ' ', '\n']) || value.contains('\n') {
                return fail(format!(
                    "[spark] conf: '{key}' = '{value}' is not a Spark property: use keys such \
                     as \"spark.sql.shuffle.partitions\" without '=' or spaces"
                ));
            }
        }
        if self.model.engine == Engine::Spark {
            // What MLlib's ALS cannot do is refused here rather than silently trained otherwise
            // (docs/spark.md, "Parameters").
            if self.model.feedback == FeedbackKind::Implicit
                && self.model.confidence != ConfidenceKind::Linear
            {
                return fail(
                    "[model] confidence = \"log\" is not available with engine = \"spark\": \
                     MLlib's implicit ALS only has c = 1 + alpha·value; set confidence = \
                     \"linear\", or engine = \"als\""
                        .into(),
                );
            }
            if self.model.feedback == FeedbackKind::Explicit && self.model.biases {
                return fail(
                    "[model] biases = true is not available with engine = \"spark\": MLlib's \
                     explicit ALS (ALS-WR) has no global mean or user and item biases; set \
                     biases = false, or engine = \"als\""
                        .into(),
                );
            }
            if self.model.tolerance > 0.0 {
                return fail(format!(
                    "[model] tolerance = {} is not available with engine = \"spark\": MLlib \
                     runs every iteration; set tolerance = 0, or engine = \"als\"",
                    self.model.tolerance
                ));
            }
        }
        if !self.events.delimiter.is_ascii() {
            return fail("[events] delimiter must be one ASCII character".into());
        }
        if let Err(e) = self.events.mapping() {
            return fail(e);
        }
        self.pgwire.validate()?;
        Ok(())
    }
}

/// Environment values are strings; read numbers and booleans as such so `FACTORS=64` works.
fn env_value(raw: &str) -> toml::Value {
    // An inline table or array (`{ "spark.x" = "1" }`, `["a", "b"]`), as TOML writes them.
    if raw.trim_start().starts_with(['{', '['])
        && let Ok(mut table) = format!("v = {raw}").parse::<toml::Table>()
        && let Some(value) = table.remove("v")
    {
        return value;
    }
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>() {
        return toml::Value::Float(f);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("elastirec.toml");
        std::fs::write(
            &file,
            "[model]\nfactors = 16\nalpha = 2.0\n[recommend]\nk = 20\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[("ELASTIREC_MODEL__FACTORS", "64"), ("OTHER", "x")]),
        )
        .unwrap();
        assert_eq!(c.model.factors, 64);
        assert_eq!(c.model.alpha, 2.0);
        assert_eq!(c.recommend.k, 20);
        assert_eq!(c.model.iterations, ModelConfig::default().iterations);
        assert_eq!(Config::load(None, env(&[])).unwrap(), Config::default());
    }

    #[test]
    fn the_example_file_parses_to_the_defaults() {
        let example = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../../elastirec.example.toml");
        assert_eq!(
            Config::load(Some(&example), env(&[])).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn inline_tables_and_arrays_come_from_the_environment() {
        let c = Config::load(
            None,
            env(&[
                (
                    "ELASTIREC_SPARK__CONF",
                    r#"{ "spark.hadoop.fs.s3a.secret.key" = "k=1" }"#,
                ),
                ("ELASTIREC_SPARK__SECRET_CONF", r#"["spark.a"]"#),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.spark
                .conf
                .get("spark.hadoop.fs.s3a.secret.key")
                .map(String::as_str),
            Some("k=1")
        );
        assert_eq!(c.spark.secret_conf, ["spark.a"]);
    }

    #[test]
    fn a_token_from_the_environment_stays_text() {
        let c = Config::load(None, env(&[("ELASTIREC_SERVE__TOKEN", "123456")])).unwrap();
        assert_eq!(c.serve.token.as_deref(), Some("123456"));
        let e =
            Config::load(None, env(&[("ELASTIREC_SINK__POSTGRES_TABLE", "x; drop")])).unwrap_err();
        assert!(e.to_string().contains("postgres_table"), "{e}");
    }

    #[test]
    fn the_sink_timeout_is_read_and_checked() {
        assert_eq!(Config::default().sink.timeout_seconds, 10);
        let c = Config::load(None, env(&[("ELASTIREC_SINK__TIMEOUT_SECONDS", "3")])).unwrap();
        assert_eq!(c.sink.timeout_seconds, 3);
        for bad in ["0", "3601"] {
            let e =
                Config::load(None, env(&[("ELASTIREC_SINK__TIMEOUT_SECONDS", bad)])).unwrap_err();
            assert!(e.to_string().contains("[sink] timeout_seconds"), "{e}");
        }
    }

    #[test]
    fn the_engine_and_spark_settings_are_read_and_checked() {
        let c = Config::load(
            None,
            env(&[
                ("ELASTIREC_MODEL__ENGINE", "spark"),
                ("ELASTIREC_SPARK__TIMEOUT_SECONDS", "60"),
            ]),
        )
        .unwrap();
        assert_eq!(c.model.engine, Engine::Spark);
        assert_eq!(c.spark.timeout_seconds, 60);
        assert_eq!(Config::default().model.engine, Engine::Als);
        let e = Config::load(None, env(&[("ELASTIREC_MODEL__ENGINE", "flink")])).unwrap_err();
        assert!(e.to_string().contains("flink"), "{e}");
        let e = Config::load(None, env(&[("ELASTIREC_SPARK__SUBMIT", " ")])).unwrap_err();
        assert!(e.to_string().contains("[spark] submit"), "{e}");
        let e = Config::load(None, env(&[("ELASTIREC_SPARK__OUTPUT_FILES", "0")])).unwrap_err();
        assert!(e.to_string().contains("[spark] output_files"), "{e}");
        // What MLlib cannot do is refused with the spark engine, and only with it.
        let spark = ("ELASTIREC_MODEL__ENGINE", "spark");
        let explicit = ("ELASTIREC_MODEL__FEEDBACK", "explicit");
        let e = Config::load(None, env(&[spark, explicit])).unwrap_err();
        assert!(e.to_string().contains("biases"), "{e}");
        let c = Config::load(
            None,
            env(&[spark, explicit, ("ELASTIREC_MODEL__BIASES", "false")]),
        )
        .unwrap();
        assert_eq!(c.model.feedback, FeedbackKind::Explicit);
        let log = ("ELASTIREC_MODEL__CONFIDENCE", "log");
        let e = Config::load(None, env(&[spark, log])).unwrap_err();
        assert!(e.to_string().contains("confidence"), "{e}");
        let e =
            Config::load(None, env(&[spark, ("ELASTIREC_MODEL__TOLERANCE", "0.01")])).unwrap_err();
        assert!(e.to_string().contains("tolerance"), "{e}");
        Config::load(None, env(&[log, explicit])).unwrap();
    }

    #[test]
    fn typos_and_bad_ranges_are_named() {
        let e = Config::load(None, env(&[("ELASTIREC_MODEL__FACTOR", "8")])).unwrap_err();
        assert!(e.to_string().contains("factor"), "{e}");
        let e = Config::load(None, env(&[("ELASTIREC_MODEL__TOLERANCE", "2")])).unwrap_err();
        assert!(e.to_string().contains("[model] tolerance = 2"), "{e}");
        let e = Config::load(None, env(&[("ELASTIREC_MODEL__EPSILON", "0")])).unwrap_err();
        assert!(e.to_string().contains("[model] epsilon"), "{e}");
        let e = Config::load(None, env(&[("ELASTIREC_MODEL__FEEDBACK", "ratings")])).unwrap_err();
        assert!(e.to_string().contains("explicit"), "{e}");
        let c = Config::load(None, env(&[("ELASTIREC_MODEL__FEEDBACK", "explicit")])).unwrap();
        assert_eq!(c.model.feedback, FeedbackKind::Explicit);
        let e = Config::load(None, env(&[("ELASTIREC_RECOMMEND__K", "0")])).unwrap_err();
        assert!(e.to_string().contains("[recommend] k"), "{e}");
        let e = Config::load(Some(FsPath::new("/nonexistent/x.toml")), env(&[])).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.toml"), "{e}");
    }
}
