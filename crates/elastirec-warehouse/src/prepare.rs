//! `prepare`: the recommender's input for night D, made with SQL and unloaded in parallel.
//!
//! Reads `warehouse/events` at its current version (recorded in the manifest), keeps the events
//! of the window `[D - window_days + 1, D]`, and writes one row per (user, item) pair:
//! the strongest value and the number of events. Pairs seen up to D but not in that set (older
//! than the window or filtered out) go to `seen-*.parquet`, so the recommender can exclude every
//! item a user has already seen, whatever the window. The item dimension (id, title, genres) is
//! unloaded beside them as `items-*.parquet`, so serving can show titles without the warehouse,
//! and the item availability windows (`warehouse/availability`) as `availability-*.parquet`, for
//! the offer rules of the recommend step.
//!
//! The four queries are SQL files users can read and override (see [`crate::sql`]); the
//! manifest records a hash of their rendered text. An existing export is replaced only when
//! asked ([`PrepareOptions::overwrite`]).
//!
//! Each output partition of the query plan is written by its own task to its own Parquet file.
//! The folder is emptied first and `_manifest.json` is written last: a reader that finds the
//! manifest finds every file it lists, complete.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::datasource::file_format::parquet::ParquetFormat;
use deltalake::datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::parquet::arrow::AsyncArrowWriter;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;

use elastirec_core::config::PrepareConfig;
use elastirec_core::layout::{self, Table};
use elastirec_core::manifest::{self, ColumnSpec, ExportManifest, FileEntry};
use elastirec_core::{Lake, Night};

use crate::query::first_count;
use crate::sql::{PrepareSql, SqlFile};
use crate::tables::Warehouse;
use crate::{Error, Result};

/// How `prepare` runs: which SQL, and whether an existing export may be replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrepareOptions {
    /// The queries (built-in, or overridden by `[prepare] sql_dir`).
    pub sql: PrepareSql,
    /// Replace the night's export when it already exists (otherwise that is an error).
    pub overwrite: bool,
}

impl PrepareOptions {
    /// The built-in queries, replacing an existing export.
    pub fn overwriting() -> Self {
        PrepareOptions {
            sql: PrepareSql::builtin(),
            overwrite: true,
        }
    }
}

impl Warehouse {
    /// Writes the training export of `night` with the built-in SQL, replacing an existing one.
    pub async fn prepare(&self, night: Night, params: &PrepareConfig) -> Result<ExportManifest> {
        self.prepare_with(night, params, &PrepareOptions::overwriting())
            .await
    }

    /// Writes the training export of `night` and returns its manifest.
    pub async fn prepare_with(
        &self,
        night: Night,
        params: &PrepareConfig,
        options: &PrepareOptions,
    ) -> Result<ExportManifest> {
        let lake = self.lake();
        let manifest_path = layout::training_export_manifest(night);
        if !options.overwrite
            && let Some(existing) = lake
                .get_json::<ExportManifest>(&manifest_path, "training export manifest")
                .await?
        {
            return Err(Error::ExportExists {
                night: night.to_string(),
                path: lake.display_path(&manifest_path),
                created_at: existing.created_at.to_rfc3339(),
            });
        }
        let sql = options.sql.render(night, params)?;
        let events = self.table(Table::Events).await?;
        let items = self.table(Table::Items).await?;
        let availability = self.table(Table::Availability).await?;
        let ids = self.table(Table::Ids).await?;
        let attributes = self.table(Table::ItemAttributes).await?;
        let mut table_versions = BTreeMap::new();
        table_versions.insert(
            "availability".to_string(),
            availability.version().map_or(-1, |v| v as i64),
        );
        table_versions.insert(
            "events".to_string(),
            events.version().map_or(-1, |v| v as i64),
        );
        table_versions.insert(
            "items".to_string(),
            items.version().map_or(-1, |v| v as i64),
        );
        table_versions.insert("ids".to_string(), ids.version().map_or(-1, |v| v as i64));
        let ctx = self
            .session_over([
                (Table::Events, events),
                (Table::Items, items),
                (Table::Availability, availability),
                (Table::Ids, ids),
                (Table::ItemAttributes, attributes),
            ])
            .await?;
        // Discard any earlier attempt, manifest first, so no reader trusts half of a redo.
        lake.clear_output(&manifest_path, &layout::training_export_dir(night))
            .await?;

        let files = unload(
            &ctx,
            lake,
            &sql.training,
            &options.sql.training,
            manifest::training_schema(),
            |i| layout::training_export_part(night, i),
        )
        .await?;
        // `seen.sql` and the counts read the training pairs as the table `training`: the files
        // just written, not the query again (a view ran the whole training query twice more,
        // two thirds of a full-history prepare).
        register_written(&ctx, lake, "training", &files, manifest::training_schema())?;
        let seen_files = unload(
            &ctx,
            lake,
            &sql.seen,
            &options.sql.seen,
            manifest::seen_schema(),
            |i| layout::training_export_seen_part(night, i),
        )
        .await?;
        // Training pairs that may be offered again: only when some event type does not make
        // its items seen for ever.
        let unseen_files = match &sql.unseen {
            Some(unseen) => {
                unload(
                    &ctx,
                    lake,
                    unseen,
                    &options.sql.unseen,
                    manifest::seen_schema(),
                    |i| layout::training_export_unseen_part(night, i),
                )
                .await?
            }
            None => Vec::new(),
        };
        let item_files = unload(
            &ctx,
            lake,
            &sql.items,
            &options.sql.items,
            manifest::items_schema(),
            |i| layout::training_export_items_part(night, i),
        )
        .await?;

        // Offer rules of the recommend step read the availability windows from here.
        let availability_files = unload(
            &ctx,
            lake,
            &sql.availability,
            &options.sql.availability,
            manifest::availability_schema(),
            |i| layout::training_export_availability_part(night, i),
        )
        .await?;

        // Each attribute's type: recorded in the manifest, and the catalog's column types.
        let attribute_types = crate::rules::attribute_types(&ctx, &params.item_rules.types).await?;
        // The SQL parts of [rules], evaluated over the catalog for the recommend step.
        let (item_rule_files, item_group_files) = if params.item_rules.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let rules = &params.item_rules;
            crate::rules::register_catalog(&ctx, true, rules, &attribute_types).await?;
            crate::rules::check(&ctx, rules).await?;
            let flags_sql = crate::rules::flags_sql(rules);
            let flags = unload(
                &ctx,
                lake,
                &flags_sql,
                &SqlFile::builtin("[rules] predicates", &flags_sql),
                crate::rules::flags_schema(),
                |i| layout::training_export_item_rules_part(night, i),
            )
            .await?;
            let groups = match crate::rules::groups_sql(rules) {
                Some(sql) => {
                    unload(
                        &ctx,
                        lake,
                        &sql,
                        &SqlFile::builtin("[rules] max_per", &sql),
                        crate::rules::groups_schema(),
                        |i| layout::training_export_item_groups_part(night, i),
                    )
                    .await?
                }
                None => Vec::new(),
            };
            (flags, groups)
        };

