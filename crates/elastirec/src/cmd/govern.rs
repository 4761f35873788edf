//! Looking after the lake: `gc` (old nights' outputs and loaded raw files), `forget` (erasure
//! of users everywhere) and `migrate` (layout upgrades).

use std::time::Duration;

use anyhow::Result;

use elastirec_core::{Config, Lake, Night};
use elastirec_flow::lease::Lease;

use crate::cli::{ForgetArgs, GcArgs};
use crate::context::{finish_config, leased, pipeline};
use crate::print::{print_forget, print_gc, print_migration};

/// `gc`.
pub async fn gc(config: Config, args: &GcArgs) -> Result<()> {
    let p = pipeline(finish_config(config)?).await?;
    let raw_before = args
        .raw_older_than
        .map(|d| Night::new(chrono::Utc::now().date_naive()).minus_days(d));
    let plan = leased(&p, "gc", || async {
        Ok(p.gc(args.keep_nights, raw_before, args.dry_run).await?)
    })
    .await?;
    print_gc(&plan, args.dry_run);
    Ok(())
}

/// `forget`: the users of `--user` and `--users-file`, erased under the lease.
pub async fn forget(config: Config, args: &ForgetArgs) -> Result<()> {
    let users = forget_users(&args.users, args.users_file.as_deref())?;
    let p = pipeline(finish_config(config)?).await?;
    let r = leased(&p, "forget", || async {
        Ok(p.forget(&users, args.purge_raw).await?)
    })
    .await?;
    print_forget(&r, users.len());
    Ok(())
}

/// The ids of `forget`: `--user` flags and the lines of `--users-file`, as producers sent them
/// (external ids: `42`, `A3CIUOJXQ5VDQ2`). Lines are trimmed; blank lines and lines starting
/// with `#` are skipped (an id that starts with `#` goes with `--user`).
fn forget_users(flags: &[String], file: Option<&std::path::Path>) -> Result<Vec<String>> {
    let bad = |whence: String, id: &str, why: String| {
        elastirec_core::Error::Config(format!(
            "{whence}: '{}' is not a user id: {why} (an id is 1 to {} bytes of UTF-8 without \
             control characters)",
            shown(id),
            elastirec_core::ids::MAX_ID_BYTES
        ))
    };
    let mut users = Vec::with_capacity(flags.len());
    for id in flags {
        elastirec_core::ids::check_external(id).map_err(|why| bad("--user".into(), id, why))?;
        users.push(id.clone());
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            elastirec_core::Error::Config(format!(
                "--users-file {}: cannot read it: {e}",
                path.display()
            ))
        })?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            elastirec_core::ids::check_external(line).map_err(|why| {
                bad(
                    format!("--users-file {}:{}", path.display(), i + 1),
                    line,
                    why,
                )
            })?;
            users.push(line.to_string());
        }
    }
    users.sort_unstable();
    users.dedup();
    if users.is_empty() {
        return Err(elastirec_core::Error::Config(
            "forget: no user ids given (--user ID or a --users-file with ids)".into(),
        )
        .into());
    }
    Ok(users)
}

/// `migrate`: opens even an older lake, and holds its lease while upgrading it.
pub async fn migrate(config: Config) -> Result<()> {
    let lake_config = config.lake.clone();
    let lake = Lake::open_for_migrate(&lake_config).await?;
    let ttl = Duration::from_secs(config.run.lease_seconds);
    let lease = Lease::acquire(&lake, "migrate", ttl).await?;
    let result = elastirec_flow::governance::migrate(&lake_config).await;
    lease.release().await?;
    let m = result?;
    print_migration(&lake, &m);
    Ok(())
}

/// An id as a message shows it: its first 64 characters, control characters escaped.
fn shown(id: &str) -> String {
    let mut out: String = id.chars().take(64).flat_map(char::escape_debug).collect();
    if id.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::forget_users;

    #[test]
    fn forget_users_are_external_ids_from_flags_and_file_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.txt");
        std::fs::write(
            &file,
            "# erasure requests of the week\n\n  u-alice  \n42\r\n007\n#u-not-me\nA3CIUOJXQ5VDQ2\n",
        )
        .unwrap();
        let users = forget_users(&["u-alice".into(), "9".into()], Some(&file)).unwrap();
        assert_eq!(
            users,
            ["007", "42", "9", "A3CIUOJXQ5VDQ2", "u-alice"].map(String::from)
        );
        let err = forget_users(&["a\tb".into()], None).unwrap_err();
        assert!(err.to_string().contains("--user: 'a\\tb'"), "{err}");
        std::fs::write(&file, "ok\n".to_string() + &"x".repeat(300)).unwrap();
        let err = forget_users(&[], Some(&file)).unwrap_err();
        assert!(err.to_string().contains("users.txt:2"), "{err}");
        std::fs::write(&file, "# nobody\n").unwrap();
        assert!(forget_users(&[], Some(&file)).is_err());
    }
}
