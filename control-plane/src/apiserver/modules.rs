//! The cluster's module store: wasm binaries pushed by name (`skiff push FILE NAME[:TAG]`)
//! and served to nodes by digest or by name, like a small container registry.
//!
//! Two places to keep them ([`ModuleStorage`]):
//! - a directory of one server's (sled): blobs are content-addressed files
//!   (`modules/blobs/<sha256>`), a tag is a small file naming the digest it points at, both
//!   written to a temporary file and renamed, so a reader never sees half a module;
//! - the store itself, when several servers share it (etcd): each server must serve every
//!   module, whichever one it was pushed to. A blob is kept in chunks of [`CHUNK_BYTES`]
//!   (under etcd's 1.5 MiB request limit) at `/_modules/chunks/<sha256>/<n>`, then its
//!   manifest `/_modules/blobs/<sha256>`, written last so that its presence means the blob
//!   is whole; a tag is `/_modules/tags/<name>@<tag>`. No API path reaches `/_` keys.
//!
//! Every call goes through the API's authentication.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::ApiServer;
use super::error::{ApiError, ApiResult};
use crate::store::{ListOptions, Store, StoreError};

/// The largest module accepted. Default 64 MiB.
pub const MAX_MODULE_BYTES: usize = 64 * 1024 * 1024;
/// The header a module's digest comes back in.
pub const DIGEST_HEADER: &str = "skiff-module-digest";
/// The size of a module's chunks in the store.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Where a server keeps pushed modules.
#[derive(Clone, Debug)]
pub enum ModuleStorage {
    /// Files in this directory: a server alone on its store.
    Dir(PathBuf),
    /// The store, shared by every server on it.
    Store,
}

/// Modules as they are kept: [`ModuleStorage`] made concrete.
pub enum Modules<'a> {
    Dir(&'a Path),
    Store(&'a dyn Store),
}

/// `/skiff/v1/modules[/REFERENCE]`: list, push (PUT) and pull (GET).
pub async fn serve(State(server): State<Arc<ApiServer>>, request: Request) -> Response {
    handle(server, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn handle(server: Arc<ApiServer>, request: Request) -> ApiResult<Response> {
    let modules = match &server.config.modules {
        Some(ModuleStorage::Dir(dir)) => Modules::Dir(dir),
        Some(ModuleStorage::Store) => Modules::Store(&*server.store),
        None => {
            return Err(ApiError::path_not_found(
                "/skiff/v1/modules: this server has no module store",
            ));
        }
    };
    let (parts, body) = request.into_parts();
    let reference = parts
        .uri
        .path()
        .strip_prefix("/skiff/v1/modules")
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    match (parts.method, reference.as_str()) {
        (Method::GET, "") => list(&modules).await,
        (Method::GET, reference) => pull(&modules, reference).await,
        (Method::PUT, reference) => {
            let (name, tag) = parse_name(reference)?;
            let bytes = super::request::read_body(body, MAX_MODULE_BYTES).await?;
            push(&modules, &name, &tag, &bytes).await
        }
        (method, _) => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on modules"
        ))),
    }
}

/// `NAME[:TAG]` checked: lowercase letters, digits, `.`, `_`, `-`; tag defaults to `latest`.
fn parse_name(reference: &str) -> ApiResult<(String, String)> {
    let (name, tag) = reference.split_once(':').unwrap_or((reference, "latest"));
    let name_ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !name_ok {
        return Err(ApiError::bad_request(format!(
            "module name {name:?} is invalid: use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"
        )));
    }
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !tag_ok {
        return Err(ApiError::bad_request(format!(
            "module tag {tag:?} is invalid: use letters, digits, '.', '_' and '-'"
        )));
    }
    Ok((name.to_string(), tag.to_string()))
}

