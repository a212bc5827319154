//! `nodes/NAME/certificate`: a node's certificate, signed by the cluster CA.
//!
//! A node makes its own key and posts a certificate request (PEM); the answer is a
//! certificate naming it `system:node:NAME`, valid for the addresses its Node object lists,
//! with the CAs it needs: the cluster CA (to trust other nodes and the API server) and the
//! CA of the API server's client certificate (the only caller its own API answers). The
//! node serves its API and the fabric with it and presents it to other nodes. What the
//! request itself asks for (names, hosts, usages) is ignored.
//!
//! Kubernetes does this with CertificateSigningRequest objects and an approver; a node may
//! only ever get a certificate for itself here, so the signing is immediate.

use std::sync::Arc;

use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::auth::User;
use super::error::{ApiError, ApiResult};
use super::registry::ResourceType;
use super::{ApiServer, json_ok};
use crate::pki::ClusterCa;

/// What the API server signs node certificates with.
pub struct NodeSigner {
    /// The cluster CA.
    pub ca: Arc<ClusterCa>,
    /// The CA (PEM) of the API server's client certificate, which node APIs require.
    pub api_server_client_ca_pem: String,
}

impl std::fmt::Debug for NodeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSigner").finish_non_exhaustive()
    }
}

/// The body of a `nodes/NAME/certificate` POST.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCertificateRequest {
    /// The PKCS#10 certificate request, PEM.
    pub request: String,
}

/// The answer: the node's certificate and the CAs it trusts.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCertificate {
    pub kind: String,
    pub api_version: String,
    /// The node's certificate, PEM.
    pub certificate: String,
    /// The cluster CA, PEM: what signs the API server's and every node's certificate.
    pub cluster_ca: String,
    /// The CA of the API server's client certificate, PEM.
    pub api_server_client_ca: String,
}

/// Signs the certificate request of node `name` for `user`: the node itself or an admin.
pub(crate) async fn sign(
    server: &ApiServer,
    rt: &ResourceType,
    name: &str,
    user: Option<&User>,
    request: NodeCertificateRequest,
) -> ApiResult<Response> {
    let Some(signer) = server.config.node_signer.as_ref() else {
        return Err(ApiError::bad_request(
            "this API server signs no node certificates (it has no cluster CA)",
        )
        .with_code(axum::http::StatusCode::SERVICE_UNAVAILABLE));
    };
    if !may_request(user, name) {
        let who = user.map_or("anonymous", |u| u.name.as_str());
        return Err(ApiError::forbidden(format!(
            "nodes \"{name}\" is forbidden: User \"{who}\" cannot create resource \"nodes/certificate\" in API group \"\" for another node"
        )));
    }
    let (_, node) = server.get_object(rt, None, name).await?;
    let hosts = addresses(&node);
    if hosts.is_empty() {
        return Err(ApiError::bad_request(format!(
            "node {name} lists no addresses in status.addresses yet: register it first"
        )));
    }
    let certificate = signer
        .ca
        .sign_node(&request.request, name, &hosts)
        .map_err(|error| ApiError::bad_request(format!("request: {error}")))?;
    let answer = NodeCertificate {
        kind: "NodeCertificate".to_string(),
        api_version: "skiff.dev/v1".to_string(),
        certificate,
        cluster_ca: signer.ca.cert_pem().to_string(),
        api_server_client_ca: signer.api_server_client_ca_pem.clone(),
    };
    let value = serde_json::to_value(answer)
        .map_err(|error| ApiError::internal("encoding a node certificate", error))?;
    Ok(json_ok(value))
}

fn may_request(user: Option<&User>, node: &str) -> bool {
    let Some(user) = user else {
        return false;
    };
    let in_group = |group: &str| user.groups.iter().any(|g| g == group);
    if in_group("system:masters") {
        return true;
    }
    user.name.strip_prefix("system:node:") == Some(node) && in_group("system:nodes")
}

/// The node's addresses and host name from `status.addresses`.
fn addresses(node: &serde_json::Value) -> Vec<String> {
    let mut hosts: Vec<String> = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|address| address["address"].as_str())
        .filter(|address| !address.is_empty())
        .map(str::to_string)
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn only_the_node_itself_or_an_admin_may_ask() {
        let node1 = user("system:node:node-1", &["system:nodes"]);
        assert!(may_request(Some(&node1), "node-1"));
        assert!(!may_request(Some(&node1), "node-2"));
        assert!(may_request(
            Some(&user("admin", &["system:masters"])),
            "node-2"
        ));
        assert!(!may_request(Some(&user("viewer", &["viewers"])), "node-1"));
        assert!(!may_request(
            Some(&user("system:node", &["viewers"])),
            "node-1"
        ));
        assert!(!may_request(None, "node-1"));
    }

    #[test]
    fn addresses_come_from_the_node_status() {
        let node = serde_json::json!({ "status": { "addresses": [
            { "type": "InternalIP", "address": "127.0.0.1" },
            { "type": "Hostname", "address": "node-1" },
            { "type": "InternalIP", "address": "127.0.0.1" },
        ] } });
        assert_eq!(addresses(&node), ["127.0.0.1", "node-1"]);
        assert!(addresses(&serde_json::json!({})).is_empty());
    }
}
