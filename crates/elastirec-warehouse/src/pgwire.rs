//! `warehouse serve`: the warehouse tables over the PostgreSQL wire protocol, read-only.
//!
//! `psql` and BI tools connect to it like to PostgreSQL (no password; TLS off) and query
//! `events`, `items`, `loads`, `rejects`, `erasures` and `availability` with DataFusion SQL
//! (`datafusion-postgres`), with a `pg_catalog` so that tools can list tables. Only reading
//! statements run: queries, `EXPLAIN` of a query, `SHOW`, `SET` of PostgreSQL session settings
//! (not `datafusion.*`: the server's SQL context is shared by every client), cursors over
//! queries and transaction control. Everything else (COPY, CREATE [EXTERNAL] TABLE, INSERT,
//! a cursor or CTE around a write, PREPARE, ...) is refused before it reaches DataFusion, and a
//! query is also planned and refused if its plan would write: the tables change only through
//! elastirec's own commands. Before a statement runs, the
//! server re-reads the tables' versions (at most once per [`REFRESH`]) and swaps in any table a
//! nightly run committed to.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
use deltalake::datafusion::sql::sqlparser::ast::{ObjectName, Set, Statement, visit_statements};

use elastirec_core::layout::Table;

use crate::tables::Warehouse;
use crate::{Error, Result};

/// How often, at most, the server looks for new table versions.
pub const REFRESH: Duration = Duration::from_secs(2);

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
        let read_only = ReadOnly {
            warehouse: self.clone(),
            seen: Mutex::new(Freshness::default()),
        };
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(read_only),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let server = datafusion_postgres::serve_with_hooks(Arc::clone(&ctx), &options, hooks);
        tokio::select! {
            served = server => served.map_err(|e| Error::Serve {
                address: format!("{host}:{port}"),
                reason: e.to_string(),
            }),
            () = stop => Ok(()),
        }
    }

    /// Re-registers in `ctx` each table whose version moved since `seen` recorded it.
    async fn refresh(&self, ctx: &SessionContext, seen: &Mutex<Freshness>) {
        {
            let Ok(state) = seen.lock() else { return };
            if state.checked.is_some_and(|t| t.elapsed() < REFRESH) {
                return;
            }
        }
        let mut versions = BTreeMap::new();
        for table in Table::ALL {
            let Ok(handle) = self.table(table).await else {
                continue; // a transient store error: the registered version stays
            };
            let version = handle.version().map(|v| v as i64);
            let known = seen
                .lock()
                .ok()
                .and_then(|s| s.versions.get(table.name()).copied());
            versions.insert(table.name(), version);
            if known == Some(version) {
                continue;
            }
            let registered = async {
                handle.update_datafusion_session(&ctx.state()).ok()?;
                let provider = handle.table_provider().await.ok()?;
                // Registering over an existing name is an error: replace it.
                ctx.deregister_table(table.name()).ok()?;
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
        if let Ok(mut state) = seen.lock() {
            state.versions.extend(versions);
            state.checked = Some(Instant::now());
        }
    }
}

/// The table versions a session serves, and when they were last checked.
#[derive(Debug, Default)]
struct Freshness {
    versions: BTreeMap<&'static str, Option<i64>>,
    checked: Option<Instant>,
}

/// Refuses statements that would change anything, and serves new table versions.
struct ReadOnly {
    warehouse: Warehouse,
    seen: Mutex<Freshness>,
}

impl ReadOnly {
    async fn check(&self, statement: &Statement, ctx: &SessionContext) -> Option<PgWireResult<()>> {
        if let Some(what) = refused(statement) {
            return Some(Err(read_only(what)));
        }
        self.warehouse.refresh(ctx, &self.seen).await;
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

/// What makes a statement unfit for this read-only connection, if anything (see the module
/// documentation for what runs).
fn refused(statement: &Statement) -> Option<String> {
    use Statement as S;
    match statement {
        S::Query(_)
        | S::Explain { .. }
        | S::ExplainTable { .. }
        | S::Declare { .. }
        | S::Fetch { .. }
        | S::Close { .. }
        | S::StartTransaction { .. }
        | S::Commit { .. }
        | S::Rollback { .. }
        | S::Savepoint { .. }
        | S::ReleaseSavepoint { .. }
        | S::Discard { .. }
        | S::Deallocate { .. }
        | S::ShowVariable { .. }
        | S::ShowVariables { .. }
        | S::ShowStatus { .. }
        | S::ShowTables { .. }
        | S::ShowColumns { .. }
        | S::ShowFunctions { .. }
        | S::ShowCreate { .. }
        | S::ShowCatalogs { .. }
        | S::ShowDatabases { .. }
        | S::ShowSchemas { .. }
        | S::ShowViews { .. }
        | S::ShowCollation { .. }
        | S::ShowCharset(_)
        | S::ShowObjects(_) => {}
        S::Set(set) => return set_refused(set),
        other => return Some(format!("{} statements are not run", keyword(other))),
    }
    // What an EXPLAIN, a cursor or a CTE holds must be a query too (`DECLARE c CURSOR FOR
    // INSERT ...`, `EXPLAIN ANALYZE DELETE ...`, `WITH x AS (DELETE ...)`).
    let mut inner: Option<String> = None;
    let _ = visit_statements(statement, |s| {
        if !std::ptr::eq(s, statement) && !matches!(s, S::Query(_)) {
            inner = Some(format!(
                "a {} inside another statement is not run",
                keyword(s)
            ));
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    });
    inner
}

/// Which `SET`s run: PostgreSQL session settings that clients send (`extra_float_digits`,
/// `application_name`, `TIME ZONE`, `NAMES`), never DataFusion's, whose context every client
/// shares.
fn set_refused(set: &Set) -> Option<String> {
    let datafusion = |name: &ObjectName| {
        name.to_string()
            .to_ascii_lowercase()
            .trim_start_matches('"')
            .starts_with("datafusion")
    };
    let shared = "SET of DataFusion settings is not run: the server's settings are shared by \
                  every client";
    match set {
        Set::SingleAssignment { variable, .. } if datafusion(variable) => Some(shared.into()),
        Set::MultipleAssignments { assignments }
            if assignments.iter().any(|a| datafusion(&a.name)) =>
        {
            Some(shared.into())
        }
        Set::SingleAssignment { .. }
        | Set::MultipleAssignments { .. }
        | Set::SetTimeZone { .. }
        | Set::SetNames { .. }
        | Set::SetNamesDefault { .. }
        | Set::SetTransaction { .. } => None,
        other => Some(format!("{} is not run", keyword_of(&other.to_string()))),
    }
}

/// A statement's leading words, for messages (`COPY`, `CREATE EXTERNAL TABLE`).
fn keyword(statement: &Statement) -> String {
    keyword_of(&statement.to_string())
}

fn keyword_of(sql: &str) -> String {
    sql.split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_alphabetic() || c == '_'))
        .take(3)
        .map(str::to_ascii_uppercase)
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_only(what: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        READ_ONLY.into(),
        format!(
            "the elastirec warehouse is read-only over this connection ({what}); tables change \
             only through elastirec's commands"
        ),
    )))
}

