//! RBAC escalation prevention: no one grants what they do not hold.
//!
//! As in Kubernetes, whoever may write Roles and bindings may still only hand out
//! permissions they have themselves:
//!
//! - a Role or ClusterRole may be created or changed only by a user who holds every
//!   permission in it (in the Role's namespace; cluster-wide for a ClusterRole), or who
//!   may `escalate` on it;
//! - a RoleBinding or ClusterRoleBinding only by a user who holds every permission of the
//!   role it refers to (in the binding's namespace; cluster-wide for a
//!   ClusterRoleBinding), or who may `bind` that role.
//!
//! Without this, a namespace administrator allowed to create RoleBindings could bind
//! themselves to `cluster-admin`. "Holds" is decided by the same rules as any request:
//! each rule is split into single (group, resource, verb, name) permissions, and each must
//! be allowed; a `*` in a rule is held only through a `*`.

use serde_json::Value;
use skiff_api::rbac::{GROUP, PolicyRule, RoleRef};

use super::auth::User;
use super::error::{ApiError, ApiResult};
use super::rbac::{Action, MASTERS_GROUP, Snapshot};
use super::registry::ResourceType;

/// Refuses (403) the write of `object`, a `rt` in `namespace`, if it would grant `user`'s
/// victims more than `user` holds. Other kinds pass.
pub(crate) fn check(
    access: &Snapshot,
    user: Option<&User>,
    rt: &ResourceType,
    namespace: Option<&str>,
    object: &Value,
) -> ApiResult<()> {
    if rt.group != GROUP {
        return Ok(());
    }
    let Some(user) = user else {
        // No authentication in front of this server (tests of the handlers alone).
        return Ok(());
    };
    if user.groups.iter().any(|g| g == MASTERS_GROUP) {
        return Ok(());
    }
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let rbac_action =
        |verb: &str, resource: &str, namespace: Option<&str>, name: &str| Action::Resource {
            verb: verb.to_string(),
            group: GROUP.to_string(),
            resource: resource.to_string(),
            subresource: None,
            namespace: namespace.map(str::to_string),
            name: Some(name.to_string()),
        };
    let (rules, scope) = match rt.plural {
        "roles" | "clusterroles" => {
            let scope = namespace.filter(|_| rt.plural == "roles");
            if access.allows(user, &rbac_action("escalate", rt.plural, scope, name)) {
                return Ok(());
            }
            // Rules that do not decode are the validation's to refuse.
            let Ok(rules) = serde_json::from_value::<Vec<PolicyRule>>(object["rules"].clone())
            else {
                return Ok(());
            };
            (rules, scope)
        }
        "rolebindings" | "clusterrolebindings" => {
            let Ok(role_ref) = serde_json::from_value::<RoleRef>(object["roleRef"].clone()) else {
                return Ok(());
            };
            let scope = namespace.filter(|_| rt.plural == "rolebindings");
            let role_resource = match role_ref.kind.as_str() {
                "Role" => "roles",
                _ => "clusterroles",
            };
            // As in Kubernetes, `bind` is asked in the binding's namespace, so a Role there
            // may allow binding a ClusterRole there.
            let bind = rbac_action("bind", role_resource, scope, &role_ref.name);
            if access.allows(user, &bind) {
                return Ok(());
            }
            let rules = match role_resource {
                "roles" => access.role_rules(scope.unwrap_or_default(), &role_ref.name),
                _ => access.cluster_role_rules(&role_ref.name),
            };
            let Some(rules) = rules else {
                return Err(forbidden(
                    rt,
                    name,
                    format!(
                        "{} {:?} does not exist; only a user who may bind it may bind it before it does",
                        role_ref.kind, role_ref.name
                    ),
                ));
            };
            (rules.to_vec(), scope)
        }
        _ => return Ok(()),
    };
    let missing: Vec<String> = rules
        .iter()
        .filter(|rule| !holds(access, user, rule, scope))
        .map(describe)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(forbidden(
        rt,
        name,
        format!(
            "user {:?} is attempting to grant RBAC permissions not currently held: {}",
            user.name,
            missing.join("; ")
        ),
    ))
}

/// Whether `user` holds every permission of `rule` in `namespace` (`None`: cluster-wide).
fn holds(access: &Snapshot, user: &User, rule: &PolicyRule, namespace: Option<&str>) -> bool {
    let verbs = &rule.verbs;
    if !rule.non_resource_urls.is_empty() {
        return rule.non_resource_urls.iter().all(|path| {
            verbs.iter().all(|verb| {
                access.allows(
                    user,
                    &Action::NonResource {
                        verb: verb.clone(),
                        path: path.clone(),
                    },
                )
            })
        });
    }
    let names: Vec<Option<&String>> = if rule.resource_names.is_empty() {
        vec![None]
    } else {
        rule.resource_names.iter().map(Some).collect()
    };
    rule.api_groups.iter().all(|group| {
        rule.resources.iter().all(|resource| {
            let (resource, subresource) = match resource.split_once('/') {
                Some((resource, sub)) => (resource, Some(sub.to_string())),
                None => (resource.as_str(), None),
            };
            verbs.iter().all(|verb| {
                names.iter().all(|name| {
                    access.allows(
                        user,
                        &Action::Resource {
                            verb: verb.clone(),
                            group: group.clone(),
                            resource: resource.to_string(),
                            subresource: subresource.clone(),
                            namespace: namespace.map(str::to_string),
                            name: name.cloned(),
                        },
                    )
                })
            })
        })
    })
}

/// A rule as Kubernetes prints it in this refusal.
fn describe(rule: &PolicyRule) -> String {
    let list = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("{i:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if !rule.non_resource_urls.is_empty() {
        return format!(
            "{{NonResourceURLs:[{}], Verbs:[{}]}}",
            list(&rule.non_resource_urls),
            list(&rule.verbs)
        );
    }
    let mut text = format!(
        "{{APIGroups:[{}], Resources:[{}]",
        list(&rule.api_groups),
        list(&rule.resources)
    );
    if !rule.resource_names.is_empty() {
        text.push_str(&format!(", ResourceNames:[{}]", list(&rule.resource_names)));
    }
    text.push_str(&format!(", Verbs:[{}]}}", list(&rule.verbs)));
    text
}

fn forbidden(rt: &ResourceType, name: &str, why: String) -> ApiError {
    ApiError::forbidden(format!(
        "{}.{} {name:?} is forbidden: {why}",
        rt.plural, rt.group
    ))
}
