//! The SQL of `prepare`, kept in files that users can read and override.
//!
//! The built-in queries live in this crate's `sql/` folder (`training.sql`, `seen.sql`,
//! `unseen.sql`, `items.sql`, `availability.sql`) and are compiled into the binary. `[prepare] sql_dir` names
//! a folder whose files of the same names replace them one by one; `elastirec sql-files --write
//! DIR` writes the built-in ones there to start from. Each file is a template: `${name}` is
//! replaced by the night's parameter of that name (see the header of each file), and an unknown
//! name is an error that names the file. The rendered text of the queries that run, hashed, goes into the
//! export manifest, so a changed query is visible in every export it made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use elastirec_core::Night;
use elastirec_core::config::PrepareConfig;

use crate::{Error, Result};

/// One query of `prepare`: its file name, where its text came from, and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlFile {
    /// `training.sql`, `seen.sql`, `unseen.sql`, `items.sql` or `availability.sql`.
    pub name: &'static str,
    /// `built-in` or the path of the overriding file.
    pub origin: String,
    /// The template text.
    pub text: String,
}

impl SqlFile {
    /// Whether a user's file replaced the built-in query (its errors are then the user's).
    pub fn is_override(&self) -> bool {
        self.origin != BUILTIN
    }

    /// A fixed query of the program's own (never replaced by `[prepare] sql_dir`).
    pub fn builtin(name: &'static str, text: &str) -> SqlFile {
        SqlFile {
            name,
            origin: BUILTIN.to_string(),
            text: text.to_string(),
        }
    }
}

const BUILTIN: &str = "built-in";

/// The built-in queries, by file name.
pub const BUILTIN_FILES: [(&str, &str); 5] = [
    ("training.sql", include_str!("../sql/training.sql")),
    ("seen.sql", include_str!("../sql/seen.sql")),
    ("unseen.sql", include_str!("../sql/unseen.sql")),
    ("items.sql", include_str!("../sql/items.sql")),
    ("availability.sql", include_str!("../sql/availability.sql")),
];

/// The queries of `prepare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareSql {
    /// One row per (user, item) pair of the window: the training data.
    pub training: SqlFile,
    /// Pairs seen up to the night but not in training; may read the view `training`.
    pub seen: SqlFile,
    /// Training pairs the user may be offered again (no event of the pair makes its item seen
    /// any more: `[events.types]`); may read the view `training`.
    pub unseen: SqlFile,
    /// The item dimension unloaded beside the training data.
    pub items: SqlFile,
    /// Item availability windows unloaded beside the training data (for offer rules).
    pub availability: SqlFile,
}

/// The queries of one night with their parameters filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedSql {
    pub training: String,
    pub seen: String,
    /// `None` when every event type makes its items seen for ever (the query's answer would be
    /// empty) and `unseen.sql` is the built-in one: it does not run.
    pub unseen: Option<String>,
    pub items: String,
    pub availability: String,
    /// SHA-256 of the rendered queries that run, hex.
    pub hash: String,
}

impl Default for PrepareSql {
    fn default() -> Self {
        Self::builtin()
    }
}

impl PrepareSql {
    /// The queries compiled into elastirec.
    pub fn builtin() -> Self {
        let file = |i: usize| SqlFile {
            name: BUILTIN_FILES[i].0,
            origin: BUILTIN.to_string(),
            text: BUILTIN_FILES[i].1.to_string(),
        };
        PrepareSql {
            training: file(0),
            seen: file(1),
            unseen: file(2),
            items: file(3),
            availability: file(4),
        }
    }

