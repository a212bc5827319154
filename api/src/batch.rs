//! The batch group (`batch/v1`): Job.

use serde::{Deserialize, Serialize};

use crate::core::{PodTemplateSpec, set_pod_spec_defaults, validate_pod_template_spec};
use crate::meta::ObjectMeta;
use crate::resource::Object;
use crate::selector::LabelSelector;
use crate::validation::{FieldError, IMMUTABLE_ERROR, validate_nonnegative};
use crate::{fill_type_meta, impl_resource, is_default};

/// The label (and selector key) that ties a Job's pods to it: the Job's uid.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The label carrying the Job's name on its pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// Runs pods until `completions` of them succeed. Defaults: `parallelism: 1`
/// (`completions: 1` too when neither is given), `backoffLimit: 6`, `completionMode:
/// NonIndexed`, `suspend: false`, `manualSelector: false`; the Job's labels are the
/// template's when it has none; and, unless `manualSelector` is true, the selector
/// `batch.kubernetes.io/controller-uid: <uid>` with matching template labels (once the
/// server has given the Job its uid), as Kubernetes generates them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Job {
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
    pub spec: JobSpec,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub status: JobStatus,
}

/// What a Job runs and when it is done.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// How many pods may run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i32>,
    /// How many pods must succeed; unset means any one success finishes the Job once
    /// all pods have stopped (work-queue Jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completions: Option<i32>,
    /// How long the Job may run before it is failed, counted from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// How many failed pods fail the Job. Default 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<i32>,
    /// Delete the Job this long after it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// When true, `selector` is the user's and not generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_selector: Option<bool>,
    /// Restart policy `OnFailure` or `Never`.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub template: PodTemplateSpec,
    /// `NonIndexed` (default) or `Indexed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_mode: Option<String>,
    /// While true, no pods are started and running ones are stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// The Job controller's count of the Job's pods, and the Job's conditions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// `Complete`, `Failed`, `Suspended`, `FailureTarget`, `SuccessCriteriaMet`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub conditions: Vec<JobCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Pods running now.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub active: i32,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub succeeded: i32,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub failed: i32,
    /// Active pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<i32>,
    /// For Indexed Jobs: the completed indexes, as `1,3-5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_indexes: Option<String>,
}

/// A condition of a Job: `Complete`, `Failed`, `Suspended`, ...
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobCondition {
    #[serde(rename = "type", default, deserialize_with = "crate::null_as_default")]
    pub type_: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Job {
    /// Whether the Job has a `Complete` or `Failed` condition that is `True`.
    pub fn is_finished(&self) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
    }

    /// Kubernetes' `generateSelector`: template labels naming the Job, and a selector
    /// on its uid.
    fn generate_selector(&mut self) {
        let Some(uid) = self.metadata.uid.clone().filter(|u| !u.is_empty()) else {
            return;
        };
        let name = self.metadata.name().to_string();
        let labels = &mut self.spec.template.metadata.labels;
        for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
            labels
                .entry(key.to_string())
                .or_insert_with(|| name.clone());
        }
        for key in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
            labels.entry(key.to_string()).or_insert_with(|| uid.clone());
        }
        let selector = self
            .spec
            .selector
            .get_or_insert_with(LabelSelector::default);
        selector
            .match_labels
            .entry(CONTROLLER_UID_LABEL.to_string())
            .or_insert(uid);
    }
}

impl_resource!(
    Job,
    kind = "Job",
    group = "batch",
    version = "v1",
    plural = "jobs",
    namespaced = true
);

