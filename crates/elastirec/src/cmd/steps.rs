//! One step of one night, run by hand under the lake's lease: `ingest`, `prepare`, `train`,
//! `recommend` and `publish`.

use anyhow::Result;

use elastirec_core::Config;

use crate::cli::{IngestArgs, PrepareArgs, PublishArgs, RecommendArgs, TrainArgs};
use crate::context::{apply_model_args, finish_config, leased, pipeline};
use crate::print::{print_prepared, print_publish, print_recommended, print_trained};

/// `ingest`, or with `--dry-run` what it would load.
pub async fn ingest(mut config: Config, args: &IngestArgs) -> Result<()> {
    if let Some(n) = args.load.max_errors {
        config.events.max_errors = n;
    }
    let p = pipeline(finish_config(config)?).await?;
    let night = args.date.date;
    let r = if args.dry_run {
        p.ingest_dry_run(night).await?
    } else {
        leased(&p, &format!("ingest {night}"), || async {
            for (path, removed) in p.forget_loaded(&args.reload).await? {
                println!("{path}: removed its {removed} loaded events; loading it again");
            }
            for path in p.skip_files(night, &args.skip_file).await? {
                println!("{path}: skipped; recorded in the load ledger with no rows");
            }
            Ok(p.ingest(night).await?)
        })
        .await?
    };
    // Printed here rather than in `print`: the report's type is the warehouse crate's, which
    // this crate does not depend on.
    let verb = if r.dry_run { "would load" } else { "loaded" };
    println!(
        "night {night}: {verb} {} rows from {} files, {} rows rejected ({} files already \
         loaded, {} for later nights); events table version {}",
        r.rows_loaded,
        r.files_loaded,
        r.rows_rejected,
        r.files_already_loaded,
        r.files_for_later_nights,
        r.events_version
    );
    let mut skipped = Vec::new();
    if r.files_skipped > 0 {
        skipped.push(format!("{} marker or hidden files", r.files_skipped));
    }
    if r.files_outside_layout > 0 {
        skipped.push(format!(
            "{} objects outside the YYYY/MM/DD/[HH/] folders",
            r.files_outside_layout
        ));
    }
    if r.records_skipped > 0 {
        skipped.push(format!("{} records other than events", r.records_skipped));
    }
    if r.rows_duplicate > 0 {
        skipped.push(format!("{} duplicate rows", r.rows_duplicate));
    }
    if !skipped.is_empty() {
        println!("skipped: {}", skipped.join(", "));
    }
    if r.files_unreadable > 0 {
        println!(
            "{} files could not be read at all (each counts as one rejected row)",
            r.files_unreadable
        );
    }
    if r.ids_assigned > 0 {
        println!(
            "{} new string ids entered the id dictionary",
            r.ids_assigned
        );
    }
    if r.rows_erased > 0 {
        println!(
            "dropped {} events of users erased by `elastirec forget`",
            r.rows_erased
        );
    }
    for reject in &r.first_rejects {
        println!("rejected: {reject}");
    }
    for f in &r.files_changed {
        println!(
            "warning: {f} changed after it was loaded; it was not reloaded (`elastirec \
             ingest --date {night} --reload {f}` replaces its rows)"
        );
    }
    Ok(())
}

/// `prepare`.
pub async fn prepare(config: Config, args: &PrepareArgs) -> Result<()> {
    let p = pipeline(finish_config(config)?).await?;
    let m = leased(&p, &format!("prepare {}", args.date), || async {
        Ok(p.prepare(args.date, args.overwrite).await?)
    })
    .await?;
    print_prepared(args.date, &m);
    Ok(())
}

/// `train`, with the `[model]` flags applied.
pub async fn train(mut config: Config, args: &TrainArgs) -> Result<()> {
    apply_model_args(&mut config, &args.model)?;
    let p = pipeline(finish_config(config)?).await?;
    let night = args.date.date;
    let m = leased(&p, &format!("train {night}"), || async {
        Ok(p.train(night).await?)
    })
    .await?;
    print_trained(night, &m, p.config());
    Ok(())
}

/// `recommend`.
pub async fn recommend(mut config: Config, args: &RecommendArgs) -> Result<()> {
    if let Some(k) = args.k {
        config.recommend.k = k;
    }
    if let Some(file) = &args.fold_in {
        return fold_in(finish_config(config)?, args, file).await;
    }
    let p = pipeline(finish_config(config)?).await?;
    let night = args.date.date;
    let m = leased(&p, &format!("recommend {night}"), || async {
        Ok(p.recommend(night).await?)
    })
    .await?;
    print_recommended(night, &m);
    Ok(())
}

/// `recommend --fold-in FILE`: lists for the file's users, as JSON lines (reads the lake only:
/// no lease).
async fn fold_in(config: Config, args: &RecommendArgs, file: &std::path::Path) -> Result<()> {
    use std::io::Write;
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| {
        elastirec_core::Error::InvalidInput(format!("--fold-in {name}: cannot read it: {e}"))
    })?;
    let lines = elastirec_als::foldin::parse_fold_in_lines(&name, &text)
        .map_err(elastirec_flow::Error::from)?;
    let lake = elastirec_core::Lake::open_existing(&config.lake).await?;
    let night = args.date.date;
    let lists = elastirec_als::foldin::fold_in_night(
        &lake,
        night,
        lines,
        config.recommend.k,
        &config.rules,
    )
    .await
    .map_err(elastirec_flow::Error::from)?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| {
                elastirec_core::Error::InvalidInput(format!(
                    "--out {}: cannot write it: {e}",
                    path.display()
                ))
            })?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    for list in &lists {
        serde_json::to_writer(&mut out, list)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if let Some(path) = &args.out {
        let folded = lists.iter().filter(|l| l.source != "popular").count();
        println!(
            "night {night}: {} lists ({folded} folded in, {} popular) written to {}",
            lists.len(),
            lists.len() - folded,
            path.display()
        );
    }
    Ok(())
}

/// `publish`, through the gate unless `--force`.
pub async fn publish(config: Config, args: &PublishArgs) -> Result<()> {
    let p = pipeline(finish_config(config)?).await?;
    let night = args.date.date;
    let d = leased(&p, &format!("publish {night}"), || async {
        Ok(p.publish(night, args.force).await?)
    })
    .await?;
    print_publish(night, &d);
    Ok(())
}