    /// The built-in queries, each replaced by the file of the same name in `dir` if there is
    /// one. `dir` itself must exist (a typo in `sql_dir` should not silently use the built-ins).
    pub fn with_overrides(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::BadSql {
                file: dir.display().to_string(),
                reason: "[prepare] sql_dir is not a folder; create it with `elastirec sql-files \
                         --write DIR` or remove the setting"
                    .into(),
            });
        }
        let mut sql = Self::builtin();
        for file in [
            &mut sql.training,
            &mut sql.seen,
            &mut sql.unseen,
            &mut sql.items,
            &mut sql.availability,
        ] {
            let path = dir.join(file.name);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    file.origin = path.display().to_string();
                    file.text = text;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::BadSql {
                        file: path.display().to_string(),
                        reason: format!("cannot read it: {e}"),
                    });
                }
            }
        }
        Ok(sql)
    }

    /// The queries for `night` with `params` filled in.
    pub fn render(&self, night: Night, params: &PrepareConfig) -> Result<RenderedSql> {
        let values = parameters(night, params);
        let training = render(&self.training, &values)?;
        let seen = render(&self.seen, &values)?;
        // A user's own unseen.sql always runs (it may not depend on the types).
        let own_unseen = self.unseen.is_override() && self.unseen.text != BUILTIN_FILES[2].1;
        let unseen = (values.get("seen").is_some_and(|s| s != "TRUE") || own_unseen)
            .then(|| render(&self.unseen, &values))
            .transpose()?;
        let items = render(&self.items, &values)?;
        let availability = render(&self.availability, &values)?;
        let mut hasher = Sha256::new();
        // `unseen` only when it runs, so exports of nights without it keep their hash.
        for text in [&training, &seen]
            .into_iter()
            .chain(&unseen)
            .chain([&items, &availability])
        {
            hasher.update(text.as_bytes());
            hasher.update([0u8]);
        }
        let hash = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(RenderedSql {
            training,
            seen,
            unseen,
            items,
            availability,
            hash,
        })
    }
}

