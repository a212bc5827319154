//! The apps group (`apps/v1`): ReplicaSet and Deployment.

use serde::{Deserialize, Serialize};

use crate::core::{
    IntOrString, PodTemplateSpec, set_pod_spec_defaults, validate_pod_template_spec,
};
use crate::meta::ObjectMeta;
use crate::resource::Object;
use crate::selector::LabelSelector;
use crate::validation::{
    FieldError, IMMUTABLE_ERROR, invalid_each, is_valid_percent, validate_nonnegative,
    validate_positive,
};
use crate::{fill_type_meta, impl_resource, is_default};

// =======================================================================================
// ReplicaSet

/// Keeps `replicas` pods of its template running; Deployments manage ReplicaSets, one
/// per template revision. Defaults: `replicas: 1` and the pod template's defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSet {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub spec: ReplicaSetSpec,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub status: ReplicaSetStatus,
}

/// What a ReplicaSet keeps running.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetSpec {
    /// How many pods to run. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// How long a new pod must be ready before it counts as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    /// The pods it owns; must match the template's labels. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub template: PodTemplateSpec,
}

/// The ReplicaSet controller's count of the set's pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetStatus {
    /// Pods that exist (matching the selector, owned by the set).
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub replicas: i32,
    /// Pods whose labels match the template's.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub fully_labeled_replicas: i32,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub ready_replicas: i32,
    /// Ready for at least `minReadySeconds`.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub available_replicas: i32,
    /// The generation the controller last acted on.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub observed_generation: i64,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub conditions: Vec<ReplicaSetCondition>,
}

/// A condition of a ReplicaSet (`ReplicaFailure` when pods cannot be created).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetCondition {
    /// `ReplicaFailure`.
    #[serde(rename = "type", default, deserialize_with = "crate::null_as_default")]
    pub type_: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl_resource!(
    ReplicaSet,
    kind = "ReplicaSet",
    group = "apps",
    version = "v1",
    plural = "replicasets",
    namespaced = true
);

impl Object for ReplicaSet {
    const HAS_STATUS_SUBRESOURCE: bool = true;

    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        self.spec.replicas.get_or_insert(1);
        set_pod_spec_defaults(&mut self.spec.template.spec);
    }

    /// As Kubernetes' `ValidateReplicaSetSpec`: replicas and minReadySeconds ≥ 0, a
    /// non-empty selector matching the template's labels, a template with restart
    /// policy `Always`.
    fn validate(&self) -> Vec<FieldError> {
        let spec = &self.spec;
        let mut errors = Vec::new();
        if let Some(replicas) = spec.replicas {
            errors.extend(validate_nonnegative(i64::from(replicas), "spec.replicas"));
        }
        if let Some(seconds) = spec.min_ready_seconds {
            errors.extend(validate_nonnegative(
                i64::from(seconds),
                "spec.minReadySeconds",
            ));
        }
        errors.extend(validate_replicated_template(
            spec.selector.as_ref(),
            &spec.template,
        ));
        errors
    }

    /// The selector is immutable.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errors = self.validate();
        errors.extend(validate_selector_unchanged(
            &self.spec.selector,
            &old.spec.selector,
        ));
        errors
    }
}

// =======================================================================================
// Deployment

/// Declares pods by template and count, and rolls changes of the template out through
/// ReplicaSets. Defaults: `replicas: 1`, `strategy: RollingUpdate` with `maxUnavailable`
/// and `maxSurge` 25%, `revisionHistoryLimit: 10`, `progressDeadlineSeconds: 600`, and
/// the pod template's defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub spec: DeploymentSpec,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub status: DeploymentStatus,
}

/// What a Deployment runs and how it rolls changes out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// How many pods to run. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The pods it manages; must match the template's labels. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The pods to run; a change to it rolls out new pods.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub template: PodTemplateSpec,
    /// How old pods are replaced by new ones. Default `RollingUpdate`, 25% / 25%.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub strategy: DeploymentStrategy,
    /// How long a new pod must be ready before it counts as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    /// How many old ReplicaSets to keep for rollback. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    /// Stops the rollout where it is.
    #[serde(
        default,
        skip_serializing_if = "crate::is_false",
        deserialize_with = "crate::null_as_default"
    )]
    pub paused: bool,
    /// After how long without progress a rollout counts as failed. Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
}

