//! The cluster's certificates: a CA made when a cluster is first started, and the serving
//! certificates it signs.
//!
//! Clients trust the CA, never a leaf: the kubeconfig carries the CA, so the API server can
//! issue itself a fresh serving certificate at every start and keep its leaf key in memory
//! only. The CA's key is the cluster's crown jewel: whoever stores it ([`ClusterCa::key_pem`])
//! must keep it readable by its owner alone.
//!
//! Keys are ECDSA P-256, signed with ring through rcgen; TLS is rustls with ring, the one
//! crypto stack of the workspace.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

/// How long the cluster CA is valid.
const CA_VALIDITY: Duration = Duration::days(10 * 365);

/// How long an issued certificate is valid. The API server's own is issued anew at every
/// start, so only a server that runs for a year without a restart would see it expire.
const LEAF_VALIDITY: Duration = Duration::days(365);

/// The common name of the cluster CA.
const CA_NAME: &str = "skiff-ca";

/// Why a certificate or key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{what}: {source}")]
    Certificate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("{what} is not valid PEM: {reason}")]
    Pem { what: String, reason: String },
}

/// The cluster CA: its certificate and the key that signs with it.
pub struct ClusterCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Makes a new CA with a new key.
    pub fn generate() -> Result<ClusterCa, PkiError> {
        let key = KeyPair::generate().map_err(certificate("generating the CA key"))?;
        let mut params = ca_params();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + CA_VALIDITY;
        let cert = params
            .self_signed(&key)
            .map_err(certificate("signing the CA certificate"))?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// The CA made earlier, from its certificate and key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClusterCa, PkiError> {
        CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|error| PkiError::Pem {
            what: "the CA certificate".to_string(),
            reason: error.to_string(),
        })?;
        let key = KeyPair::from_pem(key_pem).map_err(certificate("reading the CA key"))?;
        Ok(ClusterCa {
            cert_pem: cert_pem.to_string(),
            // The issuer needs the CA's name, key usages and key: the parameters it was made
            // with, which are fixed.
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM, to be stored readable by its owner alone.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a serving certificate for `name`, valid for each of `hosts` (DNS names or IP
    /// addresses), with a new key.
    pub fn issue_server(&self, name: &str, hosts: &[String]) -> Result<Issued, PkiError> {
        let mut params = leaf_params(name);
        params.subject_alt_names = hosts
            .iter()
            .map(|host| san(host))
            .collect::<Result<_, _>>()?;
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
        self.sign(params, &format!("the serving certificate of {name}"))
    }

    /// Issues a client certificate for `name`, with a new key.
    pub fn issue_client(&self, name: &str) -> Result<Issued, PkiError> {
        let mut params = leaf_params(name);
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
        self.sign(params, &format!("the client certificate of {name}"))
    }

    /// Signs node `node`'s certificate request (PEM): the node keeps its key, and the
    /// certificate names it `system:node:NODE`, valid for `hosts` (its addresses as the
    /// cluster knows them) to serve and to connect with, whatever the request asked for.
    /// Returns the certificate, PEM.
    pub fn sign_node(
        &self,
        csr_pem: &str,
        node: &str,
        hosts: &[String],
    ) -> Result<String, PkiError> {
        let what = format!("the certificate request of node {node}");
        let mut request =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(certificate(&what))?;
        let mut params = leaf_params(&format!("system:node:{node}"));
        params.subject_alt_names = hosts
            .iter()
            .map(|host| san(host))
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        request.params = params;
        let cert = request
            .signed_by(&self.issuer)
            .map_err(certificate(&what))?;
        Ok(cert.pem())
    }

    fn sign(&self, params: CertificateParams, what: &str) -> Result<Issued, PkiError> {
        let key = KeyPair::generate().map_err(certificate(what))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(certificate(what))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The fixed parameters of the cluster CA.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn leaf_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + LEAF_VALIDITY;
    params
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn san(host: &str) -> Result<SanType, PkiError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let dns = host
        .to_string()
        .try_into()
        .map_err(certificate(&format!("the host name {host:?}")))?;
    Ok(SanType::DnsName(dns))
}

fn certificate(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Certificate {
        what: what.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Completes a TLS handshake with a server holding `issued`, as a client trusting
    /// `ca_pem` and asking for `host`; returns what the server echoed back.
    async fn handshake(issued: &Issued, ca_pem: &str, host: &str) -> Result<Vec<u8>, String> {
        let acceptor = tokio_rustls::TlsAcceptor::from(
            skiff_client::tls::server_config(&issued.cert_pem, &issued.key_pem, None).unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(stream).await {
                let mut buffer = [0u8; 5];
                if tls.read_exact(&mut buffer).await.is_ok() {
                    let _ = tls.write_all(&buffer).await;
                }
            }
        });
        let config = skiff_client::tls::client_config(ca_pem, None).unwrap();
        let connector = tokio_rustls::TlsConnector::from(config);
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
        let mut tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
        let mut echoed = vec![0u8; 5];
        tls.read_exact(&mut echoed)
            .await
            .map_err(|e| e.to_string())?;
        Ok(echoed)
    }

    #[tokio::test]
    async fn a_served_certificate_is_trusted_through_the_ca_for_its_hosts_only() {
        let ca = ClusterCa::generate().unwrap();
        let hosts = ["localhost".to_string(), "127.0.0.1".to_string()];
        let issued = ca.issue_server("skiff-apiserver", &hosts).unwrap();
        for host in ["localhost", "127.0.0.1"] {
            assert_eq!(
                handshake(&issued, ca.cert_pem(), host).await.unwrap(),
                b"hello"
            );
        }
        let wrong_host = handshake(&issued, ca.cert_pem(), "example.com").await;
        assert!(wrong_host.is_err(), "{wrong_host:?}");
        let other_ca = ClusterCa::generate().unwrap();
        let untrusted = handshake(&issued, other_ca.cert_pem(), "localhost").await;
        assert!(untrusted.is_err(), "{untrusted:?}");
    }

    #[tokio::test]
    async fn a_ca_read_back_from_pem_signs_certificates_its_clients_trust() {
        let made = ClusterCa::generate().unwrap();
        let again = ClusterCa::from_pem(made.cert_pem(), &made.key_pem()).unwrap();
        let issued = again
            .issue_server("skiff-apiserver", &["localhost".to_string()])
            .unwrap();
        assert_eq!(
            handshake(&issued, made.cert_pem(), "localhost")
                .await
                .unwrap(),
            b"hello"
        );
    }

    #[tokio::test]
    async fn a_node_request_is_signed_for_its_name_and_known_addresses_only() {
        let ca = ClusterCa::generate().unwrap();
        // The node asks for more than it may have: another name and host.
        let key = KeyPair::generate().unwrap();
        let mut asked = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        asked.distinguished_name = name("admin");
        let csr = asked.serialize_request(&key).unwrap().pem().unwrap();
        let cert_pem = ca
            .sign_node(&csr, "node-1", &["127.0.0.1".to_string()])
            .unwrap();
        let issued = Issued {
            cert_pem,
            key_pem: key.serialize_pem(),
        };
        assert_eq!(
            handshake(&issued, ca.cert_pem(), "127.0.0.1")
                .await
                .unwrap(),
            b"hello"
        );
        let asked_for = handshake(&issued, ca.cert_pem(), "evil.example").await;
        assert!(asked_for.is_err(), "{asked_for:?}");
        let error = ca.sign_node("not a request", "node-1", &[]).unwrap_err();
        assert!(error.to_string().contains("node node-1"), "{error}");
    }

    #[tokio::test]
    async fn a_server_asking_for_client_certificates_takes_only_its_ca_s() {
        let ca = ClusterCa::generate().unwrap();
        let clients = ClusterCa::generate().unwrap();
        let serving = ca.issue_server("node", &["localhost".to_string()]).unwrap();
        let config = skiff_client::tls::server_config(
            &serving.cert_pem,
            &serving.key_pem,
            Some(clients.cert_pem()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        let _ = tls.write_all(b"welcome").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        let apiserver = clients.issue_client("skiff:apiserver").unwrap();
        let stranger = ca.issue_client("stranger").unwrap();
        for (identity, welcome) in [
            (Some(&apiserver), true),
            (Some(&stranger), false),
            (None, false),
        ] {
            let identity = identity.map(|i| (i.cert_pem.as_str(), i.key_pem.as_str()));
            let config = skiff_client::tls::client_config(ca.cert_pem(), identity).unwrap();
            let connector = tokio_rustls::TlsConnector::from(config);
            let stream = tokio::net::TcpStream::connect(address).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            // TLS 1.3 reports a refused client certificate on the first read.
            let mut read = String::new();
            let answered = match connector.connect(name, stream).await {
                Ok(mut tls) => tls.read_to_string(&mut read).await.is_ok() && read == "welcome",
                Err(_) => false,
            };
            assert_eq!(answered, welcome, "{identity:?}");
        }
    }

    #[test]
    fn bad_pem_and_bad_host_names_are_named() {
        let ca = ClusterCa::generate().unwrap();
        let error = ClusterCa::from_pem("not pem", &ca.key_pem()).unwrap_err();
        assert!(error.to_string().contains("CA certificate"), "{error}");
        let error = ClusterCa::from_pem(ca.cert_pem(), "not a key").unwrap_err();
        assert!(error.to_string().contains("CA key"), "{error}");
        let error = ca
            .issue_server("x", &["bücher.example".to_string()])
            .unwrap_err();
        assert!(error.to_string().contains("bücher"), "{error}");
    }
}
