//! The PostgreSQL target: `tokio-postgres`, with TLS from rustls (`tokio-postgres-rustls`) as
//! the URL's `sslmode` asks, libpq's way:
//!
//! | `sslmode`            | TLS                                   | server certificate            |
//! |----------------------|---------------------------------------|-------------------------------|
//! | `disable`            | never                                 | —                             |
//! | `prefer` (default)   | if the server offers it, else plain   | not checked                   |
//! | `require`            | always (fails without)                | not checked                   |
//! | `verify-full`        | always                                | chain and host name checked   |
//!
//! `verify-full` trusts the PEM certificates of `sslrootcert=FILE`, or without it (or with
//! `sslrootcert=system`) the system's bundle (`SSL_CERT_FILE`, else the usual Debian, Red Hat
//! and Alpine paths). `verify-ca` and `allow` are refused with a message rather than read as
//! something else; `sslrootcert` with a mode that does not check certificates is refused too.
//!
//! Connecting (TCP, TLS, authentication) and every round trip are bounded by `[sink]
//! timeout_seconds`, and waiting for a table lock by the same (`lock_timeout`), except the
//! statement that indexes the new table and swaps it in, whose time grows with the table.

use std::sync::Arc;

use futures::SinkExt;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

use elastirec_core::Night;
use elastirec_core::config::SinkConfig;
use elastirec_lake::io::ExternalLists;

use crate::url::{key_values, percent_decode, redact_url, scrub};
use crate::{Error, Result, copy_text, timeout_of, within};

/// The `sslmode`s elastirec speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

/// `[sink] postgres_url` read: the connection settings and what TLS to use.
#[derive(Debug)]
pub(crate) struct Target {
    pub config: tokio_postgres::Config,
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file, or `None` for the system's roots.
    pub root_cert: Option<String>,
}

fn bad_url(url: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!(
        "[sink] postgres_url = '{}': {}",
        redact_url(url),
        scrub(why, url)
    ))
}

/// `url` without its `sslmode` and `sslrootcert` (which tokio-postgres does not read, or reads
/// only in part), and their values.
fn split_tls_options(url: &str) -> Result<(String, Option<String>, Option<String>)> {
    let (mut mode, mut root) = (None, None);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_string(), None, None));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", v)) => mode = Some(percent_decode(v)),
                Some(("sslrootcert", v)) => root = Some(percent_decode(v)),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, mode, root));
    }
    let pairs = key_values(url).ok_or_else(|| {
        bad_url(
            url,
            "not a connection string: use postgresql://user@host/db or host=… dbname=…",
        )
    })?;
    let mut rest = String::with_capacity(url.len());
    for p in pairs {
        match p.key.as_str() {
            "sslmode" => mode = Some(p.value),
            "sslrootcert" => root = Some(p.value),
            _ => {
                rest.push_str(&url[p.whole]);
                rest.push(' ');
            }
        }
    }
    Ok((rest.trim_end().to_string(), mode, root))
}

/// Reads `url`: tokio-postgres's settings plus the TLS mode and root certificates.
pub(crate) fn parse_url(url: &str) -> Result<Target> {
    let (rest, mode, root_cert) = split_tls_options(url)?;
    let mode = match mode.as_deref() {
        None | Some("prefer") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        Some("require") => SslMode::Require,
        Some("verify-full") => SslMode::VerifyFull,
        Some(other) => {
            return Err(bad_url(
                url,
                format!(
                    "sslmode={other} is not supported: use disable, prefer, require or \
                     verify-full (verify-full checks the certificate's chain and host name)"
                ),
            ));
        }
    };
    if root_cert.is_some() && mode != SslMode::VerifyFull {
        return Err(bad_url(
            url,
            "sslrootcert is only read with sslmode=verify-full: add it, or drop sslrootcert",
        ));
    }
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| bad_url(url, format_args!("not a connection string: {e}")))?;
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
    });
    Ok(Target {
        config,
        mode,
        root_cert,
    })
}