fn refuse_writes(plan: &LogicalPlan) -> Option<PgWireResult<()>> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(true);
    match options.verify_plan(plan) {
        Ok(()) => None,
        Err(e) => Some(Err(read_only(e.strip_backtrace()))),
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
        match self.check(statement, session_context).await? {
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
        match self.check(statement, session_context).await? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    /// The verdict on a statement as the server parses it.
    fn verdict(sql: &str) -> Option<String> {
        let statements = PostgresCompatibilityParser::new()
            .parse(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        refused(&statements[0])
    }

    #[test]
    fn only_reading_statements_pass() {
        for ok in [
            "SELECT COUNT(*) FROM events",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "EXPLAIN SELECT 1",
            "SHOW TABLES",
            "SHOW search_path",
            "SET extra_float_digits = 3",
            "SET application_name = 'psql'",
            "SET TIME ZONE 'UTC'",
            "BEGIN",
            "COMMIT",
            "DECLARE c CURSOR FOR SELECT * FROM events",
            "FETCH 10 FROM c",
            "CLOSE c",
            "DISCARD ALL",
        ] {
            assert_eq!(verdict(ok), None, "{ok}");
        }
        for (bad, says) in [
            ("COPY (SELECT 42 AS x) TO '/tmp/x.csv'", "COPY"),
            (
                "DECLARE c CURSOR FOR INSERT INTO erasures SELECT * FROM erasures",
                "INSERT",
            ),
            ("EXPLAIN ANALYZE DELETE FROM events", "DELETE"),
            (
                "WITH d AS (DELETE FROM events RETURNING *) SELECT * FROM d",
                "DELETE",
            ),
            ("CREATE TABLE x AS SELECT 1", "CREATE TABLE"),
            (
                "CREATE EXTERNAL TABLE e STORED AS PARQUET LOCATION '/etc'",
                "CREATE",
            ),
            ("INSERT INTO events SELECT * FROM events", "INSERT"),
            (
                "SET datafusion.execution.target_partitions = 1",
                "DataFusion",
            ),
            (
                "SET \"datafusion.runtime.memory_limit\" = '1G'",
                "DataFusion",
            ),
            ("PREPARE p AS DELETE FROM events", "PREPARE"),
            ("DROP TABLE events", "DROP"),
        ] {
            let why = verdict(bad).unwrap_or_else(|| panic!("{bad} passed"));
            assert!(why.contains(says), "{bad}: {why}");
        }
    }
}