/// How a Deployment replaces old pods with new ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStrategy {
    /// `RollingUpdate` (default) or `Recreate` (all old pods go before new ones come).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Only with `RollingUpdate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdateDeployment>,
}

/// The pace of a rolling update, each a count or a percentage of `replicas`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdateDeployment {
    /// How many pods may be missing during the update (rounded down). Default 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// How many pods may exist beyond `replicas` (rounded up). Default 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
}

/// The Deployment controller's view of the rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// The generation the controller last acted on.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub observed_generation: i64,
    /// Pods of all the Deployment's ReplicaSets.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub replicas: i32,
    /// Pods of the current template.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub updated_replicas: i32,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub ready_replicas: i32,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub available_replicas: i32,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub unavailable_replicas: i32,
    /// `Available`, `Progressing`, `ReplicaFailure`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub conditions: Vec<DeploymentCondition>,
    /// Bumped when a ReplicaSet name collides; part of the template hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
}

/// A condition of a Deployment: `Available`, `Progressing`, `ReplicaFailure`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeploymentCondition {
    #[serde(rename = "type", default, deserialize_with = "crate::null_as_default")]
    pub type_: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Deployment {
    /// The condition of `type_` (`Available`, `Progressing`), if reported.
    pub fn condition(&self, type_: &str) -> Option<&DeploymentCondition> {
        self.status.conditions.iter().find(|c| c.type_ == type_)
    }
}

impl_resource!(
    Deployment,
    kind = "Deployment",
    group = "apps",
    version = "v1",
    plural = "deployments",
    namespaced = true
);

impl Object for Deployment {
    const HAS_STATUS_SUBRESOURCE: bool = true;

    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        let spec = &mut self.spec;
        spec.replicas.get_or_insert(1);
        let strategy = &mut spec.strategy;
        if strategy.type_.as_deref().is_none_or(str::is_empty) {
            strategy.type_ = Some("RollingUpdate".to_string());
        }
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let rolling = strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateDeployment::default);
            rolling
                .max_unavailable
                .get_or_insert_with(|| IntOrString::from("25%"));
            rolling
                .max_surge
                .get_or_insert_with(|| IntOrString::from("25%"));
        }
        spec.revision_history_limit.get_or_insert(10);
        spec.progress_deadline_seconds.get_or_insert(600);
        set_pod_spec_defaults(&mut spec.template.spec);
    }

    /// As Kubernetes' `ValidateDeploymentSpec`.
    fn validate(&self) -> Vec<FieldError> {
        let spec = &self.spec;
        let mut errors = Vec::new();
        if let Some(replicas) = spec.replicas {
            errors.extend(validate_nonnegative(i64::from(replicas), "spec.replicas"));
        }
        errors.extend(validate_replicated_template(
            spec.selector.as_ref(),
            &spec.template,
        ));
        errors.extend(validate_strategy(&spec.strategy));
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        errors.extend(validate_nonnegative(
            i64::from(min_ready),
            "spec.minReadySeconds",
        ));
        if let Some(limit) = spec.revision_history_limit {
            errors.extend(validate_nonnegative(
                i64::from(limit),
                "spec.revisionHistoryLimit",
            ));
        }
        if let Some(deadline) = spec.progress_deadline_seconds {
            errors.extend(validate_positive(
                i64::from(deadline),
                "spec.progressDeadlineSeconds",
            ));
            if deadline <= min_ready {
                errors.push(FieldError::invalid(
                    "spec.progressDeadlineSeconds",
                    deadline,
                    "must be greater than minReadySeconds",
                ));
            }
        }
        errors
    }

    /// The selector is immutable.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errors = self.validate();
        errors.extend(validate_selector_unchanged(
            &self.spec.selector,
            &old.spec.selector,
        ));
        errors
    }
}

