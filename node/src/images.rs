//! Where a container's module comes from, and the node's content-addressed cache.
//!
//! `image` may be a module pushed to the cluster (`NAME[:TAG]`, `skiff push`), a
//! `sha256:` digest of one, or a local file (`file:/path/module.wasm` or an absolute
//! path, for development). Pulled modules are kept in `<data dir>/modules/<sha256>.wasm`
//! after their digest is checked, so a module is fetched once per node, and a digest
//! reference never needs the network again.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use skiff_api::core::Container;
use skiff_runtime::Workload;

use crate::NodeContext;

/// Why a module could not be had; reported as `ErrImagePull` / `ImagePullBackOff`.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("container has no image")]
    Missing,
    #[error(
        "image {image:?}: https:// modules cannot be fetched by this node yet; push it with `skiff push` and use its name"
    )]
    Unsupported { image: String },
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
    if image.starts_with("https://") || image.starts_with("http://") {
        return Err(ImageError::Unsupported {
            image: image.to_string(),
        });
    }
    let cache = ctx.config.data_dir.join("modules");
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
    // Cached by digest; a failure to cache only costs a pull next time.
    let path = cache.join(format!("{actual}.wasm"));
    if tokio::fs::create_dir_all(&cache).await.is_ok() {
        let tmp = path.with_extension("tmp");
        if tokio::fs::write(&tmp, &bytes).await.is_ok() {
            let _ = tokio::fs::rename(&tmp, &path).await;
        }
    }
    Ok(bytes.to_vec())
}

fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
