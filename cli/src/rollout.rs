//! `skiff scale`, `skiff set image`, `skiff rollout status|history|undo|pause|resume|restart`:
//! changing a Deployment, watching it roll out, and going back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use skiff_api::apps::{Deployment, ReplicaSet};
use skiff_control_plane::controllers::deployment::{
    REVISION_ANNOTATION, revision, templates_equal,
};
use skiff_control_plane::controllers::{RollbackError, rollback_template};

use crate::api::Api;

/// The annotation saying why a revision was made, shown by `rollout history`.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// The pod template annotation `skiff rollout restart` sets, as kubectl does.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

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

/// `skiff rollout history deploy/NAME [--revision N]`.
#[derive(clap::Args, Debug)]
pub struct RolloutHistoryArgs {
    /// `deploy/NAME`.
    pub target: String,
    /// Show this revision's pod template instead of the list.
    #[arg(long)]
    pub revision: Option<i64>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// `skiff rollout undo deploy/NAME [--to-revision N]`.
#[derive(clap::Args, Debug)]
pub struct RolloutUndoArgs {
    /// `deploy/NAME`.
    pub target: String,
    /// The revision to go back to (default 0: the one before the current).
    #[arg(long, default_value = "0")]
    pub to_revision: i64,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// `skiff rollout pause|resume|restart deploy/NAME`.
#[derive(clap::Args, Debug)]
pub struct RolloutTargetArgs {
    /// `deploy/NAME`.
    pub target: String,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
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
        // A stale condition of an earlier generation says nothing about this one.
        let stalled = observed >= generation
            && deployment
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

/// A Deployment named on the command line, read from the server.
struct Target {
    path: String,
    name: String,
    namespace: String,
    deployment: Deployment,
}

/// Reads the Deployment `target` (`deploy/NAME`) names; other kinds are refused.
async fn deployment(api: &Api, target: &str, namespace: &Option<String>) -> Result<Target> {
    let (path, name) = target_path(api, target, namespace)?;
    if !path.contains("/deployments/") {
        bail!("{target:?}: only deployments have a rollout; use deploy/NAME");
    }
    let namespace = namespace
        .clone()
        .unwrap_or_else(|| api.default_namespace.clone());
    let deployment = serde_json::from_value(api.get(&path).await?)
        .with_context(|| format!("decoding deployment {name:?}"))?;
    Ok(Target {
        path,
        name,
        namespace,
        deployment,
    })
}

/// The ReplicaSets of the target's namespace (the history is those it controls).
async fn replicasets(api: &Api, target: &Target) -> Result<Vec<ReplicaSet>> {
    let list = api
        .get(&format!(
            "/apis/apps/v1/namespaces/{}/replicasets",
            target.namespace
        ))
        .await?;
    serde_json::from_value(list["items"].clone()).context("decoding the replicaset list")
}

/// The sets `d` controls, by revision; sets without a revision are left out.
fn revisions(d: &Deployment, sets: &[ReplicaSet]) -> BTreeMap<i64, ReplicaSet> {
    let Some(uid) = d.metadata.uid.as_deref() else {
        return BTreeMap::new();
    };
    sets.iter()
        .filter(|rs| rs.metadata.controller().is_some_and(|o| o.uid == uid))
        .filter(|rs| revision(rs) > 0)
        .map(|rs| (revision(rs), rs.clone()))
        .collect()
}

/// The `REVISION  CHANGE-CAUSE` rows of a history.
fn history_rows(history: &BTreeMap<i64, ReplicaSet>) -> Vec<Vec<String>> {
    history
        .iter()
        .map(|(revision, rs)| {
            let cause = rs
                .metadata
                .annotations
                .get(CHANGE_CAUSE_ANNOTATION)
                .cloned()
                .unwrap_or_else(|| "<none>".into());
            vec![revision.to_string(), cause]
        })
        .collect()
}

/// Lists a Deployment's revisions, or shows one revision's pod template.
pub async fn history(api: &Api, args: RolloutHistoryArgs) -> Result<u8> {
    let target = deployment(api, &args.target, &args.namespace).await?;
    let history = revisions(&target.deployment, &replicasets(api, &target).await?);
    let name = &target.name;
    match args.revision.filter(|&r| r != 0) {
        Some(wanted) => {
            let rs = history
                .get(&wanted)
                .with_context(|| format!("unable to find the specified revision {wanted}"))?;
            outln!("deployment.apps/{name} with revision #{wanted}");
            outln!("Pod Template:");
            let template = serde_json::to_value(&rs.spec.template)?;
            for line in serde_yaml::to_string(&template)?.lines() {
                outln!("  {line}");
            }
        }
        None if history.is_empty() => outln!("No rollout history found."),
        None => {
            outln!("deployment.apps/{name}");
            out!(
                "{}",
                crate::table::render(&["REVISION", "CHANGE-CAUSE"], &history_rows(&history))
            );
        }
    }
    Ok(0)
}

/// What `rollout undo` does to a Deployment.
#[derive(Debug, PartialEq)]
enum Undo {
    /// The template is already that of the revision.
    Skip { revision: i64 },
    /// The JSON patch that puts the revision's template (and change cause) back.
    Patch { revision: i64, patch: Value },
}

/// Annotations of a Deployment that belong to it, never to a revision (kubectl's
/// `annotationsToSkip`).
const OWN_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// Plans `rollout undo`: the template of revision `to_revision` (0: the previous one)
/// replaces the Deployment's, as kubectl does; the revision's annotations (its change
/// cause) come with it, the Deployment's own stay.
fn plan_undo(d: &Deployment, sets: &[ReplicaSet], to_revision: i64) -> Result<Undo> {
    let template = rollback_template(d, sets, Some(to_revision)).map_err(|error| match error {
        RollbackError::RevisionNotFound(wanted, _) => {
            anyhow::anyhow!("unable to find specified revision {wanted} in history")
        }
        other => anyhow::anyhow!("{other}"),
    })?;
    let (revision, rs) = revisions(d, sets)
        .into_iter()
        .rev()
        .find(|(_, rs)| templates_equal(&rs.spec.template, &template))
        .context("the revision's replicaset went away")?;
    if templates_equal(&d.spec.template, &template) {
        return Ok(Undo::Skip { revision });
    }
    let mut annotations = d.metadata.annotations.clone();
    annotations.remove(CHANGE_CAUSE_ANNOTATION);
    for (key, value) in &rs.metadata.annotations {
        if !OWN_ANNOTATIONS.contains(&key.as_str()) {
            annotations.insert(key.clone(), value.clone());
        }
    }
    let patch = json!([
        { "op": "add", "path": "/spec/template", "value": template },
        { "op": "add", "path": "/metadata/annotations", "value": annotations },
    ]);
    Ok(Undo::Patch { revision, patch })
}

/// Rolls a Deployment back to an earlier revision's template.
pub async fn undo(api: &Api, args: RolloutUndoArgs) -> Result<u8> {
    let target = deployment(api, &args.target, &args.namespace).await?;
    let name = &target.name;
    if target.deployment.spec.paused {
        bail!(
            "you cannot rollback a paused deployment; resume it first with 'skiff rollout resume deploy/{name}' and try again"
        );
    }
    let sets = replicasets(api, &target).await?;
    match plan_undo(&target.deployment, &sets, args.to_revision)? {
        Undo::Skip { revision } => outln!(
            "deployment.apps/{name} skipped rollback (current template already matches revision {revision})"
        ),
        Undo::Patch { patch, .. } => {
            api.client()
                .request_patch(&target.path, &skiff_client::Patch::Json(patch))
                .await?;
            outln!("deployment.apps/{name} rolled back");
        }
    }
    Ok(0)
}

/// Sets `spec.paused`: a paused Deployment is scaled but not rolled out.
pub async fn pause(api: &Api, args: RolloutTargetArgs, paused: bool) -> Result<u8> {
    let target = deployment(api, &args.target, &args.namespace).await?;
    let name = &target.name;
    match (paused, target.deployment.spec.paused) {
        (true, true) => bail!("deployments.apps {name:?} is already paused"),
        (false, false) => bail!("deployments.apps {name:?} is not paused"),
        _ => {}
    }
    let patch = skiff_client::Patch::Merge(json!({
        "metadata": { "resourceVersion": target.deployment.metadata.resource_version },
        "spec": { "paused": paused },
    }));
    api.client().request_patch(&target.path, &patch).await?;
    outln!(
        "deployment.apps/{name} {}",
        if paused { "paused" } else { "resumed" }
    );
    Ok(0)
}

/// Rolls every pod of a Deployment anew by stamping its template with the time.
pub async fn restart(api: &Api, args: RolloutTargetArgs) -> Result<u8> {
    let target = deployment(api, &args.target, &args.namespace).await?;
    let name = &target.name;
    if target.deployment.spec.paused {
        bail!("can't restart paused deployment (run 'skiff rollout resume deploy/{name}' first)");
    }
    let patch = skiff_client::Patch::Merge(restart_patch(SystemTime::now()));
    api.client().request_patch(&target.path, &patch).await?;
    outln!("deployment.apps/{name} restarted");
    Ok(0)
}

/// The merge patch of `rollout restart` at `now`.
fn restart_patch(now: SystemTime) -> Value {
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    json!({ "spec": { "template": { "metadata": { "annotations": {
        RESTARTED_AT_ANNOTATION: stamp,
    } } } } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::core::PodTemplateSpec;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": { "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "main", "image": image }] },
        }))
        .unwrap()
    }

    fn web(image: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": { "name": "web", "uid": "u1", "annotations": {
                REVISION_ANNOTATION: "3", "team": "blue", CHANGE_CAUSE_ANNOTATION: "to c",
            } },
            "spec": {
                "selector": { "matchLabels": { "app": "web" } },
                "template": template(image),
            },
        }))
        .unwrap()
    }

    /// A set of `web` with `image` at `revision`, as the controller makes them.
    fn set(image: &str, revision: i64, cause: Option<&str>, owner_uid: &str) -> ReplicaSet {
        let mut t = template(image);
        t.metadata
            .labels
            .insert("pod-template-hash".into(), format!("h{revision}"));
        let mut annotations = json!({ REVISION_ANNOTATION: revision.to_string() });
        if let Some(cause) = cause {
            annotations[CHANGE_CAUSE_ANNOTATION] = json!(cause);
        }
        serde_json::from_value(json!({
            "metadata": {
                "name": format!("web-h{revision}"),
                "annotations": annotations,
                "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": owner_uid, "controller": true }],
            },
            "spec": { "template": t },
        }))
        .unwrap()
    }

    fn sets() -> Vec<ReplicaSet> {
        vec![
            set("c.wasm", 3, Some("to c"), "u1"),
            set("a.wasm", 1, None, "u1"),
            set("b.wasm", 2, Some("to b"), "u1"),
            set("x.wasm", 9, Some("another deployment's"), "u2"),
        ]
    }

    #[test]
    fn history_lists_the_deployments_own_revisions_in_order() {
        let rows = history_rows(&revisions(&web("c.wasm"), &sets()));
        assert_eq!(
            rows,
            vec![
                vec!["1".to_string(), "<none>".into()],
                vec!["2".into(), "to b".into()],
                vec!["3".into(), "to c".into()],
            ]
        );
    }

    #[test]
    fn undo_puts_back_the_previous_template_and_its_change_cause() {
        let Undo::Patch { revision, patch } = plan_undo(&web("c.wasm"), &sets(), 0).unwrap() else {
            panic!("expected a patch");
        };
        assert_eq!(revision, 2);
        assert_eq!(patch[0]["path"], "/spec/template");
        assert_eq!(
            patch[0]["value"]["spec"]["containers"][0]["image"],
            "b.wasm"
        );
        assert!(
            patch[0]["value"]["metadata"]["labels"]
                .get("pod-template-hash")
                .is_none(),
            "{patch}"
        );
        let annotations = &patch[1]["value"];
        assert_eq!(annotations[CHANGE_CAUSE_ANNOTATION], "to b");
        assert_eq!(annotations["team"], "blue");
        assert_eq!(
            annotations[REVISION_ANNOTATION], "3",
            "the deployment's own revision stays"
        );

        // Revision 1 had no change cause: the current one does not stay behind.
        let Undo::Patch { patch, .. } = plan_undo(&web("c.wasm"), &sets(), 1).unwrap() else {
            panic!("expected a patch");
        };
        assert_eq!(
            patch[0]["value"]["spec"]["containers"][0]["image"],
            "a.wasm"
        );
        assert!(patch[1]["value"].get(CHANGE_CAUSE_ANNOTATION).is_none());
    }

    #[test]
    fn undo_to_the_current_template_is_skipped() {
        assert_eq!(
            plan_undo(&web("c.wasm"), &sets(), 3).unwrap(),
            Undo::Skip { revision: 3 }
        );
    }

    #[test]
    fn undo_names_a_revision_that_does_not_exist() {
        let error = plan_undo(&web("c.wasm"), &sets(), 9).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unable to find specified revision 9 in history"
        );
        let error = plan_undo(&web("c.wasm"), &sets()[..1], 0).unwrap_err();
        assert!(error.to_string().contains("no rollout history"), "{error}");
    }

    #[test]
    fn restart_stamps_the_template_with_the_time() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            restart_patch(at),
            json!({ "spec": { "template": { "metadata": { "annotations": {
                RESTARTED_AT_ANNOTATION: "2023-11-14T22:13:20Z",
            } } } } })
        );
    }
}
