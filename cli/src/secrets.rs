//! What every API server of one cluster must share: the cluster CA, the CA of the API
//! servers' client certificates, the key node credentials derive from, and the admin
//! token.
//!
//! One server on sled keeps them in its data directory (`DATA/pki`, owner-only). Servers
//! on etcd keep them in the store itself, under [`STORE_KEY`], which no API path reaches
//! (resource keys start with `/core/` or `/GROUP/`, and no group starts with `_`): the
//! first server to start makes them, every other one reads them, so a node's credential,
//! the kubeconfig's token and every serving certificate are good on every server. Reading
//! etcd is owning the cluster anyway (it holds every Secret and RoleBinding), as in
//! Kubernetes.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use skiff_control_plane::apiserver::auth;
use skiff_control_plane::apiserver::credentials::NodeKey;
use skiff_control_plane::pki::ClusterCa;
use skiff_control_plane::store::{Store, StoreError};

use crate::kubeconfig;

/// Where servers on a shared store keep the cluster's secrets.
pub const STORE_KEY: &str = "/_cluster/secrets";

/// The cluster's secrets; see the module docs.
pub struct ClusterSecrets {
    /// Signs serving certificates (the API servers', the nodes'): what clients trust.
    pub ca: ClusterCa,
    /// Signs the API servers' client certificates, which node APIs trust alone: so that
    /// a node answers API servers and no other node.
    pub client_ca: ClusterCa,
    /// What node API tokens and the fabric token derive from.
    pub node_key: NodeKey,
    /// The token of `admin` (group `system:masters`), which kubeconfigs carry.
    pub admin_token: String,
}

/// [`ClusterSecrets`] as kept in the store.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    ca_cert: String,
    ca_key: String,
    client_ca_cert: String,
    client_ca_key: String,
    node_key: String,
    admin_token: String,
}

impl ClusterSecrets {
    fn generate() -> Result<ClusterSecrets> {
        Ok(ClusterSecrets {
            ca: ClusterCa::generate()?,
            client_ca: ClusterCa::generate()?,
            node_key: NodeKey::generate(),
            admin_token: auth::generate_token(),
        })
    }

    /// The secrets of a server on sled: read from `dir`, each made (and kept there) the
    /// first time. An admin token whose kubeconfig was lost is made anew (only its hash
    /// is kept besides the kubeconfig).
    pub fn load_or_create_in_dir(dir: &Path) -> Result<ClusterSecrets> {
        let ca = match read_ca(dir, "ca")? {
            Some(ca) => ca,
            None => write_ca(dir, "ca", ClusterCa::generate()?)?,
        };
        let client_ca = match read_ca(dir, "apiserver-client-ca")? {
            Some(ca) => ca,
            None => write_ca(dir, "apiserver-client-ca", ClusterCa::generate()?)?,
        };
        let node_key = match read_node_key(dir)? {
            Some(key) => key,
            None => {
                let key = NodeKey::generate();
                kubeconfig::write_private(&node_key_path(dir), key.to_hex().as_bytes())?;
                key
            }
        };
        let admin_token = match read_admin_token(dir) {
            Some(token) => token,
            None => {
                let token = auth::generate_token();
                kubeconfig::write_private(
                    &dir.join(ADMIN_TOKEN_HASH),
                    auth::token_hash_hex(&token).as_bytes(),
                )?;
                token
            }
        };
        Ok(ClusterSecrets {
            ca,
            client_ca,
            node_key,
            admin_token,
        })
    }

    /// The secrets a data directory holds, if it holds them all (a cluster that ran on
    /// sled, for `skiff migrate`; or a server that ran on etcd before its secrets moved
    /// into the store).
    pub fn read_dir(dir: &Path) -> Result<Option<ClusterSecrets>> {
        let (Some(ca), Some(client_ca), Some(node_key), Some(admin_token)) = (
            read_ca(dir, "ca")?,
            read_ca(dir, "apiserver-client-ca")?,
            read_node_key(dir)?,
            read_admin_token(dir),
        ) else {
            return Ok(None);
        };
        Ok(Some(ClusterSecrets {
            ca,
            client_ca,
            node_key,
            admin_token,
        }))
    }

