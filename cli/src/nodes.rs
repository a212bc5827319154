//! `skiff cordon`, `skiff uncordon`, `skiff drain`: taking a node out of scheduling,
//! and emptying it.

use anyhow::Result;
use serde_json::{Value, json};

use crate::api::Api;

#[derive(clap::Args, Debug)]
pub struct NodeNameArgs {
    /// The node.
    pub node: String,
}

/// Marks the node unschedulable (`cordon`) or schedulable again (`uncordon`).
pub async fn cordon(api: &Api, args: NodeNameArgs, unschedulable: bool) -> Result<u8> {
    let patch = json!({ "spec": { "unschedulable": unschedulable } });
    api.client()
        .request_patch(
            &format!("/api/v1/nodes/{}", args.node),
            &skiff_client::Patch::Merge(patch),
        )
        .await?;
    outln!(
        "node/{} {}",
        args.node,
        if unschedulable {
            "cordoned"
        } else {
            "uncordoned"
        }
    );
    Ok(0)
}

/// Cordons the node, then deletes every pod on it so its controllers recreate them
/// elsewhere; waits, showing progress, until the node is empty.
pub async fn drain(api: &Api, args: NodeNameArgs) -> Result<u8> {
    cordon(
        api,
        NodeNameArgs {
            node: args.node.clone(),
        },
        true,
    )
    .await?;
    let path = format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{}", args.node);
    let pods = api.get(&path).await?;
    for pod in pods["items"].as_array().into_iter().flatten() {
        let namespace = pod
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match api
            .call(
                skiff_client::Method::DELETE,
                &format!("/api/v1/namespaces/{namespace}/pods/{name}"),
                None,
            )
            .await
        {
            Ok(_) => outln!("evicting pod {namespace}/{name}"),
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error.into()),
        }
    }
    let started = std::time::Instant::now();
    loop {
        let left = api.get(&path).await?["items"]
            .as_array()
            .map_or(0, Vec::len);
        if left == 0 {
            break;
        }
        eprintln!(
            "waiting for {left} pod(s) on node/{} to stop ({:.0?} so far)",
            args.node,
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    outln!("node/{} drained", args.node);
    Ok(0)
}
