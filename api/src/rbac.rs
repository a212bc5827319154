//! Role-based access control (`rbac.authorization.k8s.io/v1`): Role, ClusterRole,
//! RoleBinding, ClusterRoleBinding.
//!
//! A role is a list of [`PolicyRule`]s, each granting verbs on resources (or, in a
//! ClusterRole, on non-resource URLs such as `/metrics`). A binding grants one role to
//! users, groups and service accounts: a RoleBinding inside its namespace, a
//! ClusterRoleBinding everywhere. Rules only ever allow; there are no deny rules. The
//! shapes, defaults and validation messages are Kubernetes'.

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::resource::Object;
use crate::validation::{FieldError, NameRule};
use crate::{fill_type_meta, impl_resource};

/// The API group of the RBAC kinds, and of `User` and `Group` subjects.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// One grant: `verbs` on `resources` of `apiGroups` (optionally only the objects named
/// in `resourceNames`), or `verbs` on `nonResourceURLs`.
///
/// `*` matches every verb, group, resource or URL; a resource may name a subresource
/// (`pods/log`, `*/scale`); a URL ending in `*` matches by prefix (`/apis/*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub verbs: Vec<String>,
    /// `""` is the core group.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub api_groups: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub resources: Vec<String>,
    /// Empty: every object. Requests that name no object (list, create) never match a
    /// rule that lists names, as in Kubernetes.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub resource_names: Vec<String>,
    /// Only in ClusterRoles.
    #[serde(
        rename = "nonResourceURLs",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub non_resource_urls: Vec<String>,
}

