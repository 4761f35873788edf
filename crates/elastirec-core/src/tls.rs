//! TLS for elastirec's servers (the HTTP API and the PostgreSQL wire endpoint): one reader of
//! the PEM files an operator configures.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;

/// Why TLS could not be set up: the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {path}: {why}")]
pub struct TlsError {
    pub path: String,
    pub why: String,
}

/// A TLS server configuration from a PEM certificate chain and a PEM private key (PKCS#8,
/// PKCS#1 or SEC1), TLS 1.2 and 1.3, ring's algorithms. Errors never show the key's content.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |path: &Path, why: String| TlsError {
        path: path.display().to_string(),
        why,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| fail(cert, format!("cannot read the certificate chain: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(fail(
            cert,
            "no CERTIFICATE block: give the PEM certificate chain".into(),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|_| {
        fail(
            key,
            "holds no readable PEM private key (PKCS#8, PKCS#1 or SEC1)".into(),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| fail(key, format!("does not match the certificate: {e}")))?;
    Ok(Arc::new(config))
}
