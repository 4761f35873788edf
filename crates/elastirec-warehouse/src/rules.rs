//! The SQL parts of `[rules]` (`exclude_where`, `include_where`, `promote_where`, `max_per`),
//! evaluated over the night's catalog when its input is prepared, so the recommend step (and
//! serving's fold-in) apply them without SQL:
//!
//! ```text
//!  catalog = every item of warehouse/items or of the night's training pairs
//!            (item_id, title, genres; null where the items table has no row)
//!  ──▶ item-rules-*.parquet   item_id, excluded, promoted   (items a predicate marks)
//!  ──▶ item-groups-*.parquet  item_id, attribute, value     (values of the capped columns)
//! ```
//!
//! A predicate that does not parse or names a column the catalog lacks is the user's error,
//! naming the key and the catalog's columns; [`Warehouse::check_item_rules`] finds it before a
//! night runs.

use std::collections::BTreeMap;

use deltalake::arrow::array::BooleanArray;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::datafusion::prelude::SessionContext;

use elastirec_core::config::{AttributeType, ItemRules};
use elastirec_core::layout::Table;

use crate::{Error, Result, Warehouse};

/// The item ids of the catalog: the items table's, the training pairs' (when the night's are
/// at hand) and those with observed attributes.
fn catalog_keys(with_training: bool) -> &'static str {
    if with_training {
        "SELECT item_id FROM items UNION SELECT item_id FROM item_attributes \
         UNION SELECT item_id FROM training"
    } else {
        "SELECT item_id FROM items UNION SELECT item_id FROM item_attributes"
    }
}

/// Columns the catalog always has; observed attributes of the same name are left out.
const BASE_COLUMNS: [&str; 3] = ["item_id", "title", "genres"];

/// Schema of `item-rules-*.parquet`.
pub fn flags_schema() -> SchemaRef {
    std::sync::Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Int64, false),
        Field::new("excluded", DataType::Boolean, false),
        Field::new("promoted", DataType::Boolean, false),
    ]))
}

/// Schema of `item-groups-*.parquet`.
pub fn groups_schema() -> SchemaRef {
    std::sync::Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Int64, false),
        Field::new("attribute", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ]))
}

/// Each item's latest value of each observed attribute (`item-attributes-*.parquet`).
pub(crate) const ATTRIBUTES_SQL: &str = "SELECT item_id, name AS attribute, value FROM (\
     SELECT item_id, name, last_value(value ORDER BY observed_at, source_file) AS value \
     FROM item_attributes WHERE left(name, 1) <> '_' GROUP BY item_id, name) \
     WHERE value IS NOT NULL";

/// `name` as an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One row per item a predicate marks: excluded (fails `include_where` or passes
/// `exclude_where`) or promoted (passes `promote_where`).
pub(crate) fn flags_sql(rules: &ItemRules) -> String {
    let or = |p: &Option<String>, default: &str| {
        p.as_ref()
            .map_or(default.to_string(), |p| format!("COALESCE(({p}), FALSE)"))
    };
    let included = or(&rules.include_where, "TRUE");
    let mut excluded = or(&rules.exclude_where, "FALSE");
    // A deleted item is excluded whatever the predicates say (a join: DataFusion plans no `IN`
    // subquery inside a projection).
    let mut catalog = "catalog".to_string();
    if rules.deletions {
        excluded = format!("({excluded} OR \"{DELETED_COLUMN}\")");
        catalog = format!(
            "(SELECT c.*, d.item_id IS NOT NULL AS \"{DELETED_COLUMN}\" FROM catalog c \
             LEFT JOIN deleted_items d ON d.item_id = c.item_id)"
        );
    }
    let promoted = or(&rules.promote_where, "FALSE");
    format!(
        "SELECT item_id, excluded, promoted FROM (\
         SELECT item_id, (NOT {included}) OR {excluded} AS excluded, {promoted} AS promoted \
         FROM {catalog}) WHERE excluded OR promoted"
    )
}

/// One row per item and capped column with a value.
pub(crate) fn groups_sql(rules: &ItemRules) -> Option<String> {
    let parts: Vec<String> = rules
        .group_by
        .iter()
        .map(|c| {
            format!(
                "SELECT item_id, '{}' AS attribute, CAST({} AS VARCHAR) AS value FROM catalog \
                 WHERE {} IS NOT NULL",
                c.replace('\'', "''"),
                ident(c),
                ident(c)
            )
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" UNION ALL "))
}