impl Object for Job {
    const HAS_STATUS_SUBRESOURCE: bool = true;

    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        let spec = &mut self.spec;
        if spec.completions.is_none() && spec.parallelism.is_none() {
            spec.completions = Some(1);
        }
        spec.parallelism.get_or_insert(1);
        spec.backoff_limit.get_or_insert(6);
        spec.completion_mode
            .get_or_insert_with(|| "NonIndexed".to_string());
        spec.suspend.get_or_insert(false);
        spec.manual_selector.get_or_insert(false);
        if self.metadata.labels.is_empty() && !spec.template.metadata.labels.is_empty() {
            self.metadata.labels = spec.template.metadata.labels.clone();
        }
        if spec.manual_selector != Some(true) {
            self.generate_selector();
        }
        set_pod_spec_defaults(&mut self.spec.template.spec);
    }

    /// As Kubernetes' `validateJobSpec`: counts ≥ 0, a selector that matches the
    /// template's labels, a valid template whose restart policy is `OnFailure` or
    /// `Never`.
    fn validate(&self) -> Vec<FieldError> {
        let spec = &self.spec;
        let mut errors = Vec::new();
        let counts = [
            ("parallelism", spec.parallelism.map(i64::from)),
            ("completions", spec.completions.map(i64::from)),
            ("activeDeadlineSeconds", spec.active_deadline_seconds),
            ("backoffLimit", spec.backoff_limit.map(i64::from)),
            (
                "ttlSecondsAfterFinished",
                spec.ttl_seconds_after_finished.map(i64::from),
            ),
        ];
        for (field, value) in counts {
            if let Some(value) = value {
                errors.extend(validate_nonnegative(value, &format!("spec.{field}")));
            }
        }
        match spec.completion_mode.as_deref() {
            None | Some("NonIndexed") => {}
            Some("Indexed") => {
                if spec.completions.is_none() {
                    errors.push(FieldError::required(
                        "spec.completions",
                        "when completion mode is Indexed",
                    ));
                }
            }
            Some(other) => {
                errors.push(FieldError::not_supported(
                    "spec.completionMode",
                    other,
                    &["NonIndexed", "Indexed"],
                ));
            }
        }
        match &spec.selector {
            None => errors.push(FieldError::required("spec.selector", "")),
            Some(selector) => {
                let problems = selector.validate("spec.selector");
                if problems.is_empty() && !selector.matches(&spec.template.metadata.labels) {
                    errors.push(FieldError::invalid_rendered(
                        "spec.template.metadata.labels",
                        serde_json::to_string(&spec.template.metadata.labels).unwrap_or_default(),
                        "`selector` does not match template `labels`",
                    ));
                }
                errors.extend(problems);
            }
        }
        errors.extend(validate_pod_template_spec(&spec.template, "spec.template"));
        match spec.template.spec.restart_policy.as_deref() {
            None | Some("" | "Always") => {
                errors.push(FieldError::required(
                    "spec.template.spec.restartPolicy",
                    "valid values: \"OnFailure\", \"Never\"",
                ));
            }
            Some("OnFailure" | "Never") => {}
            Some(other) => errors.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                other,
                &["OnFailure", "Never"],
            )),
        }
        errors
    }

    /// The selector and completions are immutable; so is the template, unless the
    /// Job is suspended.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errors = self.validate();
        if self.spec.selector != old.spec.selector {
            errors.push(FieldError::invalid_rendered(
                "spec.selector",
                serde_json::to_string(&self.spec.selector).unwrap_or_default(),
                IMMUTABLE_ERROR,
            ));
        }
        if self.spec.completions != old.spec.completions {
            errors.push(FieldError::invalid_rendered(
                "spec.completions",
                self.spec
                    .completions
                    .map_or("null".to_string(), |c| c.to_string()),
                IMMUTABLE_ERROR,
            ));
        }
        if self.spec.template != old.spec.template && old.spec.suspend != Some(true) {
            errors.push(FieldError {
                kind: crate::validation::FieldErrorKind::Invalid,
                field: "spec.template".to_string(),
                value: None,
                detail: IMMUTABLE_ERROR.to_string(),
            });
        }
        errors
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

    fn job(spec: Value) -> Job {
        let mut job: Job = serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": spec
        }))
        .unwrap();
        job.set_defaults();
        job
    }

    fn template(restart_policy: &str) -> Value {
        json!({"spec": {"containers": [{"name": "pi", "image": "pi.wasm"}], "restartPolicy": restart_policy}})
    }

    #[test]
    fn job_round_trips() {
        let value = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1", "labels": {"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi", "controller-uid": "u-1", "job-name": "pi"}},
            "spec": {
                "parallelism": 2, "completions": 4, "activeDeadlineSeconds": 600, "backoffLimit": 3, "ttlSecondsAfterFinished": 100,
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}},
                "manualSelector": false,
                "template": {
                    "metadata": {"labels": {"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi", "controller-uid": "u-1", "job-name": "pi"}},
                    "spec": {
                        "containers": [{"name": "pi", "image": "pi.wasm", "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
                        "restartPolicy": "Never", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler"
                    }
                },
                "completionMode": "NonIndexed",
                "suspend": false
            },
            "status": {
                "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": "2024-05-01T12:01:00Z", "lastTransitionTime": "2024-05-01T12:01:00Z"}],
                "startTime": "2024-05-01T12:00:00Z", "completionTime": "2024-05-01T12:01:00Z",
                "succeeded": 4, "failed": 1, "ready": 0
            }
        });
        let mut job: Job = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&job).unwrap(),
            value,
            "nothing lost, nothing added"
        );
        assert!(job.is_finished());
        job.set_defaults();
        assert_eq!(
            serde_json::to_value(&job).unwrap(),
            value,
            "already fully defaulted"
        );
        assert!(job.validate().is_empty(), "{:?}", strings(job.validate()));
    }

    #[test]
    fn job_defaults() {
        let job = job(json!({"template": template("Never")}));
        assert_eq!(
            (job.api_version.as_str(), job.kind.as_str()),
            ("batch/v1", "Job")
        );
        assert_eq!(job.spec.parallelism, Some(1));
        assert_eq!(job.spec.completions, Some(1));
        assert_eq!(job.spec.backoff_limit, Some(6));
        assert_eq!(job.spec.completion_mode.as_deref(), Some("NonIndexed"));
        assert_eq!(job.spec.suspend, Some(false));
        assert_eq!(job.spec.manual_selector, Some(false));
        assert_eq!(
            job.spec.selector,
            Some(LabelSelector::from_labels([(CONTROLLER_UID_LABEL, "u-1")]))
        );
        let labels = &job.spec.template.metadata.labels;
        assert_eq!(labels[CONTROLLER_UID_LABEL], "u-1");
        assert_eq!(labels[JOB_NAME_LABEL], "pi");
        assert_eq!(labels["controller-uid"], "u-1");
        assert_eq!(labels["job-name"], "pi");
        assert_eq!(
            job.spec.template.spec.termination_grace_period_seconds,
            Some(30),
            "pod defaults apply"
        );
        assert!(job.validate().is_empty(), "{:?}", strings(job.validate()));

        let work_queue = self::job(json!({"parallelism": 3, "template": template("Never")}));
        assert_eq!(
            work_queue.spec.completions, None,
            "completions stay unset when parallelism is given"
        );

        let labelled = self::job(
            json!({"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {"containers": [{"name": "pi", "image": "pi.wasm"}], "restartPolicy": "Never"}}}),
        );
        assert_eq!(
            labelled.metadata.labels["app"], "pi",
            "the Job takes its template's labels"
        );

        let mut again = labelled.clone();
        again.set_defaults();
        assert_eq!(again, labelled, "idempotent");
    }

    #[test]
    fn job_validation() {
        assert_eq!(
            strings(job(json!({"template": {"spec": {"containers": [{"name": "pi", "image": "pi.wasm"}]}}})).validate()),
            ["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
        );
        assert_eq!(
            strings(job(json!({"template": template("OnFailure")})).validate()),
            Vec::<String>::new()
        );
        assert_eq!(
            strings(job(json!({"template": template("Sometimes")})).validate()),
            [
                "spec.template.spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                "spec.template.spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"OnFailure\", \"Never\"",
            ]
        );
        assert_eq!(
            strings(
                job(json!({"parallelism": -1, "completions": -1, "backoffLimit": -1, "activeDeadlineSeconds": -1, "ttlSecondsAfterFinished": -1, "template": template("Never")}))
                    .validate()
            ),
            [
                "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
                "spec.completions: Invalid value: -1: must be greater than or equal to 0",
                "spec.activeDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0",
                "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
                "spec.ttlSecondsAfterFinished: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
        assert_eq!(
            strings(
                job(json!({"template": {"spec": {"containers": [], "restartPolicy": "Never"}}}))
                    .validate()
            ),
            ["spec.template.spec.containers: Required value"]
        );
        assert_eq!(
            strings(job(json!({"manualSelector": true, "template": template("Never")})).validate()),
            ["spec.selector: Required value"]
        );
        assert_eq!(
            strings(job(json!({"manualSelector": true, "selector": {"matchLabels": {"app": "x"}}, "template": template("Never")})).validate()),
            ["spec.template.metadata.labels: Invalid value: {}: `selector` does not match template `labels`"]
        );
        assert_eq!(
            strings(job(json!({"completionMode": "Indexed", "parallelism": 2, "template": template("Never")})).validate()),
            ["spec.completions: Required value: when completion mode is Indexed"]
        );
    }

    #[test]
    fn job_update_rules() {
        let old = job(json!({"template": template("Never")}));
        let mut new = old.clone();
        new.spec.parallelism = Some(5);
        new.status.active = 5;
        assert!(new.validate_update(&old).is_empty());

        new.spec.completions = Some(3);
        new.spec.template.spec.containers[0].image = Some("pi-v2.wasm".into());
        assert_eq!(
            strings(new.validate_update(&old)),
            [
                "spec.completions: Invalid value: 3: field is immutable",
                "spec.template: Invalid value: field is immutable"
            ]
        );
        let mut suspended = old.clone();
        suspended.spec.suspend = Some(true);
        let mut changed = suspended.clone();
        changed.spec.template.spec.containers[0].image = Some("pi-v2.wasm".into());
        assert!(
            changed.validate_update(&suspended).is_empty(),
            "a suspended Job's template may change"
        );
    }

    #[test]
    fn resource_constants() {
        assert_eq!(
            (Job::GROUP, Job::VERSION, Job::PLURAL, Job::api_version()),
            ("batch", "v1", "jobs", "batch/v1".to_string())
        );
        const { assert!(Job::HAS_STATUS_SUBRESOURCE) };
    }
}
