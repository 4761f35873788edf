//! `warehouse serve`: the warehouse tables over the PostgreSQL wire protocol, read-only.
//!
//! `psql` and BI tools connect to it like to PostgreSQL and query `events`, `items`, `loads`,
//! `rejects`, `erasures` and `availability` with DataFusion SQL (`datafusion-postgres` over
//! `pgwire`), with a `pg_catalog` so that tools can list tables.
//!
//! ```text
//!  TCP ──▶ accept loop ──(over [pgwire] max_connections: FATAL 53300)
//!            │ per connection: own SessionContext + memory pool, own hooks
//!            ▼
//!  TLS (optional) ─▶ SCRAM-SHA-256 ([pgwire] user/password) or none (loopback only)
//!            ▼
//!  Simple / extended query ─▶ ReadOnly hook: allowlist on the statement, then on its
//!            │                 logical plan; the checked plan is what runs
//!            ▼
//!  Statement timeout around planning, execution and every row sent
//! ```
//!
//! What runs is an allowlist, decided on the logical plan: a query (or `EXPLAIN`/`SHOW` that
//! DataFusion plans as one) runs only if every node of its plan, subqueries included, is a
//! relational operator and every scan reads a table or table function this connection's context
//! registered (the warehouse tables, `pg_catalog`, `information_schema`). Cursors are declared
//! here from such a checked plan; `FETCH`/`CLOSE`, transaction control, `SHOW` of a session
//! variable and `SET` of the PostgreSQL session settings clients send are answered by
//! datafusion-postgres's hooks from the connection's own state; other `SET`s of non-DataFusion
//! variables are answered and ignored. Everything else (COPY, CREATE [EXTERNAL] TABLE, INSERT,
//! PREPARE, `SET datafusion.*`, ...) is refused with SQLSTATE 25006 before it reaches
//! DataFusion. Each connection has its own `SessionContext`, so nothing one client sets is seen
//! by another. Before a statement runs, the connection re-reads the tables' versions (at most
//! once per [`REFRESH`]) and swaps in any table a nightly run committed to.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{
    SCRAM_ITERATIONS, ScramAuth, gen_salted_password, random_nonce,
};
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::cancel::DefaultCancelHandler;
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{Response, SendableRowStream, Tag};
use datafusion_postgres::pgwire::api::stmt::StoredStatement;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, PgWireServerHandlers,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::pgwire::tokio::{TlsAcceptor, process_socket};
use datafusion_postgres::pgwire::types::format::FormatOptions;
use datafusion_postgres::{DfSessionService, Parser, QueryHook};
use deltalake::datafusion::common::ParamValues;
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::sql::parser::Statement as DfStatement;
use deltalake::datafusion::sql::sqlparser::ast::{
    DeclareType, Expr, Set, Statement, visit_statements,
};
use futures::{Sink, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use elastirec_core::config::PgwireConfig;
use elastirec_core::layout::Table;

use crate::tables::{Warehouse, sql_config};
use crate::{Error, Result};

/// How often, at most, the server looks for new table versions.
pub const REFRESH: Duration = Duration::from_secs(2);

/// SQLSTATE `read_only_sql_transaction`.
const READ_ONLY: &str = "25006";
/// SQLSTATE `query_canceled`.
const CANCELED: &str = "57014";
/// SQLSTATE `too_many_connections`.
const TOO_MANY: &str = "53300";

/// The PostgreSQL session settings that datafusion-postgres's `SetShowHook` keeps in the
/// connection's own state (and reports back) without asking DataFusion.
const SESSION_SETTINGS: [&str; 6] = [
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
];

impl Warehouse {
    /// Serves the tables on `host:port` until `stop` completes, with the authentication, TLS
    /// and limits of `config`. Returns an error when the configuration is unsafe for `host`
    /// (no password on a non-loopback address), a TLS file cannot be read, or the port cannot
    /// be bound.
    pub async fn serve_postgres(
        &self,
        host: &str,
        port: u16,
        config: &PgwireConfig,
        stop: impl Future<Output = ()>,
    ) -> Result<()> {
        let address = format!("{host}:{port}");
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::Serve {
                address: address.clone(),
                reason: e.to_string(),
            })?
            .collect();
        let loopback = !addresses.is_empty() && addresses.iter().all(|a| a.ip().is_loopback());
        if config.password.is_none() && !loopback {
            return Err(Error::ServeSetup(format!(
                "refusing to serve the warehouse on {address} without a password: it is not a \
                 loopback address, so anyone who reaches it could read every table. Set \
                 ELASTIREC_PGWIRE__PASSWORD (or [pgwire] password in the config file), or \
                 serve on --host 127.0.0.1"
            )));
        }
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .map_err(|e| Error::Serve {
                address: address.clone(),
                reason: e.to_string(),
            })?;
        let server = Arc::new(Server {
            warehouse: self.clone(),
            login: config
                .password
                .as_deref()
                .map(|p| Login::new(&config.user, p)),
            statement_timeout: Duration::from_secs(config.statement_timeout_secs),
            memory_limit: usize::try_from(config.memory_limit_mb)
                .unwrap_or(usize::MAX)
                .saturating_mul(1 << 20),
            connections: Arc::new(ConnectionManager::new()),
        });
        tracing::info!(
            %address,
            tls = tls.is_some(),
            authentication = if server.login.is_some() {
                "scram-sha-256"
            } else {
                "none (loopback)"
            },
            max_connections = config.max_connections,
            statement_timeout_secs = config.statement_timeout_secs,
            memory_limit_mb = config.memory_limit_mb,
            "serving the warehouse over the PostgreSQL protocol"
        );
        let limiter = Arc::new(Semaphore::new(config.max_connections));
        let max_connections = config.max_connections;
        tokio::pin!(stop);
        loop {
            let (socket, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut stop => return Ok(()),
            };
            let permit = Arc::clone(&limiter).try_acquire_owned().ok();
            if permit.is_none() {
                tracing::warn!(%peer, max_connections, "refusing a connection: too many clients");
            }
            let handlers = server.connection(permit);
            let tls = tls.clone();
            tokio::spawn(async move {
                if let Err(e) = process_socket(socket, tls, handlers).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
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
            if registered.await.is_some() && known.is_some() {
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

/// Reads a PEM certificate chain and private key into a TLS acceptor
/// (`elastirec_core::tls::server_config`).
fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let config = elastirec_core::tls::server_config(cert, key)
        .map_err(|e| Error::ServeSetup(format!("[pgwire] TLS file {}: {}", e.path, e.why)))?;
    Ok(TlsAcceptor::from(config))
}

/// What every connection of one server shares.
struct Server {
    warehouse: Warehouse,
    login: Option<Login>,
    statement_timeout: Duration,
    memory_limit: usize,
    /// Connections by (pid, secret key), for cancel requests.
    connections: Arc<ConnectionManager>,
}

impl Server {
    /// The handlers of one new connection: its own SQL context (tables are registered at its
    /// first statement, after authentication) and memory pool, or, without `permit`, a refusal.
    fn connection(&self, permit: Option<OwnedSemaphorePermit>) -> Connection {
        let manager = Arc::clone(&self.connections);
        if permit.is_none() {
            return Connection::refused(manager);
        }
        let startup = match &self.login {
            None => Startup::Trust(Trust(Arc::clone(&manager))),
            Some(login) => Startup::Scram(Box::new(
                SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                    .with_scram(ScramAuth::new(Arc::new(login.clone())))
                    .with_connection_manager(Arc::clone(&manager)),
            )),
        };
        let ctx = match RuntimeEnvBuilder::new()
            .with_memory_limit(self.memory_limit, 1.0)
            .build_arc()
        {
            Ok(runtime) => SessionContext::new_with_config_rt(sql_config(), runtime),
            Err(e) => {
                // Building a runtime with a memory pool does not fail in practice; if it did,
                // the connection is refused rather than served without a limit.
                tracing::error!(error = %e, "cannot build a connection's runtime");
                return Connection::refused(manager);
            }
        };
        let read_only = ReadOnly {
            warehouse: self.warehouse.clone(),
            seen: Mutex::new(Freshness::default()),
            catalog: tokio::sync::OnceCell::new(),
        };
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(read_only),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        Connection {
            startup: Arc::new(startup),
            session: Arc::new(Session {
                inner: Arc::new(DfSessionService::new_with_hooks(Arc::new(ctx), hooks)),
                timeout: self.statement_timeout,
            }),
            cancel: Arc::new(DefaultCancelHandler::new(manager)),
            _permit: permit,
        }
    }
}

/// The pgwire handlers of one connection; the connection slot is given back when the
/// connection ends and this is dropped.
struct Connection {
    startup: Arc<Startup>,
    session: Arc<Session>,
    cancel: Arc<DefaultCancelHandler>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Connection {
    fn refused(manager: Arc<ConnectionManager>) -> Connection {
        Connection {
            startup: Arc::new(Startup::TooMany),
            session: Arc::new(Session {
                inner: Arc::new(DfSessionService::new_with_hooks(
                    Arc::new(SessionContext::new()),
                    Vec::new(),
                )),
                timeout: Duration::ZERO,
            }),
            cancel: Arc::new(DefaultCancelHandler::new(manager)),
            _permit: None,
        }
    }
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.session)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.session)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }

    fn cancel_handler(&self) -> Arc<impl datafusion_postgres::pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// Logs what is sent to clients as errors (failed logins included); never a password, which
/// no error holds.
struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        tracing::info!(peer = %client.socket_addr(), %error, "sending an error to a client");
    }
}

/// How a connection starts.
enum Startup {
    /// No password configured (loopback only): every user is let in.
    Trust(Trust),
    /// SCRAM-SHA-256 against `[pgwire] user` and `password`.
    Scram(Box<SASLAuthStartupHandler<DefaultServerParameterProvider>>),
    /// `[pgwire] max_connections` are open: refused with FATAL 53300.
    TooMany,
}

struct Trust(Arc<ConnectionManager>);

impl NoopStartupHandler for Trust {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.0))
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Trust(trust) => trust.on_startup(client, message).await,
            Startup::Scram(scram) => scram.on_startup(client, message).await,
            Startup::TooMany => Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                TOO_MANY.into(),
                "sorry, too many clients already ([pgwire] max_connections)".into(),
            )))),
        }
    }
}

