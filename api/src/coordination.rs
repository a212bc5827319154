//! The coordination group (`coordination.k8s.io/v1`): Lease.

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::resource::Object;
use crate::validation::{FieldError, NEGATIVE_ERROR};
use crate::{fill_type_meta, impl_resource, is_default};

/// A lease held by one party at a time: node heartbeats (`kube-node-lease/<node>`) and
/// leader election among control planes. No defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Lease {
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
    pub spec: LeaseSpec,
}

/// Who holds the lease and until when. Times are RFC 3339 with microseconds
/// (`2024-05-01T12:00:00.000000Z`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeaseSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    /// How long the lease lasts after `renewTime` unless renewed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i32>,
    /// When the current holder took the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<String>,
    /// When the current holder last renewed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    /// How many times the lease changed hands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i32>,
    /// Coordinated leader election: the strategy for picking the next holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_holder: Option<String>,
}

impl_resource!(
    Lease,
    kind = "Lease",
    group = "coordination.k8s.io",
    version = "v1",
    plural = "leases",
    namespaced = true
);

impl Object for Lease {
    const HAS_STATUS_SUBRESOURCE: bool = false;

    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
    }

    /// `leaseDurationSeconds` > 0 and `leaseTransitions` ≥ 0, as Kubernetes.
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(seconds) = self.spec.lease_duration_seconds
            && seconds <= 0
        {
            errors.push(FieldError::invalid(
                "spec.leaseDurationSeconds",
                seconds,
                "must be greater than 0",
            ));
        }
        if let Some(transitions) = self.spec.lease_transitions
            && transitions < 0
        {
            errors.push(FieldError::invalid(
                "spec.leaseTransitions",
                transitions,
                NEGATIVE_ERROR,
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::Resource;

    #[test]
    fn lease_round_trips() {
        let value = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": "node-1",
                "leaseDurationSeconds": 40,
                "acquireTime": "2024-05-01T12:00:00.000000Z",
                "renewTime": "2024-05-01T12:00:10.123456Z",
                "leaseTransitions": 0
            }
        });
        let lease: Lease = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(lease.spec.lease_duration_seconds, Some(40));
        assert_eq!(serde_json::to_value(&lease).unwrap(), value);
        assert_eq!(Lease::api_version(), "coordination.k8s.io/v1");
        assert_eq!(Lease::PLURAL, "leases");
        const { assert!(!Lease::HAS_STATUS_SUBRESOURCE) };
    }

    #[test]
    fn lease_validation() {
        let mut lease = Lease::default();
        lease.set_defaults();
        assert_eq!(lease.kind, "Lease");
        assert!(lease.validate().is_empty());
        lease.spec.lease_duration_seconds = Some(0);
        lease.spec.lease_transitions = Some(-1);
        let errors: Vec<String> = lease.validate().iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
    }
}