/// Writes the built-in queries into `dir` (created if missing) for editing; refuses to replace
/// an existing file unless `overwrite`. Returns the paths written.
pub fn write_builtin(dir: &Path, overwrite: bool) -> Result<Vec<PathBuf>> {
    let io = |path: &Path, e: std::io::Error| Error::BadSql {
        file: path.display().to_string(),
        reason: format!("cannot write it: {e}"),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut written = Vec::new();
    for (name, text) in BUILTIN_FILES {
        let path = dir.join(name);
        if path.exists() && !overwrite {
            return Err(Error::BadSql {
                file: path.display().to_string(),
                reason: "already exists; pass --overwrite to replace it with the built-in query"
                    .into(),
            });
        }
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// The values of the `${name}` parameters for one night.
pub fn parameters(night: Night, params: &PrepareConfig) -> BTreeMap<&'static str, String> {
    let window_start = params.window_start(night);
    let mut values = BTreeMap::new();
    values.insert("night", night.to_string());
    values.insert("window_start", window_start.to_string());
    // REAL's lowest value: no event is below it, so no minimum keeps every event.
    values.insert(
        "min_value",
        params
            .min_value
            .map_or_else(|| format!("{:e}", f32::MIN), |v| format!("{v:e}")),
    );
    values.insert("min_user_events", params.min_user_events.to_string());
    values.insert("min_item_events", params.min_item_events.to_string());
    // Every user and item of the window has at least one event: minimums of 1 keep them all
    // (ids are never null), so the counts are not asked for (nor computed).
    values.insert(
        "minimums",
        if params.min_user_events <= 1 && params.min_item_events <= 1 {
            String::new()
        } else {
            format!(
                "AND user_events >= {} AND item_events >= {}",
                params.min_user_events, params.min_item_events
            )
        },
    );
    values.insert("aggregate", params.aggregate.sql().to_string());
    values.insert("event_weight", event_weight_sql(&params.event_weights));
    values.insert("decay", decay_sql(night, params.half_life_days));
    values.insert("seen", seen_sql(night, &params.event_types));
    // A negative weight (a return, a dislike) can cancel a pair out: such pairs do not train.
    let negative = params.event_weights.values().any(|w| *w < 0.0);
    values.insert(
        "pair_filter",
        if negative {
            format!("HAVING {} > 0", params.aggregate.sql())
        } else {
            String::new()
        },
    );
    values.insert(
        "pair_condition",
        if negative {
            "AND value > 0".to_string()
        } else {
            String::new()
        },
    );
    values
}

/// The factor of an event's value for its age: `0.5 ^ (age in days / half-life)`, the age
/// counted from the end of the night; `1` without a half-life.
fn decay_sql(night: Night, half_life_days: Option<f32>) -> String {
    match half_life_days {
        None => "1".to_string(),
        Some(days) => format!(
            "CAST(POWER(0.5, ({end} - date_part('epoch', event_time)) / {seconds:e}) AS REAL)",
            end = night.next().start_unix_seconds(),
            seconds = f64::from(days) * 86_400.0
        ),
    }
}

/// Whether an event makes its item seen on `night`, by its type: `TRUE` when every type does
/// for ever (the default), else `CASE event_type WHEN 'view' THEN FALSE WHEN 'purchase' THEN
/// event_date > DATE '…' … ELSE TRUE END`.
fn seen_sql(
    night: Night,
    types: &BTreeMap<String, elastirec_core::config::EventTypeConfig>,
) -> String {
    let mut sql = String::from("CASE event_type");
    let mut any = false;
    for (kind, t) in types {
        let when = match (t.seen, t.repeat_after_days) {
            (false, _) => "FALSE".to_string(),
            (true, None) => continue,
            // Offered again in lists made `days` days after the event or later.
            (true, Some(days)) => {
                format!("event_date > DATE '{}'", night.minus_days(u64::from(days)))
            }
        };
        any = true;
        sql.push_str(&format!(" WHEN '{}' THEN {when}", kind.replace('\'', "''")));
    }
    if !any {
        return "TRUE".to_string();
    }
    sql.push_str(" ELSE TRUE END");
    sql
}

/// `CASE event_type WHEN 'view' THEN 1 ... ELSE 1 END`, or `1` without weights.
fn event_weight_sql(weights: &BTreeMap<String, f32>) -> String {
    if weights.is_empty() {
        return "1".to_string();
    }
    let mut sql = String::from("CASE event_type");
    for (kind, weight) in weights {
        sql.push_str(&format!(
            " WHEN '{}' THEN CAST({weight:e} AS REAL)",
            kind.replace('\'', "''")
        ));
    }
    sql.push_str(" ELSE 1 END");
    sql
}

/// Replaces every `${name}` of `file` by its value.
fn render(file: &SqlFile, values: &BTreeMap<&'static str, String>) -> Result<String> {
    let text = &file.text;
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(bad_template(
                file,
                text,
                start,
                "`${` without a closing `}`",
            ));
        };
        let name = &after[..end];
        match values.get(name) {
            Some(value) => out.push_str(value),
            None => {
                let known: Vec<&str> = values.keys().copied().collect();
                return Err(bad_template(
                    file,
                    text,
                    text.len() - rest.len() + start,
                    &format!(
                        "unknown parameter ${{{name}}} (known: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn bad_template(file: &SqlFile, text: &str, offset: usize, reason: &str) -> Error {
    let line = text[..offset.min(text.len())].matches('\n').count() + 1;
    Error::BadSql {
        file: format!("{}:{line}", file.origin_or_name()),
        reason: reason.to_string(),
    }
}

impl SqlFile {
    fn origin_or_name(&self) -> String {
        if self.is_override() {
            self.origin.clone()
        } else {
            format!("{} ({BUILTIN})", self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn night(s: &str) -> Night {
        s.parse().expect("a date")
    }

    #[test]
    fn event_types_render_into_the_seen_predicate_the_decay_and_the_pair_filter() {
        use elastirec_core::config::EventTypeConfig;
        let plain = PrepareSql::builtin()
            .render(night("2024-03-31"), &PrepareConfig::default())
            .expect("renders");
        assert!(plain.seen.contains("AND TRUE"), "{}", plain.seen);
        assert_eq!(
            plain.unseen, None,
            "nothing to offer again: the query does not run"
        );
        assert!(
            !plain.training.contains("TRUE  AND value"),
            "{}",
            plain.training
        );
        // Minimums of 1 keep every user and item: no condition on the counts; a minimum above 1
        // asks for both.
        assert!(
            plain.training.contains("WHERE TRUE  \n"),
            "{}",
            plain.training
        );
        let strict = PrepareSql::builtin()
            .render(
                night("2024-03-31"),
                &PrepareConfig {
                    min_item_events: 2,
                    ..PrepareConfig::default()
                },
            )
            .expect("renders");
        assert!(
            strict
                .training
                .contains("WHERE TRUE AND user_events >= 1 AND item_events >= 2"),
            "{}",
            strict.training
        );

        let mut params = PrepareConfig {
            half_life_days: Some(10.0),
            ..PrepareConfig::default()
        };
        let view = EventTypeConfig {
            seen: false,
            ..EventTypeConfig::default()
        };
        let purchase = EventTypeConfig {
            repeat_after_days: Some(30),
            ..EventTypeConfig::default()
        };
        params.event_types.insert("view".into(), view);
        params.event_types.insert("purchase".into(), purchase);
        params
            .event_types
            .insert("cart".into(), EventTypeConfig::default());
        params.event_weights.insert("return".into(), -5.0);
        let r = PrepareSql::builtin()
            .render(night("2024-03-31"), &params)
            .expect("renders");
        let seen = "CASE event_type WHEN 'purchase' THEN event_date > DATE '2024-03-01' \
                    WHEN 'view' THEN FALSE ELSE TRUE END";
        assert!(r.seen.contains(seen), "{}", r.seen);
        let unseen = r.unseen.as_deref().expect("the unseen query runs");
        assert!(unseen.contains(seen), "{unseen}");
        // 2024-04-01 00:00:00 UTC, and ten days in seconds.
        assert!(
            r.training
                .contains("POWER(0.5, (1711929600 - date_part('epoch', event_time)) / 8.64e5)"),
            "{}",
            r.training
        );
        assert!(
            r.training.contains("WHERE TRUE  AND value > 0"),
            "{}",
            r.training
        );
        assert_ne!(r.hash, plain.hash);
    }

    #[test]
    fn renders_every_parameter_of_the_builtin_files() {
        let mut params = PrepareConfig {
            window_days: 7,
            min_value: Some(3.5),
            ..PrepareConfig::default()
        };
        params.event_weights.insert("cart".into(), 3.0);
        let r = PrepareSql::builtin()
            .render(night("2024-01-10"), &params)
            .expect("renders");
        assert!(r.training.contains("DATE '2024-01-04'"), "{}", r.training);
        assert!(r.training.contains("DATE '2024-01-10'"));
        assert!(r.training.contains("value >= 3.5e0"));
        assert!(r.training.contains("WHEN 'cart' THEN CAST(3e0 AS REAL)"));
        for text in [&r.training, &r.seen, &r.items, &r.availability] {
            assert!(!text.contains("${"), "{text}");
        }
        assert_eq!(r.hash.len(), 64);
        let other = PrepareSql::builtin()
            .render(night("2024-01-11"), &params)
            .expect("renders");
        assert_ne!(r.hash, other.hash, "the hash covers the parameters");
    }

    #[test]
    fn an_unknown_parameter_names_the_file_and_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("seen.sql"), "SELECT 1\nFROM ${nights}\n").expect("write");
        let sql = PrepareSql::with_overrides(dir.path()).expect("reads overrides");
        assert!(sql.seen.is_override());
        assert!(!sql.training.is_override());
        let err = sql
            .render(night("2024-01-10"), &PrepareConfig::default())
            .expect_err("unknown parameter");
        let msg = err.to_string();
        assert!(msg.contains("seen.sql:2"), "{msg}");
        assert!(msg.contains("${nights}"), "{msg}");
    }

    #[test]
    fn a_missing_sql_dir_is_an_error_and_builtins_are_written_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope");
        assert!(PrepareSql::with_overrides(&missing).is_err());
        let written = write_builtin(&missing, false).expect("writes");
        assert_eq!(written.len(), 5);
        assert!(
            write_builtin(&missing, false).is_err(),
            "refuses to replace"
        );
        assert_eq!(
            PrepareSql::with_overrides(&missing)
                .expect("reads")
                .render(night("2024-01-10"), &PrepareConfig::default())
                .expect("renders"),
            PrepareSql::builtin()
                .render(night("2024-01-10"), &PrepareConfig::default())
                .expect("renders"),
            "the written files are the built-in queries"
        );
    }
}
