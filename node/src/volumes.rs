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
    for volume in &pod.spec.volumes {
        let name = volume.name.clone();
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
        let dir = pod_dir.join("volumes").join(&name);
        let files = projected_files(ctx, pod, volume).await?;
        let read_only = files.is_some();
        sync_dir(&name, &dir, files).await?;
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

/// Projects the pod's ConfigMap and Secret volumes again from their sources, as the
/// kubelet keeps them current: changed keys are rewritten (each file replaced at once,
/// never seen half-written), removed keys are removed.
pub async fn refresh(ctx: &NodeContext, pod: &Pod, pod_dir: &Path) -> Result<(), VolumeError> {
    for volume in &pod.spec.volumes {
        if volume.config_map.is_none() && volume.secret.is_none() {
            continue;
        }
        let dir = pod_dir.join("volumes").join(&volume.name);
        let files = projected_files(ctx, pod, volume).await?;
        sync_dir(&volume.name, &dir, files).await?;
    }
    Ok(())
}

/// The ConfigMaps and Secrets the pod's volumes project: `(kind, name)`.
pub fn sources(pod: &Pod) -> Vec<(&'static str, String)> {
    pod.spec
        .volumes
        .iter()
        .filter_map(|volume| {
            if let Some(source) = &volume.config_map {
                Some(("configmap", source.name.clone()))
            } else {
                volume
                    .secret
                    .as_ref()
                    .map(|source| ("secret", source.secret_name.clone().unwrap_or_default()))
            }
        })
        .collect()
}

/// The files a ConfigMap or Secret volume holds now; `None` for other kinds.
async fn projected_files(
    ctx: &NodeContext,
    pod: &Pod,
    volume: &skiff_api::core::Volume,
) -> Result<Option<Vec<(String, Vec<u8>)>>, VolumeError> {
    let namespace = pod.metadata.namespace();
    let name = volume.name.clone();
    let api_error = |e: skiff_client::Error| VolumeError::Api {
        volume: name.clone(),
        message: e.to_string(),
    };
    if let Some(source) = &volume.config_map {
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
        match api.get_opt(&source.name).await.map_err(api_error)? {
            None if source.optional == Some(true) => Ok(Some(Vec::new())),
            None => Err(VolumeError::SourceNotFound {
                volume: name,
                kind: "configmap",
                name: source.name.clone(),
            }),
            Some(map) => {
                let all: Vec<String> = map
                    .data
                    .keys()
                    .chain(map.binary_data.keys())
                    .cloned()
                    .collect();
                project(&name, "configmap", &source.name, &source.items, &all, |k| {
                    map.value(k)
                })
                .map(Some)
            }
        }
    } else if let Some(source) = &volume.secret {
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
        match api.get_opt(&secret_name).await.map_err(api_error)? {
            None if source.optional == Some(true) => Ok(Some(Vec::new())),
            None => Err(VolumeError::SourceNotFound {
                volume: name,
                kind: "secret",
                name: secret_name,
            }),
            Some(secret) => {
                let all: Vec<String> = secret.data.keys().cloned().collect();
                project(&name, "secret", &secret_name, &source.items, &all, |k| {
                    secret.value(k)
                })
                .map(Some)
            }
        }
    } else {
        Ok(None)
    }
}

/// Makes `dir` exist and, when `files` is given, hold exactly those files: changed ones
/// are written to a temporary file and renamed over the old (a reader sees the old file
/// or the new, never a mix), unchanged ones are left alone, others are removed.
async fn sync_dir(
    volume: &str,
    dir: &Path,
    files: Option<Vec<(String, Vec<u8>)>>,
) -> Result<(), VolumeError> {
    let volume = volume.to_string();
    let dir = dir.to_path_buf();
    let work = move || -> Result<(), VolumeError> {
        let io = |path: &Path, source| VolumeError::Io {
            volume: volume.clone(),
            path: path.display().to_string(),
            source,
        };
        create_private_dir(&dir).map_err(|e| io(&dir, e))?;
        let Some(files) = files else {
            return Ok(());
        };
        let wanted: std::collections::BTreeSet<PathBuf> =
            files.iter().map(|(path, _)| dir.join(path)).collect();
        for (path, bytes) in &files {
            let target = dir.join(path);
            if std::fs::read(&target).is_ok_and(|old| old == *bytes) {
                continue;
            }
            if let Some(parent) = target.parent() {
                create_private_dir(parent).map_err(|e| io(parent, e))?;
            }
            let temporary = target.with_file_name(format!(
                "..{}.tmp",
                target.file_name().unwrap_or_default().to_string_lossy()
            ));
            write_private(&temporary, bytes).map_err(|e| io(&temporary, e))?;
            std::fs::rename(&temporary, &target).map_err(|e| io(&target, e))?;
        }
        remove_unwanted(&dir, &wanted).map_err(|e| io(&dir, e))
    };
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Creates `dir` and its missing parents readable by this user only (on Unix; Windows
/// keeps the data directory's inherited ACL): a Secret's files are the node's alone.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `path` readable by this user only (on Unix).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, bytes)
}

/// Makes the node's pod directory (volumes, Secrets' files, logs) exist and be readable
/// by the node's user only, whatever it was before.
pub fn make_private(dir: &Path) -> std::io::Result<()> {
    create_private_dir(dir)?;
    #[cfg(unix)]
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(())
}

/// Removes every file under `dir` that is not in `wanted`, and directories left empty.
fn remove_unwanted(
    dir: &Path,
    wanted: &std::collections::BTreeSet<PathBuf>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            remove_unwanted(&path, wanted)?;
            if std::fs::read_dir(&path)?.next().is_none() {
                std::fs::remove_dir(&path)?;
            }
        } else if !wanted.contains(&path) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
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

    #[tokio::test]
    async fn syncing_a_projected_volume_rewrites_changes_and_removes_what_went() {
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("config");
        let files = |list: &[(&str, &str)]| {
            Some(
                list.iter()
                    .map(|(p, v)| (p.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            )
        };
        sync_dir("config", &volume, files(&[("a", "1"), ("sub/b", "2")]))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(volume.join("sub/b")).unwrap(), "2");

        sync_dir("config", &volume, files(&[("a", "changed")]))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(volume.join("a")).unwrap(),
            "changed"
        );
        assert!(
            !volume.join("sub").exists(),
            "the removed key and its directory went"
        );
        let names: Vec<_> = std::fs::read_dir(&volume)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("a")],
            "no temporary files left"
        );
    }

    /// A Secret's files on the node's disk are the node's alone.
    #[cfg(unix)]
    #[tokio::test]
    async fn projected_files_and_the_pod_directory_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pods = dir.path().join("pods");
        std::fs::create_dir(&pods).unwrap();
        std::fs::set_permissions(&pods, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_private(&pods).unwrap();
        let volume = pods.join("uid/volumes/secret");
        let files = vec![("sub/password".to_string(), b"hunter2".to_vec())];
        sync_dir("secret", &volume, Some(files)).await.unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&pods), 0o700, "made private though it existed");
        assert_eq!(mode(&volume), 0o700);
        assert_eq!(mode(&volume.join("sub")), 0o700);
        assert_eq!(mode(&volume.join("sub/password")), 0o600);
    }

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