impl PolicyRule {
    /// Kubernetes' `ValidatePolicyRule`: verbs required; a rule is either about
    /// resources (groups and resources required) or about URLs (ClusterRoles only).
    fn validate(&self, path: &str, namespaced: bool) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.verbs.is_empty() {
            errors.push(FieldError::required(
                format!("{path}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        if !self.non_resource_urls.is_empty() {
            if namespaced {
                errors.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    &self.non_resource_urls,
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !self.api_groups.is_empty()
                || !self.resources.is_empty()
                || !self.resource_names.is_empty()
            {
                errors.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    &self.non_resource_urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            for (i, url) in self.non_resource_urls.iter().enumerate() {
                if !url.starts_with('/') && url != "*" {
                    errors.push(FieldError::invalid(
                        format!("{path}.nonResourceURLs[{i}]"),
                        url,
                        "must be a path starting with '/', or '*'",
                    ));
                }
            }
            return errors;
        }
        if self.api_groups.is_empty() {
            errors.push(FieldError::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if self.resources.is_empty() {
            errors.push(FieldError::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
        for (i, resource) in self.resources.iter().enumerate() {
            if resource.is_empty() || resource.split('/').count() > 2 {
                errors.push(FieldError::invalid(
                    format!("{path}.resources[{i}]"),
                    resource,
                    "must be a resource, or a resource and a subresource as RESOURCE/SUBRESOURCE",
                ));
            }
        }
        errors
    }
}

/// The role a binding grants.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    /// Always `rbac.authorization.k8s.io`.
    #[serde(default)]
    pub api_group: String,
    /// `Role` (RoleBindings only: a Role of the binding's namespace) or `ClusterRole`.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// Who a binding grants its role to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    #[serde(default)]
    pub kind: String,
    /// `rbac.authorization.k8s.io` for users and groups (the default), `""` for service
    /// accounts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(default)]
    pub name: String,
    /// A service account's namespace; in a RoleBinding it defaults to the binding's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

impl Subject {
    /// The user name this subject stands for, when it names one user: a `User`'s name,
    /// or `system:serviceaccount:NS:NAME` for a service account (in `default_namespace`
    /// when it names none), as Kubernetes' service-account tokens authenticate.
    pub fn user_name(&self, default_namespace: &str) -> Option<String> {
        match self.kind.as_str() {
            "User" => Some(self.name.clone()),
            "ServiceAccount" => {
                let namespace = if self.namespace.is_empty() {
                    default_namespace
                } else {
                    &self.namespace
                };
                Some(format!("system:serviceaccount:{namespace}:{}", self.name))
            }
            _ => None,
        }
    }

    /// Fills in the API group Kubernetes defaults for users and groups.
    fn set_defaults(&mut self) {
        if self.api_group.is_empty() && matches!(self.kind.as_str(), "User" | "Group") {
            self.api_group = GROUP.to_string();
        }
    }

    /// `namespaced`: whether the binding is a RoleBinding, where a service account's
    /// namespace may be left to default.
    fn validate(&self, path: &str, namespaced: bool) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.name.is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), ""));
        }
        match self.kind.as_str() {
            "ServiceAccount" => {
                if !self.api_group.is_empty() {
                    errors.push(FieldError::not_supported(
                        format!("{path}.apiGroup"),
                        &self.api_group,
                        &[""],
                    ));
                }
                if self.namespace.is_empty() && !namespaced {
                    errors.push(FieldError::required(format!("{path}.namespace"), ""));
                }
            }
            "User" | "Group" => {
                if self.api_group != GROUP {
                    errors.push(FieldError::not_supported(
                        format!("{path}.apiGroup"),
                        &self.api_group,
                        &[GROUP],
                    ));
                }
            }
            other => errors.push(FieldError::not_supported(
                format!("{path}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
        errors
    }
}

/// Rules that apply inside one namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Role {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub rules: Vec<PolicyRule>,
}

/// Rules that apply in every namespace (through a ClusterRoleBinding) or in one
/// (through a RoleBinding), and to cluster-scoped kinds and non-resource URLs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterRole {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub rules: Vec<PolicyRule>,
}

/// Grants a Role of its namespace, or a ClusterRole, to subjects within its namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RoleBinding {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub subjects: Vec<Subject>,
    #[serde(default)]
    pub role_ref: RoleRef,
}

/// Grants a ClusterRole to subjects across the whole cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterRoleBinding {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub subjects: Vec<Subject>,
    #[serde(default)]
    pub role_ref: RoleRef,
}

impl_resource!(
    Role,
    kind = "Role",
    group = "rbac.authorization.k8s.io",
    version = "v1",
    plural = "roles",
    namespaced = true
);
impl_resource!(
    ClusterRole,
    kind = "ClusterRole",
    group = "rbac.authorization.k8s.io",
    version = "v1",
    plural = "clusterroles",
    namespaced = false
);
impl_resource!(
    RoleBinding,
    kind = "RoleBinding",
    group = "rbac.authorization.k8s.io",
    version = "v1",
    plural = "rolebindings",
    namespaced = true
);
impl_resource!(
    ClusterRoleBinding,
    kind = "ClusterRoleBinding",
    group = "rbac.authorization.k8s.io",
    version = "v1",
    plural = "clusterrolebindings",
    namespaced = false
);

fn validate_rules(rules: &[PolicyRule], namespaced: bool) -> Vec<FieldError> {
    rules
        .iter()
        .enumerate()
        .flat_map(|(i, rule)| rule.validate(&format!("rules[{i}]"), namespaced))
        .collect()
}

/// `roleRef`: the RBAC group, a kind the binding may grant, and a name.
fn validate_role_ref(role_ref: &RoleRef, kinds: &[&str]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if role_ref.api_group != GROUP {
        errors.push(FieldError::not_supported(
            "roleRef.apiGroup",
            &role_ref.api_group,
            &[GROUP],
        ));
    }
    if !kinds.contains(&role_ref.kind.as_str()) {
        errors.push(FieldError::not_supported(
            "roleRef.kind",
            &role_ref.kind,
            kinds,
        ));
    }
    if role_ref.name.is_empty() {
        errors.push(FieldError::required("roleRef.name", ""));
    } else {
        errors.extend(crate::validation::invalid_each(
            "roleRef.name",
            &role_ref.name,
            crate::validation::is_path_segment_name(&role_ref.name, false),
        ));
    }
    errors
}

fn validate_subjects(subjects: &[Subject], namespaced: bool) -> Vec<FieldError> {
    subjects
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.validate(&format!("subjects[{i}]"), namespaced))
        .collect()
}

/// A binding's role cannot change: Kubernetes makes you delete and recreate it, so that
/// whoever may update a binding's subjects cannot also swap in a stronger role.
fn validate_role_ref_update(new: &RoleRef, old: &RoleRef) -> Vec<FieldError> {
    if new == old {
        return Vec::new();
    }
    vec![FieldError::invalid(
        "roleRef",
        format!("{}/{}", new.kind, new.name),
        "cannot change roleRef",
    )]
}

impl Object for Role {
    const HAS_STATUS_SUBRESOURCE: bool = false;
    const NAME_RULE: NameRule = NameRule::PathSegment;

    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_rules(&self.rules, true)
    }
}

impl Object for ClusterRole {
    const HAS_STATUS_SUBRESOURCE: bool = false;
    const NAME_RULE: NameRule = NameRule::PathSegment;

    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_rules(&self.rules, false)
    }
}

