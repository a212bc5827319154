//! Where the API server is and how to talk to it: [`Config`], read from a kubeconfig.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};

/// The namespace used when neither the kubeconfig context nor the caller names one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// How long a non-streaming request may take, connection included, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a [`Client`](crate::Client) needs to reach the API server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Base URL of the API server (`https://127.0.0.1:6443`); a path prefix is kept.
    pub server: Url,
    /// Bearer token sent on every request.
    pub token: Option<String>,
    /// PEM of the CA (one or more certificates) that signs the server's certificate,
    /// trusted in addition to the built-in roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Skip checking the server's certificate (`insecure-skip-tls-verify`). Tests only.
    pub accept_invalid_certs: bool,
    /// Limit of a whole non-streaming request, and of connecting for a streaming one
    /// (watches and log follows are limited by their own `timeoutSeconds`).
    /// Default [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// Namespace of [`Api::default_namespaced`](crate::Api::default_namespaced): the
    /// context's namespace, or `default`.
    pub default_namespace: String,
}

impl Config {
    /// A configuration for `server` with no credentials and the defaults.
    pub fn new(server: &str) -> Result<Config> {
        let server = Url::parse(server)
            .map_err(|e| Error::config(format!("invalid server URL {server:?}"), e))?;
        Ok(Config {
            server,
            token: None,
            ca_pem: None,
            accept_invalid_certs: false,
            timeout: DEFAULT_TIMEOUT,
            default_namespace: DEFAULT_NAMESPACE.to_string(),
        })
    }

    /// Reads a kubeconfig file and takes its current context. A relative
    /// `certificate-authority` or `tokenFile` path is relative to the file's folder.
    pub fn from_kubeconfig_file(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Kubeconfig {
            message: format!("reading {}", path.display()),
            source: Some(Box::new(e)),
        })?;
        let kubeconfig = Kubeconfig::from_yaml(&text)?;
        kubeconfig.to_config(None, path.parent())
    }

    /// Parses a kubeconfig document and takes its current context. Relative file
    /// paths in it are relative to the working directory.
    pub fn from_kubeconfig_str(text: &str) -> Result<Config> {
        Kubeconfig::from_yaml(text)?.to_config(None, None)
    }
}

/// A kubeconfig document (`apiVersion: v1`, `kind: Config`), the parts skiff uses.
///
/// It serializes back to a file `kubectl` reads, which is how `skiff server` writes
/// the admin kubeconfig.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    #[serde(default)]
    pub users: Vec<NamedUser>,
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
}

/// A cluster entry of a kubeconfig.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: Cluster,
}

/// How to reach one cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    pub server: String,
    /// Base64 of the CA's PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    /// Path of the CA's PEM file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_tls_verify: bool,
}

/// A user entry of a kubeconfig.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    #[serde(default)]
    pub user: User,
}

/// The credentials of one user; skiff uses bearer tokens only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A file holding the token (kubectl's spelling is camelCase here).
    #[serde(rename = "tokenFile", default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

/// A context entry of a kubeconfig.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: Context,
}

/// A cluster, a user and a default namespace, chosen together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Kubeconfig {
    /// Parses a kubeconfig document.
    pub fn from_yaml(text: &str) -> Result<Kubeconfig> {
        serde_yaml::from_str(text).map_err(|e| Error::Kubeconfig {
            message: "not a valid kubeconfig document".into(),
            source: Some(Box::new(e)),
        })
    }

    /// The document as YAML.
    pub fn to_yaml(&self) -> Result<String> {
        serde_yaml::to_string(self).map_err(|e| Error::Kubeconfig {
            message: "writing the kubeconfig".into(),
            source: Some(Box::new(e)),
        })
    }

    /// A kubeconfig with one cluster, one user with `token` and one context, named
    /// `name`, made current.
    pub fn single(name: &str, server: &str, ca_pem: Option<&[u8]>, token: Option<&str>) -> Self {
        Kubeconfig {
            api_version: Some("v1".into()),
            kind: Some("Config".into()),
            clusters: vec![NamedCluster {
                name: name.into(),
                cluster: Cluster {
                    server: server.into(),
                    certificate_authority_data: ca_pem
                        .map(|pem| base64::engine::general_purpose::STANDARD.encode(pem)),
                    ..Cluster::default()
                },
            }],
            users: vec![NamedUser {
                name: name.into(),
                user: User {
                    token: token.map(str::to_string),
                    token_file: None,
                },
            }],
            contexts: vec![NamedContext {
                name: name.into(),
                context: Context {
                    cluster: name.into(),
                    user: name.into(),
                    namespace: None,
                },
            }],
            current_context: Some(name.into()),
        }
    }

    /// The client configuration of `context` (the current context when `None`).
    /// Relative paths are taken from `base_dir` when given.
    pub fn to_config(&self, context: Option<&str>, base_dir: Option<&Path>) -> Result<Config> {
        let context_name = context
            .map(str::to_string)
            .or_else(|| self.current_context.clone().filter(|c| !c.is_empty()))
            .or_else(|| (self.contexts.len() == 1).then(|| self.contexts[0].name.clone()))
            .ok_or_else(|| Error::kubeconfig("no current-context and no context named"))?;
        let context = &self
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .ok_or_else(|| Error::kubeconfig(format!("context {context_name:?} not found")))?
            .context;
        let cluster = &self
            .clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .ok_or_else(|| {
                Error::kubeconfig(format!(
                    "cluster {:?} of context {context_name:?} not found",
                    context.cluster
                ))
            })?
            .cluster;
        let user = match context.user.as_str() {
            "" => None,
            name => Some(
                &self
                    .users
                    .iter()
                    .find(|u| u.name == name)
                    .ok_or_else(|| {
                        Error::kubeconfig(format!(
                            "user {name:?} of context {context_name:?} not found"
                        ))
                    })?
                    .user,
            ),
        };

        let resolve = |p: &str| -> PathBuf {
            match base_dir {
                Some(dir) if Path::new(p).is_relative() => dir.join(p),
                _ => PathBuf::from(p),
            }
        };
        let read = |what: &str, p: &str| -> Result<Vec<u8>> {
            let path = resolve(p);
            std::fs::read(&path).map_err(|e| Error::Kubeconfig {
                message: format!("reading the {what} file {}", path.display()),
                source: Some(Box::new(e)),
            })
        };

        let mut config = Config::new(&cluster.server).map_err(|e| Error::Kubeconfig {
            message: format!("cluster {:?} has an invalid server URL", context.cluster),
            source: Some(Box::new(e)),
        })?;
        config.ca_pem = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|e| Error::Kubeconfig {
                        message: format!(
                            "certificate-authority-data of cluster {:?} is not base64",
                            context.cluster
                        ),
                        source: Some(Box::new(e)),
                    })?,
            ),
            (None, Some(path)) => Some(read("certificate-authority", path)?),
            (None, None) => None,
        };
        config.accept_invalid_certs = cluster.insecure_skip_tls_verify;
        config.token = match user {
            Some(User {
                token: Some(token), ..
            }) => Some(token.clone()),
            Some(User {
                token_file: Some(path),
                ..
            }) => {
                let bytes = read("tokenFile", path)?;
                Some(String::from_utf8_lossy(&bytes).trim().to_string())
            }
            _ => None,
        };
        if let Some(ns) = context.namespace.as_ref().filter(|ns| !ns.is_empty()) {
            config.default_namespace = ns.clone();
        }
        Ok(config)
    }
}
