//! The node's certificate: a key made here that never leaves the process, signed by the
//! cluster CA through `nodes/NAME/certificate` once the node is registered.
//!
//! The node serves its own API with it and accepts there only the API server's client
//! certificate (signed by a CA of its own, which the answer carries). A cluster whose API
//! server signs no certificates (an in-process test or benchmark) gets `None`, and the node
//! API stays plain HTTP behind the node token.

use std::sync::Arc;

use serde::Deserialize;
use skiff_client::{Client, Method};

/// The node's key and certificate and the CAs it trusts, all PEM.
#[derive(Clone)]
pub struct NodeIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    pub cluster_ca_pem: String,
    pub api_server_client_ca_pem: String,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Why the node has no certificate.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("making the node's key: {0}")]
    Key(#[from] rcgen::Error),
    #[error("asking the API server for the node's certificate: {0}")]
    Api(#[from] skiff_client::Error),
    #[error("the API server's answer: {0}")]
    Answer(#[from] serde_json::Error),
    #[error("the node's TLS configuration: {0}")]
    Tls(#[from] skiff_client::tls::TlsError),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    certificate: String,
    cluster_ca: String,
    api_server_client_ca: String,
}

/// Makes a key and has the API server sign it for node `name`. `Ok(None)` when the API
/// server signs no node certificates.
pub async fn obtain(client: &Client, name: &str) -> Result<Option<NodeIdentity>, CertificateError> {
    let key = rcgen::KeyPair::generate()?;
    let request = rcgen::CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    let path = format!("/api/v1/nodes/{name}/certificate");
    let body = serde_json::json!({ "request": request });
    let answer = match client.request_json(Method::POST, &path, Some(body)).await {
        Ok(answer) => answer,
        Err(skiff_client::Error::Api(status)) if status.code == Some(503) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let answer: Answer = serde_json::from_value(answer)?;
    Ok(Some(NodeIdentity {
        cert_pem: answer.certificate,
        key_pem: key.serialize_pem(),
        cluster_ca_pem: answer.cluster_ca,
        api_server_client_ca_pem: answer.api_server_client_ca,
    }))
}

impl NodeIdentity {
    /// How the fabric is served: this certificate, and only nodes (certificates of the
    /// cluster CA made for clients) as peers; HTTP/2.
    pub fn fabric_server_config(&self) -> Result<Arc<rustls::ServerConfig>, CertificateError> {
        let mut config = (*skiff_client::tls::server_config(
            &self.cert_pem,
            &self.key_pem,
            Some(&self.cluster_ca_pem),
        )?)
        .clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// How this node connects to other nodes' fabric: trusting the cluster CA, presenting
    /// this certificate; HTTP/2.
    pub fn fabric_client_config(&self) -> Result<Arc<rustls::ClientConfig>, CertificateError> {
        let mut config = (*skiff_client::tls::client_config(
            &self.cluster_ca_pem,
            Some((&self.cert_pem, &self.key_pem)),
        )?)
        .clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// How the node API is served: this certificate, and only the API server as a client.
    pub fn api_server_config(&self) -> Result<Arc<rustls::ServerConfig>, CertificateError> {
        Ok(skiff_client::tls::server_config(
            &self.cert_pem,
            &self.key_pem,
            Some(&self.api_server_client_ca_pem),
        )?)
    }
}
