//! TLS for the TCP listeners (syslog over TLS, RFC 5425): the server configuration built from PEM
//! files, and the handshake with its failures sorted for counting.
//!
//! rustls with the aws-lc-rs provider (already linked for the S3 client, so TLS adds no second
//! crypto library). TLS 1.2 and 1.3; with `client_ca`, client certificates are mandatory.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;

/// First byte of a TLS record carrying a handshake message (every ClientHello starts with it).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A TLS configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: String },
    #[error("{path}: bad PEM: {message}")]
    Pem { path: String, message: String },
    #[error("{path}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: String },
    #[error("client_ca {path}: no usable CA certificate ({ignored} could not be parsed)")]
    NoClientCa { path: String, ignored: usize },
    #[error("client_ca {path}: {message}")]
    ClientVerifier { path: String, message: String },
    /// Refused by rustls, e.g. a key that does not belong to the certificate.
    #[error("certificate {cert} with key {key}: {source}")]
    Rustls {
        cert: String,
        key: String,
        source: rustls::Error,
    },
}

/// Why a TLS connection never got to carry messages. Every one is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsFailure {
    /// The handshake failed: untrusted or missing client certificate, a client that does not
    /// trust ours, protocol errors, a connection closed before or during the handshake.
    Error,
    /// The handshake did not complete within `handshake_timeout`.
    Timeout,
    /// The first byte was no TLS handshake record: plaintext syslog (or junk) on the TLS port.
    Plaintext,
}

impl TlsFailure {
    pub const ALL: [TlsFailure; 3] = [Self::Error, Self::Timeout, Self::Plaintext];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Plaintext => "plaintext",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.display().to_string(),
        },
        other => TlsError::Pem {
            path: path.display().to_string(),
            message: other.to_string(),
        },
    })
}

/// Reads the files and builds the server configuration; every problem is named with its file.
pub(crate) fn server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&cfg.cert)?;
    let key = private_key(&cfg.key)?;
    let provider = provider();
    let rustls_err = |source| TlsError::Rustls {
        cert: cfg.cert.display().to_string(),
        key: cfg.key.display().to_string(),
        source,
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?;
    let builder = match &cfg.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(certificates(ca)?);
            if added == 0 {
                return Err(TlsError::NoClientCa {
                    path: ca.display().to_string(),
                    ignored,
                });
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientVerifier {
                    path: ca.display().to_string(),
                    message: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // Checks that the key belongs to the leaf certificate.
    let config = builder.with_single_cert(chain, key).map_err(rustls_err)?;
    Ok(Arc::new(config))
}

/// Completes the server side of a handshake within `timeout`. Looks at the first byte before
/// handing the socket to rustls, so that plaintext on the TLS port is told apart from a failed
/// handshake.
pub(crate) async fn accept(
    acceptor: &TlsAcceptor,
    sock: TcpStream,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, (TlsFailure, String)> {
    let handshake = async {
        let mut first = [0u8; 1];
        match sock.peek(&mut first).await {
            Ok(0) => {
                return Err((TlsFailure::Error, "closed before the handshake".to_string()));
            }
            Ok(_) => {}
            Err(e) => return Err((TlsFailure::Error, e.to_string())),
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            return Err((
                TlsFailure::Plaintext,
                format!(
                    "first byte {:#04x} ({:?}) is no TLS handshake record: plaintext on the TLS port?",
                    first[0],
                    char::from(first[0])
                ),
            ));
        }
        acceptor
            .accept(sock)
            .await
            .map_err(|e| (TlsFailure::Error, e.to_string()))
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(r) => r,
        Err(_) => Err((
            TlsFailure::Timeout,
            format!("no complete handshake within {timeout:?}"),
        )),
    }
}
