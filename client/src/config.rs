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

/// How long connecting to one API server (TCP and TLS) may take by default: well under
/// [`DEFAULT_TIMEOUT`], so that a server that does not answer leaves time to try the next.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the kubeconfig cluster extension that lists every API server of the
/// cluster (`extensions: [{name: skiff.dev/servers, extension: {servers: [URL, ...]}}]`).
/// The cluster's `server` stays the one kubectl uses; skiff clients fail over to the rest.
pub const SERVERS_EXTENSION: &str = "skiff.dev/servers";

/// What a [`Client`](crate::Client) needs to reach the API server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Base URL of the API server (`https://127.0.0.1:6443`), the one tried first; a
    /// path prefix is kept.
    pub server: Url,
    /// The cluster's other API servers (several `skiff server`s on one etcd), tried in
    /// order when the current one cannot be reached. Empty by default.
    pub fallback_servers: Vec<Url>,
    /// Bearer token sent on every request.
    pub token: Option<String>,
    /// PEM of the CA (one or more certificates) that signs the server's certificate,
    /// trusted in addition to the built-in roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Skip checking the server's certificate (`insecure-skip-tls-verify`). Tests only.
    pub accept_invalid_certs: bool,
    /// Limit of a whole non-streaming request to one server (watches and log follows
    /// are limited by their own `timeoutSeconds`). Default [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// Limit of connecting to one server, streaming requests included; shorter than
    /// `timeout` so that a failing over request has time left for the next server.
    /// Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Namespace of [`Api::default_namespaced`](crate::Api::default_namespaced): the
    /// context's namespace, or `default`.
    pub default_namespace: String,
    /// The `User-Agent` of every request, `PROGRAM/VERSION`: the API server records
    /// PROGRAM as the field manager of writes that name none (as Kubernetes records
    /// `kube-controller-manager` or `kubectl-edit`). Default [`DEFAULT_USER_AGENT`].
    pub user_agent: String,
}

/// What a client calls itself unless told otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("skiff/", env!("CARGO_PKG_VERSION"));

impl Config {
    /// A configuration for `server` with no credentials and the defaults.
    pub fn new(server: &str) -> Result<Config> {
        let server = parse_server(server)?;
        Ok(Config {
            server,
            fallback_servers: Vec::new(),
            token: None,
            ca_pem: None,
            accept_invalid_certs: false,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            default_namespace: DEFAULT_NAMESPACE.to_string(),
            user_agent: DEFAULT_USER_AGENT.to_string(),
        })
    }

    /// A configuration for a cluster served by several API servers, `servers[0]`
    /// preferred and the others its fallbacks, with no credentials and the defaults.
    pub fn with_servers(servers: &[impl AsRef<str>]) -> Result<Config> {
        let Some((first, rest)) = servers.split_first() else {
            return Err(Error::Config {
                message: "no API server URL".into(),
                source: None,
            });
        };
        let mut config = Config::new(first.as_ref())?;
        for server in rest {
            let url = parse_server(server.as_ref())?;
            config.add_server(url);
        }
        Ok(config)
    }

    /// Every API server, the preferred one first.
    pub fn servers(&self) -> impl Iterator<Item = &Url> {
        std::iter::once(&self.server).chain(&self.fallback_servers)
    }

