//! The cluster's module store: wasm binaries pushed by name (`skiff push FILE NAME[:TAG]`)
//! and served to nodes by digest or by name, like a small container registry.
//!
//! Blobs are content-addressed files (`modules/blobs/<sha256>`) in the server's data
//! directory; a tag is a small file naming the digest it points at. Both are written
//! to a temporary file and renamed, so a reader never sees half a module. Every call
//! goes through the API's authentication.

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

/// The largest module accepted. Default 64 MiB.
pub const MAX_MODULE_BYTES: usize = 64 * 1024 * 1024;
/// The header a module's digest comes back in.
pub const DIGEST_HEADER: &str = "skiff-module-digest";

/// `/skiff/v1/modules[/REFERENCE]`: list, push (PUT) and pull (GET).
pub async fn serve(State(server): State<Arc<ApiServer>>, request: Request) -> Response {
    handle(server, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn handle(server: Arc<ApiServer>, request: Request) -> ApiResult<Response> {
    let Some(dir) = server.config.modules_dir.clone() else {
        return Err(ApiError::path_not_found(
            "/skiff/v1/modules: this server has no module store",
        ));
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
        (Method::GET, "") => list(&dir).await,
        (Method::GET, reference) => pull(&dir, reference).await,
        (Method::PUT, reference) => {
            let (name, tag) = parse_name(reference)?;
            let bytes = super::request::read_body(body, MAX_MODULE_BYTES).await?;
            push(&dir, &name, &tag, &bytes).await
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

async fn push(dir: &Path, name: &str, tag: &str, bytes: &[u8]) -> ApiResult<Response> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(ApiError::bad_request(
            "the body is not a wasm module or component (no \\0asm header)",
        ));
    }
    let digest: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let blob = blob_path(dir, &digest);
    if tokio::fs::metadata(&blob).await.is_err() {
        write_atomically(&blob, bytes)
            .await
            .map_err(|e| ApiError::internal("storing a module", e))?;
    }
    write_atomically(
        &tag_path(dir, name, tag),
        format!("sha256:{digest}").as_bytes(),
    )
    .await
    .map_err(|e| ApiError::internal("tagging a module", e))?;
    let answer = json!({ "name": name, "tag": tag, "digest": format!("sha256:{digest}"), "size": bytes.len() });
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

async fn pull(dir: &Path, reference: &str) -> ApiResult<Response> {
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
            let text = tokio::fs::read_to_string(tag_path(dir, &name, &tag))
                .await
                .map_err(|_| ApiError::path_not_found(&format!("module {name}:{tag}")))?;
            text.trim().trim_start_matches("sha256:").to_string()
        }
    };
    let bytes = tokio::fs::read(blob_path(dir, &digest))
        .await
        .map_err(|_| ApiError::path_not_found(&format!("module sha256:{digest}")))?;
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

async fn list(dir: &Path) -> ApiResult<Response> {
    let mut items = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(dir.join("tags")).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some((name, tag)) = file.split_once('@') else {
                continue;
            };
            let digest = tokio::fs::read_to_string(entry.path())
                .await
                .unwrap_or_default();
            items.push(json!({ "name": name, "tag": tag, "digest": digest.trim() }));
        }
    }
    items.sort_by(|a, b| {
        a["name"]
            .as_str()
            .cmp(&b["name"].as_str())
            .then(a["tag"].as_str().cmp(&b["tag"].as_str()))
    });
    Ok(axum::Json(json!({ "items": items })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

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