/// Where the system keeps its root certificates, as OpenSSL and rustls-native-certs look.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// The roots `verify-full` trusts: `file`'s certificates, or the system's.
async fn load_roots(url: &str, file: Option<&str>) -> Result<rustls::RootCertStore> {
    let path = match file {
        Some(f) if f != "system" => f.to_string(),
        _ => {
            let mut candidates: Vec<String> = std::env::var("SSL_CERT_FILE").into_iter().collect();
            candidates.extend(SYSTEM_BUNDLES.iter().map(|p| p.to_string()));
            let mut found = None;
            for c in candidates {
                if tokio::fs::try_exists(&c).await.unwrap_or(false) {
                    found = Some(c);
                    break;
                }
            }
            found.ok_or_else(|| {
                bad_url(
                    url,
                    "sslmode=verify-full found no system root certificates \
                     (SSL_CERT_FILE, /etc/ssl/certs/ca-certificates.crt…): give sslrootcert=FILE",
                )
            })?
        }
    };
    let pem = tokio::fs::read(&path).await.map_err(|e| {
        bad_url(
            url,
            format_args!("sslrootcert '{path}' cannot be read: {e}"),
        )
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad_url(url, format_args!("sslrootcert '{path}' is not PEM: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _unusable) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad_url(
            url,
            format_args!("sslrootcert '{path}' holds no usable certificate"),
        ));
    }
    Ok(roots)
}

/// Accepts any server certificate but checks the handshake's signatures with it: what libpq's
/// `prefer` and `require` give (encryption against a passive listener, no authentication).
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls connector for `target`'s mode; `None` for `disable`.
async fn tls_connector(
    url: &str,
    target: &Target,
) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("rustls protocol versions: {e}")))?;
    let config = match target.mode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
        SslMode::VerifyFull => builder
            .with_root_certificates(load_roots(url, target.root_cert.as_deref()).await?)
            .with_no_client_auth(),
    };
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

/// An error of the PostgreSQL target, its text scrubbed of the URL's password.
fn postgres_error(config: &SinkConfig, reason: impl std::fmt::Display, transient: bool) -> Error {
    Error::Sink {
        target: "postgres",
        endpoint: redact_url(&config.postgres_url),
        reason: scrub(reason, &config.postgres_url),
        transient,
    }
}

/// A server or connection error, classified: refused credentials or a certificate that does not
/// verify need new settings; the rest (a lost connection, a lock timeout…) may pass.
fn from_postgres(config: &SinkConfig, what: &str, e: &tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    let refused = e.code().is_some_and(|c| {
        *c == SqlState::INVALID_PASSWORD
            || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            || *c == SqlState::INSUFFICIENT_PRIVILEGE
    }) || std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|t| matches!(t, rustls::Error::InvalidCertificate(_)));
    // tokio-postgres's Display of a server error is only "db error"; its source says what.
    let detail = match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    };
    postgres_error(config, format!("{what}: {detail}"), !refused)
}

fn timed_out(config: &SinkConfig, what: &str) -> Error {
    postgres_error(
        config,
        format!(
            "{what}: no answer within {} s ([sink] timeout_seconds)",
            config.timeout_seconds
        ),
        true,
    )
}

/// `fut` (a round trip) bounded by `[sink] timeout_seconds`, its error described as `what`.
async fn round_trip<T>(
    config: &SinkConfig,
    what: &str,
    fut: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
) -> Result<T> {
    within(
        timeout_of(config),
        async { fut.await.map_err(|e| from_postgres(config, what, &e)) },
        || timed_out(config, what),
    )
    .await
}

/// A connection to `[sink] postgres_url`, and the task driving it (ends when the client drops).
async fn connect(config: &SinkConfig) -> Result<(Client, JoinHandle<()>)> {
    let url = &config.postgres_url;
    let mut target = parse_url(url)?;
    let limit = timeout_of(config);
    if target.config.get_connect_timeout().is_none() {
        target.config.connect_timeout(limit);
    }
    // A peer that stops acknowledging what is sent is dropped instead of waited on.
    target.config.tcp_user_timeout(limit);
    let tls = tls_connector(url, &target).await?;
    let pg = &target.config;
    let what = "cannot connect";
    // The outer timeout bounds TLS and authentication too, which connect_timeout does not.
    within(
        limit,
        async {
            let spawn = |r: std::result::Result<(), tokio_postgres::Error>| {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "postgres connection ended");
                }
            };
            Ok(match tls {
                None => {
                    let (client, connection) = pg
                        .connect(tokio_postgres::NoTls)
                        .await
                        .map_err(|e| from_postgres(config, what, &e))?;
                    (client, tokio::spawn(async move { spawn(connection.await) }))
                }
                Some(tls) => {
                    let (client, connection) = pg
                        .connect(tls)
                        .await
                        .map_err(|e| from_postgres(config, what, &e))?;
                    (client, tokio::spawn(async move { spawn(connection.await) }))
                }
            })
        },
        || timed_out(config, what),
    )
    .await
}

