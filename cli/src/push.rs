//! `skiff push FILE.wasm NAME[:TAG]`: put a module in the cluster's module store, so
//! pods can name it as their `image`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::api::Api;

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// The module or component to push.
    pub file: PathBuf,
    /// Its name in the cluster, with an optional tag (default `latest`).
    pub name: String,
}

pub async fn run(api: &Api, args: PushArgs) -> Result<u8> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    eprintln!(
        "pushing {} ({} bytes) as {}",
        args.file.display(),
        bytes.len(),
        args.name
    );
    let (answer, _) = api
        .client()
        .request_bytes(
            skiff_client::Method::PUT,
            &format!("/skiff/v1/modules/{}", args.name),
            Some((bytes.into(), "application/wasm")),
        )
        .await?;
    let answer: serde_json::Value =
        serde_json::from_slice(&answer).context("decoding the store's answer")?;
    outln!(
        "{}:{} {}",
        answer["name"].as_str().unwrap_or_default(),
        answer["tag"].as_str().unwrap_or_default(),
        answer["digest"].as_str().unwrap_or_default()
    );
    Ok(0)
}