/// The one login of `[pgwire]`, as SCRAM needs it: the password salted and hashed once at
/// start (the password itself is not kept).
#[derive(Clone)]
struct Login {
    user: String,
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl Login {
    fn new(user: &str, password: &str) -> Login {
        let salt = random_nonce().into_bytes();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Login {
            user: user.to_string(),
            salt,
            salted,
        }
    }
}

impl Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AuthSource for Login {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        match login.user() {
            Some(user) if user == self.user => {
                Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
            }
            // The same error as a wrong password: which users exist is not told.
            other => Err(PgWireError::InvalidPassword(
                other.unwrap_or_default().to_string(),
            )),
        }
    }
}

/// The query handlers of one connection: datafusion-postgres's, under the statement timeout.
struct Session {
    inner: Arc<DfSessionService>,
    timeout: Duration,
}

/// Where datafusion-postgres's `SetShowHook` keeps a client's `SET statement_timeout`.
const CLIENT_TIMEOUT: &str = "statement_timeout_ms";

impl Session {
    /// When a statement starting now must end: the server's timeout, or the client's own
    /// `statement_timeout` if shorter.
    fn deadline(&self, client: &impl ClientInfo) -> tokio::time::Instant {
        let asked = client
            .metadata()
            .get(CLIENT_TIMEOUT)
            .and_then(|ms| ms.parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis);
        let timeout = asked.map_or(self.timeout, |asked| asked.min(self.timeout));
        tokio::time::Instant::now() + timeout
    }
}

