//! Reports of the commands that look after the lake: `warehouse` snapshots, restores and the
//! PostgreSQL endpoint, `sql` results, `gc`, `forget` and `migrate`.

use elastirec_core::Lake;
use elastirec_core::manifest::SnapshotRecord;
use elastirec_flow::TableRestore;
use elastirec_flow::governance::{ForgetReport, MigrationReport};
use elastirec_flow::retention::GcPlan;

use super::{mib, versions_line};

/// `warehouse snapshot`: the snapshot taken.
pub fn print_snapshot(s: &SnapshotRecord) {
    println!(
        "snapshot {} of night {}: {}",
        s.name,
        s.night,
        versions_line(&s.table_versions)
    );
}

/// `warehouse snapshots`: one line per snapshot.
pub fn print_snapshots(all: &[SnapshotRecord]) {
    if all.is_empty() {
        println!("no snapshots yet: `elastirec run` takes one each night");
    }
    for s in all {
        println!(
            "{:<24} night {}  taken {}  {}",
            s.name,
            s.night,
            s.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
            versions_line(&s.table_versions)
        );
    }
}

/// `warehouse restore`: each table's version before and after.
pub fn print_restore(done: &[TableRestore]) {
    for t in done {
        if t.committed {
            println!("{}: restored version {} (was {})", t.table, t.to, t.from);
        } else {
            println!("{}: already at version {}", t.table, t.to);
        }
    }
}

/// `warehouse serve`: where to connect, on stderr.
pub fn print_pg_serving(host: &str, port: u16, pgwire: &elastirec_core::config::PgwireConfig) {
    let login = match &pgwire.password {
        // Never the password itself: only where it comes from.
        Some(_) => format!(
            " -U {} (password: [pgwire] password / ELASTIREC_PGWIRE__PASSWORD)",
            pgwire.user
        ),
        None => String::new(),
    };
    let tls = if pgwire.tls_cert.is_some() {
        ", TLS"
    } else {
        ""
    };
    eprintln!(
        "serving the warehouse read-only on postgresql://{host}:{port}/{tls} (psql -h {host} -p {port}{login}); Ctrl-C stops"
    );
}

/// `sql`: one statement's formatted result, ending in a newline.
pub fn print_query_output(text: &str) {
    print!("{text}");
    if !text.is_empty() && !text.ends_with('\n') {
        println!();
    }
}

/// `migrate`: the layout versions and what each step changed.
pub fn print_migration(lake: &Lake, m: &MigrationReport) {
    if m.steps.is_empty() {
        println!(
            "{}: layout version {} is current, nothing to do",
            lake.url(),
            m.to
        );
    } else {
        println!(
            "{}: migrated layout version {} to {}",
            lake.url(),
            m.from,
            m.to
        );
        for s in &m.steps {
            println!("  {s}");
        }
    }
}

/// `gc`: what was (or would be) deleted and which nights were kept.
pub fn print_gc(plan: &GcPlan, dry_run: bool) {
    let verb = if dry_run { "would delete" } else { "deleted" };
    for o in &plan.outputs {
        println!(
            "{verb} {} of night {} ({} files, {})",
            o.what,
            o.night,
            o.files,
            mib(o.bytes)
        );
    }
    if !plan.raw_files.is_empty() {
        println!("{verb} {} loaded raw files", plan.raw_files.len());
    }
    if plan.raw_not_loaded > 0 {
        println!(
            "kept {} old raw files the load ledger does not record as loaded",
            plan.raw_not_loaded
        );
    }
    println!(
        "{verb} {} in all; kept the outputs of {} nights ({})",
        mib(plan.bytes()),
        plan.kept_nights.len(),
        plan.kept_nights
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// `forget`: what the erasure removed, and what still holds the rows.
pub fn print_forget(r: &ForgetReport, users: usize) {
    let w = &r.warehouse;
    println!(
        "erasure {}: {users} users; deleted {} events and {} reject rows (events table version {})",
        r.erasure_id, w.events_deleted, w.rejects_deleted, w.events_version
    );
    if w.ids_blanked > 0 {
        println!(
            "  warehouse/ids: the string ids of {} users blanked (their internal ids stay taken)",
            w.ids_blanked
        );
    }
    for f in &r.outputs.folders {
        println!(
            "  {} of night {}: removed {} rows ({} files rewritten)",
            f.what, f.night, f.rows_removed, f.files_rewritten
        );
    }
    if r.outputs.latest_touched {
        println!("  recommendations/_LATEST rewritten: serving reloads without them");
    }
    for raw in &r.raw_files {
        if let Some(why) = &raw.left_because {
            println!("  {}: left as it is: {why}", raw.path);
            continue;
        }
        println!(
            "  {}: removed {} lines{}",
            raw.path,
            raw.lines_removed,
            if raw.ledger_updated {
                " (load ledger updated)"
            } else {
                ""
            }
        );
    }
    if let Some(sink) = &r.sink {
        println!(
            "  [sink] {}: deleted {} {}",
            sink.target,
            sink.deleted,
            if sink.target == "redis" {
                "keys"
            } else {
                "rows"
            }
        );
    }
    if r.snapshots_holding.is_empty() {
        println!("no snapshot holds their rows");
    } else {
        println!(
            "snapshots still holding their rows until `elastirec warehouse vacuum --erasures`: {}",
            r.snapshots_holding.join(", ")
        );
    }
    if !w.replaced_files.is_empty() {
        println!(
            "{} replaced Delta files keep their rows in table history until `elastirec warehouse \
             vacuum --erasures`",
            w.replaced_files.len()
        );
    }
}