/// Each attribute of the catalog (`warehouse/item_attributes`, names not starting with `_`)
/// with its type: declared in `[items.attributes]`, else the first of number, boolean,
/// timestamp and list that every value fits, else string.
pub(crate) async fn attribute_types(
    ctx: &SessionContext,
    declared: &BTreeMap<String, AttributeType>,
) -> Result<Vec<(String, AttributeType)>> {
    let kinds = ctx
        .sql(
            "SELECT name, \
             bool_and(value IS NULL OR try_cast(value AS DOUBLE) IS NOT NULL) AS number, \
             bool_and(value IS NULL OR lower(value) IN ('true', 'false')) AS boolean, \
             bool_and(value IS NULL OR (value LIKE '____-__-__%' \
                 AND try_cast(value AS TIMESTAMP) IS NOT NULL)) AS timestamp, \
             bool_and(value IS NULL OR value LIKE '[%]') AS list \
             FROM item_attributes WHERE left(name, 1) <> '_' GROUP BY name ORDER BY name",
        )
        .await
        .map_err(Error::query("the catalog's attributes"))?
        .collect()
        .await
        .map_err(Error::query("the catalog's attributes"))?;
    let mut out = Vec::new();
    for batch in &kinds {
        let names = crate::query::strings(batch, "name")?;
        let flag = |column: &str| {
            batch
                .column_by_name(column)
                .and_then(|c| c.as_any().downcast_ref::<BooleanArray>().cloned())
                .ok_or_else(|| Error::Internal(format!("attribute kinds: no {column} column")))
        };
        let checks = [
            (AttributeType::Number, flag("number")?),
            (AttributeType::Boolean, flag("boolean")?),
            (AttributeType::Timestamp, flag("timestamp")?),
            (AttributeType::List, flag("list")?),
        ];
        for (i, name) in names.into_iter().enumerate() {
            let Some(name) = name else { continue };
            let kind = declared.get(&name).copied().unwrap_or_else(|| {
                checks
                    .iter()
                    .find(|(_, fits)| fits.value(i))
                    .map_or(AttributeType::String, |(kind, _)| *kind)
            });
            out.push((name, kind));
        }
    }
    Ok(out)
}

/// The SQL that reads text `v` as a value of `kind` (null where it is not one).
fn typed(v: &str, kind: AttributeType) -> String {
    match kind {
        AttributeType::String => v.to_string(),
        AttributeType::Number => format!("try_cast({v} AS DOUBLE)"),
        AttributeType::Boolean => format!(
            "CASE WHEN lower({v}) = 'true' THEN TRUE WHEN lower({v}) = 'false' THEN FALSE END"
        ),
        AttributeType::Timestamp => format!("try_cast({v} AS TIMESTAMP)"),
        // Canonical lists are JSON arrays of strings: `["a","b"]`.
        AttributeType::List => format!(
            "CASE WHEN {v} LIKE '[\"%\"]' \
             THEN string_to_array(substr({v}, 3, length({v}) - 4), '\",\"') \
             WHEN {v} = '[]' THEN string_to_array('', ',') END"
        ),
    }
}

/// The flags query's column of deleted items (not a catalog column).
const DELETED_COLUMN: &str = "__elastirec_deleted";

/// Items a catalog feed deleted (`[items] deleted_column`) and no newer feed brought back.
const DELETED_SQL: &str = "SELECT item_id FROM (SELECT item_id, \
     last_value(value ORDER BY observed_at, source_file) AS value FROM item_attributes \
     WHERE name = '_deleted' GROUP BY item_id) WHERE value = 'true'";

