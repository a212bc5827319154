//! The CLI's connection to the API server: the kubeconfig it reads and JSON calls.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;
use skiff_client::{Client, Config};

/// Where the CLI finds its kubeconfig: `--kubeconfig`, `$KUBECONFIG`, the default data
/// directory's (`skiff-data/kubeconfig`), then `~/.kube/config`.
pub fn kubeconfig_path(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let local = PathBuf::from("skiff-data/kubeconfig");
    if local.exists() {
        return Ok(local);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let path = PathBuf::from(home).join(".kube/config");
        if path.exists() {
            return Ok(path);
        }
    }
    anyhow::bail!(
        "no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or run from the directory holding skiff-data/ (start a cluster with `skiff server`)"
    )
}

/// JSON calls to the API server.
pub struct Api {
    client: Client,
    /// The namespace of the kubeconfig's context, used when `-n` is not given.
    pub default_namespace: String,
}

impl Api {
    pub fn connect(kubeconfig: Option<&Path>) -> Result<Api> {
        let path = kubeconfig_path(kubeconfig)?;
        let config = Config::from_kubeconfig_file(&path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?;
        let default_namespace = config.default_namespace.clone();
        let client = Client::new(config).context("creating the API client")?;
        Ok(Api {
            client,
            default_namespace,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn get(&self, path: &str) -> Result<Value, skiff_client::Error> {
        self.client
            .request_json(skiff_client::Method::GET, path, None)
            .await
    }

    pub async fn call(
        &self,
        method: skiff_client::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, skiff_client::Error> {
        self.client.request_json(method, path, body).await
    }
}