    /// The secrets of servers sharing `store`: those kept in it; else `dir`'s (a server
    /// that ran on this store before its secrets moved there), else new ones, put there
    /// unless another server put its own first, which are then taken.
    pub async fn load_or_create_in_store(store: &dyn Store, dir: &Path) -> Result<ClusterSecrets> {
        if let Some(secrets) = Self::read_store(store).await? {
            return Ok(secrets);
        }
        let secrets = match Self::read_dir(dir)? {
            Some(secrets) => secrets,
            None => Self::generate()?,
        };
        if secrets.publish(store).await? {
            return Ok(secrets);
        }
        Self::read_store(store)
            .await?
            .context("the cluster's secrets vanished from the store while being read")
    }

    /// The secrets kept in `store`, if any.
    pub async fn read_store(store: &dyn Store) -> Result<Option<ClusterSecrets>> {
        let Some(kv) = store
            .get(STORE_KEY)
            .await
            .context("reading the cluster's secrets from the store")?
        else {
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(&kv.value)
            .with_context(|| format!("the cluster's secrets in the store ({STORE_KEY})"))?;
        let what = |part: &str| format!("{STORE_KEY}: {part}");
        Ok(Some(ClusterSecrets {
            ca: ClusterCa::from_pem(&record.ca_cert, &record.ca_key)
                .with_context(|| what("the cluster CA"))?,
            client_ca: ClusterCa::from_pem(&record.client_ca_cert, &record.client_ca_key)
                .with_context(|| what("the API servers' client CA"))?,
            node_key: NodeKey::from_hex(&record.node_key)
                .map_err(|problem| anyhow::anyhow!("{}", what(&problem)))?,
            admin_token: record.admin_token,
        }))
    }

    /// Puts these secrets in `store` if it holds none yet; `false` if it already held
    /// some (which are left as they are).
    pub async fn publish(&self, store: &dyn Store) -> Result<bool> {
        let record = Record {
            ca_cert: self.ca.cert_pem().to_string(),
            ca_key: self.ca.key_pem(),
            client_ca_cert: self.client_ca.cert_pem().to_string(),
            client_ca_key: self.client_ca.key_pem(),
            node_key: self.node_key.to_hex(),
            admin_token: self.admin_token.clone(),
        };
        let value = serde_json::to_vec(&record)?;
        match store.create(STORE_KEY, value.into()).await {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(error).with_context(|| {
                format!("keeping the cluster's secrets in the store ({STORE_KEY})")
            }),
        }
    }

    /// Writes what clients need of these secrets into `dir`: the cluster CA's certificate
    /// (`pki/ca.crt`, which `skiff node --certificate-authority` takes).
    pub fn write_public(&self, dir: &Path) -> Result<()> {
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
        kubeconfig::write_private(&pki.join("ca.crt"), self.ca.cert_pem().as_bytes())
    }
}

/// The admin token's hash, beside the kubeconfig that holds the token.
const ADMIN_TOKEN_HASH: &str = "admin-token.sha256";

/// The admin token of a data dir: the kubeconfig's, if its hash is the one kept.
fn read_admin_token(dir: &Path) -> Option<String> {
    let hash = std::fs::read_to_string(dir.join(ADMIN_TOKEN_HASH)).ok()?;
    let token = kubeconfig::read_token(&dir.join("kubeconfig")).ok()?;
    (auth::token_hash_hex(&token) == hash.trim()).then_some(token)
}

fn node_key_path(dir: &Path) -> std::path::PathBuf {
    dir.join("pki").join("node.key")
}

fn read_node_key(dir: &Path) -> Result<Option<NodeKey>> {
    let path = node_key_path(dir);
    if !path.exists() {
        return Ok(None);
    }
    let hex =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    NodeKey::from_hex(&hex)
        .map(Some)
        .map_err(|problem| anyhow::anyhow!("{}: {problem}", path.display()))
}

/// A CA kept in `DIR/pki/NAME.crt` and `DIR/pki/NAME.key`, if either exists (one without
/// the other is an error: a half-written pki is not silently replaced).
fn read_ca(dir: &Path, name: &str) -> Result<Option<ClusterCa>> {
    let pki = dir.join("pki");
    let (cert_path, key_path) = (
        pki.join(format!("{name}.crt")),
        pki.join(format!("{name}.key")),
    );
    if !cert_path.exists() && !key_path.exists() {
        return Ok(None);
    }
    let cert = std::fs::read_to_string(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?;
    let key = std::fs::read_to_string(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    let ca = ClusterCa::from_pem(&cert, &key)
        .with_context(|| format!("the CA {name} in {}", pki.display()))?;
    Ok(Some(ca))
}

fn write_ca(dir: &Path, name: &str, ca: ClusterCa) -> Result<ClusterCa> {
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
    kubeconfig::write_private(&pki.join(format!("{name}.key")), ca.key_pem().as_bytes())?;
    kubeconfig::write_private(&pki.join(format!("{name}.crt")), ca.cert_pem().as_bytes())?;
    Ok(ca)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_control_plane::store::sled::SledStore;

    #[test]
    fn a_data_dir_keeps_its_secrets_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let first = ClusterSecrets::load_or_create_in_dir(dir.path()).unwrap();
        kubeconfig::write(
            &dir.path().join("kubeconfig"),
            "https://127.0.0.1:6443",
            &first.admin_token,
            first.ca.cert_pem(),
        )
        .unwrap();
        let again = ClusterSecrets::load_or_create_in_dir(dir.path()).unwrap();
        assert_eq!(again.ca.cert_pem(), first.ca.cert_pem());
        assert_eq!(again.client_ca.cert_pem(), first.client_ca.cert_pem());
        assert_eq!(again.node_key.to_hex(), first.node_key.to_hex());
        assert_eq!(again.admin_token, first.admin_token);
        let read = ClusterSecrets::read_dir(dir.path()).unwrap().unwrap();
        assert_eq!(read.admin_token, first.admin_token);
    }

    #[test]
    fn a_half_written_pki_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pki")).unwrap();
        std::fs::write(dir.path().join("pki/ca.crt"), "not a certificate").unwrap();
        let error = ClusterSecrets::load_or_create_in_dir(dir.path())
            .err()
            .expect("a CA certificate without its key is refused");
        assert!(format!("{error:#}").contains("ca.key"), "{error:#}");
    }

    #[tokio::test]
    async fn servers_sharing_a_store_share_the_secrets_of_the_first() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(store_dir.path()).unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = ClusterSecrets::load_or_create_in_store(&store, a.path())
            .await
            .unwrap();
        let second = ClusterSecrets::load_or_create_in_store(&store, b.path())
            .await
            .unwrap();
        assert_eq!(second.ca.cert_pem(), first.ca.cert_pem());
        assert_eq!(second.ca.key_pem(), first.ca.key_pem());
        assert_eq!(second.client_ca.cert_pem(), first.client_ca.cert_pem());
        assert_eq!(second.node_key.to_hex(), first.node_key.to_hex());
        assert_eq!(second.admin_token, first.admin_token);
    }

    #[tokio::test]
    async fn a_store_takes_the_secrets_of_the_data_dir_that_ran_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let mine = ClusterSecrets::load_or_create_in_dir(dir.path()).unwrap();
        kubeconfig::write(
            &dir.path().join("kubeconfig"),
            "https://127.0.0.1:6443",
            &mine.admin_token,
            mine.ca.cert_pem(),
        )
        .unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(store_dir.path()).unwrap();
        let shared = ClusterSecrets::load_or_create_in_store(&store, dir.path())
            .await
            .unwrap();
        assert_eq!(shared.ca.cert_pem(), mine.ca.cert_pem());
        assert_eq!(shared.admin_token, mine.admin_token);
        assert!(!mine.publish(&store).await.unwrap(), "published only once");
    }
}
