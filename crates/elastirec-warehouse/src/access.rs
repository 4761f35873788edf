//! SQL access for analysts: read-only queries over the warehouse tables, printed as a table,
//! CSV or JSON lines.

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::execution::context::SQLOptions;

use crate::{Error, Result, Warehouse};

/// How query results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row (JSON lines).
    Json,
}

impl Warehouse {
    /// Runs one read-only statement (`SELECT`, `WITH`, `SHOW`, `DESCRIBE`, `EXPLAIN`) over
    /// `events`, `items`, `loads`, `rejects`, `erasures` and `availability`. DDL, DML and
    /// session statements are refused.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let ctx = self.session().await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx
            .sql_with_options(sql, options)
            .await
            .map_err(|source| Error::BadQuery {
                query: sql.to_string(),
                source,
            })?;
        df.collect().await.map_err(|source| Error::BadQuery {
            query: sql.to_string(),
            source,
        })
    }
}

/// Formats batches as `format`.
pub fn format_batches(batches: &[RecordBatch], format: OutputFormat) -> Result<String> {
    let internal = |e: deltalake::arrow::error::ArrowError| Error::Internal(e.to_string());
    match format {
        OutputFormat::Table => Ok(
            deltalake::arrow::util::pretty::pretty_format_batches(batches)
                .map_err(internal)?
                .to_string(),
        ),
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut w = deltalake::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    w.write(b).map_err(internal)?;
                }
            }
            String::from_utf8(out).map_err(|e| Error::Internal(e.to_string()))
        }
        OutputFormat::Json => {
            let mut out = Vec::new();
            {
                let mut w = deltalake::arrow::json::LineDelimitedWriter::new(&mut out);
                for b in batches {
                    w.write(b).map_err(internal)?;
                }
                w.finish().map_err(internal)?;
            }
            String::from_utf8(out).map_err(|e| Error::Internal(e.to_string()))
        }
    }
}
