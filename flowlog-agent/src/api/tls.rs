//! TLS for the TCP API (rustls, ring provider): the server's certificate
//! and key from the configuration, and the client's trust in a CA file.
//! Signed requests prove who sends them; TLS keeps what they carry —
//! access key secrets in a CreateAccessKey answer, logs — from the wire.

use std::{path::Path, sync::Arc};

use rustls::{ClientConfig, RootCertStore, ServerConfig, crypto::ring};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {what} from {path}: {detail}")]
    Read {
        what: &'static str,
        path: String,
        detail: String,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: String },
    #[error("setting up TLS: {0}")]
    Config(#[from] rustls::Error),
}

fn read_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl Fn(rustls_pki_types::pem::Error) -> TlsError + 'a {
    move |e| TlsError::Read {
        what,
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_err("certificates", path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err("certificates", path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// The listener's TLS side, from a PEM certificate chain and private key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(read_err("the private key", key))?;
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A client that trusts the CA certificates in `ca` (PEM).
pub fn connector(ca: &Path) -> Result<TlsConnector, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certificates(ca)? {
        roots.add(c)?;
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
