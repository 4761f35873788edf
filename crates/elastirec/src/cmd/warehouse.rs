//! `warehouse`: snapshots (take, list, restore), vacuums of old table versions and of erased
//! users' rows, and the read-only PostgreSQL endpoint.

use anyhow::{Result, bail};

use elastirec_core::Config;
use elastirec_flow::Pipeline;

use crate::cli::{PgServeArgs, RestoreArgs, SnapshotArgs, VacuumArgs, WarehouseCommand};
use crate::context::{finish_config, leased, pipeline, pipeline_existing};
use crate::print::{print_pg_serving, print_restore, print_snapshot, print_snapshots};

/// `warehouse <subcommand>`.
pub async fn warehouse(config: Config, cmd: &WarehouseCommand) -> Result<()> {
    let config = finish_config(config)?;
    // Listing snapshots and serving only read: a mistyped --lake must not become a new lake.
    let p = match cmd {
        WarehouseCommand::Snapshots | WarehouseCommand::Serve(_) => {
            pipeline_existing(config).await?
        }
        _ => pipeline(config).await?,
    };
    match cmd {
        WarehouseCommand::Snapshot(args) => snapshot(&p, args).await,
        WarehouseCommand::Snapshots => {
            print_snapshots(&p.snapshots().await?);
            Ok(())
        }
        WarehouseCommand::Vacuum(args) => vacuum(&p, args).await,
        WarehouseCommand::Serve(args) => serve(&p, args).await,
        WarehouseCommand::Restore(args) => restore(&p, args).await,
    }
}

/// `warehouse snapshot`, named after the night unless `--name`.
async fn snapshot(p: &Pipeline, args: &SnapshotArgs) -> Result<()> {
    let name = args.name.clone().unwrap_or_else(|| args.date.to_string());
    let s = leased(p, &format!("snapshot {name}"), || async {
        Ok(p.snapshot(&name, args.date).await?)
    })
    .await?;
    print_snapshot(&s);
    Ok(())
}

/// `warehouse vacuum`: the erasure vacuum first, then `--keep N`.
async fn vacuum(p: &Pipeline, args: &VacuumArgs) -> Result<()> {
    let mut purpose = vec!["vacuum".to_string()];
    if args.erasures {
        purpose.push("erasures".into());
    }
    if let Some(n) = args.keep {
        purpose.push(format!("keep {n}"));
    }
    if !(args.retain_hours.is_finite() && (0.0..=24.0 * 3650.0).contains(&args.retain_hours)) {
        bail!(
            "--retain-hours {}: give a number of hours from 0 to 87600",
            args.retain_hours
        );
    }
    let retain = std::time::Duration::from_secs_f64(args.retain_hours * 3600.0);
    let (erased, kept) = leased(p, &purpose.join(" "), || async {
        // The erasure vacuum first: --keep N then keeps N of the snapshots it left (and needs
        // no version it deleted the log of).
        let mut erased = None;
        if args.erasures {
            erased = Some(p.vacuum_erasures(args.dry_run).await?);
        }
        let mut kept = None;
        if let Some(keep) = args.keep {
            kept = Some(p.vacuum(keep, retain, args.dry_run).await?);
        }
        Ok((erased, kept))
    })
    .await?;
    // Printed here rather than in `print`: both reports' types are the warehouse crate's,
    // which this crate does not depend on.
    if let Some(v) = erased {
        let verb = if v.dry_run { "would remove" } else { "removed" };
        if v.erasures == 0 {
            println!("no erasure waits for a vacuum");
        } else {
            println!(
                "erasure vacuum: {verb} {} snapshots ({}), {} Delta data files and {} \
                 Delta log entries holding rows of {} erasure requests",
                v.snapshots_removed.len(),
                v.snapshots_removed.join(", "),
                v.files_deleted,
                v.log_entries_deleted,
                v.erasures
            );
        }
    }
    if let Some(r) = kept {
        let verb = if r.dry_run { "would delete" } else { "deleted" };
        println!(
            "snapshots kept: {}",
            if r.snapshots_kept.is_empty() {
                "none".to_string()
            } else {
                r.snapshots_kept.join(", ")
            }
        );
        if !r.snapshots_dropped.is_empty() {
            println!(
                "snapshot records {verb}: {}",
                r.snapshots_dropped.join(", ")
            );
        }
        for t in &r.tables {
            let versions: Vec<String> = t.kept_versions.iter().map(|v| v.to_string()).collect();
            println!(
                "{}: {verb} {} data files (kept the files of versions {})",
                t.table,
                t.files_deleted,
                versions.join(", ")
            );
        }
    }
    Ok(())
}

/// `warehouse serve`: until SIGTERM or Ctrl-C.
async fn serve(p: &Pipeline, args: &PgServeArgs) -> Result<()> {
    print_pg_serving(&args.host, args.port, &p.config().pgwire);
    p.serve_postgres(&args.host, args.port).await?;
    Ok(())
}

/// `warehouse restore`.
async fn restore(p: &Pipeline, args: &RestoreArgs) -> Result<()> {
    let done = leased(p, &format!("restore {}", args.name), || async {
        Ok(p.restore(&args.name).await?)
    })
    .await?;
    print_restore(&done);
    Ok(())
}
