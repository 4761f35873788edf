//! SQL: `sql` (read-only statements over the warehouse tables, one from the command line or a
//! shell reading standard input) and `sql-files` (the queries of `prepare`, to read or
//! override).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result};

use elastirec_core::Config;
use elastirec_flow::Pipeline;
use elastirec_flow::prepare_sql::{self, PrepareSql};

use crate::cli::{SqlArgs, SqlFilesArgs, SqlFormat};
use crate::context::{finish_config, pipeline_existing};
use crate::print::{
    print_prepare_sql, print_prepare_sql_of_night, print_query_output, print_sql_written,
};

/// `sql`: the statement given, or the statements of standard input, each ended by ';'.
pub async fn sql(config: Config, args: &SqlArgs) -> Result<()> {
    let p = pipeline_existing(finish_config(config)?).await?;
    statements(&p, args).await
}

/// Runs the statement given, or reads statements until `\q`, `quit`, `exit` or the end of
/// input; a bad statement ends a piped session but not an interactive one.
async fn statements(p: &Pipeline, args: &SqlArgs) -> Result<()> {
    let format = match args.format {
        SqlFormat::Table => elastirec_flow::OutputFormat::Table,
        SqlFormat::Csv => elastirec_flow::OutputFormat::Csv,
        SqlFormat::Json => elastirec_flow::OutputFormat::Json,
    };
    let run = |query: String| async move {
        let batches = p.query(&query).await?;
        let text = elastirec_flow::format_batches(&batches, format)?;
        print_query_output(&text);
        Ok::<_, anyhow::Error>(())
    };
    if let Some(q) = &args.query {
        return run(q.clone()).await;
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "elastirec sql: tables events, items, loads, rejects, erasures, availability; end \
             statements with ';', \
             \\q or Ctrl-D to quit"
        );
    }
    let mut pending = String::new();
    let prompt = |pending: &str| {
        if interactive {
            eprint!(
                "{}",
                if pending.is_empty() {
                    "elastirec> "
                } else {
                    "       ...> "
                }
            );
            let _ = std::io::stderr().flush();
        }
    };
    prompt(&pending);
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading standard input")?;
        if pending.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            break;
        }
        pending.push_str(&line);
        pending.push('\n');
        if line.trim_end().ends_with(';') {
            let statement = std::mem::take(&mut pending);
            let statement = statement.trim().trim_end_matches(';').to_string();
            if let Err(e) = run(statement).await {
                // A bad statement in the shell is reported; the session goes on.
                eprintln!("error: {e:#}");
                if !interactive {
                    return Err(e);
                }
            }
        }
        prompt(&pending);
    }
    if !pending.trim().is_empty() {
        run(pending.trim().trim_end_matches(';').to_string()).await?;
    }
    Ok(())
}

/// `sql-files`: writes the built-in queries of `prepare`, or prints those in effect.
pub fn sql_files(config: Config, args: &SqlFilesArgs) -> Result<()> {
    let config = finish_config(config)?;
    if let Some(dir) = &args.write {
        print_sql_written(&prepare_sql::write_builtin(dir, args.overwrite)?, dir);
        return Ok(());
    }
    let sql = match &config.prepare.sql_dir {
        Some(dir) => PrepareSql::with_overrides(dir)?,
        None => PrepareSql::builtin(),
    };
    match args.date {
        Some(night) => {
            let r = sql.render(night, &config.prepare)?;
            print_prepare_sql_of_night(&sql, &r, night);
        }
        None => print_prepare_sql(&sql),
    }
    Ok(())
}
