//! A pod's volumes on the node: emptyDir directories made per pod, ConfigMap and Secret
//! data projected as read-only files, hostPath only where the node allows it.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use skiff_api::core::{ConfigMap, Pod, Secret};
use skiff_client::Api;

use crate::NodeContext;

/// A volume as a host directory handed to containers.
#[derive(Clone, Debug)]
pub struct HostVolume {
    pub path: PathBuf,
    pub read_only: bool,
}

/// A pod's volumes, by name.
pub type Volumes = BTreeMap<String, HostVolume>;

/// Why a pod's volumes could not be laid out.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "volume {volume:?}: hostPath volumes are disabled on this node (start the node with --allow-host-path)"
    )]
    HostPathDisabled { volume: String },
    #[error("volume {volume:?}: {kind} {name:?} not found")]
    SourceNotFound {
        volume: String,
        kind: &'static str,
        name: String,
    },
    #[error("volume {volume:?}: key {key:?} not found in {kind} {name:?}")]
    KeyNotFound {
        volume: String,
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("volume {volume:?}: item path {path:?} must be relative and stay inside the volume")]
    BadItemPath { volume: String, path: String },
    #[error("volume {volume:?}: reading its source: {message}")]
    Api { volume: String, message: String },
    #[error("volume {volume:?}: writing {path}: {source}")]
    Io {
        volume: String,
        path: String,
        source: std::io::Error,
    },
}

/// Creates the pod's volume directories under `pod_dir/volumes` and returns them.
pub async fn prepare(
    ctx: &NodeContext,
    pod: &Pod,
    pod_dir: &Path,
) -> Result<Arc<Volumes>, VolumeError> {
    let mut volumes = Volumes::new();
    let namespace = pod.metadata.namespace();
    for volume in &pod.spec.volumes {
        let name = volume.name.clone();
        let dir = pod_dir.join("volumes").join(&name);
        let io = |path: &Path, source| VolumeError::Io {
            volume: name.clone(),
            path: path.display().to_string(),
            source,
        };
        if let Some(host) = &volume.host_path {
            if !ctx.config.allow_host_path {
                return Err(VolumeError::HostPathDisabled { volume: name });
            }
            volumes.insert(
                name,
                HostVolume {
                    path: PathBuf::from(&host.path),
                    read_only: false,
                },
            );
            continue;
        }
        let files: Option<Vec<(String, Vec<u8>)>> = if let Some(source) = &volume.config_map {
            let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
            let found = api
                .get_opt(&source.name)
                .await
                .map_err(|e| VolumeError::Api {
                    volume: name.clone(),
                    message: e.to_string(),
                })?;
            match found {
                None if source.optional == Some(true) => Some(Vec::new()),
                None => {
                    return Err(VolumeError::SourceNotFound {
                        volume: name,
                        kind: "configmap",
                        name: source.name.clone(),
                    });
                }
                Some(map) => {
                    let all: Vec<String> = map
                        .data
                        .keys()
                        .chain(map.binary_data.keys())
                        .cloned()
                        .collect();
                    Some(project(
                        &name,
                        "configmap",
                        &source.name,
                        &source.items,
                        &all,
                        |k| map.value(k),
                    )?)
                }
            }
        } else if let Some(source) = &volume.secret {
            let secret_name = source.secret_name.clone().unwrap_or_default();
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
            let found = api
                .get_opt(&secret_name)
                .await
                .map_err(|e| VolumeError::Api {
                    volume: name.clone(),
                    message: e.to_string(),
                })?;
            match found {
                None if source.optional == Some(true) => Some(Vec::new()),
                None => {
                    return Err(VolumeError::SourceNotFound {
                        volume: name,
                        kind: "secret",
                        name: secret_name,
                    });
                }
                Some(secret) => {
                    let all: Vec<String> = secret.data.keys().cloned().collect();
                    Some(project(
                        &name,
                        "secret",
                        &secret_name,
                        &source.items,
                        &all,
                        |k| secret.value(k),
                    )?)
                }
            }
        } else {
            None
        };
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io(&dir, e))?;
        let read_only = files.is_some();
        for (path, bytes) in files.unwrap_or_default() {
            let target = dir.join(&path);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| io(parent, e))?;
            }
            tokio::fs::write(&target, bytes)
                .await
                .map_err(|e| io(&target, e))?;
        }
        volumes.insert(
            name,
            HostVolume {
                path: dir,
                read_only,
            },
        );
    }
    Ok(Arc::new(volumes))
}

/// The files of a ConfigMap or Secret volume: every key, or the listed items at their paths.
fn project(
    volume: &str,
    kind: &'static str,
    name: &str,
    items: &[skiff_api::core::KeyToPath],
    all_keys: &[String],
    value: impl Fn(&str) -> Option<Vec<u8>>,
) -> Result<Vec<(String, Vec<u8>)>, VolumeError> {
    let wanted: Vec<(String, String)> = if items.is_empty() {
        all_keys.iter().map(|k| (k.clone(), k.clone())).collect()
    } else {
        items
            .iter()
            .map(|i| (i.key.clone(), i.path.clone()))
            .collect()
    };
    let mut files = Vec::new();
    for (key, path) in wanted {
        let inside = Path::new(&path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if path.is_empty() || !inside {
            return Err(VolumeError::BadItemPath {
                volume: volume.into(),
                path,
            });
        }
        let bytes = value(&key).ok_or_else(|| VolumeError::KeyNotFound {
            volume: volume.into(),
            kind,
            name: name.into(),
            key: key.clone(),
        })?;
        files.push((path, bytes));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projected_paths_cannot_leave_the_volume() {
        let items = |path: &str| {
            vec![skiff_api::core::KeyToPath {
                key: "k".into(),
                path: path.into(),
                mode: None,
            }]
        };
        let value = |_: &str| Some(b"v".to_vec());
        for bad in ["../escape", "/etc/passwd", "a/../../b", ""] {
            assert!(
                matches!(
                    project("v", "configmap", "c", &items(bad), &[], value),
                    Err(VolumeError::BadItemPath { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            project("v", "configmap", "c", &items("dir/file"), &[], value).unwrap(),
            vec![("dir/file".to_string(), b"v".to_vec())]
        );
        let missing = project("v", "configmap", "c", &items("f"), &[], |_| None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "volume \"v\": key \"k\" not found in configmap \"c\""
        );
    }
}
