//! rustls configurations made from PEM: what the API server, the node agents and the fabric
//! between them serve and connect with. One crypto provider (ring) for the whole cluster, and
//! trust only in the CAs given: a cluster's certificates come from its own CA, never from
//! the public roots.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Why PEM could not become a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} is not valid PEM: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("{what} holds no certificate")]
    NoCertificate { what: &'static str },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verification: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            what,
            reason: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certificates)
}

fn private_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|error| TlsError::Pem {
        what,
        reason: error.to_string(),
    })
}

fn roots(ca_pem: &str, what: &'static str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(ca_pem, what)? {
        roots.add(certificate)?;
    }
    Ok(roots)
}

/// A server presenting `cert_pem` (its chain) and `key_pem`, speaking HTTP/2 and HTTP/1.1.
/// With `client_ca_pem`, a client must present a certificate signed by that CA, and no
/// other client gets past the handshake.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        Some(ca_pem) => {
            let roots = Arc::new(roots(ca_pem, "the client CA")?);
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(
        certificates(cert_pem, "the serving certificate")?,
        private_key(key_pem, "the serving key")?,
    )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client trusting only `ca_pem`, presenting `identity` (certificate chain and key, PEM)
/// when a server asks for one.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem, "the CA")?);
    let config = match identity {
        Some((cert_pem, key_pem)) => builder.with_client_auth_cert(
            certificates(cert_pem, "the client certificate")?,
            private_key(key_pem, "the client key")?,
        )?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
