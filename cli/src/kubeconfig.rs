//! The kubeconfig file `skiff server` writes and every client reads: the standard
//! format, so kubectl and the client libraries can use it too.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use skiff_client::Kubeconfig;

/// Writes a kubeconfig for `server` with the admin `token` and the cluster CA (PEM) that
/// signs the server's certificate (owner-only permissions).
pub fn write(path: &Path, server: &str, token: &str, ca_pem: &str) -> Result<()> {
    let yaml =
        Kubeconfig::single("skiff", server, Some(ca_pem.as_bytes()), Some(token)).to_yaml()?;
    write_private(path, yaml.as_bytes())
}

/// A client configuration for `server` with `token`, trusting the CA in `ca_file` (PEM):
/// what `skiff node` and `skiff controller-manager` connect with. An `https` server needs
/// the CA, which `skiff server` writes to DATA_DIR/pki/ca.crt.
pub fn client_config(
    server: &str,
    token: &str,
    ca_file: Option<&Path>,
) -> Result<skiff_client::Config> {
    let mut config = skiff_client::Config::new(server).context("--server")?;
    config.token = Some(token.to_string());
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("--certificate-authority: reading {}", path.display()))?;
            config.ca_pem = Some(pem);
        }
        None if config.server.scheme() == "https" => anyhow::bail!(
            "--certificate-authority: {server} is https; give the cluster CA \
             (skiff server writes it to DATA_DIR/pki/ca.crt)"
        ),
        None => {}
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