impl Modules<'_> {
    /// Keeps `bytes` as `name:tag`: the blob (if new), then the tag. Returns the digest
    /// (hex).
    pub async fn push(&self, name: &str, tag: &str, bytes: &[u8]) -> ApiResult<String> {
        let digest = self.keep(bytes).await?;
        self.tag(name, tag, &digest).await?;
        Ok(digest)
    }

    /// Keeps `bytes` (unless kept already), addressed by their digest (hex), returned.
    pub async fn keep(&self, bytes: &[u8]) -> ApiResult<String> {
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            return Err(ApiError::bad_request(
                "the body is not a wasm module or component (no \\0asm header)",
            ));
        }
        let digest = hex_digest(bytes);
        match self {
            Modules::Dir(dir) => dir_keep(dir, &digest, bytes).await,
            Modules::Store(store) => store_keep(*store, &digest, bytes).await,
        }?;
        Ok(digest)
    }

    /// Points `name:tag` at the kept blob `digest` (hex).
    pub async fn tag(&self, name: &str, tag: &str, digest: &str) -> ApiResult<()> {
        match self {
            Modules::Dir(dir) => write_atomically(
                &tag_path(dir, name, tag),
                format!("sha256:{digest}").as_bytes(),
            )
            .await
            .map_err(|e| ApiError::internal("tagging a module", e)),
            Modules::Store(store) => store_tag(*store, name, tag, digest).await,
        }
    }

    /// The digests (hex) of every kept blob, tagged or not.
    pub async fn blobs(&self) -> ApiResult<Vec<String>> {
        let mut digests = Vec::new();
        match self {
            Modules::Dir(dir) => {
                if let Ok(mut entries) = tokio::fs::read_dir(dir.join("blobs")).await {
                    while let Ok(Some(entry)) = entries.next_entry().await {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        if name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
                            digests.push(name);
                        }
                    }
                }
            }
            Modules::Store(store) => {
                let listed = store
                    .list(STORE_BLOBS, ListOptions::default())
                    .await
                    .map_err(|e| ApiError::internal("listing modules", e))?;
                digests.extend(
                    listed
                        .items
                        .into_iter()
                        .map(|kv| kv.key[STORE_BLOBS.len()..].to_string()),
                );
            }
        }
        digests.sort();
        Ok(digests)
    }

    /// Every tag: name, tag and digest (`sha256:…`), by name and tag.
    pub async fn tags(&self) -> ApiResult<Vec<(String, String, String)>> {
        let mut items = Vec::new();
        match self {
            Modules::Dir(dir) => {
                if let Ok(mut entries) = tokio::fs::read_dir(dir.join("tags")).await {
                    while let Ok(Some(entry)) = entries.next_entry().await {
                        let file = entry.file_name().to_string_lossy().into_owned();
                        let Some((name, tag)) = file.split_once('@') else {
                            continue;
                        };
                        let digest = tokio::fs::read_to_string(entry.path())
                            .await
                            .unwrap_or_default();
                        items.push((name.to_string(), tag.to_string(), digest.trim().to_string()));
                    }
                }
            }
            Modules::Store(store) => {
                let listed = store
                    .list(STORE_TAGS, ListOptions::default())
                    .await
                    .map_err(|e| ApiError::internal("listing modules", e))?;
                for kv in listed.items {
                    let Some((name, tag)) = kv.key[STORE_TAGS.len()..].split_once('@') else {
                        continue;
                    };
                    let digest = String::from_utf8_lossy(&kv.value).trim().to_string();
                    items.push((name.to_string(), tag.to_string(), digest));
                }
            }
        }
        items.sort();
        Ok(items)
    }

    /// The digest (hex) `name:tag` points at, if tagged.
    async fn tagged(&self, name: &str, tag: &str) -> ApiResult<Option<String>> {
        let text = match self {
            Modules::Dir(dir) => tokio::fs::read_to_string(tag_path(dir, name, tag))
                .await
                .ok(),
            Modules::Store(store) => store
                .get(&store_tag_key(name, tag))
                .await
                .map_err(|e| ApiError::internal("reading a module's tag", e))?
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
        };
        Ok(text.map(|text| text.trim().trim_start_matches("sha256:").to_string()))
    }

    /// The module `digest_hex` names, if kept whole.
    pub async fn blob(&self, digest_hex: &str) -> ApiResult<Option<Vec<u8>>> {
        match self {
            Modules::Dir(dir) => Ok(tokio::fs::read(blob_path(dir, digest_hex)).await.ok()),
            Modules::Store(store) => store_blob(*store, digest_hex).await,
        }
    }
}