        // Item attributes (feeds, events), for serving to show, and their types.
        let item_attribute_types = attribute_types.into_iter().collect();
        let item_attribute_files = unload(
            &ctx,
            lake,
            crate::rules::ATTRIBUTES_SQL,
            &SqlFile::builtin("item attributes", crate::rules::ATTRIBUTES_SQL),
            crate::rules::groups_schema(),
            |i| layout::training_export_item_attributes_part(night, i),
        )
        .await?;

        // The dictionary's names of string ids, for every step that shows ids to a consumer.
        let id_files = unload(
            &ctx,
            lake,
            IDS_SQL,
            &SqlFile::builtin("ids.sql", IDS_SQL),
            manifest::ids_schema(),
            |i| layout::training_export_ids_part(night, i),
        )
        .await?;

        let counts_sql = "SELECT COUNT(DISTINCT user_id) AS users, \
                          COUNT(DISTINCT item_id) AS items FROM training";
        let counts = collect(&ctx, counts_sql).await?;
        let first = |name: &str| first_count(&counts, name);
        let manifest = ExportManifest {
            night,
            created_at: chrono::Utc::now(),
            rows: files.iter().map(|f| f.rows).sum(),
            files,
            schema: ColumnSpec::of_schema(&manifest::training_schema()),
            seen_rows: seen_files.iter().map(|f| f.rows).sum(),
            seen_files,
            unseen_files,
            item_rule_files,
            item_group_files,
            item_attribute_files,
            item_attribute_types,
            item_rows: item_files.iter().map(|f| f.rows).sum(),
            item_files,
            availability_files,
            id_files,
            users: first("users")?,
            items: first("items")?,
            table_versions,
            window_start: params.window_start(night),
            window_end: night,
            params: serde_json::to_value(params)
                .map_err(|e| Error::Internal(format!("prepare params: {e}")))?,
            sql_hash: Some(sql.hash),
        };
        elastirec_core::failpoint::hit("prepare.after-parts");
        lake.put_json(&manifest_path, &manifest).await?;
        Ok(manifest)
    }
}

/// The id dictionary's entries an export carries: every string id with a name (a forgotten
/// user's row keeps its id and loses its name). Not a user-replaceable query: it is the id
/// boundary, not a modelling choice.
const IDS_SQL: &str = "SELECT kind, id, external FROM ids WHERE external IS NOT NULL";

