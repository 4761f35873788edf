//! The `elastirec` command: parses arguments into a validated configuration, dispatches to one
//! command, and prints any error once, mapping its kind to an exit code.

mod cli;
mod cmd;
mod context;
mod print;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use elastirec_core::ErrorKind;

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away (`| head`).
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    progress::init_logging(args.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("elastirec: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cmd::dispatch(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("elastirec: error: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// Exit codes by error kind.
fn exit_code(err: &anyhow::Error) -> u8 {
    let kind = err.chain().find_map(|e| {
        if let Some(e) = e.downcast_ref::<elastirec_flow::Error>() {
            Some(e.kind())
        } else if let Some(e) = e.downcast_ref::<elastirec_sources::Error>() {
            Some(e.kind())
        } else if let Some(e) = e.downcast_ref::<elastirec_serve::Error>() {
            Some(e.kind())
        } else if let Some(e) = e.downcast_ref::<elastirec_sink::Error>() {
            Some(e.kind())
        } else {
            e.downcast_ref::<elastirec_core::Error>().map(|e| e.kind())
        }
    });
    match kind {
        Some(ErrorKind::InvalidInput) => 2,
        Some(ErrorKind::NotFound) => 3,
        Some(ErrorKind::Transient) => 4,
        Some(ErrorKind::Internal) | None => 1,
    }
}