impl Object for RoleBinding {
    const HAS_STATUS_SUBRESOURCE: bool = false;
    const NAME_RULE: NameRule = NameRule::PathSegment;

    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        self.subjects.iter_mut().for_each(Subject::set_defaults);
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_role_ref(&self.role_ref, &["Role", "ClusterRole"]);
        errors.extend(validate_subjects(&self.subjects, true));
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errors = validate_role_ref_update(&self.role_ref, &old.role_ref);
        errors.extend(self.validate());
        errors
    }
}

impl Object for ClusterRoleBinding {
    const HAS_STATUS_SUBRESOURCE: bool = false;
    const NAME_RULE: NameRule = NameRule::PathSegment;

    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        self.subjects.iter_mut().for_each(Subject::set_defaults);
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_role_ref(&self.role_ref, &["ClusterRole"]);
        errors.extend(validate_subjects(&self.subjects, false));
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errors = validate_role_ref_update(&self.role_ref, &old.role_ref);
        errors.extend(self.validate());
        errors
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::Resource;

    fn errors(list: Vec<FieldError>) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_cluster_role_round_trips() {
        let value = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": { "name": "system:node" },
            "rules": [
                { "verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"], "resourceNames": ["a"] },
                { "verbs": ["get"], "nonResourceURLs": ["/metrics", "/apis/*"] },
            ],
        });
        let role: ClusterRole = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(role.rules[1].non_resource_urls, ["/metrics", "/apis/*"]);
        assert_eq!(serde_json::to_value(&role).unwrap(), value);
        assert!(role.validate().is_empty());
        assert_eq!(ClusterRole::api_version(), "rbac.authorization.k8s.io/v1");
        const { assert!(!ClusterRole::NAMESPACED && Role::NAMESPACED) };
    }

    #[test]
    fn rules_name_their_bad_fields() {
        let mut role = Role {
            rules: vec![
                PolicyRule::default(),
                PolicyRule {
                    verbs: vec!["get".into()],
                    non_resource_urls: vec!["metrics".into()],
                    resources: vec!["pods".into()],
                    ..PolicyRule::default()
                },
            ],
            ..Role::default()
        };
        role.set_defaults();
        assert_eq!(
            errors(role.validate()),
            [
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[0].resources: Required value: resource rules must supply at least one resource",
                "rules[1].nonResourceURLs: Invalid value: [\"metrics\"]: namespaced rules cannot apply to non-resource URLs",
                "rules[1].nonResourceURLs: Invalid value: [\"metrics\"]: rules cannot apply to both regular resources and non-resource URLs",
                "rules[1].nonResourceURLs[0]: Invalid value: \"metrics\": must be a path starting with '/', or '*'",
            ]
        );
    }

    #[test]
    fn bindings_check_role_ref_and_subjects() {
        let mut binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": { "name": "b" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "" },
            "subjects": [
                { "kind": "User", "name": "alice" },
                { "kind": "ServiceAccount", "name": "robot" },
                { "kind": "Robot", "name": "x" },
            ],
        }))
        .unwrap();
        binding.set_defaults();
        assert_eq!(
            binding.subjects[0].api_group, GROUP,
            "users default the group"
        );
        assert_eq!(
            errors(binding.validate()),
            [
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "roleRef.name: Required value",
                "subjects[1].namespace: Required value",
                "subjects[2].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
            ]
        );
        // In a RoleBinding a service account defaults to the binding's namespace.
        let binding = RoleBinding {
            role_ref: RoleRef {
                api_group: GROUP.into(),
                kind: "Role".into(),
                name: "r".into(),
            },
            subjects: vec![Subject {
                kind: "ServiceAccount".into(),
                name: "robot".into(),
                ..Subject::default()
            }],
            ..RoleBinding::default()
        };
        assert!(binding.validate().is_empty(), "{:?}", binding.validate());
        assert_eq!(
            binding.subjects[0].user_name("apps").as_deref(),
            Some("system:serviceaccount:apps:robot")
        );
        let mut changed = binding.clone();
        changed.role_ref.kind = "ClusterRole".into();
        assert_eq!(
            errors(changed.validate_update(&binding)),
            ["roleRef: Invalid value: \"ClusterRole/r\": cannot change roleRef"]
        );
    }
}