async fn push(modules: &Modules<'_>, name: &str, tag: &str, bytes: &[u8]) -> ApiResult<Response> {
    let digest = modules.push(name, tag, bytes).await?;
    let answer = json!({ "name": name, "tag": tag, "digest": format!("sha256:{digest}"), "size": bytes.len() });
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

async fn pull(modules: &Modules<'_>, reference: &str) -> ApiResult<Response> {
    let digest = match reference.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            hex.to_ascii_lowercase()
        }
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "{reference:?} is not a sha256 digest"
            )));
        }
        None => {
            let (name, tag) = parse_name(reference)?;
            modules
                .tagged(&name, &tag)
                .await?
                .ok_or_else(|| ApiError::path_not_found(&format!("module {name}:{tag}")))?
        }
    };
    let bytes = modules
        .blob(&digest)
        .await?
        .ok_or_else(|| ApiError::path_not_found(&format!("module sha256:{digest}")))?;
    let mut response = (StatusCode::OK, Body::from(bytes)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/wasm"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("sha256:{digest}")) {
        response.headers_mut().insert(DIGEST_HEADER, value);
    }
    Ok(response)
}

async fn list(modules: &Modules<'_>) -> ApiResult<Response> {
    let items: Vec<_> = modules
        .tags()
        .await?
        .into_iter()
        .map(|(name, tag, digest)| json!({ "name": name, "tag": tag, "digest": digest }))
        .collect();
    Ok(axum::Json(json!({ "items": items })).into_response())
}

fn blob_path(dir: &Path, digest_hex: &str) -> PathBuf {
    dir.join("blobs").join(digest_hex)
}

fn tag_path(dir: &Path, name: &str, tag: &str) -> PathBuf {
    dir.join("tags").join(format!("{name}@{tag}"))
}

async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::File::open(&tmp).await?.sync_all().await?;
    tokio::fs::rename(&tmp, path).await
}

/// The sha256 of `bytes`, hex.
fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn dir_keep(dir: &Path, digest: &str, bytes: &[u8]) -> ApiResult<()> {
    let blob = blob_path(dir, digest);
    if tokio::fs::metadata(&blob).await.is_err() {
        write_atomically(&blob, bytes)
            .await
            .map_err(|e| ApiError::internal("storing a module", e))?;
    }
    Ok(())
}

const STORE_BLOBS: &str = "/_modules/blobs/";
const STORE_CHUNKS: &str = "/_modules/chunks/";
const STORE_TAGS: &str = "/_modules/tags/";

fn store_tag_key(name: &str, tag: &str) -> String {
    format!("{STORE_TAGS}{name}@{tag}")
}

fn store_chunk_key(digest: &str, index: usize) -> String {
    format!("{STORE_CHUNKS}{digest}/{index:05}")
}

/// Creates `key` unless it exists (a blob's chunks and manifest are content-addressed:
/// whoever wrote them first wrote the same bytes).
async fn create_if_absent(store: &dyn Store, key: &str, value: Vec<u8>) -> ApiResult<()> {
    match store.create(key, value.into()).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(error) => Err(ApiError::internal("storing a module", error)),
    }
}

async fn store_keep(store: &dyn Store, digest: &str, bytes: &[u8]) -> ApiResult<()> {
    let manifest = format!("{STORE_BLOBS}{digest}");
    let kept = store
        .get(&manifest)
        .await
        .map_err(|e| ApiError::internal("storing a module", e))?;
    if kept.is_none() {
        let chunks = bytes.chunks(CHUNK_BYTES).collect::<Vec<_>>();
        for (index, chunk) in chunks.iter().enumerate() {
            create_if_absent(store, &store_chunk_key(digest, index), chunk.to_vec()).await?;
        }
        let record = json!({ "size": bytes.len(), "chunks": chunks.len() });
        create_if_absent(store, &manifest, record.to_string().into_bytes()).await?;
    }
    Ok(())
}

/// Moving a tag is a compare-and-swap on what it named: of two pushes at once, the last
/// to land wins, as with files.
async fn store_tag(store: &dyn Store, name: &str, tag: &str, digest: &str) -> ApiResult<()> {
    let key = store_tag_key(name, tag);
    let value = format!("sha256:{digest}").into_bytes();
    loop {
        let result = match store.get(&key).await {
            Ok(Some(current)) => store
                .update(&key, value.clone().into(), current.mod_revision)
                .await
                .map(drop),
            Ok(None) => store.create(&key, value.clone().into()).await.map(drop),
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(
                StoreError::Conflict { .. }
                | StoreError::AlreadyExists { .. }
                | StoreError::NotFound { .. },
            ) => continue,
            Err(error) => return Err(ApiError::internal("tagging a module", error)),
        }
    }
}