    /// Adds `url` to the fallbacks unless it is already one of the servers.
    fn add_server(&mut self, url: Url) {
        if !self.servers().any(|known| *known == url) {
            self.fallback_servers.push(url);
        }
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

fn parse_server(server: &str) -> Result<Url> {
    Url::parse(server).map_err(|e| Error::config(format!("invalid server URL {server:?}"), e))
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
    /// What other tools keep about the cluster; skiff reads and writes
    /// [`SERVERS_EXTENSION`] and keeps the rest as it found them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<NamedExtension>,
}

/// A named entry of a kubeconfig's `extensions` list: anything, for one tool to read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedExtension {
    pub name: String,
    pub extension: serde_yaml::Value,
}

/// The content of the [`SERVERS_EXTENSION`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct ServersExtension {
    /// Every API server of the cluster, the cluster's `server` among them.
    servers: Vec<String>,
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
        Kubeconfig::with_servers(name, &[server], ca_pem, token)
    }

    /// [`single`](Self::single) for a cluster served by several API servers: the first
    /// is the cluster's `server` (the one kubectl uses), and with more than one, all are
    /// listed in the [`SERVERS_EXTENSION`] for skiff clients to fail over to.
    pub fn with_servers(
        name: &str,
        servers: &[impl AsRef<str>],
        ca_pem: Option<&[u8]>,
        token: Option<&str>,
    ) -> Self {
        let servers: Vec<String> = servers.iter().map(|s| s.as_ref().to_string()).collect();
        let extensions = if servers.len() > 1 {
            let extension = serde_yaml::to_value(ServersExtension {
                servers: servers.clone(),
            })
            .expect("a list of strings is YAML");
            vec![NamedExtension {
                name: SERVERS_EXTENSION.into(),
                extension,
            }]
        } else {
            Vec::new()
        };
        Kubeconfig {
            api_version: Some("v1".into()),
            kind: Some("Config".into()),
            clusters: vec![NamedCluster {
                name: name.into(),
                cluster: Cluster {
                    server: servers.first().cloned().unwrap_or_default(),
                    certificate_authority_data: ca_pem
                        .map(|pem| base64::engine::general_purpose::STANDARD.encode(pem)),
                    extensions,
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
        for server in cluster.servers(&context.cluster)? {
            let url = Url::parse(&server).map_err(|e| Error::Kubeconfig {
                message: format!(
                    "{SERVERS_EXTENSION} of cluster {:?} has an invalid server URL {server:?}",
                    context.cluster
                ),
                source: Some(Box::new(e)),
            })?;
            config.add_server(url);
        }
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

impl Cluster {
    /// The servers the [`SERVERS_EXTENSION`] lists (none without it). `name` is the
    /// cluster's, for errors.
    fn servers(&self, name: &str) -> Result<Vec<String>> {
        let Some(extension) = self.extensions.iter().find(|e| e.name == SERVERS_EXTENSION) else {
            return Ok(Vec::new());
        };
        let servers: ServersExtension = serde_yaml::from_value(extension.extension.clone())
            .map_err(|e| Error::Kubeconfig {
                message: format!(
                    "{SERVERS_EXTENSION} of cluster {name:?} is not {{servers: [URL, ...]}}"
                ),
                source: Some(Box::new(e)),
            })?;
        Ok(servers.servers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(config: &Config) -> Vec<&str> {
        config.servers().map(Url::as_str).collect()
    }

    #[test]
    fn several_servers_round_trip_through_the_extension() {
        let servers = [
            "https://10.0.0.1:6443",
            "https://10.0.0.2:6443",
            "https://10.0.0.3:6443",
        ];
        let written = Kubeconfig::with_servers("skiff", &servers, None, Some("tok"))
            .to_yaml()
            .expect("yaml");
        let document: serde_yaml::Value = serde_yaml::from_str(&written).expect("yaml");
        let cluster = &document["clusters"][0]["cluster"];
        assert_eq!(
            cluster["server"].as_str(),
            Some(servers[0]),
            "kubectl's server is the first: {written}"
        );
        assert_eq!(
            cluster["extensions"][0]["name"].as_str(),
            Some(SERVERS_EXTENSION)
        );
        let listed: Vec<&str> = cluster["extensions"][0]["extension"]["servers"]
            .as_sequence()
            .expect("a list")
            .iter()
            .filter_map(serde_yaml::Value::as_str)
            .collect();
        assert_eq!(listed, servers, "{written}");

        let config = Config::from_kubeconfig_str(&written).expect("parse");
        assert_eq!(
            urls(&config),
            [
                "https://10.0.0.1:6443/",
                "https://10.0.0.2:6443/",
                "https://10.0.0.3:6443/"
            ]
        );
        assert_eq!(config.token.as_deref(), Some("tok"));
        assert_eq!(
            Kubeconfig::from_yaml(&written).expect("parse"),
            Kubeconfig::with_servers("skiff", &servers, None, Some("tok")),
            "reads back as written"
        );
    }

    #[test]
    fn one_server_writes_no_extension() {
        let written = Kubeconfig::single("skiff", "https://127.0.0.1:6443", None, None)
            .to_yaml()
            .expect("yaml");
        assert!(!written.contains("extensions"), "{written}");
        let config = Config::from_kubeconfig_str(&written).expect("parse");
        assert_eq!(urls(&config), ["https://127.0.0.1:6443/"]);
    }

    #[test]
    fn the_cluster_server_comes_first_and_other_extensions_are_kept() {
        // Edited by hand: `server` moved to the second API server, which the extension
        // also lists; another tool keeps an extension of its own.
        let text = "
clusters:
- name: c
  cluster:
    server: https://b:6443
    extensions:
    - name: cluster_info
      extension:
        provider: minikube.sigs.k8s.io
        version: v1.33.0
    - name: skiff.dev/servers
      extension:
        servers: [https://a:6443, https://b:6443/, https://c:6443]
contexts:
- name: x
  context: { cluster: c }
current-context: x
";
        let config = Config::from_kubeconfig_str(text).expect("parse");
        assert_eq!(
            urls(&config),
            ["https://b:6443/", "https://a:6443/", "https://c:6443/"],
            "server first, then the rest once each"
        );
        let kubeconfig = Kubeconfig::from_yaml(text).expect("parse");
        let again = Kubeconfig::from_yaml(&kubeconfig.to_yaml().expect("yaml")).expect("parse");
        assert_eq!(again, kubeconfig, "unknown extensions survive a rewrite");
        assert_eq!(again.clusters[0].cluster.extensions[0].name, "cluster_info");
    }

    #[test]
    fn a_bad_servers_extension_says_what_is_wrong() {
        let with = |extension: &str| {
            format!(
                "
clusters:
- name: c
  cluster:
    server: https://a:6443
    extensions:
    - name: skiff.dev/servers
      extension: {extension}
contexts:
- name: x
  context: {{ cluster: c }}
"
            )
        };
        let error = Config::from_kubeconfig_str(&with("[https://b:6443]")).expect_err("a list");
        assert!(error.to_string().contains("is not {servers"), "{error}");
        let error =
            Config::from_kubeconfig_str(&with("{servers: ['not a url']}")).expect_err("bad URL");
        assert!(
            error
                .to_string()
                .contains("invalid server URL \"not a url\""),
            "{error}"
        );
    }

    #[test]
    fn config_with_servers_keeps_the_order_and_needs_one() {
        let config = Config::with_servers(&["http://a:1", "http://b:2", "http://a:1"]).expect("ok");
        assert_eq!(config.server.as_str(), "http://a:1/");
        assert_eq!(urls(&config), ["http://a:1/", "http://b:2/"]);
        let none: [&str; 0] = [];
        assert!(matches!(
            Config::with_servers(&none),
            Err(Error::Config { .. })
        ));
        assert!(Config::with_servers(&["http://a:1", "::"]).is_err());
    }
}