fn validate_strategy(strategy: &DeploymentStrategy) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match strategy.type_.as_deref().unwrap_or("") {
        "Recreate" => {
            if strategy.rolling_update.is_some() {
                errors.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match &strategy.rolling_update {
            None => errors.push(FieldError::required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(rolling) => errors.extend(validate_rolling_update(rolling)),
        },
        other => errors.push(FieldError::not_supported(
            "spec.strategy.type",
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
    errors
}

/// The number or percentage itself, for the "not both zero" and "at most 100%" checks.
fn int_or_percent_value(value: &IntOrString) -> (i64, bool) {
    match value {
        IntOrString::Int(n) => (i64::from(*n), false),
        IntOrString::String(s) => (
            s.strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
            true,
        ),
    }
}

fn validate_rolling_update(rolling: &RollingUpdateDeployment) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let default = IntOrString::from("25%");
    let max_unavailable = rolling.max_unavailable.as_ref().unwrap_or(&default);
    let max_surge = rolling.max_surge.as_ref().unwrap_or(&default);
    for (field, value) in [("maxUnavailable", max_unavailable), ("maxSurge", max_surge)] {
        let path = format!("spec.strategy.rollingUpdate.{field}");
        match value {
            IntOrString::Int(n) => errors.extend(validate_nonnegative(i64::from(*n), &path)),
            IntOrString::String(s) => errors.extend(invalid_each(&path, s, is_valid_percent(s))),
        }
    }
    let render = |v: &IntOrString| match v {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => format!("{s:?}"),
    };
    if int_or_percent_value(max_unavailable).0 == 0 && int_or_percent_value(max_surge).0 == 0 {
        errors.push(FieldError::invalid_rendered(
            "spec.strategy.rollingUpdate.maxUnavailable",
            render(max_unavailable),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    if let (percent, true) = int_or_percent_value(max_unavailable)
        && percent > 100
    {
        errors.push(FieldError::invalid_rendered(
            "spec.strategy.rollingUpdate.maxUnavailable",
            render(max_unavailable),
            "must not be greater than 100%",
        ));
    }
    errors
}

/// JSON for a field error's value: selectors and label maps, as a user wrote them.
fn rendered<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The selector and template of a ReplicaSet or Deployment: a non-empty valid selector
/// that matches the template's labels, a valid template whose pods always restart
/// and have no deadline.
fn validate_replicated_template(
    selector: Option<&LabelSelector>,
    template: &PodTemplateSpec,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match selector {
        None => errors.push(FieldError::required("spec.selector", "")),
        Some(selector) => {
            let problems = selector.validate("spec.selector");
            let valid = problems.is_empty();
            errors.extend(problems);
            if selector.is_empty() {
                errors.push(FieldError::invalid_rendered(
                    "spec.selector",
                    rendered(selector),
                    "empty selector is invalid for deployment",
                ));
            } else if valid && !selector.matches(&template.metadata.labels) {
                errors.push(FieldError::invalid_rendered(
                    "spec.template.metadata.labels",
                    rendered(&template.metadata.labels),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    errors.extend(validate_pod_template_spec(template, "spec.template"));
    let policy = template.spec.restart_policy.as_deref().unwrap_or("Always");
    if policy != "Always" {
        errors.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["Always"],
        ));
    }
    if template.spec.active_deadline_seconds.is_some() {
        errors.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
    errors
}

fn validate_selector_unchanged(
    new: &Option<LabelSelector>,
    old: &Option<LabelSelector>,
) -> Vec<FieldError> {
    if new == old {
        Vec::new()
    } else {
        vec![FieldError::invalid_rendered(
            "spec.selector",
            rendered(new),
            IMMUTABLE_ERROR,
        )]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::resource::Resource;

    fn strings(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    fn realistic_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "annotations": {"deployment.kubernetes.io/revision": "2"}, "generation": 3},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"}},
                    "spec": {
                        "containers": [{
                            "name": "app", "image": "web.wasm",
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}},
                            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"
                        }],
                        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler"
                    }
                },
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "50%"}},
                "minReadySeconds": 5,
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600
            },
            "status": {
                "observedGeneration": 3, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
                "conditions": [
                    {"type": "Available", "status": "True", "lastUpdateTime": "2024-05-01T12:00:00Z", "lastTransitionTime": "2024-05-01T12:00:00Z", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                    {"type": "Progressing", "status": "True", "lastUpdateTime": "2024-05-01T12:00:00Z", "lastTransitionTime": "2024-05-01T11:00:00Z", "reason": "NewReplicaSetAvailable", "message": "ReplicaSet \"web-7d4b9c\" has successfully progressed."}
                ],
                "collisionCount": 1
            }
        })
    }

    #[test]
    fn deployment_round_trips_and_defaults_keep_it() {
        let value = realistic_deployment();
        let mut deployment: Deployment = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&deployment).unwrap(),
            value,
            "nothing lost, nothing added"
        );
        assert_eq!(deployment.condition("Available").unwrap().status, "True");
        deployment.set_defaults();
        assert_eq!(
            serde_json::to_value(&deployment).unwrap(),
            value,
            "already fully defaulted"
        );
        assert!(
            deployment.validate().is_empty(),
            "{:?}",
            strings(deployment.validate())
        );
    }

    fn minimal_deployment() -> Deployment {
        let mut deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "web.wasm"}]}}
            }
        }))
        .unwrap();
        deployment.set_defaults();
        deployment
    }

    #[test]
    fn deployment_defaults() {
        let d = minimal_deployment();
        assert_eq!(
            (d.api_version.as_str(), d.kind.as_str()),
            ("apps/v1", "Deployment")
        );
        assert_eq!(d.spec.replicas, Some(1));
        assert_eq!(d.spec.strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = d.spec.strategy.rolling_update.as_ref().unwrap();
        assert_eq!(rolling.max_unavailable, Some(IntOrString::from("25%")));
        assert_eq!(rolling.max_surge, Some(IntOrString::from("25%")));
        assert_eq!(d.spec.revision_history_limit, Some(10));
        assert_eq!(d.spec.progress_deadline_seconds, Some(600));
        assert_eq!(
            d.spec.template.spec.restart_policy.as_deref(),
            Some("Always"),
            "pod defaults apply to the template"
        );
        assert_eq!(
            d.spec.template.spec.containers[0]
                .image_pull_policy
                .as_deref(),
            Some("IfNotPresent")
        );
        assert!(d.validate().is_empty());

        let mut recreate: Deployment =
            serde_json::from_value(json!({"spec": {"strategy": {"type": "Recreate"}}})).unwrap();
        recreate.set_defaults();
        assert_eq!(
            recreate.spec.strategy.rolling_update, None,
            "Recreate gets no rollingUpdate"
        );

        let mut again = d.clone();
        again.set_defaults();
        assert_eq!(again, d, "idempotent");
    }

    fn errors(change: impl FnOnce(&mut Deployment)) -> Vec<String> {
        let mut d = minimal_deployment();
        change(&mut d);
        strings(d.validate())
    }

    #[test]
    fn deployment_selector_and_template() {
        assert_eq!(
            errors(|d| d.spec.selector = None),
            ["spec.selector: Required value"]
        );
        assert_eq!(
            errors(|d| d.spec.selector = Some(LabelSelector::default())),
            ["spec.selector: Invalid value: {}: empty selector is invalid for deployment"]
        );
        assert_eq!(
            errors(|d| d.spec.selector = Some(LabelSelector::from_labels([("app", "db")]))),
            [
                "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"
            ]
        );
        let errs = errors(|d| {
            d.spec.selector.as_mut().unwrap().match_expressions.push(
                crate::selector::LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "Has".into(),
                    values: vec![],
                },
            )
        });
        assert_eq!(
            errs,
            [
                "spec.selector.matchExpressions[0].operator: Invalid value: \"Has\": not a valid selector operator"
            ]
        );
        assert_eq!(
            errors(|d| d.spec.template.spec.restart_policy = Some("OnFailure".into())),
            [
                "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\""
            ]
        );
        assert_eq!(
            errors(|d| d.spec.template.spec.active_deadline_seconds = Some(5)),
            [
                "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported"
            ]
        );
        assert_eq!(
            errors(|d| d.spec.template.spec.containers[0].image = None),
            ["spec.template.spec.containers[0].image: Required value"]
        );
    }

    #[test]
    fn deployment_numbers() {
        assert_eq!(
            errors(|d| d.spec.replicas = Some(-1)),
            ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(errors(|d| d.spec.replicas = Some(0)), Vec::<String>::new());
        assert_eq!(
            errors(|d| d.spec.revision_history_limit = Some(-1)),
            ["spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(
            errors(|d| d.spec.min_ready_seconds = Some(-1)),
            ["spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(
            errors(|d| d.spec.min_ready_seconds = Some(600)),
            [
                "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"
            ]
        );
        assert_eq!(
            errors(|d| d.spec.progress_deadline_seconds = Some(0)),
            [
                "spec.progressDeadlineSeconds: Invalid value: 0: must be greater than zero",
                "spec.progressDeadlineSeconds: Invalid value: 0: must be greater than minReadySeconds",
            ]
        );
    }

    #[test]
    fn deployment_strategy() {
        let rolling = |d: &mut Deployment, unavailable: IntOrString, surge: IntOrString| {
            d.spec.strategy.rolling_update = Some(RollingUpdateDeployment {
                max_unavailable: Some(unavailable),
                max_surge: Some(surge),
            });
        };
        assert_eq!(
            errors(|d| rolling(d, 0.into(), 1.into())),
            Vec::<String>::new()
        );
        assert_eq!(
            errors(|d| rolling(d, "0%".into(), "200%".into())),
            Vec::<String>::new(),
            "maxSurge may exceed 100%"
        );
        assert_eq!(
            errors(|d| rolling(d, 0.into(), "0%".into())),
            [
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"
            ]
        );
        assert_eq!(
            errors(|d| rolling(d, "150%".into(), 1.into())),
            [
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"
            ]
        );
        assert_eq!(
            errors(|d| rolling(d, (-1).into(), 1.into())),
            [
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
        assert_eq!(
            errors(|d| rolling(d, 1.into(), "lots".into())),
            [
                "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"lots\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
            ]
        );
        assert_eq!(
            errors(|d| d.spec.strategy.type_ = Some("Recreate".into())),
            [
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
            ]
        );
        assert_eq!(
            errors(|d| d.spec.strategy.type_ = Some("BlueGreen".into())),
            [
                "spec.strategy.type: Unsupported value: \"BlueGreen\": supported values: \"Recreate\", \"RollingUpdate\""
            ]
        );
    }

    #[test]
    fn deployment_selector_is_immutable() {
        let old = minimal_deployment();
        let mut new = old.clone();
        new.spec.replicas = Some(5);
        assert!(new.validate_update(&old).is_empty());
        new.spec.selector = Some(LabelSelector::from_labels([("app", "web"), ("v", "2")]));
        new.spec
            .template
            .metadata
            .labels
            .insert("v".into(), "2".into());
        assert_eq!(
            strings(new.validate_update(&old)),
            [
                "spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"v\":\"2\"}}: field is immutable"
            ]
        );
    }

    #[test]
    fn replica_set_round_trip_defaults_and_rules() {
        let value = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": "web-7d4b9c", "namespace": "default", "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d1", "controller": true, "blockOwnerDeletion": true}]
            },
            "spec": {
                "replicas": 2,
                "minReadySeconds": 0,
                "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "pod-template-hash": "7d4b9c"}},
                    "spec": {"containers": [{"name": "app", "image": "web.wasm"}]}
                }
            },
            "status": {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1, "availableReplicas": 1, "observedGeneration": 1}
        });
        let mut rs: ReplicaSet = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(serde_json::to_value(&rs).unwrap(), value);
        rs.set_defaults();
        assert_eq!(
            rs.spec.template.spec.restart_policy.as_deref(),
            Some("Always")
        );
        assert!(rs.validate().is_empty());

        let zero = ReplicaSet::default();
        assert_eq!(
            serde_json::to_value(&zero).unwrap(),
            json!({"metadata": {}})
        );
        let mut defaulted = ReplicaSet::default();
        defaulted.set_defaults();
        assert_eq!(defaulted.spec.replicas, Some(1));

        let mut bad = rs.clone();
        bad.spec.replicas = Some(-2);
        bad.spec.selector = Some(LabelSelector::from_labels([("app", "db")]));
        assert_eq!(
            strings(bad.validate()),
            [
                "spec.replicas: Invalid value: -2: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: {\"app\":\"web\",\"pod-template-hash\":\"7d4b9c\"}: `selector` does not match template `labels`",
            ]
        );
        let mut scaled = rs.clone();
        scaled.spec.replicas = Some(10);
        assert!(scaled.validate_update(&rs).is_empty());
        assert_eq!(
            bad.validate_update(&rs).last().unwrap().field,
            "spec.selector"
        );
    }

    #[test]
    fn resource_constants() {
        assert_eq!(
            (
                Deployment::GROUP,
                Deployment::PLURAL,
                Deployment::api_version()
            ),
            ("apps", "deployments", "apps/v1".to_string())
        );
        assert_eq!(
            (ReplicaSet::GROUP, ReplicaSet::PLURAL),
            ("apps", "replicasets")
        );
        const { assert!(Deployment::HAS_STATUS_SUBRESOURCE && ReplicaSet::HAS_STATUS_SUBRESOURCE) };
    }
}
