//! A container's environment: literal values, the downward API (`fieldRef`), and keys
//! of ConfigMaps and Secrets (`configMapKeyRef`, `secretKeyRef`, `envFrom`).

use skiff_api::core::{ConfigMap, Container, Pod, Secret};
use skiff_client::Api;

use crate::NodeContext;

/// The resolved `(name, value)` pairs, in Kubernetes' order: `envFrom` first, then `env`
/// (later entries win when names repeat). An error names what is missing.
pub async fn resolve(
    ctx: &NodeContext,
    pod: &Pod,
    container: &Container,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.metadata.namespace();
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: String, value: String| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };
    for from in &container.env_from {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(source) = &from.config_map_ref {
            match config_maps
                .get_opt(&source.name)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(map) => {
                    for (key, value) in &map.data {
                        set(format!("{prefix}{key}"), value.clone());
                    }
                }
                None if source.optional == Some(true) => {}
                None => return Err(format!("configmap {:?} not found", source.name)),
            }
        }
        if let Some(source) = &from.secret_ref {
            match secrets
                .get_opt(&source.name)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(secret) => {
                    for key in secret.data.keys() {
                        let value = secret.value(key).unwrap_or_default();
                        set(
                            format!("{prefix}{key}"),
                            String::from_utf8_lossy(&value).into_owned(),
                        );
                    }
                }
                None if source.optional == Some(true) => {}
                None => return Err(format!("secret {:?} not found", source.name)),
            }
        }
    }
    for var in &container.env {
        let value = match &var.value_from {
            None => var.value.clone().unwrap_or_default(),
            Some(from) => {
                if let Some(field) = &from.field_ref {
                    field_value(ctx, pod, &field.field_path).ok_or_else(|| {
                        format!(
                            "env {}: unsupported fieldRef {:?}",
                            var.name, field.field_path
                        )
                    })?
                } else if let Some(key) = &from.config_map_key_ref {
                    let map = config_maps
                        .get_opt(&key.name)
                        .await
                        .map_err(|e| e.to_string())?;
                    match map.and_then(|m| m.value(&key.key)) {
                        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                        None if key.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "env {}: key {:?} of configmap {:?} not found",
                                var.name, key.key, key.name
                            ));
                        }
                    }
                } else if let Some(key) = &from.secret_key_ref {
                    let secret = secrets
                        .get_opt(&key.name)
                        .await
                        .map_err(|e| e.to_string())?;
                    match secret.and_then(|s| s.value(&key.key)) {
                        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                        None if key.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "env {}: key {:?} of secret {:?} not found",
                                var.name, key.key, key.name
                            ));
                        }
                    }
                } else {
                    return Err(format!(
                        "env {}: resourceFieldRef is not supported yet",
                        var.name
                    ));
                }
            }
        };
        set(var.name.clone(), value);
    }
    Ok(env)
}

/// The downward API's fields.
fn field_value(ctx: &NodeContext, pod: &Pod, path: &str) -> Option<String> {
    Some(match path {
        "metadata.name" => pod.metadata.name().to_string(),
        "metadata.namespace" => pod.metadata.namespace().to_string(),
        "metadata.uid" => pod.metadata.uid.clone().unwrap_or_default(),
        "spec.nodeName" => ctx.config.name.clone(),
        "spec.serviceAccountName" => pod.spec.service_account_name.clone().unwrap_or_default(),
        "status.hostIP" => ctx.config.address.clone(),
        "status.podIP" => pod.status.pod_ip.clone().unwrap_or_default(),
        other => {
            let label = other
                .strip_prefix("metadata.labels['")?
                .strip_suffix("']")?;
            pod.metadata.labels.get(label).cloned().unwrap_or_default()
        }
    })
}