fn timed_out() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        CANCELED.into(),
        "canceling statement due to statement timeout ([pgwire] statement_timeout_secs)".into(),
    )))
}

/// Ends a response's rows with a timeout error at `deadline`: rows are produced while they are
/// sent, so the timeout must cover them too.
fn bounded(response: Response, deadline: tokio::time::Instant) -> Response {
    let Response::Query(mut query) = response else {
        return response;
    };
    let empty: SendableRowStream = Box::pin(futures::stream::empty());
    let rows = std::mem::replace(&mut query.data_rows, empty);
    let limited = futures::stream::unfold(
        Some(rows),
        move |rows: Option<SendableRowStream>| async move {
            let mut rows = rows?;
            match tokio::time::timeout_at(deadline, rows.next()).await {
                Ok(Some(row)) => Some((row, Some(rows))),
                Ok(None) => None,
                Err(_) => Some((Err(timed_out()), None)),
            }
        },
    );
    query.data_rows = Box::pin(limited);
    Response::Query(query)
}

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let deadline = self.deadline(&*client);
        let run = SimpleQueryHandler::do_query(&*self.inner, client, query);
        let responses = tokio::time::timeout_at(deadline, run)
            .await
            .map_err(|_| timed_out())??;
        Ok(responses
            .into_iter()
            .map(|r| bounded(r, deadline))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.inner.query_parser()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let deadline = self.deadline(&*client);
        let run = ExtendedQueryHandler::do_query(&*self.inner, client, portal, max_rows);
        let response = tokio::time::timeout_at(deadline, run)
            .await
            .map_err(|_| timed_out())??;
        Ok(bounded(response, deadline))
    }
}

