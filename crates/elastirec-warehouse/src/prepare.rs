//! `prepare`: the recommender's input for night D, made with SQL and unloaded in parallel.
//!
//! Reads `warehouse/events` at its current version (recorded in the manifest), keeps the events
//! of the window `[D - window_days + 1, D]`, and writes one row per (user, item) pair:
//! the strongest value and the number of events. Pairs seen up to D but not in that set (older
//! than the window or filtered out) go to `seen-*.parquet`, so the recommender can exclude every
//! item a user has already seen, whatever the window. The item dimension (id, title, genres) is
//! unloaded beside them as `items-*.parquet`, so serving can show titles without the warehouse.
//!
//! Each output partition of the query plan is written by its own task to its own Parquet file.
//! The folder is emptied first and `_manifest.json` is written last: a reader that finds the
//! manifest finds every file it lists, complete.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
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
use crate::tables::Warehouse;
use crate::{Error, Result};

impl Warehouse {
    /// Writes the training export of `night` and returns its manifest.
    pub async fn prepare(&self, night: Night, params: &PrepareConfig) -> Result<ExportManifest> {
        let lake = self.lake();
        let events = self.table(Table::Events).await?;
        let items = self.table(Table::Items).await?;
        let mut table_versions = BTreeMap::new();
        table_versions.insert(
            "events".to_string(),
            events.version().map_or(-1, |v| v as i64),
        );
        table_versions.insert(
            "items".to_string(),
            items.version().map_or(-1, |v| v as i64),
        );
        let ctx = self
            .session_over([(Table::Events, events), (Table::Items, items)])
            .await?;

        let window_start = night.minus_days(u64::from(params.window_days) - 1);
        let value_filter = params
            .min_value
            .map(|v| format!(" AND value >= {v}"))
            .unwrap_or_default();
        let aggregate = params.aggregate.sql();
        // Exact duplicates (the same event delivered in two files) count once: the table keeps
        // every loaded row with its source file, training sees each distinct event.
        let window_events = format!(
            "SELECT DISTINCT user_id, item_id, value, event_time, event_type FROM events \
             WHERE event_date >= DATE '{window_start}' AND event_date <= DATE '{night}'{value_filter}"
        );
        let mut filters = Vec::new();
        for (column, min) in [
            ("user_id", params.min_user_events),
            ("item_id", params.min_item_events),
        ] {
            if min > 1 {
                filters.push(format!(
                    "{column} IN (SELECT {column} FROM ({window_events}) AS w \
                     GROUP BY {column} HAVING COUNT(*) >= {min})"
                ));
            }
        }
        let having = if filters.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", filters.join(" AND "))
        };
        let training_sql = format!(
            "SELECT user_id, item_id, {aggregate} AS value, COUNT(*) AS events FROM (\
             {window_events}) AS events{having} GROUP BY user_id, item_id"
        );
        let seen_sql = format!(
            "SELECT user_id, item_id FROM events WHERE event_date <= DATE '{night}' \
             EXCEPT SELECT user_id, item_id FROM ({training_sql}) AS training"
        );

        // Discard any earlier attempt, manifest first, so no reader trusts half of a redo.
        lake.clear_output(
            &layout::training_export_manifest(night),
            &layout::training_export_dir(night),
        )
        .await?;

        let files = unload(
            &ctx,
            lake,
            &training_sql,
            manifest::training_schema(),
            |i| layout::training_export_part(night, i),
        )
        .await?;
        let seen_files = unload(&ctx, lake, &seen_sql, manifest::seen_schema(), |i| {
            layout::training_export_seen_part(night, i)
        })
        .await?;
        // `ingest` rewrites warehouse/items whole, one row per item id.
        let items_sql = "SELECT item_id, title, genres FROM items";
        let item_files = unload(&ctx, lake, items_sql, manifest::items_schema(), |i| {
            layout::training_export_items_part(night, i)
        })
        .await?;

        let counts_sql = format!(
            "SELECT COUNT(DISTINCT user_id) AS users, COUNT(DISTINCT item_id) AS items \
             FROM ({training_sql}) AS training"
        );
        let counts = collect(&ctx, &counts_sql).await?;
        let first = |name: &str| first_count(&counts, name);
        let manifest = ExportManifest {
            night,
            created_at: chrono::Utc::now(),
            rows: files.iter().map(|f| f.rows).sum(),
            files,
            schema: ColumnSpec::of_schema(&manifest::training_schema()),
            seen_rows: seen_files.iter().map(|f| f.rows).sum(),
            seen_files,
            item_rows: item_files.iter().map(|f| f.rows).sum(),
            item_files,
            users: first("users")?,
            items: first("items")?,
            table_versions,
            window_start,
            window_end: night,
            params: serde_json::to_value(params)
                .map_err(|e| Error::Internal(format!("prepare params: {e}")))?,
        };
        elastirec_core::failpoint::hit("prepare.after-parts");
        lake.put_json(&layout::training_export_manifest(night), &manifest)
            .await?;
        Ok(manifest)
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
    schema: deltalake::arrow::datatypes::SchemaRef,
    path_of: impl Fn(usize) -> Path,
) -> Result<Vec<FileEntry>> {
    let df = ctx.sql(sql).await.map_err(Error::query(sql))?;
    let streams = df
        .execute_stream_partitioned()
        .await
        .map_err(Error::query(sql))?;
    let tasks = streams.into_iter().enumerate().map(|(i, stream)| {
        let path = path_of(i);
        let schema = schema.clone();
        let lake = lake.clone();
        tokio::spawn(async move { write_partition(&lake, stream, schema, path).await })
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
