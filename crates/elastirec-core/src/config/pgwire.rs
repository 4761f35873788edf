//! `[pgwire]`: who may connect to `elastirec warehouse serve` (the PostgreSQL endpoint of the
//! warehouse) and how much one connection may use.
//!
//! The password is a secret: it is read from this section or, better, from
//! `ELASTIREC_PGWIRE__PASSWORD`, never from a flag; it is not serialized and `Debug` shows it as
//! `<redacted>`, so it does not reach run records or logs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `[pgwire]`: authentication, TLS and per-connection limits of `warehouse serve`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgwireConfig {
    /// The one user name clients log in with (when a password is set).
    pub user: String,
    /// Password of `user`, checked with SCRAM-SHA-256; unset means no authentication, which is
    /// only allowed on a loopback address. Set it with `ELASTIREC_PGWIRE__PASSWORD`.
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// PEM certificate chain for TLS; relative to the config file. Needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for TLS; relative to the config file.
    pub tls_key: Option<PathBuf>,
    /// Connections served at once; the next one is refused with "too many clients".
    pub max_connections: usize,
    /// Seconds a statement (planning, execution and sending its rows) may take before it is
    /// cancelled with SQLSTATE 57014.
    pub statement_timeout_secs: u64,
    /// Memory pool of one connection, in MiB: sorts, joins and aggregations that need more
    /// spill to disk or fail instead of growing. The whole server may use up to
    /// `max_connections` times this.
    pub memory_limit_mb: u64,
}

impl Default for PgwireConfig {
    fn default() -> Self {
        PgwireConfig {
            user: "elastirec".into(),
            password: None,
            tls_cert: None,
            tls_key: None,
            max_connections: 16,
            statement_timeout_secs: 300,
            memory_limit_mb: 1024,
        }
    }
}

impl std::fmt::Debug for PgwireConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgwireConfig")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("max_connections", &self.max_connections)
            .field("statement_timeout_secs", &self.statement_timeout_secs)
            .field("memory_limit_mb", &self.memory_limit_mb)
            .finish()
    }
}

/// Keys of `[pgwire]` whose environment values stay text even when they look like numbers.
pub(crate) fn is_text_key(section: &str, key: &str) -> bool {
    section == "pgwire" && matches!(key, "user" | "password")
}

impl PgwireConfig {
    /// Makes relative TLS paths relative to `dir`, the config file's folder.
    pub(crate) fn resolve_paths(&mut self, dir: &Path) {
        for path in [&mut self.tls_cert, &mut self.tls_key]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }

    /// Checks ranges that the types cannot express. Messages never hold the password.
    pub(crate) fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.user.trim().is_empty() || self.user.contains('\0') {
            return fail("[pgwire] user is empty: give a user name such as \"elastirec\"".into());
        }
        if self
            .password
            .as_deref()
            .is_some_and(|p| p.trim().is_empty() || p.contains('\0'))
        {
            return fail(
                "[pgwire] password is empty: unset it, or set ELASTIREC_PGWIRE__PASSWORD to a \
                 non-empty password"
                    .into(),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return fail(
                "[pgwire] tls_cert and tls_key go together: give both (PEM files) or neither"
                    .into(),
            );
        }
        if self.max_connections == 0 || self.max_connections > 10_000 {
            return fail(format!(
                "[pgwire] max_connections = {} is out of range: use 1 to 10000",
                self.max_connections
            ));
        }
        if self.statement_timeout_secs == 0 || self.statement_timeout_secs > 24 * 3600 {
            return fail(format!(
                "[pgwire] statement_timeout_secs = {} is out of range: use 1 to 86400",
                self.statement_timeout_secs
            ));
        }
        if self.memory_limit_mb == 0 || self.memory_limit_mb > 1 << 20 {
            return fail(format!(
                "[pgwire] memory_limit_mb = {} is out of range: use 1 to 1048576",
                self.memory_limit_mb
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pgwire_password_comes_from_the_environment_as_text_and_never_shows() {
        let c = Config::load(None, env(&[("ELASTIREC_PGWIRE__PASSWORD", "0012345")])).unwrap();
        assert_eq!(c.pgwire.password.as_deref(), Some("0012345"));
        assert_eq!(c.pgwire.user, "elastirec");
        let debug = format!("{c:?}");
        assert!(!debug.contains("0012345"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        let toml = toml::to_string(&c.pgwire).unwrap();
        assert!(!toml.contains("0012345"), "{toml}");
        let e = Config::load(None, env(&[("ELASTIREC_PGWIRE__PASSWORD", " ")])).unwrap_err();
        assert!(e.to_string().contains("[pgwire] password is empty"), "{e}");
    }

    #[test]
    fn pgwire_limits_and_tls_pairs_are_checked() {
        for (key, value, says) in [
            ("MAX_CONNECTIONS", "0", "[pgwire] max_connections = 0"),
            (
                "STATEMENT_TIMEOUT_SECS",
                "0",
                "[pgwire] statement_timeout_secs",
            ),
            ("MEMORY_LIMIT_MB", "0", "[pgwire] memory_limit_mb"),
            ("TLS_CERT", "server.crt", "tls_cert and tls_key"),
            ("USER", "", "[pgwire] user"),
        ] {
            let name = format!("ELASTIREC_PGWIRE__{key}");
            let e = Config::load(None, env(&[(&name, value)])).unwrap_err();
            assert!(e.to_string().contains(says), "{key}: {e}");
        }
    }

    #[test]
    fn pgwire_tls_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("elastirec.toml");
        std::fs::write(
            &file,
            "[pgwire]\ntls_cert = \"tls/server.crt\"\ntls_key = \"/etc/k.pem\"\n\
             max_connections = 3\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[])).unwrap();
        assert_eq!(
            c.pgwire.tls_cert.as_deref(),
            Some(dir.path().join("tls/server.crt").as_path())
        );
        assert_eq!(c.pgwire.tls_key.as_deref(), Some(Path::new("/etc/k.pem")));
        assert_eq!(c.pgwire.max_connections, 3);
    }
}