/// The table versions a session serves, and when they were last checked.
#[derive(Debug, Default)]
struct Freshness {
    versions: BTreeMap<&'static str, Option<i64>>,
    checked: Option<Instant>,
}

/// The allowlist of one connection, and its tables kept fresh.
struct ReadOnly {
    warehouse: Warehouse,
    seen: Mutex<Freshness>,
    /// Set once `pg_catalog` is installed in the connection's context.
    catalog: tokio::sync::OnceCell<()>,
}

/// What a statement may do, once checked.
#[derive(Debug)]
enum Verdict {
    /// A query planned and checked here: that plan is what runs.
    Plan(Box<LogicalPlan>),
    /// `DECLARE` of cursors, each over a query planned and checked here: (name, plan).
    Declare(Vec<(String, LogicalPlan)>),
    /// Answered by datafusion-postgres's hooks from the connection's own state, without
    /// DataFusion (`FETCH`, `CLOSE`, `BEGIN`/`COMMIT`/`ROLLBACK`, `SHOW var`, `SET` of a
    /// session setting).
    Hook,
    /// A client `SET` of something this server does not have: answered `SET`, nothing changes.
    Ignore,
}

impl ReadOnly {
    /// Installs `pg_catalog` (once) and swaps in new table versions, then judges `statement`.
    async fn check(&self, statement: &Statement, ctx: &SessionContext) -> PgWireResult<Verdict> {
        self.catalog
            .get_or_try_init(|| async {
                // Here rather than at accept: only clients that logged in cost this.
                setup_pg_catalog(
                    ctx,
                    "datafusion",
                    Arc::new(datafusion_postgres::auth::AuthManager::default()),
                )
                .map_err(|e| PgWireError::ApiError(Box::new(*e)))
            })
            .await?;
        self.warehouse.refresh(ctx, &self.seen).await;
        verdict(statement, ctx).await
    }
}

/// Judges one statement: the allowlist on statements, then on plans (see the module
/// documentation). `Err` holds the refusal sent to the client.
async fn verdict(statement: &Statement, ctx: &SessionContext) -> PgWireResult<Verdict> {
    use Statement as S;
    match statement {
        S::Query(_)
        | S::Explain { .. }
        | S::ExplainTable { .. }
        | S::ShowTables { .. }
        | S::ShowColumns { .. }
        | S::ShowFunctions { .. }
        | S::ShowCreate { .. }
        | S::ShowSchemas { .. }
        | S::ShowDatabases { .. }
        | S::ShowViews { .. } => Ok(Verdict::Plan(Box::new(
            planned(statement.clone(), ctx).await?,
        ))),
        S::Declare { stmts } => {
            let mut cursors = Vec::with_capacity(stmts.len());
            for declare in stmts {
                let (Some(DeclareType::Cursor), Some(name), Some(query)) = (
                    &declare.declare_type,
                    declare.names.first(),
                    &declare.for_query,
                ) else {
                    return Err(read_only(
                        "only DECLARE name CURSOR FOR a query is run".into(),
                    ));
                };
                let plan = planned(S::Query(query.clone()), ctx).await?;
                cursors.push((name.value.clone(), plan));
            }
            Ok(Verdict::Declare(cursors))
        }
        S::Fetch { .. }
        | S::Close { .. }
        | S::StartTransaction { .. }
        | S::Commit { .. }
        | S::Rollback { .. }
        | S::ShowVariable { .. }
        | S::ShowCatalogs { .. } => Ok(Verdict::Hook),
        S::Set(set) => set_verdict(set),
        other => Err(read_only(format!(
            "{} statements are not run",
            keyword(other)
        ))),
    }
}

