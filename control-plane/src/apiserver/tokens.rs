//! Bearer tokens made at runtime, kept hashed in Secrets in `kube-system`.
//!
//! Three types of Secret hold a token's SHA-256 (never the token):
//!
//! - `skiff.dev/token` (`skiff create token`): a user name, whose rights come from
//!   bindings of that name alone. Never a group, never a `system:` name: whoever may write
//!   Secrets in `kube-system` must not mint master identities this way.
//! - `bootstrap.kubernetes.io/token` (`skiff token create`), Kubernetes' bootstrap token:
//!   `ID.SECRET`, named `bootstrap-token-ID`, with an `expiration`. Its user is
//!   `system:bootstrap:ID` in group `system:bootstrappers`, which may do one thing: exchange
//!   it for a node's own credential (`nodes/NAME/credential`). Past its expiration it
//!   authenticates no one.
//! - `skiff.dev/node-token`: a node's own credential, made by that exchange. Its user is
//!   `system:node:NAME` in `system:nodes`, held to its own objects by the node restriction.
//!
//! Kubernetes keeps a bootstrap token's secret half in plain text; here only the hash of
//! the whole token is kept, as for every other token, so a copy of the store lets no one
//! join a node.

use std::collections::HashMap;
use std::time::SystemTime;

use skiff_api::core::Secret;

use super::auth::{User, parse_hash};
use super::rbac::{NODE_USER_PREFIX, NODES_GROUP};
use crate::store::{ListOptions, Store, StoreError};

/// The namespace, and the store prefix, of the Secrets that may hold tokens.
pub const TOKEN_NAMESPACE: &str = "kube-system";
pub const TOKEN_SECRETS_PREFIX: &str = "/core/secrets/kube-system/";
/// The Secret type of an API token for a user (`skiff create token`).
pub const USER_TOKEN_TYPE: &str = "skiff.dev/token";
/// The Secret type of a join token (`skiff token create`), as Kubernetes names it.
pub const BOOTSTRAP_TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";
/// A join token's Secret is this prefix followed by the token's ID.
pub const BOOTSTRAP_TOKEN_PREFIX: &str = "bootstrap-token-";
/// The group of join tokens' users.
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
/// A join token's user is this prefix followed by the token's ID.
pub const BOOTSTRAP_USER_PREFIX: &str = "system:bootstrap:";
/// The Secret type of a node's own credential.
pub const NODE_TOKEN_TYPE: &str = "skiff.dev/node-token";
/// A node's credential Secret is this prefix followed by the node's name.
pub const NODE_TOKEN_PREFIX: &str = "skiff-node-";

/// Who a token proves its bearer to be, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub user: User,
    /// `None`: until its Secret is deleted.
    pub expires: Option<SystemTime>,
}

impl Credential {
    /// Whether the credential still holds at `now`.
    pub fn valid_at(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|expires| now < expires)
    }
}

/// Every token Secret's credential, by the token's SHA-256. Secrets that are no token, or
/// a malformed one, are skipped (with a warning for the latter): one bad Secret must not
/// lock everyone out.
pub async fn load(store: &dyn Store) -> Result<HashMap<[u8; 32], Credential>, StoreError> {
    let page = store
        .list(TOKEN_SECRETS_PREFIX, ListOptions::default())
        .await?;
    let mut tokens = HashMap::new();
    for kv in &page.items {
        let Ok(secret) = serde_json::from_slice::<Secret>(&kv.value) else {
            continue;
        };
        match credential_of(&secret) {
            Ok(Some((hash, credential))) => {
                tokens.insert(hash, credential);
            }
            Ok(None) => {}
            Err(problem) => tracing::warn!(
                secret = secret.metadata.name(),
                "ignoring token secret: {problem}"
            ),
        }
    }
    Ok(tokens)
}

