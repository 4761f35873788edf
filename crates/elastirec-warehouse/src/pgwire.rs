//! `warehouse serve`: the warehouse tables over the PostgreSQL wire protocol, read-only.
//!
//! `psql` and BI tools connect to it like to PostgreSQL (no password; TLS off) and query
//! `events`, `items`, `loads` and `rejects` with DataFusion SQL (`datafusion-postgres`), with a
//! `pg_catalog` so that tools can list tables. Every statement is planned first and refused if
//! it would write (INSERT, UPDATE, DELETE, COPY, CREATE, DROP, ...): the tables change only
//! through elastirec's own commands. The server reloads a table when a nightly run commits to
//! it, so queries see the newest version within [`REFRESH`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::{QueryHook, ServerOptions};
use deltalake::datafusion::common::ParamValues;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::sql::parser::Statement as DfStatement;
use deltalake::datafusion::sql::sqlparser::ast::Statement;

use elastirec_core::layout::Table;

use crate::tables::Warehouse;
use crate::{Error, Result};

/// How often the server looks for new table versions.
pub const REFRESH: Duration = Duration::from_secs(5);

/// SQLSTATE `read_only_sql_transaction`.
const READ_ONLY: &str = "25006";

impl Warehouse {
    /// Serves the tables on `host:port` until `stop` completes. Returns an error when the port
    /// cannot be bound.
    pub async fn serve_postgres(
        &self,
        host: &str,
        port: u16,
        stop: impl Future<Output = ()>,
    ) -> Result<()> {
        let ctx = Arc::new(self.session().await?);
        setup_pg_catalog(
            &ctx,
            "datafusion",
            Arc::new(datafusion_postgres::auth::AuthManager::default()),
        )
        .map_err(|e| Error::Internal(format!("pg_catalog: {e}")))?;
        // Bind here first, so a taken port is a clear error rather than a log line.
        std::net::TcpListener::bind((host, port)).map_err(|e| Error::Serve {
            address: format!("{host}:{port}"),
            reason: e.to_string(),
        })?;
        let options = ServerOptions::new()
            .with_host(host.to_string())
            .with_port(port);
        // The read-only check first, then datafusion-postgres's own hooks (cursors, SET/SHOW,
        // transactions), which `serve` would install.
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(ReadOnly),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let server = datafusion_postgres::serve_with_hooks(Arc::clone(&ctx), &options, hooks);
        let refresh = self.keep_fresh(Arc::clone(&ctx));
        tokio::select! {
            served = server => served.map_err(|e| Error::Serve {
                address: format!("{host}:{port}"),
                reason: e.to_string(),
            }),
            () = refresh => Ok(()),
            () = stop => Ok(()),
        }
    }

    /// Re-registers each table whose version moved, forever.
    async fn keep_fresh(&self, ctx: Arc<SessionContext>) {
        let mut seen: BTreeMap<&'static str, Option<i64>> = BTreeMap::new();
        loop {
            for table in Table::ALL {
                let Ok(handle) = self.table(table).await else {
                    continue; // a transient store error: try again next round
                };
                let version = handle.version().map(|v| v as i64);
                let before = seen.insert(table.name(), version);
                if before.is_none() || before == Some(version) {
                    continue; // first look (registered at start), or unchanged
                }
                let registered = async {
                    handle.update_datafusion_session(&ctx.state()).ok()?;
                    let provider = handle.table_provider().await.ok()?;
                    ctx.register_table(table.name(), provider).ok()
                };
                if registered.await.is_some() {
                    tracing::info!(
                        table = table.name(),
                        ?version,
                        "serving a new table version"
                    );
                }
            }
            tokio::time::sleep(REFRESH).await;
        }
    }
}

/// Refuses statements that would change anything.
struct ReadOnly;

impl ReadOnly {
    async fn check(statement: &Statement, ctx: &SessionContext) -> Option<PgWireResult<()>> {
        // Statements DataFusion cannot plan (SET of PostgreSQL settings, transactions, cursors)
        // are left to the other hooks, none of which writes.
        let plan = ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(statement.clone())))
            .await
            .ok()?;
        refuse_writes(&plan)
    }
}

fn refuse_writes(plan: &LogicalPlan) -> Option<PgWireResult<()>> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(true);
    match options.verify_plan(plan) {
        Ok(()) => None,
        Err(e) => Some(Err(PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            READ_ONLY.into(),
            format!(
                "the elastirec warehouse is read-only over this connection ({}); tables change \
                 only through elastirec's commands",
                e.strip_backtrace()
            ),
        ))))),
    }
}

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match ReadOnly::check(statement, session_context).await? {
            Ok(()) => None,
            Err(e) => Some(Err(e)),
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match ReadOnly::check(statement, session_context).await? {
            Ok(()) => None,
            Err(e) => Some(Err(e)),
        }
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match refuse_writes(logical_plan)? {
            Ok(()) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
