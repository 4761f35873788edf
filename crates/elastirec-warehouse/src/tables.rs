//! The warehouse's Delta tables: their schemas, creation and a SQL session over them.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::kernel::{DataType as DeltaType, StructField};

use elastirec_core::Lake;
use elastirec_core::layout::Table;

use crate::{Error, Result};

/// Timestamps are stored as UTC microseconds, Delta's `timestamp` type.
pub(crate) fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Arrow schema of a table, in column order.
pub(crate) fn schema(table: Table) -> SchemaRef {
    let f = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
    Arc::new(Schema::new(match table {
        Table::Events => vec![
            f("user_id", DataType::Int64, false),
            f("item_id", DataType::Int64, false),
            f("value", DataType::Float32, false),
            f("event_time", utc_micros(), false),
            f("event_type", DataType::Utf8, true),
            f("source_file", DataType::Utf8, false),
            f("event_date", DataType::Date32, false),
            // The producer's event id (layout 3), when `[events] event_id_column` names one.
            f("event_id", DataType::Utf8, true),
        ],
        Table::Items => vec![
            f("item_id", DataType::Int64, false),
            f("title", DataType::Utf8, true),
            f("genres", DataType::Utf8, true),
            f("source_file", DataType::Utf8, false),
        ],
        Table::Loads => vec![
            f("path", DataType::Utf8, false),
            f("target", DataType::Utf8, false),
            f("day", DataType::Date32, true),
            f("size", DataType::Int64, false),
            f("e_tag", DataType::Utf8, true),
            f("last_modified", utc_micros(), false),
            f("rows_loaded", DataType::Int64, false),
            f("rows_rejected", DataType::Int64, false),
            f("table_version", DataType::Int64, false),
            f("night", DataType::Date32, false),
            f("loaded_at", utc_micros(), false),
        ],
        Table::Rejects => vec![
            f("file", DataType::Utf8, false),
            f("line", DataType::Int64, false),
            f("column", DataType::Utf8, true),
            f("reason", DataType::Utf8, false),
            f("raw_line", DataType::Utf8, true),
            f("night", DataType::Date32, false),
            f("rejected_at", utc_micros(), false),
        ],
        Table::Erasures => vec![
            f("erasure_id", DataType::Utf8, false),
            f("id_hash", DataType::Utf8, false),
            f("requested_at", utc_micros(), false),
            f("completed_at", utc_micros(), true),
            f("events_deleted", DataType::Int64, false),
            f("rejects_deleted", DataType::Int64, false),
            f("events_version", DataType::Int64, false),
            f("rejects_version", DataType::Int64, false),
            f("details", DataType::Utf8, true),
            f("vacuumed_at", utc_micros(), true),
        ],
        Table::Ids => vec![
            f("kind", DataType::Utf8, false),
            // Null once `forget` erased the user it named: the id stays taken.
            f("external", DataType::Utf8, true),
            f("id", DataType::Int64, false),
            f("night", DataType::Date32, false),
            f("assigned_at", utc_micros(), false),
        ],
        Table::ItemAttributes => vec![
            f("item_id", DataType::Int64, false),
            f("name", DataType::Utf8, false),
            f("value", DataType::Utf8, true),
            // The time of the event it was seen on: the latest wins.
            f("observed_at", utc_micros(), false),
            f("source_file", DataType::Utf8, false),
        ],
        Table::Availability => vec![
            f("item_id", DataType::Int64, false),
            f("available_from", DataType::Date32, true),
            f("available_to", DataType::Date32, true),
            f("region", DataType::Utf8, true),
            f("segment", DataType::Utf8, true),
            f("source_file", DataType::Utf8, false),
        ],
    }))
}

fn partition_columns(table: Table) -> Vec<String> {
    match table {
        Table::Events => vec!["event_date".into()],
        _ => Vec::new(),
    }
}

fn delta_type(t: &DataType) -> Result<DeltaType> {
    Ok(match t {
        DataType::Int64 => DeltaType::LONG,
        DataType::Float32 => DeltaType::FLOAT,
        DataType::Utf8 => DeltaType::STRING,
        DataType::Date32 => DeltaType::DATE,
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => DeltaType::TIMESTAMP,
        other => return Err(Error::Internal(format!("no Delta type for {other}"))),
    })
}

/// The warehouse of one lake.
#[derive(Debug, Clone)]
pub struct Warehouse {
    lake: Lake,
}

impl Warehouse {
    /// Opens the warehouse, creating any of its tables that do not exist yet.
    pub async fn open(lake: &Lake) -> Result<Warehouse> {
        // delta-rs registers its S3 handlers from a constructor; say so explicitly, once, so an
        // `s3://` table never depends on link order.
        static S3_HANDLERS: std::sync::Once = std::sync::Once::new();
        S3_HANDLERS.call_once(|| deltalake::aws::register_handlers(None));
        let wh = Warehouse { lake: lake.clone() };
        for table in Table::ALL {
            wh.ensure(table).await?;
        }
        Ok(wh)
    }

