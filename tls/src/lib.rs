//! The TLS server configuration of the collector and of the agent's syslog
//! source (RFC 5425): rustls with the ring provider, TLS 1.3 and 1.2, the
//! certificate chain and key from PEM files, and — when a client CA is
//! given — a client certificate signed by it required.

#![forbid(unsafe_code)]

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a TLS configuration could not be made; names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Reads every certificate of a PEM file.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// A server configuration: `cert` (a PEM chain), `key` (a PEM private key),
/// and `client_ca` (PEM roots) to require client certificates.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, TlsError> {
    server_config_with(cert, key, client_ca, false)
}

/// [`server_config`], and with `optional_client_cert` a client may also
/// connect without a certificate (one it presents must still be valid):
/// the server then decides per request (the collector's token users).
pub fn server_config_with(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    optional_client_cert: bool,
) -> Result<rustls::ServerConfig, TlsError> {
    let certs = certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca)? {
                roots.add(c).map_err(|e| file_err(ca, e))?;
            }
            let mut vb = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            if optional_client_cert {
                vb = vb.allow_unauthenticated();
            }
            let verifier = vb.build().map_err(|e| file_err(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(format!("certificate and key: {e}")))
}

/// A client configuration: the server's certificate checked against the
/// roots in `ca` (PEM; none: no root is trusted, so only a loopback
/// `http://` URL works), and a client certificate and key when given.
pub fn client_config(
    ca: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        for c in certificates(ca)? {
            roots.add(c).map_err(|e| file_err(ca, e))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    match client {
        Some((cert, key)) => {
            let certs = certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::Config(format!("client certificate: {e}")))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}
