//! Where a container's module comes from, and the node's content-addressed cache.
//!
//! `image` may be a module pushed to the cluster (`NAME[:TAG]`, `skiff push`), a
//! `sha256:` digest of one, an `https://` URL pinned to a digest
//! (`https://example.com/app.wasm@sha256:<hex>`), or a local file
//! (`file:/path/module.wasm` or an absolute path, for development). Pulled modules are
//! kept in `<data dir>/modules/<sha256>.wasm` after their digest is checked, so a module
//! is fetched once per node, and a digest reference never needs the network again.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use skiff_api::core::Container;
use skiff_client::error_chain;
use skiff_runtime::Workload;

use crate::NodeContext;

/// Why a module could not be had; reported as `ErrImagePull` / `ImagePullBackOff`.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("container has no image")]
    Missing,
    #[error(
        "image {image:?}: a URL must be https:// and pinned to the module's digest: URL@sha256:<64 hex digits>"
    )]
    Unpinned { image: String },
    #[error("image {image:?}: downloading: {message}")]
    Download { image: String, message: String },
    #[error("image {image:?}: reading {path}: {source}")]
    Read {
        image: String,
        path: String,
        source: std::io::Error,
    },
    #[error("image {image:?}: pulling from the cluster's module store: {source}")]
    Pull {
        image: String,
        source: skiff_client::Error,
    },
    #[error("image {image:?}: the module's digest is sha256:{actual}, not {expected}")]
    Corrupt {
        image: String,
        expected: String,
        actual: String,
    },
    #[error("image {image:?}: {source}")]
    Load {
        image: String,
        source: skiff_runtime::LoadError,
    },
}