/// Replaces the table with night `night`'s lists (see the crate documentation).
pub(crate) async fn copy(config: &SinkConfig, night: Night, lists: &ExternalLists) -> Result<()> {
    let (mut client, driver) = connect(config).await?;
    // The name was checked by Config::validate: letters, digits and _.
    let table = &config.postgres_table;
    let next = format!("{table}_next");
    let tx = round_trip(config, "beginning", client.transaction()).await?;
    round_trip(
        config,
        "creating the staging table",
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = '{}s'; \
             DROP TABLE IF EXISTS {next}; \
             CREATE TABLE {next} (user_id text NOT NULL, rank integer NOT NULL, \
             item_id text NOT NULL, score real NOT NULL, source text NOT NULL, \
             night date NOT NULL)",
            config.timeout_seconds.max(1)
        )),
    )
    .await?;
    let copy = format!("COPY {next} (user_id, rank, item_id, score, source, night) FROM STDIN");
    let sink: tokio_postgres::CopyInSink<bytes::Bytes> =
        round_trip(config, "starting COPY", tx.copy_in(copy.as_str())).await?;
    futures::pin_mut!(sink);
    let mut buf = String::new();
    for (user, list) in lists {
        let user = copy_text(user);
        for (item, rank, score, source) in list {
            // Text format: tab-separated, ids escaped (they may hold a tab or a backslash).
            let item = copy_text(item);
            let source = copy_text(source);
            buf.push_str(&format!(
                "{user}\t{rank}\t{item}\t{score}\t{source}\t{night}\n"
            ));
        }
        if buf.len() > 1 << 20 {
            let chunk = bytes::Bytes::from(std::mem::take(&mut buf));
            round_trip(config, "sending COPY data", sink.send(chunk)).await?;
        }
    }
    if !buf.is_empty() {
        round_trip(
            config,
            "sending COPY data",
            sink.send(bytes::Bytes::from(buf)),
        )
        .await?;
    }
    round_trip(config, "finishing COPY", sink.as_mut().finish()).await?;
    // Indexing grows with the table, so this statement has no client-side limit; the lock it
    // waits for is bounded by lock_timeout and a dead peer by the TCP user timeout.
    tx.batch_execute(&format!(
        "ALTER TABLE {next} ADD CONSTRAINT {next}_pkey PRIMARY KEY (user_id, rank); \
         DROP TABLE IF EXISTS {table}; \
         ALTER TABLE {next} RENAME TO {table}; \
         ALTER INDEX {next}_pkey RENAME TO {table}_pkey"
    ))
    .await
    .map_err(|e| from_postgres(config, "swapping the table in", &e))?;
    round_trip(config, "committing", tx.commit()).await?;
    drop(client);
    driver.await.ok();
    Ok(())
}

/// Deletes the rows of `users` from the table (nothing if it does not exist); returns how many.
pub(crate) async fn delete_users(config: &SinkConfig, users: &[String]) -> Result<u64> {
    if users.is_empty() {
        return Ok(0);
    }
    let (client, driver) = connect(config).await?;
    let table = &config.postgres_table;
    round_trip(
        config,
        "setting lock_timeout",
        client.batch_execute(&format!(
            "SET lock_timeout = '{}s'",
            config.timeout_seconds.max(1)
        )),
    )
    .await?;
    let exists = round_trip(
        config,
        "looking for the table",
        client.query_one("SELECT to_regclass($1)::text", &[table]),
    )
    .await?;
    let exists: Option<String> = exists.get(0);
    let deleted = if exists.is_some() {
        round_trip(
            config,
            "deleting erased users' rows",
            client.execute(
                &format!("DELETE FROM {table} WHERE user_id = ANY($1)"),
                &[&users],
            ),
        )
        .await?
    } else {
        0
    };
    drop(client);
    driver.await.ok();
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::{SslMode, parse_url};

    #[test]
    fn sslmode_and_sslrootcert_are_read_from_both_forms() {
        let t = parse_url("postgresql://app:pw@db/recs?sslmode=verify-full&sslrootcert=%2Fca.pem")
            .unwrap();
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(t.root_cert.as_deref(), Some("/ca.pem"));
        assert_eq!(t.config.get_dbname(), Some("recs"));
        assert_eq!(
            t.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let t = parse_url("host=db user=app sslmode='disable' dbname=recs").unwrap();
        assert_eq!(t.mode, SslMode::Disable);
        assert_eq!(t.config.get_user(), Some("app"));
        let t = parse_url("postgresql://postgres@127.0.0.1:5432/test").unwrap();
        assert_eq!(t.mode, SslMode::Prefer);
    }

    #[test]
    fn unsupported_tls_settings_are_refused_without_the_password() {
        for url in [
            "postgresql://app:s3cret@db/recs?sslmode=verify-ca",
            "postgresql://app:s3cret@db/recs?sslmode=require&sslrootcert=/ca.pem",
            "host=db password=s3cret sslmode=allow",
        ] {
            let e = parse_url(url).unwrap_err().to_string();
            assert!(e.contains("[sink] postgres_url"), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