/// Registers the Parquet files an [`unload`] wrote as table `name` of `ctx`, read through the
/// lake's own store (local folder or S3 alike).
fn register_written(
    ctx: &SessionContext,
    lake: &Lake,
    name: &str,
    files: &[FileEntry],
    schema: deltalake::arrow::datatypes::SchemaRef,
) -> Result<()> {
    let context = || format!("register the written {name} files");
    let table: Arc<dyn TableProvider> = if files.is_empty() {
        Arc::new(MemTable::try_new(schema, vec![vec![]]).map_err(Error::query(context()))?)
    } else {
        // A scheme of our own, so the lake's store (rooted at the lake) answers these paths
        // whatever the lake's URL is.
        let base = url::Url::parse(&format!("{WRITTEN_SCHEME}://lake/"))
            .map_err(|e| Error::Internal(format!("{}: {e}", context())))?;
        ctx.register_object_store(&base, Arc::clone(lake.store()));
        let urls = files
            .iter()
            .map(|f| ListingTableUrl::parse(format!("{base}{}", f.path)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::query(context()))?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(schema);
        Arc::new(ListingTable::try_new(config).map_err(Error::query(context()))?)
    };
    ctx.register_table(name, table)
        .map_err(Error::query(context()))?;
    Ok(())
}

/// The URL scheme under which [`register_written`] reads files back from the lake's store.
const WRITTEN_SCHEME: &str = "elastirec-written";

/// A failing query is the user's fault when their file replaced the built-in one.
fn sql_error(file: &SqlFile) -> impl FnOnce(DataFusionError) -> Error + '_ {
    move |source| {
        if file.is_override() {
            Error::BadSql {
                file: file.origin.clone(),
                reason: source.to_string(),
            }
        } else {
            Error::Query {
                context: file.name.to_string(),
                source,
            }
        }
    }
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    ctx.sql(sql)
        .await
        .map_err(Error::query(sql))?
        .collect()
        .await
        .map_err(Error::query(sql))
}

/// Runs `sql` and writes each non-empty output partition to its own Parquet file, in parallel.
async fn unload(
    ctx: &SessionContext,
    lake: &Lake,
    sql: &str,
    file: &SqlFile,
    schema: deltalake::arrow::datatypes::SchemaRef,
    path_of: impl Fn(usize) -> Path,
) -> Result<Vec<FileEntry>> {
    let df = ctx.sql(sql).await.map_err(sql_error(file))?;
    let streams = df
        .execute_stream_partitioned()
        .await
        .map_err(sql_error(file))?;
    let tasks = streams.into_iter().enumerate().map(|(i, stream)| {
        let path = path_of(i);
        let schema = schema.clone();
        let lake = lake.clone();
        let origin = file.origin.clone();
        let is_override = file.is_override();
        tokio::spawn(async move {
            write_partition(&lake, stream, schema, path)
                .await
                .map_err(|e| match e {
                    // The user's query produced the wrong columns or types.
                    Error::Internal(reason)
                    | Error::Query {
                        context: reason, ..
                    } if is_override => Error::BadSql {
                        file: origin,
                        reason,
                    },
                    e => e,
                })
        })
    });
    let mut files = Vec::new();
    for task in futures::future::join_all(tasks).await {
        let written = task.map_err(|e| Error::Internal(format!("unload task failed: {e}")))??;
        files.extend(written);
    }
    Ok(files)
}

async fn write_partition(
    lake: &Lake,
    mut stream: SendableRecordBatchStream,
    schema: deltalake::arrow::datatypes::SchemaRef,
    path: Path,
) -> Result<Option<FileEntry>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer: Option<AsyncArrowWriter<BufWriter>> = None;
    let mut rows = 0u64;
    let perr = |source| Error::Parquet {
        path: path.to_string(),
        source,
    };
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(Error::query(format!("unload {path}")))?;
        if batch.num_rows() == 0 {
            continue;
        }
        // Query results may use other encodings (string views, nullable flags): write the
        // artefact schema exactly.
        let batch = conform(&batch, &schema)?;
        let w = match writer.as_mut() {
            Some(w) => w,
            None => {
                let sink = BufWriter::new(Arc::clone(lake.store()), path.clone());
                writer.insert(
                    AsyncArrowWriter::try_new(sink, schema.clone(), Some(props.clone()))
                        .map_err(perr)?,
                )
            }
        };
        rows += batch.num_rows() as u64;
        w.write(&batch).await.map_err(perr)?;
    }
    let Some(w) = writer else {
        return Ok(None);
    };
    w.close().await.map_err(perr)?;
    let meta = lake
        .store()
        .head(&path)
        .await
        .map_err(|e| elastirec_core::Error::Store {
            path: lake.display_path(&path),
            source: e,
        })?;
    Ok(Some(FileEntry {
        path: path.to_string(),
        rows,
        bytes: meta.size,
    }))
}

/// Casts a batch to the artefact schema, column by column.
fn conform(
    batch: &RecordBatch,
    schema: &deltalake::arrow::datatypes::SchemaRef,
) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let col = batch.column_by_name(field.name()).ok_or_else(|| {
            Error::Internal(format!("query result lacks column '{}'", field.name()))
        })?;
        let cast = deltalake::arrow::compute::cast(col, field.data_type())
            .map_err(|e| Error::Internal(format!("column '{}': {e}", field.name())))?;
        if !field.is_nullable() && cast.null_count() > 0 {
            return Err(Error::Internal(format!(
                "column '{}' has nulls",
                field.name()
            )));
        }
        columns.push(cast);
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Internal(format!("conform batch: {e}")))
}