/// Loads (and compiles, once per digest) the container's module.
pub async fn load(ctx: &NodeContext, container: &Container) -> Result<Workload, ImageError> {
    let image = container
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or(ImageError::Missing)?;
    let bytes = fetch(ctx, &image).await?;
    let runtime = ctx.runtime.clone();
    // Compiling is CPU work: keep it off the async threads.
    tokio::task::spawn_blocking(move || runtime.load(&bytes))
        .await
        .map_err(|e| ImageError::Read {
            image: image.clone(),
            path: String::new(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|source| ImageError::Load { image, source })
}

async fn fetch(ctx: &NodeContext, image: &str) -> Result<Vec<u8>, ImageError> {
    let read = |path: PathBuf| async move {
        tokio::fs::read(&path)
            .await
            .map_err(|source| ImageError::Read {
                image: image.to_string(),
                path: path.display().to_string(),
                source,
            })
    };
    if let Some(path) = image
        .strip_prefix("file://")
        .or_else(|| image.strip_prefix("file:"))
    {
        return read(PathBuf::from(path)).await;
    }
    if image.starts_with('/') {
        return read(PathBuf::from(image)).await;
    }
    let cache = ctx.config.data_dir.join("modules");
    if image.starts_with("https://") || image.starts_with("http://") {
        return fetch_url(&ctx.module_client, image, &cache).await;
    }
    let pinned = image.strip_prefix("sha256:").map(str::to_ascii_lowercase);
    if let Some(hex) = &pinned
        && let Ok(bytes) = tokio::fs::read(cache.join(format!("{hex}.wasm"))).await
        && hex_digest(&bytes) == *hex
    {
        return Ok(bytes);
    }
    let (bytes, _) = ctx
        .client
        .request_bytes(
            skiff_client::Method::GET,
            &format!("/skiff/v1/modules/{image}"),
            None,
        )
        .await
        .map_err(|source| ImageError::Pull {
            image: image.to_string(),
            source,
        })?;
    let actual = hex_digest(&bytes);
    if let Some(expected) = &pinned
        && *expected != actual
    {
        return Err(ImageError::Corrupt {
            image: image.to_string(),
            expected: format!("sha256:{expected}"),
            actual,
        });
    }
    keep(&cache, &actual, &bytes).await;
    Ok(bytes.to_vec())
}

/// The largest module a node downloads.
const MAX_DOWNLOAD_BYTES: usize = 256 << 20;

/// Fetches an `https://…@sha256:<hex>` module: from the cache when it holds that digest,
/// else downloaded and checked against the digest before anything runs it.
async fn fetch_url(
    http: &reqwest::Client,
    image: &str,
    cache: &std::path::Path,
) -> Result<Vec<u8>, ImageError> {
    let unpinned = || ImageError::Unpinned {
        image: image.to_string(),
    };
    let (url, hex) = image.rsplit_once("@sha256:").ok_or_else(unpinned)?;
    let expected = hex.to_ascii_lowercase();
    if !url.starts_with("https://")
        || expected.len() != 64
        || !expected.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(unpinned());
    }
    if let Ok(bytes) = tokio::fs::read(cache.join(format!("{expected}.wasm"))).await
        && hex_digest(&bytes) == expected
    {
        return Ok(bytes);
    }
    let download = |message: String| ImageError::Download {
        image: image.to_string(),
        message,
    };
    let mut response = http
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| download(error_chain(&e)))?;
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| download(error_chain(&e)))?
    {
        if bytes.len() + chunk.len() > MAX_DOWNLOAD_BYTES {
            return Err(download(format!(
                "larger than the {} MiB a module may be",
                MAX_DOWNLOAD_BYTES >> 20
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    let actual = hex_digest(&bytes);
    if actual != expected {
        return Err(ImageError::Corrupt {
            image: image.to_string(),
            expected: format!("sha256:{expected}"),
            actual,
        });
    }
    keep(cache, &actual, &bytes).await;
    Ok(bytes)
}

/// Keeps a checked module in the cache by its digest; a failure to cache only costs a
/// download next time.
async fn keep(cache: &std::path::Path, digest: &str, bytes: &[u8]) {
    let path = cache.join(format!("{digest}.wasm"));
    if tokio::fs::create_dir_all(cache).await.is_ok() {
        let tmp = path.with_extension("tmp");
        if tokio::fs::write(&tmp, bytes).await.is_ok() {
            let _ = tokio::fs::rename(&tmp, &path).await;
        }
    }
}

/// The client modules are downloaded with: the public web PKI roots and, when given, the
/// certificates of `ca_file` (PEM) for a private module server. No proxies from the
/// environment: a node fetches what its pods name, directly.
pub fn module_client(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .https_only(true)
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(300))
        .user_agent(concat!("skiff-node/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {}", path.display(), error_chain(&e)))?;
        if certificates.is_empty() {
            return Err(format!("{}: no PEM certificates in it", path.display()));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| error_chain(&e))
}

pub(crate) fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An HTTPS server on loopback answering every request with `body`, its certificate
    /// (PEM) for `localhost`, and a count of the requests it served.
    async fn https_server(body: Vec<u8>) -> (u16, String, Arc<AtomicUsize>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let pem = certificate.pem();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = tls.read(&mut request).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            }
        });
        (port, pem, served)
    }

    #[tokio::test]
    async fn https_modules_are_checked_against_their_pin_and_cached() {
        let module = b"\0asm\x01\0\0\0".to_vec();
        let digest = hex_digest(&module);
        let (port, pem, served) = https_server(module.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem).unwrap();
        let cache = dir.path().join("modules");
        let url = format!("https://localhost:{port}/app.wasm");

        // The public roots alone do not trust a private server.
        let public = module_client(None).unwrap();
        let error = fetch_url(&public, &format!("{url}@sha256:{digest}"), &cache)
            .await
            .unwrap_err();
        assert!(matches!(error, ImageError::Download { .. }), "{error}");

        let client = module_client(Some(&ca)).unwrap();
        let bytes = fetch_url(&client, &format!("{url}@sha256:{digest}"), &cache)
            .await
            .unwrap();
        assert_eq!(bytes, module);
        let served_once = served.load(Ordering::SeqCst);

        // Cached by digest: no second download.
        let again = fetch_url(&client, &format!("{url}@sha256:{digest}"), &cache)
            .await
            .unwrap();
        assert_eq!(again, module);
        assert_eq!(served.load(Ordering::SeqCst), served_once);

        // Another pin for the same bytes: downloaded, refused, not cached.
        let wrong = "ab".repeat(32);
        let error = fetch_url(&client, &format!("{url}@sha256:{wrong}"), &cache)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ImageError::Corrupt { actual, .. } if *actual == digest),
            "{error}"
        );
        assert!(!cache.join(format!("{wrong}.wasm")).exists());
    }

    #[tokio::test]
    async fn urls_must_be_https_and_pinned() {
        let client = module_client(None).unwrap();
        let cache = std::path::Path::new("/nonexistent");
        let digest = "0".repeat(64);
        for image in [
            "https://example.com/app.wasm".to_string(),
            format!("http://example.com/app.wasm@sha256:{digest}"),
            "https://example.com/app.wasm@sha256:abc".to_string(),
        ] {
            let error = fetch_url(&client, &image, cache).await.unwrap_err();
            assert!(
                matches!(error, ImageError::Unpinned { .. }),
                "{image}: {error}"
            );
            assert!(error.to_string().contains("@sha256:"), "{error}");
        }
        let bad_ca = tempfile::NamedTempFile::new().unwrap();
        let error = module_client(Some(bad_ca.path())).unwrap_err();
        assert!(error.contains("no PEM certificates"), "{error}");
    }
}