/// Plans `statement` in `ctx` and checks the plan against the allowlist. A planning error is
/// the client's (an unknown table, a typo) and goes back as it is.
async fn planned(statement: Statement, ctx: &SessionContext) -> PgWireResult<LogicalPlan> {
    // A write inside a query (`DECLARE c CURSOR FOR INSERT ...`, `WITH d AS (DELETE ...)`)
    // would not plan either; say why in the terms of this server.
    let mut inner = None;
    let _ = visit_statements(&statement, |s| {
        if !std::ptr::eq(s, &statement) && !matches!(s, Statement::Query(_)) {
            inner = Some(keyword(s));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if let Some(what) = inner {
        return Err(read_only(format!("a {what} inside a query is not run")));
    }
    let plan = ctx
        .state()
        .statement_to_plan(DfStatement::Statement(Box::new(statement)))
        .await
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    allowed(&plan, ctx)?;
    Ok(plan)
}

/// The allowlist on plans: relational operators over the tables and table functions `ctx`
/// registered; anything else anywhere in the plan (subqueries and explained plans included)
/// refuses it.
fn allowed(plan: &LogicalPlan, ctx: &SessionContext) -> PgWireResult<()> {
    use LogicalPlan as P;
    let mut refusal = None;
    let walked = plan.apply_with_subqueries(|node| {
        let ok = match node {
            P::Projection(_)
            | P::Filter(_)
            | P::Window(_)
            | P::Aggregate(_)
            | P::Sort(_)
            | P::Join(_)
            | P::Repartition(_)
            | P::Union(_)
            | P::SubqueryAlias(_)
            | P::Subquery(_)
            | P::Limit(_)
            | P::Distinct(_)
            | P::Unnest(_)
            | P::RecursiveQuery(_)
            | P::EmptyRelation(_)
            | P::Values(_)
            | P::Explain(_)
            | P::Analyze(_)
            | P::DescribeTable(_) => true,
            P::TableScan(scan) => {
                let name = scan.table_name.table();
                match name.strip_suffix("()") {
                    Some(function) if scan.table_name.schema().is_none() => {
                        ctx.state().table_functions().contains_key(function)
                    }
                    _ => ctx.table_exist(scan.table_name.clone()).unwrap_or(false),
                }
            }
            _ => false,
        };
        if ok {
            Ok(TreeNodeRecursion::Continue)
        } else {
            refusal = Some(node_name(node));
            Ok(TreeNodeRecursion::Stop)
        }
    });
    if let Err(e) = walked {
        return Err(PgWireError::ApiError(Box::new(e)));
    }
    match refusal {
        None => Ok(()),
        Some(what) => Err(read_only(format!("its plan holds {what}"))),
    }
}

/// A plan node's kind, for messages (`Copy`, `Dml: INSERT INTO erasures`, `scan of /etc`).
fn node_name(node: &LogicalPlan) -> String {
    match node {
        LogicalPlan::TableScan(scan) => format!("a scan of unknown table {}", scan.table_name),
        LogicalPlan::Dml(dml) => format!("{} {}", dml.op, dml.table_name),
        LogicalPlan::Copy(_) => "COPY".into(),
        LogicalPlan::Ddl(ddl) => ddl.name().to_string(),
        other => other
            .display()
            .to_string()
            .split([':', '\n'])
            .next()
            .unwrap_or("a statement")
            .to_string(),
    }
}

/// Which `SET`s run: the PostgreSQL session settings kept in the connection's own state,
/// `statement_timeout` (which can only shorten [`Session`]'s) and `TIME ZONE` (in the
/// connection's own context). Other non-DataFusion settings that clients send are ignored;
/// DataFusion's own settings and roles are refused.
fn set_verdict(set: &Set) -> PgWireResult<Verdict> {
    match set {
        Set::SingleAssignment {
            scope: None,
            hivevar: false,
            variable,
            values,
        } => {
            let name = variable.to_string().to_ascii_lowercase();
            let name = name.trim_matches('"');
            if name.starts_with("datafusion") {
                return Err(read_only(format!(
                    "SET {name} is not run: DataFusion's settings (memory, timeouts, \
                     parallelism) are the server's"
                )));
            }
            let literal = matches!(values.first(), Some(Expr::Value(_)));
            if (name == "statement_timeout" && !values.is_empty())
                || (SESSION_SETTINGS.contains(&name) && literal)
            {
                Ok(Verdict::Hook)
            } else {
                Ok(Verdict::Ignore)
            }
        }
        Set::SetTimeZone { local: false, .. } => Ok(Verdict::Hook),
        Set::SingleAssignment { .. }
        | Set::SetTimeZone { .. }
        | Set::SetNames { .. }
        | Set::SetNamesDefault { .. }
        | Set::SetTransaction { .. } => Ok(Verdict::Ignore),
        other => Err(read_only(format!(
            "{} is not run",
            keyword_of(&other.to_string())
        ))),
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

/// Runs a checked plan, as the simple query protocol answers it.
async fn run(
    plan: LogicalPlan,
    ctx: &SessionContext,
    client: &dyn HookClient,
) -> PgWireResult<Response> {
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    Ok(Response::Query(
        encode_dataframe(df, &Format::UnifiedText, Some(options)).await?,
    ))
}

/// Opens cursors over checked plans in the connection's portal store (as datafusion-postgres's
/// cursor hook does, but from the plan that was checked rather than from the query's text).
async fn declare(
    cursors: Vec<(String, LogicalPlan)>,
    ctx: &SessionContext,
    client: &dyn HookClient,
) -> PgWireResult<Response> {
    for (name, plan) in cursors {
        let text = plan.display().to_string();
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        let rows = encode_dataframe(df, &Format::UnifiedText, None).await?;
        let statement = Arc::new(StoredStatement::new(name.clone(), (text, None), vec![]));
        let portal = Portal::new_cursor(name, statement);
        portal.start(rows).await;
        client.portal_store().put_portal(Arc::new(portal));
    }
    Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
}

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let verdict = match self.check(statement, session_context).await {
            Ok(verdict) => verdict,
            Err(e) => return Some(Err(e)),
        };
        match verdict {
            Verdict::Plan(plan) => Some(run(*plan, session_context, client).await),
            Verdict::Declare(cursors) => Some(declare(cursors, session_context, client).await),
            Verdict::Hook => None,
            Verdict::Ignore => Some(Ok(Response::Execution(Tag::new("SET")))),
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match self.check(statement, session_context).await {
            // The checked plan is the statement's: Execute runs it.
            Ok(Verdict::Plan(plan)) => Some(Ok(*plan)),
            // Left to the other hooks' placeholders; judged again at Execute.
            Ok(Verdict::Declare(_) | Verdict::Hook | Verdict::Ignore) => None,
            Err(e) => Some(Err(e)),
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        logical_plan: &LogicalPlan,
        _params: &ParamValues,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let verdict = match verdict(statement, session_context).await {
            Ok(verdict) => verdict,
            Err(e) => return Some(Err(e)),
        };
        match verdict {
            // The plan to run is the one of Parse, which this hook made; check it again all
            // the same, as it is what runs.
            Verdict::Plan(_) => allowed(logical_plan, session_context).err().map(Err),
            Verdict::Declare(cursors) => Some(declare(cursors, session_context, client).await),
            Verdict::Hook => None,
            Verdict::Ignore => Some(Ok(Response::Execution(Tag::new("SET")))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
    use deltalake::arrow::array::Int64Array;
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::arrow::record_batch::RecordBatch;
    use deltalake::datafusion::datasource::MemTable;

    /// A context like a connection's: a table `events`, `pg_catalog` and the default table
    /// functions.
    fn context() -> SessionContext {
        let ctx = SessionContext::new_with_config(sql_config());
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("events", Arc::new(table)).unwrap();
        setup_pg_catalog(
            &ctx,
            "datafusion",
            Arc::new(datafusion_postgres::auth::AuthManager::default()),
        )
        .unwrap();
        ctx
    }

    /// The verdict on a statement as the server parses it.
    async fn judge(sql: &str, ctx: &SessionContext) -> PgWireResult<Verdict> {
        let statements = PostgresCompatibilityParser::new()
            .parse(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        verdict(&statements[0], ctx).await
    }

    fn message(e: PgWireError) -> (String, String) {
        let info = ErrorInfo::from(e);
        (info.code, info.message)
    }

    #[tokio::test]
    async fn reading_statements_pass_and_their_plans_are_kept() {
        let ctx = context();
        for sql in [
            "SELECT COUNT(*) FROM events",
            "WITH x AS (SELECT n FROM events) SELECT * FROM x WHERE n IN (SELECT 1)",
            "SELECT * FROM generate_series(1, 3)",
            "SELECT relname FROM pg_catalog.pg_class",
            "SELECT * FROM information_schema.tables",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT n FROM events",
            "SHOW TABLES",
        ] {
            let verdict = judge(sql, &ctx).await;
            assert!(
                matches!(verdict, Ok(Verdict::Plan(_))),
                "{sql}: {verdict:?}"
            );
        }
        for sql in [
            "SET extra_float_digits = 3",
            "SET application_name = 'psql'",
            "SET statement_timeout = 1000",
            "SET TIME ZONE 'UTC'",
            "SHOW search_path",
            "BEGIN",
            "COMMIT",
            "FETCH 10 FROM c",
            "CLOSE c",
        ] {
            let verdict = judge(sql, &ctx).await;
            assert!(matches!(verdict, Ok(Verdict::Hook)), "{sql}: {verdict:?}");
        }
        for sql in [
            "SET client_min_messages = warning",
            "SET search_path = public",
        ] {
            let verdict = judge(sql, &ctx).await;
            assert!(matches!(verdict, Ok(Verdict::Ignore)), "{sql}: {verdict:?}");
        }
        let verdict = judge("DECLARE c CURSOR FOR SELECT n FROM events", &ctx).await;
        assert!(
            matches!(&verdict, Ok(Verdict::Declare(c)) if c.len() == 1 && c[0].0 == "c"),
            "{verdict:?}"
        );
    }

    #[tokio::test]
    async fn writes_files_settings_and_unknown_statements_are_refused() {
        let ctx = context();
        for (bad, says) in [
            ("COPY (SELECT 42 AS x) TO '/tmp/x.csv'", "COPY"),
            (
                "DECLARE c CURSOR FOR INSERT INTO events SELECT * FROM events",
                "",
            ),
            ("EXPLAIN ANALYZE INSERT INTO events VALUES (1)", "INSERT"),
            ("CREATE TABLE x AS SELECT 1", "CREATE TABLE"),
            (
                "CREATE EXTERNAL TABLE e STORED AS PARQUET LOCATION '/etc'",
                "CREATE",
            ),
            ("INSERT INTO events SELECT * FROM events", "INSERT"),
            ("DELETE FROM events", "DELETE"),
            (
                "SET datafusion.execution.target_partitions = 1",
                "datafusion",
            ),
            (
                "SET \"datafusion.runtime.memory_limit\" = '1G'",
                "datafusion",
            ),
            ("SET ROLE admin", "SET ROLE"),
            ("PREPARE p AS SELECT 1", "PREPARE"),
            ("DROP TABLE events", "DROP"),
            ("DISCARD ALL", "DISCARD"),
        ] {
            let e = judge(bad, &ctx)
                .await
                .map(|v| panic!("{bad} passed: {v:?}"))
                .unwrap_err();
            let (code, text) = message(e);
            // A write inside a query may already fail to plan; either way it does not run.
            if code == READ_ONLY {
                assert!(text.contains(says), "{bad}: {text}");
            } else {
                assert!(
                    bad.starts_with("DECLARE") || bad.starts_with("EXPLAIN"),
                    "{bad}: {code} {text}"
                );
            }
        }
    }

    #[tokio::test]
    async fn plans_are_judged_node_by_node() {
        let ctx = context();
        let state = ctx.state();
        // DataFusion's own parser, which knows COPY and CREATE EXTERNAL TABLE: only planned.
        let plan = |sql: &str| {
            let (state, sql) = (state.clone(), sql.to_string());
            async move { state.create_logical_plan(&sql).await.unwrap() }
        };
        allowed(
            &plan("SELECT n FROM events WHERE n > (SELECT MIN(n) FROM events)").await,
            &ctx,
        )
        .unwrap();
        for write in [
            "INSERT INTO events VALUES (4)",
            "COPY events TO '/tmp/y.csv'",
            "CREATE VIEW v AS SELECT 1",
            "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc'",
        ] {
            let e = allowed(&plan(write).await, &ctx).unwrap_err();
            assert_eq!(message(e).0, READ_ONLY, "{write}");
        }
        // A scan of a table the context does not hold (a plan made elsewhere) is refused.
        let other = SessionContext::new();
        let e = allowed(&plan("SELECT * FROM events").await, &other).unwrap_err();
        assert!(message(e).1.contains("unknown table"));
    }

    /// Both protocols of one connection, through datafusion-postgres's handlers: the findings
    /// of issue 21 are refused before anything runs, reads run, and the connection holds its
    /// slot until it ends.
    #[tokio::test]
    async fn both_protocols_refuse_writes_before_anything_runs() {
        use datafusion_postgres::pgwire::api::stmt::QueryParser;
        use datafusion_postgres::testing::MockClient;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        std::fs::create_dir_all(&root).unwrap();
        let lake = elastirec_core::Lake::open(root.to_str().unwrap(), Default::default())
            .await
            .unwrap();
        let server = Server {
            warehouse: Warehouse::open(&lake).await.unwrap(),
            login: None,
            statement_timeout: Duration::from_secs(60),
            memory_limit: 64 << 20,
            connections: Arc::new(ConnectionManager::new()),
        };
        let slots = Arc::new(Semaphore::new(1));
        let connection = server.connection(Arc::clone(&slots).try_acquire_owned().ok());
        assert!(Arc::clone(&slots).try_acquire_owned().is_err());
        let session = Arc::clone(&connection.session);
        let parser = ExtendedQueryHandler::query_parser(&*session);
        let mut client = MockClient::new();
        let target = dir.path().join("x.csv");
        let shadow = dir.path().join("shadow");
        for sql in [
            format!("COPY (SELECT 42 AS x) TO '{}'", target.display()),
            format!(
                "CREATE EXTERNAL TABLE e STORED AS PARQUET LOCATION '{}'",
                shadow.display()
            ),
            "DECLARE c CURSOR FOR INSERT INTO erasures SELECT * FROM erasures".into(),
            "SET datafusion.runtime.memory_limit = '100G'".into(),
        ] {
            let e = SimpleQueryHandler::do_query(&*session, &mut client, &sql)
                .await
                .unwrap_err();
            assert_eq!(message(e).0, READ_ONLY, "simple: {sql}");
            let e = parser.parse_sql(&client, &sql, &[]).await.unwrap_err();
            assert_eq!(message(e).0, READ_ONLY, "extended: {sql}");
        }
        assert!(!target.exists() && !shadow.exists());
        let read =
            SimpleQueryHandler::do_query(&*session, &mut client, "SELECT COUNT(*) FROM events")
                .await
                .unwrap();
        assert!(matches!(read[..], [Response::Query(_)]));
        let parsed = parser
            .parse_sql(
                &client,
                "SELECT COUNT(*) FROM events WHERE user_id = $1",
                &[],
            )
            .await
            .unwrap();
        assert!(parsed.is_some());
        drop((connection, session));
        assert!(slots.try_acquire_owned().is_ok());
    }

    #[tokio::test]
    async fn rows_stop_at_the_deadline() {
        use datafusion_postgres::pgwire::api::results::QueryResponse;
        let never = futures::stream::pending::<
            PgWireResult<datafusion_postgres::pgwire::messages::data::DataRow>,
        >();
        let response = Response::Query(QueryResponse::new(Arc::new(vec![]), never));
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let Response::Query(mut query) = bounded(response, deadline) else {
            panic!("not a query");
        };
        let first = query.data_rows().next().await.expect("an error row");
        let (code, _) = message(first.unwrap_err());
        assert_eq!(code, CANCELED);
        assert!(query.data_rows().next().await.is_none());
    }

    #[tokio::test]
    async fn scram_knows_one_user() {
        let login = Login::new("elastirec", "secret");
        let ok = LoginInfo::new(Some("elastirec"), None, "127.0.0.1".into());
        let password = login.get_password(&ok).await.unwrap();
        assert_eq!(
            password.password(),
            gen_salted_password("secret", &login.salt, SCRAM_ITERATIONS)
        );
        let other = LoginInfo::new(Some("postgres"), None, "127.0.0.1".into());
        assert!(matches!(
            login.get_password(&other).await,
            Err(PgWireError::InvalidPassword(_))
        ));
        assert!(!format!("{login:?}").contains("secret"));
    }
}