/// Registers the view `catalog` on `ctx` (which has `items`, `item_attributes` and, with
/// `with_training`, the night's `training`): one row per item, `item_id`, `title`, `genres`
/// and one column per attribute, its latest value typed as `types` ([`attribute_types`]) says;
/// and, when feeds can delete items, the view `deleted_items`.
pub(crate) async fn register_catalog(
    ctx: &SessionContext,
    with_training: bool,
    rules: &ItemRules,
    types: &[(String, AttributeType)],
) -> Result<()> {
    let mut pivots = Vec::new();
    let mut columns = Vec::new();
    let mut seen = Vec::new();
    for (name, kind) in types.iter().cloned() {
        if BASE_COLUMNS.contains(&name.as_str()) {
            tracing::warn!(%name, "an observed attribute named like a catalog column is left out");
            continue;
        }
        let literal = name.replace('\'', "''");
        pivots.push(format!(
            "MAX(CASE WHEN name = '{literal}' THEN value END) AS {}",
            ident(&name)
        ));
        columns.push(format!(
            "{} AS {}",
            typed(&format!("a.{}", ident(&name)), kind),
            ident(&name)
        ));
        seen.push(name);
    }
    // Declared attributes not observed yet are null (of their declared type when there is one,
    // else of no type, so any predicate plans).
    for name in &rules.declared {
        if !BASE_COLUMNS.contains(&name.as_str()) && !seen.contains(name) {
            let null = match rules.types.get(name) {
                Some(kind) => typed("CAST(NULL AS VARCHAR)", *kind),
                None => "NULL".to_string(),
            };
            columns.push(format!("{null} AS {}", ident(name)));
        }
    }
    let attributes = if pivots.is_empty() {
        String::new()
    } else {
        format!(
            " LEFT JOIN (SELECT item_id, {} FROM (SELECT item_id, name, \
             last_value(value ORDER BY observed_at, source_file) AS value \
             FROM item_attributes GROUP BY item_id, name) GROUP BY item_id) a \
             ON a.item_id = k.item_id",
            pivots.join(", ")
        )
    };
    let extra: String = columns.iter().map(|c| format!(", {c}")).collect();
    let sql = format!(
        "SELECT k.item_id, i.title, i.genres{extra} FROM ({}) k \
         LEFT JOIN items i ON i.item_id = k.item_id{attributes}",
        catalog_keys(with_training)
    );
    let register = |name: &str, sql: &str| {
        let sql = sql.to_string();
        let name = name.to_string();
        async move {
            let view = ctx
                .sql(&sql)
                .await
                .map_err(Error::query("the rules' catalog"))?
                .into_view();
            ctx.register_table(name.as_str(), view)
                .map_err(Error::query("the rules' catalog"))?;
            Ok::<_, Error>(())
        }
    };
    register("catalog", &sql).await?;
    if rules.deletions {
        register("deleted_items", DELETED_SQL).await?;
    }
    Ok(())
}

/// Plans every query of `rules` on `ctx` (with `catalog` registered); an error names the key
/// at fault and the catalog's columns.
pub(crate) async fn check(ctx: &SessionContext, rules: &ItemRules) -> Result<()> {
    let columns = ctx
        .table("catalog")
        .await
        .map_err(Error::query("the rules' catalog"))?
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect::<Vec<_>>()
        .join(", ");
    let bad = |key: &str, value: &str, e: &dyn std::fmt::Display| Error::BadSql {
        file: format!("[rules] {key} = {value:?}"),
        reason: format!(
            "cannot be evaluated over the catalog ({e}); the catalog's columns: {columns}"
        ),
    };
    for (key, predicate) in [
        ("exclude_where", &rules.exclude_where),
        ("include_where", &rules.include_where),
        ("promote_where", &rules.promote_where),
    ] {
        let Some(p) = predicate else { continue };
        let sql = format!("SELECT ({p}) AS rule FROM catalog");
        let df = ctx.sql(&sql).await.map_err(|e| bad(key, p, &e))?;
        let is_bool = matches!(
            df.schema().field(0).data_type(),
            DataType::Boolean | DataType::Null
        );
        if !is_bool {
            return Err(bad(
                key,
                p,
                &format!(
                    "it is {}, not true or false",
                    df.schema().field(0).data_type()
                ),
            ));
        }
    }
    for c in &rules.group_by {
        let sql = format!("SELECT {} FROM catalog", ident(c));
        ctx.sql(&sql)
            .await
            .map_err(|e| bad(&format!("max_per.{c}"), c, &e))?;
    }
    Ok(())
}

impl Warehouse {
    /// Checks the SQL parts of `[rules]` against the catalog as the warehouse has it now,
    /// before any night runs.
    pub async fn check_item_rules(&self, rules: &ItemRules) -> Result<()> {
        if rules.is_empty() {
            return Ok(());
        }
        let items = self.table(Table::Items).await?;
        let attributes = self.table(Table::ItemAttributes).await?;
        let ctx = self
            .session_over([(Table::Items, items), (Table::ItemAttributes, attributes)])
            .await?;
        let types = attribute_types(&ctx, &rules.types).await?;
        register_catalog(&ctx, false, rules, &types).await?;
        check(&ctx, rules).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_become_flags_and_caps_become_groups() {
        let rules = ItemRules {
            exclude_where: Some("genres LIKE '%Horror%'".into()),
            include_where: None,
            promote_where: Some("item_id = 7".into()),
            group_by: vec!["ti\"tle".into()],
            ..ItemRules::default()
        };
        let flags = flags_sql(&rules);
        assert!(
            flags.contains(
                "(NOT TRUE) OR COALESCE((genres LIKE '%Horror%'), FALSE) AS excluded, \
                 COALESCE((item_id = 7), FALSE) AS promoted"
            ),
            "{flags}"
        );
        let groups = groups_sql(&rules).expect("one cap");
        assert!(
            groups.contains("'ti\"tle' AS attribute, CAST(\"ti\"\"tle\" AS VARCHAR)"),
            "{groups}"
        );
        assert_eq!(groups_sql(&ItemRules::default()), None);
    }
}
