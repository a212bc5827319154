//! The kubeconfig file `skiff server` writes and every client reads: the standard
//! format, so kubectl and the client libraries can use it too.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use skiff_client::Kubeconfig;

/// Writes a kubeconfig for `server` with the admin `token` and the cluster CA (PEM) that
/// signs the server's certificate (owner-only permissions).
pub fn write(path: &Path, server: &str, token: &str, ca_pem: &str) -> Result<()> {
    write_servers(path, &[server.to_string()], token, ca_pem)
}

/// [`write`] for a cluster of several API servers: the first is the cluster's `server`
/// (what kubectl uses) and all are listed in the `skiff.dev/servers` extension, which
/// skiff clients fail over along.
pub fn write_servers(path: &Path, servers: &[String], token: &str, ca_pem: &str) -> Result<()> {
    anyhow::ensure!(!servers.is_empty(), "a kubeconfig needs a server");
    let yaml = Kubeconfig::with_servers("skiff", servers, Some(ca_pem.as_bytes()), Some(token))
        .to_yaml()?;
    write_private(path, yaml.as_bytes())
}

/// A client configuration for `servers` (the API servers of one cluster, the first
/// preferred, the others its fallbacks) with `token`, trusting the CA in `ca_file`
/// (PEM): what `skiff node` and `skiff controller-manager` connect with. An `https`
/// server needs the CA, which `skiff server` writes to DATA_DIR/pki/ca.crt.
pub fn client_config(
    servers: &[String],
    token: &str,
    ca_file: Option<&Path>,
) -> Result<skiff_client::Config> {
    let mut config = skiff_client::Config::with_servers(servers).context("--server")?;
    config.token = Some(token.to_string());
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("--certificate-authority: reading {}", path.display()))?;
            config.ca_pem = Some(pem);
        }
        None => {
            if let Some(server) = config.servers().find(|url| url.scheme() == "https") {
                anyhow::bail!(
                    "--certificate-authority: {server} is https; give the cluster CA \
                     (skiff server writes it to DATA_DIR/pki/ca.crt)"
                );
            }
        }
    }
    Ok(config)
}

/// The admin token of an existing kubeconfig.
pub fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)?;
    let config = Kubeconfig::from_yaml(&text)?.to_config(None, path.parent())?;
    config.token.context("the kubeconfig has no token")
}

/// Writes a file readable only by its owner, replacing it atomically.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_of_several_servers_reads_back_with_all_of_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kubeconfig");
        let servers = [
            "http://10.0.0.1:6443".to_string(),
            "http://10.0.0.2:6443".to_string(),
        ];
        write_servers(&path, &servers, "tok", "").expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("server: http://10.0.0.1:6443\n"), "{text}");
        let config = skiff_client::Config::from_kubeconfig_file(&path).expect("parse");
        let read: Vec<&str> = config.servers().map(|url| url.as_str()).collect();
        assert_eq!(read, ["http://10.0.0.1:6443/", "http://10.0.0.2:6443/"]);
        assert_eq!(read_token(&path).expect("token"), "tok");
    }

    #[test]
    fn every_server_of_a_client_config_is_kept_and_https_needs_the_ca() {
        let servers = ["http://a:1".to_string(), "http://b:2".to_string()];
        let config = client_config(&servers, "tok", None).expect("plain http needs no CA");
        assert_eq!(config.servers().count(), 2);
        let error = client_config(
            &["http://a:1".to_string(), "https://b:2".to_string()],
            "tok",
            None,
        )
        .expect_err("an https server needs the CA");
        assert!(
            error.to_string().contains("https://b:2/ is https"),
            "{error}"
        );
    }
}
