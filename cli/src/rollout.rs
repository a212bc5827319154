//! `skiff scale`, `skiff set image`, `skiff rollout status`: changing a Deployment and
//! watching it roll out.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::api::Api;

#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    /// `deploy/NAME` or `rs/NAME`.
    pub target: String,
    #[arg(long)]
    pub replicas: u32,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct SetImageArgs {
    /// `deploy/NAME`.
    pub target: String,
    /// `CONTAINER=IMAGE`, one or more.
    #[arg(required = true)]
    pub images: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RolloutStatusArgs {
    /// `deploy/NAME`.
    pub target: String,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Give up after this long (default: wait until done or the progress deadline).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

/// `deploy/web` → the collection path of its kind and `web`.
fn target_path(api: &Api, target: &str, namespace: &Option<String>) -> Result<(String, String)> {
    let (kind, name) = target
        .split_once('/')
        .with_context(|| format!("{target:?}: give KIND/NAME, e.g. deploy/web"))?;
    let plural = match kind {
        "deploy" | "deployment" | "deployments" | "deployment.apps" | "deployments.apps" => {
            "deployments"
        }
        "rs" | "replicaset" | "replicasets" | "replicaset.apps" | "replicasets.apps" => {
            "replicasets"
        }
        other => bail!("{other:?} cannot be scaled or rolled out: use deploy/NAME or rs/NAME"),
    };
    let namespace = namespace
        .clone()
        .unwrap_or_else(|| api.default_namespace.clone());
    Ok((
        format!("/apis/apps/v1/namespaces/{namespace}/{plural}/{name}"),
        name.to_string(),
    ))
}

pub async fn scale(api: &Api, args: ScaleArgs) -> Result<u8> {
    let (path, _) = target_path(api, &args.target, &args.namespace)?;
    let patch = skiff_client::Patch::Merge(json!({ "spec": { "replicas": args.replicas } }));
    api.client()
        .request_patch(&format!("{path}/scale"), &patch)
        .await?;
    outln!("{} scaled to {} replicas", args.target, args.replicas);
    Ok(0)
}

pub async fn set_image(api: &Api, args: SetImageArgs) -> Result<u8> {
    let (path, name) = target_path(api, &args.target, &args.namespace)?;
    let current = api.get(&path).await?;
    let mut containers = current
        .pointer("/spec/template/spec/containers")
        .cloned()
        .unwrap_or(json!([]));
    for pair in &args.images {
        let (container, image) = pair
            .split_once('=')
            .with_context(|| format!("{pair:?}: give CONTAINER=IMAGE"))?;
        let found = containers
            .as_array_mut()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == container)
            .with_context(|| {
                format!(
                    "unable to find container named {container:?} in {}",
                    args.target
                )
            })?;
        found["image"] = Value::String(image.to_string());
    }
    // Containers are replaced as a list: the JSON merge patch of the template.
    let patch = skiff_client::Patch::Merge(
        json!({ "spec": { "template": { "spec": { "containers": containers } } } }),
    );
    api.client().request_patch(&path, &patch).await?;
    outln!("deployment.apps/{name} image updated");
    Ok(0)
}

/// Waits for the rollout, printing progress as kubectl does; exits 1 when the
/// Deployment reports ProgressDeadlineExceeded (or `--timeout` passes).
pub async fn status(api: &Api, args: RolloutStatusArgs) -> Result<u8> {
    let (path, name) = target_path(api, &args.target, &args.namespace)?;
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let deployment = api.get(&path).await?;
        let n = |p: &str| deployment.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        let wanted = deployment
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let generation = n("/metadata/generation");
        let observed = n("/status/observedGeneration");
        let stalled = deployment
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded");
        if stalled {
            eprintln!("error: deployment {name:?} exceeded its progress deadline");
            return Ok(1);
        }
        let (updated, available, total) = (
            n("/status/updatedReplicas"),
            n("/status/availableReplicas"),
            n("/status/replicas"),
        );
        let message = if observed < generation {
            "Waiting for deployment spec update to be observed...".to_string()
        } else if updated < wanted {
            format!(
                "Waiting for deployment {name:?} rollout to finish: {updated} out of {wanted} new replicas have been updated..."
            )
        } else if total > updated {
            format!(
                "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
                total - updated
            )
        } else if available < updated {
            format!(
                "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
            )
        } else {
            outln!("deployment {name:?} successfully rolled out");
            return Ok(0);
        };
        if message != last {
            outln!("{message}");
            last = message;
        }
        if args.timeout.is_some_and(|t| started.elapsed() > t) {
            eprintln!("error: timed out waiting for the rollout of {name:?}");
            return Ok(1);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
