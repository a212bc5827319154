//! `skiff logs POD [-c CONTAINER] [-f] [--previous] [--tail N] [--timestamps]`.

use std::io::Write;

use anyhow::Result;
use futures::StreamExt;

use crate::api::Api;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// The pod (or `pod/NAME`).
    pub pod: String,
    /// The container; needed when the pod has several.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Keep streaming new lines until the container ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The previous run of the container (before its last restart).
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<u64>,
    /// Prefix each line with its RFC 3339 time.
    #[arg(long)]
    pub timestamps: bool,
}

pub async fn run(api: &Api, args: LogsArgs) -> Result<u8> {
    let name = args
        .pod
        .strip_prefix("pod/")
        .or_else(|| args.pod.strip_prefix("pods/"))
        .unwrap_or(&args.pod);
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| api.default_namespace.clone());
    let mut query = vec![
        format!("follow={}", args.follow),
        format!("previous={}", args.previous),
        format!("timestamps={}", args.timestamps),
    ];
    if let Some(container) = &args.container {
        query.push(format!("container={container}"));
    }
    if let Some(tail) = args.tail {
        query.push(format!("tailLines={tail}"));
    }
    let path = format!(
        "/api/v1/namespaces/{namespace}/pods/{name}/log?{}",
        query.join("&")
    );
    let mut body = api
        .client()
        .request_stream(skiff_client::Method::GET, &path)
        .await?;
    let mut stdout = std::io::stdout();
    while let Some(chunk) = body.next().await {
        if let Err(error) = stdout.write_all(&chunk?).and_then(|()| stdout.flush()) {
            crate::stdout_failed(error);
        }
    }
    Ok(0)
}
