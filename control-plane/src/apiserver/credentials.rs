//! `nodes/NAME/credential`: a node exchanges a join token for a credential of its own.
//!
//! A new node holds only a join token (`skiff token create`), whose user
//! `system:bootstrap:ID` may do nothing but this. The answer is a fresh bearer token for
//! `system:node:NAME` (its hash kept in the Secret `kube-system/skiff-node-NAME`, which an
//! administrator deletes to revoke it), the token the node's own API must demand of the
//! API server, and the token of the fabric between nodes. The node keeps them; the join
//! token may expire.
//!
//! Asking again for the same name replaces the node's token (a reinstalled machine
//! rejoins), as a Kubernetes bootstrapper may ask a certificate for any node name: a join
//! token is a credential to make nodes with, to be given out as carefully as that.
//!
//! The node API and fabric tokens are not stored: they are HMACs of the node's name (and
//! of "fabric") under the cluster's [`NodeKey`], so the API server can present each node
//! its own token without keeping it, and no node can call another node's API with its own.

use axum::response::Response;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

use super::auth::{User, generate_token, token_hash_hex};
use super::error::{ApiError, ApiResult};
use super::handlers::{Desired, Part};
use super::rbac::NODE_USER_PREFIX;
use super::tokens::{NODE_TOKEN_PREFIX, NODE_TOKEN_TYPE, TOKEN_NAMESPACE};
use super::{ApiServer, json_ok};

/// The secret node API and fabric tokens derive from: 32 random bytes the API server
/// keeps (`skiff server` in `DATA/pki/node.key`).
#[derive(Clone)]
pub struct NodeKey([u8; 32]);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey(..)")
    }
}

impl NodeKey {
    /// A new key from the OS's random generator.
    pub fn generate() -> NodeKey {
        let mut key = [0; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        NodeKey(key)
    }

    /// The key as [`NodeKey::to_hex`] wrote it.
    pub fn from_hex(hex: &str) -> Result<NodeKey, String> {
        super::auth::parse_hash(hex.trim()).map(NodeKey)
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The token node `node`'s API demands of the API server.
    pub fn api_token(&self, node: &str) -> String {
        self.derive(&format!("node-api:{node}"))
    }

    /// The token every stream of the fabric between nodes carries.
    pub fn fabric_token(&self) -> String {
        self.derive("fabric")
    }

    fn derive(&self, purpose: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key size");
        mac.update(purpose.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The answer of `nodes/NAME/credential`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredential {
    pub kind: String,
    pub api_version: String,
    /// The node's name.
    pub node: String,
    /// The user the token authenticates as: `system:node:NAME`.
    pub user: String,
    /// The node's bearer token for the API server.
    pub token: String,
    /// What the node's API demands of callers; `None` when the API server has no
    /// [`NodeKey`] (its node APIs then answer no one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_api_token: Option<String>,
    /// What the fabric between nodes demands of every stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fabric_token: Option<String>,
}

impl std::fmt::Debug for NodeCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredential")
            .field("node", &self.node)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Makes node `node` a new credential, replacing any it had, and makes it usable at
    /// once. `issuer` is recorded on the Secret.
    pub async fn issue_node_credential(
        &self,
        node: &str,
        issuer: &str,
    ) -> ApiResult<NodeCredential> {
        let problems = skiff_api::validation::is_dns1123_subdomain(node);
        if !problems.is_empty() {
            return Err(ApiError::bad_request(format!(
                "metadata.name: Invalid value: {node:?}: {}",
                problems.join("; ")
            )));
        }
        let token = generate_token();
        let name = format!("{NODE_TOKEN_PREFIX}{node}");
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": TOKEN_NAMESPACE,
                "labels": { "skiff.dev/node": node },
                "annotations": { "skiff.dev/issued-by": issuer },
            },
            "type": NODE_TOKEN_TYPE,
            "stringData": { "node": node, "tokenHash": token_hash_hex(&token) },
        });
        let rt = self
            .registry
            .find("", "v1", "secrets")
            .expect("secrets are built in");
        match self
            .create_object(rt, Some(TOKEN_NAMESPACE), secret.clone())
            .await
        {
            Ok(_) => {}
            Err(error) if error.code == axum::http::StatusCode::CONFLICT => {
                self.update_object(rt, Some(TOKEN_NAMESPACE), &name, Part::Main, |_| {
                    Ok(Desired {
                        object: secret.clone(),
                        precondition: None,
                    })
                })
                .await?;
            }
            Err(error) => return Err(error),
        }
        self.access
            .rebuild(self.store.as_ref())
            .await
            .map_err(|error| ApiError::internal("rebuilding the token index", error))?;
        tracing::info!(node, issuer, "issued a node credential");
        let key = self.config.node_key.as_ref();
        Ok(NodeCredential {
            kind: "NodeCredential".to_string(),
            api_version: "skiff.dev/v1".to_string(),
            node: node.to_string(),
            user: format!("{NODE_USER_PREFIX}{node}"),
            token,
            node_api_token: key.map(|key| key.api_token(node)),
            fabric_token: key.map(NodeKey::fabric_token),
        })
    }
}

/// `POST nodes/NAME/credential`, once authorization let the caller through (join tokens
/// and administrators).
pub(crate) async fn exchange(server: &ApiServer, node: &str, user: &User) -> ApiResult<Response> {
    let credential = server.issue_node_credential(node, &user.name).await?;
    let value = serde_json::to_value(credential)
        .map_err(|error| ApiError::internal("encoding a node credential", error))?;
    Ok(json_ok(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_tokens_differ_by_node_and_purpose_and_survive_a_round_trip() {
        let key = NodeKey::generate();
        let again = NodeKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(key.api_token("n1"), again.api_token("n1"));
        assert_ne!(key.api_token("n1"), key.api_token("n2"));
        assert_ne!(key.api_token("n1"), key.fabric_token());
        assert_ne!(
            key.api_token("n1"),
            NodeKey::generate().api_token("n1"),
            "another cluster's key"
        );
        assert_eq!(key.fabric_token().len(), 64);
        assert!(!format!("{key:?}").contains(&key.to_hex()[..8]));
    }
}