async fn store_blob(store: &dyn Store, digest: &str) -> ApiResult<Option<Vec<u8>>> {
    let failed = |e: StoreError| ApiError::internal("reading a module", e);
    let Some(manifest) = store
        .get(&format!("{STORE_BLOBS}{digest}"))
        .await
        .map_err(failed)?
    else {
        return Ok(None);
    };
    let record: serde_json::Value = serde_json::from_slice(&manifest.value)
        .map_err(|e| ApiError::internal("reading a module's manifest", e))?;
    let chunks = record["chunks"].as_u64().unwrap_or(0) as usize;
    let mut bytes = Vec::with_capacity(record["size"].as_u64().unwrap_or(0) as usize);
    for index in 0..chunks {
        let chunk = store
            .get(&store_chunk_key(digest, index))
            .await
            .map_err(failed)?
            .ok_or_else(|| {
                ApiError::internal(
                    "reading a module",
                    format!("chunk {index} of sha256:{digest} is missing"),
                )
            })?;
        bytes.extend_from_slice(&chunk.value);
    }
    let read = hex_digest(&bytes);
    if read != digest {
        return Err(ApiError::internal(
            "reading a module",
            format!("the chunks of sha256:{digest} add up to sha256:{read}"),
        ));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::SledStore;

    /// A "module" of `len` bytes: the wasm header, then a pattern of `seed`.
    fn module(len: usize, seed: u8) -> Vec<u8> {
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.extend((0..len - 8).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
        bytes
    }

    #[tokio::test]
    async fn the_store_keeps_modules_in_chunks_that_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let modules = Modules::Store(&store);
        let big = module(2 * CHUNK_BYTES + 123, 7);
        let digest = modules.push("app", "v1", &big).await.unwrap();
        let chunks = store
            .list(&format!("{STORE_CHUNKS}{digest}/"), ListOptions::default())
            .await
            .unwrap();
        assert_eq!(
            chunks.items.len(),
            3,
            "three chunks of at most {CHUNK_BYTES} bytes"
        );
        assert_eq!(
            modules.blob(&digest).await.unwrap().as_deref(),
            Some(&big[..])
        );
        assert_eq!(
            modules.tagged("app", "v1").await.unwrap(),
            Some(digest.clone())
        );

        // The tag moves to a new push; the old blob stays, by digest.
        let small = module(100, 9);
        let second = modules.push("app", "v1", &small).await.unwrap();
        assert_eq!(
            modules.tagged("app", "v1").await.unwrap(),
            Some(second.clone())
        );
        assert!(modules.blob(&digest).await.unwrap().is_some());
        let tags = modules.tags().await.unwrap();
        assert_eq!(
            tags,
            [("app".into(), "v1".into(), format!("sha256:{second}"))]
        );
        assert_eq!(modules.blob(&"0".repeat(64)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_damaged_chunk_is_an_error_not_a_module() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let modules = Modules::Store(&store);
        let digest = modules
            .push("app", "v1", &module(CHUNK_BYTES + 10, 3))
            .await
            .unwrap();
        let key = store_chunk_key(&digest, 1);
        let kv = store.get(&key).await.unwrap().unwrap();
        store
            .update(
                &key,
                bytes::Bytes::from_static(b"tampered"),
                kv.mod_revision,
            )
            .await
            .unwrap();
        let error = modules.blob(&digest).await.unwrap_err();
        assert_eq!(error.code, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn what_is_not_wasm_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let modules = Modules::Dir(dir.path());
        let error = modules
            .push("app", "v1", b"#!/bin/sh\necho hi\n")
            .await
            .unwrap_err();
        assert_eq!(error.code, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn names_and_tags_are_checked() {
        assert_eq!(
            parse_name("hello").unwrap(),
            ("hello".into(), "latest".into())
        );
        assert_eq!(
            parse_name("web-app.v2:1.0").unwrap(),
            ("web-app.v2".into(), "1.0".into())
        );
        for bad in ["", "Hello", "../etc", "a/b", "x:", "x:a/b", ".hidden"] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }
}
