//! Where a container's module comes from. This step knows local files (`file:PATH` or
//! an absolute path, for development); names pushed to the cluster, `sha256:` digests
//! and pinned URLs come with the module store.

use skiff_api::core::Container;
use skiff_runtime::Workload;

use crate::NodeContext;

/// Why a module could not be had; reported as `ErrImagePull` / `ImagePullBackOff`.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("container has no image")]
    Missing,
    #[error(
        "image {image:?}: only local modules (file:/path/to/module.wasm) are supported on this node yet"
    )]
    Unsupported { image: String },
    #[error("image {image:?}: reading {path}: {source}")]
    Read {
        image: String,
        path: String,
        source: std::io::Error,
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
    let path = match image
        .strip_prefix("file://")
        .or_else(|| image.strip_prefix("file:"))
    {
        Some(path) => path.to_string(),
        None if image.starts_with('/') => image.clone(),
        None => return Err(ImageError::Unsupported { image }),
    };
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|source| ImageError::Read {
            image: image.clone(),
            path: path.clone(),
            source,
        })?;
    let runtime = ctx.runtime.clone();
    // Compiling is CPU work: keep it off the async threads.
    tokio::task::spawn_blocking(move || runtime.load(&bytes))
        .await
        .map_err(|e| ImageError::Read {
            image: image.clone(),
            path,
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|source| ImageError::Load { image, source })
}