    /// The lake this warehouse lives in.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    fn table_url(&self, table: Table) -> url::Url {
        let mut url = self.lake.url_of(&table.path());
        // Delta table URLs name a folder.
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        url
    }

    /// Loads a table at its latest version (or creates nothing: see [`Warehouse::open`]).
    pub(crate) async fn table(&self, table: Table) -> Result<DeltaTable> {
        let url = self.table_url(table);
        self.table_builder(url)
            .map_err(Error::delta(table.name()))?
            .load()
            .await
            .map_err(Error::delta(table.name()))
    }

    /// delta-rs's handle on the table at `url`, reaching storage through the lake's own client
    /// where the lake has one for tables ([`Lake::bucket_store`]: S3, with its credentials and
    /// retries), else through the lake's options.
    fn table_builder(&self, url: url::Url) -> deltalake::DeltaResult<deltalake::DeltaTableBuilder> {
        let mut builder = deltalake::DeltaTableBuilder::from_url(url.clone())?;
        if !self.lake.options().is_empty() {
            builder = builder.with_storage_options(self.lake.options().clone());
        }
        if let Some(store) = self.lake.bucket_store() {
            builder = builder.with_storage_backend(store, url);
        }
        Ok(builder)
    }

    /// Adds the columns of [`schema`] that an older layout's table lacks (layout 3 added
    /// `events.event_id`); returns the names added. Old rows read the new columns as null.
    pub async fn add_missing_columns(&self, table: Table) -> Result<Vec<String>> {
        let handle = self.table(table).await?;
        let existing: Vec<String> = handle
            .snapshot()
            .map_err(Error::delta(table.name()))?
            .schema()
            .fields()
            .map(|f| f.name().to_string())
            .collect();
        let mut missing = Vec::new();
        for field in schema(table).fields() {
            if !existing.iter().any(|e| e == field.name()) {
                missing.push(StructField::new(
                    field.name().clone(),
                    delta_type(field.data_type())?,
                    true,
                ));
            }
        }
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let names = missing.iter().map(|f| f.name().to_string()).collect();
        handle
            .add_columns()
            .with_fields(missing)
            .await
            .map_err(Error::delta(table.name()))?;
        Ok(names)
    }

    /// Creates `table` if it does not exist yet (`migrate` creates the tables a layout adds).
    pub(crate) async fn ensure(&self, table: Table) -> Result<()> {
        let url = self.table_url(table);
        if self.lake.is_local() {
            // delta-rs needs the folder of a local table to exist before creating it.
            let dir = url
                .to_file_path()
                .map_err(|()| Error::Internal(format!("{url} is not a local path")))?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))?;
        }
        // A handle whether or not the table exists yet (as `DeltaTable::try_from_url`).
        let mut handle = self
            .table_builder(url)
            .and_then(|b| b.build())
            .map_err(Error::delta(table.name()))?;
        match handle.load().await {
            Ok(()) | Err(deltalake::DeltaTableError::NotATable(_)) => {}
            Err(e) => return Err(Error::delta(table.name())(e)),
        }
        if handle.version().is_some() {
            return Ok(());
        }
        let mut columns = Vec::new();
        for field in schema(table).fields() {
            columns.push(StructField::new(
                field.name().clone(),
                delta_type(field.data_type())?,
                field.is_nullable(),
            ));
        }
        let created = handle
            .create()
            .with_table_name(table.name())
            .with_columns(columns)
            .with_partition_columns(partition_columns(table))
            .await;
        match created {
            Ok(_) => Ok(()),
            // Another process created it first: fine.
            Err(deltalake::DeltaTableError::VersionAlreadyExists(_)) => Ok(()),
            Err(e) => Err(Error::delta(table.name())(e)),
        }
    }

    /// The current version of every table, by name.
    pub async fn versions(&self) -> Result<BTreeMap<String, i64>> {
        let mut out = BTreeMap::new();
        for table in Table::ALL {
            let t = self.table(table).await?;
            out.insert(
                table.name().to_string(),
                t.version().map_or(-1, |v| v as i64),
            );
        }
        Ok(out)
    }

    /// A SQL session with every table registered under its name, at its latest version.
    pub async fn session(&self) -> Result<SessionContext> {
        let tables = futures::future::try_join_all(Table::ALL.map(|t| self.table(t))).await?;
        self.session_over(Table::ALL.into_iter().zip(tables)).await
    }

    /// A SQL session over the given table handles (each at the version it was loaded at).
    pub(crate) async fn session_over(
        &self,
        tables: impl IntoIterator<Item = (Table, DeltaTable)>,
    ) -> Result<SessionContext> {
        let ctx = SessionContext::new_with_config(sql_config());
        for (table, handle) in tables {
            handle
                .update_datafusion_session(&ctx.state())
                .map_err(Error::delta(table.name()))?;
            let provider = handle
                .table_provider()
                .await
                .map_err(Error::query(format!("scan {}", table.name())))?;
            ctx.register_table(table.name(), provider)
                .map_err(Error::query(format!("register {}", table.name())))?;
        }
        Ok(ctx)
    }

    /// Runs a SQL query over the tables and collects the result.
    pub async fn sql(&self, query: &str) -> Result<Vec<deltalake::arrow::array::RecordBatch>> {
        let ctx = self.session().await?;
        let df = ctx.sql(query).await.map_err(Error::query(query))?;
        df.collect().await.map_err(Error::query(query))
    }
}

/// The settings of every SQL session over the tables.
pub(crate) fn sql_config() -> SessionConfig {
    SessionConfig::new()
        .with_target_partitions(rayon::current_num_threads().max(1))
        .with_information_schema(true)
}