/// The token hash and credential a Secret holds: `Ok(None)` for a Secret of another type.
pub fn credential_of(secret: &Secret) -> Result<Option<([u8; 32], Credential)>, String> {
    let text = |key: &str| {
        secret
            .value(key)
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| format!("data.{key} is missing or not base64 of UTF-8"))
    };
    let hash = || {
        parse_hash(text("tokenHash")?.trim())
            .map_err(|problem| format!("data.tokenHash: {problem}"))
    };
    let credential = match secret.type_.as_deref() {
        Some(USER_TOKEN_TYPE) => {
            let name = text("user")?;
            if name.is_empty() || name.starts_with("system:") {
                return Err(format!(
                    "data.user: {name:?} is empty or a reserved system: name"
                ));
            }
            Credential {
                user: User {
                    name,
                    groups: Vec::new(),
                },
                expires: None,
            }
        }
        Some(BOOTSTRAP_TOKEN_TYPE) => {
            let id = text("token-id")?;
            if secret.metadata.name() != format!("{BOOTSTRAP_TOKEN_PREFIX}{id}") {
                return Err(format!(
                    "data.token-id: {id:?} does not match the Secret's name"
                ));
            }
            if text("usage-bootstrap-authentication").ok().as_deref() != Some("true") {
                return Ok(None);
            }
            let expiration = text("expiration")?;
            let expires = humantime::parse_rfc3339_weak(expiration.trim())
                .map_err(|error| format!("data.expiration {expiration:?}: {error}"))?;
            Credential {
                user: User {
                    name: format!("{BOOTSTRAP_USER_PREFIX}{id}"),
                    groups: vec![BOOTSTRAPPERS_GROUP.to_string()],
                },
                expires: Some(expires),
            }
        }
        Some(NODE_TOKEN_TYPE) => {
            let node = text("node")?;
            if secret.metadata.name() != format!("{NODE_TOKEN_PREFIX}{node}") {
                return Err(format!(
                    "data.node: {node:?} does not match the Secret's name"
                ));
            }
            Credential {
                user: User {
                    name: format!("{NODE_USER_PREFIX}{node}"),
                    groups: vec![NODES_GROUP.to_string()],
                },
                expires: None,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some((hash()?, credential)))
}

/// A new join token, `ID.SECRET` as Kubernetes' bootstrap tokens: six and sixteen
/// characters of `[a-z0-9]` from the OS's random generator.
pub fn generate_join_token() -> JoinToken {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = [
        uuid::Uuid::new_v4().into_bytes(),
        uuid::Uuid::new_v4().into_bytes(),
    ];
    // 256 is not a multiple of 36: drop the bytes that would bias the draw.
    let mut chars = bytes
        .iter()
        .flatten()
        .filter(|&&b| usize::from(b) < 256 - 256 % ALPHABET.len())
        .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
    let id: String = chars.by_ref().take(6).collect();
    let secret: String = chars.take(16).collect();
    if id.len() < 6 || secret.len() < 16 {
        // 32 bytes with fewer than 22 usable: about one chance in 10^40. Draw again.
        return generate_join_token();
    }
    JoinToken { id, secret }
}

/// A join token: its public ID (in the Secret's name) and its secret half.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JoinToken({}.<secret>)", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secret(name: &str, type_: &str, data: &[(&str, &str)]) -> Secret {
        let mut secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "namespace": "kube-system" },
            "type": type_,
        }))
        .unwrap();
        for (key, value) in data {
            secret.insert(*key, value);
        }
        secret
    }

    fn hash_of(token: &str) -> String {
        super::super::auth::token_hash_hex(token)
    }

    #[test]
    fn join_tokens_have_kubernetes_shape_and_differ() {
        let a = generate_join_token();
        let b = generate_join_token();
        assert!(kubernetes_shaped(&a.to_string()), "{a}");
        assert_ne!(a, b);
        assert!(
            !format!("{a:?}").contains(&a.secret),
            "Debug hides the secret"
        );
    }

    /// `[a-z0-9]{6}\.[a-z0-9]{16}`.
    fn kubernetes_shaped(token: &str) -> bool {
        let ok = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        matches!(token.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
    }

    #[test]
    fn a_join_token_is_a_bootstrapper_until_it_expires() {
        let token = "abcdef.0123456789abcdef";
        let made = secret(
            "bootstrap-token-abcdef",
            BOOTSTRAP_TOKEN_TYPE,
            &[
                ("token-id", "abcdef"),
                ("tokenHash", &hash_of(token)),
                ("expiration", "2030-01-01T00:00:00Z"),
                ("usage-bootstrap-authentication", "true"),
            ],
        );
        let (hash, credential) = credential_of(&made).unwrap().unwrap();
        assert_eq!(hash, parse_hash(&hash_of(token)).unwrap());
        assert_eq!(credential.user.name, "system:bootstrap:abcdef");
        assert_eq!(credential.user.groups, ["system:bootstrappers"]);
        let expires = humantime::parse_rfc3339("2030-01-01T00:00:00Z").unwrap();
        assert!(credential.valid_at(expires - Duration::from_secs(1)));
        assert!(!credential.valid_at(expires));
    }

    #[test]
    fn malformed_join_tokens_are_refused_with_the_field_named() {
        let base = [
            ("token-id", "abcdef"),
            ("tokenHash", "00"),
            ("expiration", "2030-01-01T00:00:00Z"),
            ("usage-bootstrap-authentication", "true"),
        ];
        let wrong_name = secret("bootstrap-token-zzzzzz", BOOTSTRAP_TOKEN_TYPE, &base);
        assert!(credential_of(&wrong_name).unwrap_err().contains("token-id"));
        let mut no_expiry = base.to_vec();
        no_expiry.retain(|(k, _)| *k != "expiration");
        let no_expiry = secret("bootstrap-token-abcdef", BOOTSTRAP_TOKEN_TYPE, &no_expiry);
        assert!(
            credential_of(&no_expiry)
                .unwrap_err()
                .contains("expiration")
        );
        let bad_hash = secret("bootstrap-token-abcdef", BOOTSTRAP_TOKEN_TYPE, &base);
        assert!(credential_of(&bad_hash).unwrap_err().contains("tokenHash"));
        let mut unused = base.to_vec();
        unused.retain(|(k, _)| !k.starts_with("usage"));
        let unused = secret("bootstrap-token-abcdef", BOOTSTRAP_TOKEN_TYPE, &unused);
        assert_eq!(
            credential_of(&unused).unwrap(),
            None,
            "not for authentication"
        );
    }

    #[test]
    fn a_node_token_is_that_node_and_a_user_token_never_a_system_name() {
        let node = secret(
            "skiff-node-n1",
            NODE_TOKEN_TYPE,
            &[("node", "n1"), ("tokenHash", &hash_of("t"))],
        );
        let (_, credential) = credential_of(&node).unwrap().unwrap();
        assert_eq!(credential.user.name, "system:node:n1");
        assert_eq!(credential.user.groups, ["system:nodes"]);
        assert_eq!(credential.expires, None);
        let renamed = secret(
            "skiff-node-n2",
            NODE_TOKEN_TYPE,
            &[("node", "n1"), ("tokenHash", &hash_of("t"))],
        );
        assert!(credential_of(&renamed).unwrap_err().contains("data.node"));

        let master = secret(
            "skiff-token-x",
            USER_TOKEN_TYPE,
            &[("user", "system:node:n1"), ("tokenHash", &hash_of("t"))],
        );
        assert!(credential_of(&master).unwrap_err().contains("data.user"));
        let opaque = secret("other", "Opaque", &[("tokenHash", &hash_of("t"))]);
        assert_eq!(credential_of(&opaque).unwrap(), None);
    }
}
