//! The commands, one module per family: each turns its arguments into flags applied to the
//! configuration and calls into the pipeline, printing through [`crate::print`]. [`dispatch`]
//! picks the one the command line names.

mod demo;
mod evaluate;
mod govern;
mod import;
mod ledger;
mod run;
mod serve;
mod sql;
mod steps;
mod warehouse;

use anyhow::Result;

use crate::cli::{Cli, Command, ImportCommand};
use crate::context::load_config;

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> Result<()> {
    let config = load_config(&cli)?;
    match &cli.command {
        Command::Import(ImportCommand::Movielens(args)) => import::movielens(config, args).await,
        Command::Simulate(args) => import::simulate(config, args).await,
        Command::Ingest(args) => steps::ingest(config, args).await,
        Command::Prepare(args) => steps::prepare(config, args).await,
        Command::SqlFiles(args) => sql::sql_files(config, args),
        Command::Train(args) => steps::train(config, args).await,
        Command::Recommend(args) => steps::recommend(config, args).await,
        Command::Publish(args) => steps::publish(config, args).await,
        Command::Run(args) => run::run(config, args).await,
        Command::Runs(args) => ledger::runs(config, args).await,
        Command::Status(args) => ledger::status(config, args).await,
        Command::Schedule => run::schedule(config).await,
        Command::Gc(args) => govern::gc(config, args).await,
        Command::Cost(args) => ledger::cost(config, args).await,
        Command::Warehouse(cmd) => warehouse::warehouse(config, cmd).await,
        Command::Sql(args) => sql::sql(config, args).await,
        Command::Evaluate(args) => evaluate::evaluate(config, args).await,
        Command::Tune(args) => evaluate::tune(config, args).await,
        Command::Demo(args) => demo::demo(config, args, cli.global.lake.is_some()).await,
        Command::Serve(args) => serve::serve(config, args).await,
        Command::Show(args) => serve::show(config, args).await,
        Command::Sink(args) => serve::sink(config, args).await,
        Command::Forget(args) => govern::forget(config, args).await,
        Command::Migrate => govern::migrate(config).await,
    }
}
