//! Volumes: shared between containers, read-only honoured, nothing else of the host visible.

use std::path::Path;

use skiff_runtime::{ExitStatus, LogStream, MemorySink, VolumeMount};

use crate::{load, runtime, spec, within};

fn mount(host: &Path, read_only: bool) -> VolumeMount {
    VolumeMount {
        host_path: host.to_path_buf(),
        guest_path: "/data".into(),
        read_only,
    }
}

/// Runs `sample` with `args` and one volume at /data; returns its status and output.
async fn run(
    sample: &str,
    args: &[&str],
    env: &[(&str, &str)],
    volume: VolumeMount,
) -> (ExitStatus, std::sync::Arc<MemorySink>) {
    let workload = load(sample);
    let (mut spec, sink) = spec("files");
    spec.args = args.iter().map(|arg| arg.to_string()).collect();
    spec.env = env
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    spec.volumes = vec![volume];
    let container = runtime().start(&workload, spec).unwrap();
    (within(30, sample, container.wait()).await, sink)
}

#[tokio::test]
async fn two_containers_share_a_volume() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _) = run(
        skiff_samples::WRITER,
        &[],
        &[("CONTENT", "from the writer")],
        mount(dir.path(), false),
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("message.txt")).unwrap(),
        "from the writer"
    );
    let (status, sink) = run(skiff_samples::READER, &[], &[], mount(dir.path(), true)).await;
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(sink.text(LogStream::Stdout), ["from the writer"]);
}

#[tokio::test]
async fn a_read_only_mount_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (status, sink) = run(skiff_samples::WRITER, &[], &[], mount(dir.path(), true)).await;
    assert_eq!(status, ExitStatus::Exited(1), "{:?}", sink.lines());
    assert!(
        sink.text(LogStream::Stderr)[0].starts_with("write /data/message.txt: "),
        "{:?}",
        sink.lines()
    );
    assert!(!dir.path().join("message.txt").exists());
}

/// A reader asked for `path` fails, though the host file exists.
async fn assert_unreadable(path: &str, volume: VolumeMount) {
    let (status, sink) = run(skiff_samples::READER, &[path], &[], volume).await;
    assert_eq!(
        status,
        ExitStatus::Exited(1),
        "the guest read {path}: {:?}",
        sink.lines()
    );
    assert!(
        sink.text(LogStream::Stdout).is_empty(),
        "{path} leaked: {:?}",
        sink.lines()
    );
}

#[tokio::test]
async fn dot_dot_cannot_leave_the_volume() {
    let root = tempfile::tempdir().unwrap();
    let volume = root.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::write(root.path().join("secret.txt"), "outside").unwrap();
    assert_unreadable("/data/../secret.txt", mount(&volume, false)).await;
    assert_unreadable("/data/../../../../etc/passwd", mount(&volume, false)).await;
    let (status, _) = run(
        skiff_samples::WRITER,
        &["/data/../planted.txt"],
        &[],
        mount(&volume, false),
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(1));
    assert!(
        !root.path().join("planted.txt").exists(),
        "the guest wrote outside its volume"
    );
}

#[tokio::test]
async fn absolute_host_paths_are_not_visible() {
    assert!(Path::new("/etc/passwd").exists());
    let dir = tempfile::tempdir().unwrap();
    assert_unreadable("/etc/passwd", mount(dir.path(), false)).await;
    let (status, sink) = run(
        skiff_samples::READER,
        &["/etc/passwd"],
        &[],
        mount(dir.path(), false),
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(1));
    assert!(sink.text(LogStream::Stderr)[0].starts_with("read /etc/passwd: "));
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_out_of_the_volume_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let volume = root.path().join("volume");
    let outside = root.path().join("outside");
    std::fs::create_dir(&volume).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink("/etc", volume.join("etc")).unwrap();
    std::os::unix::fs::symlink("../outside", volume.join("up")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", volume.join("passwd")).unwrap();
    std::fs::write(outside.join("secret.txt"), "outside").unwrap();

    assert_unreadable("/data/etc/passwd", mount(&volume, false)).await;
    assert_unreadable("/data/passwd", mount(&volume, false)).await;
    assert_unreadable("/data/up/secret.txt", mount(&volume, false)).await;
    let (status, _) = run(
        skiff_samples::WRITER,
        &["/data/up/planted.txt"],
        &[],
        mount(&volume, false),
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(1));
    assert!(
        !outside.join("planted.txt").exists(),
        "the guest wrote through a symlink"
    );
}

#[tokio::test]
async fn a_symlink_inside_the_volume_still_works() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("real.txt"), "inside").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("real.txt", dir.path().join("alias.txt")).unwrap();
    #[cfg(not(unix))]
    std::fs::write(dir.path().join("alias.txt"), "inside").unwrap();
    let (status, sink) = run(
        skiff_samples::READER,
        &["/data/alias.txt"],
        &[],
        mount(dir.path(), true),
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(sink.text(LogStream::Stdout), ["inside"]);
}

#[tokio::test]
async fn a_missing_volume_directory_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let workload = load(skiff_samples::READER);
    let (mut spec, _sink) = spec("no-volume");
    spec.volumes = vec![mount(&dir.path().join("missing"), false)];
    let error = runtime().start(&workload, spec).unwrap_err();
    assert!(
        matches!(error, skiff_runtime::StartError::OpenVolume { .. }),
        "{error:?}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn hard_links_cannot_reach_out_of_the_volume() {
    let root = tempfile::tempdir().unwrap();
    let volume = root.path().join("volume");
    let outside = root.path().join("outside");
    std::fs::create_dir(&volume).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "outside").unwrap();
    std::os::unix::fs::symlink("../outside", volume.join("up")).unwrap();
    std::fs::write(volume.join("own.txt"), "inside").unwrap();

    for from in [
        "/data/../outside/secret.txt",
        "/data/up/secret.txt",
        "/etc/passwd",
    ] {
        let (status, sink) = run(
            skiff_samples::WRITER,
            &["/data/stolen.txt"],
            &[("LINK_FROM", from)],
            mount(&volume, false),
        )
        .await;
        assert_eq!(status, ExitStatus::Exited(1), "linking {from}");
        assert!(
            sink.text(LogStream::Stderr)[0].starts_with("link /data/stolen.txt to "),
            "{:?}",
            sink.lines()
        );
        assert!(
            !volume.join("stolen.txt").exists(),
            "a hard link to {from} appeared in the volume"
        );
    }
    // A hard link within the volume is the guest's own business.
    let (status, _) = run(
        skiff_samples::WRITER,
        &["/data/again.txt"],
        &[("LINK_FROM", "/data/own.txt")],
        mount(&volume, false),
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(
        std::fs::read_to_string(volume.join("again.txt")).unwrap(),
        "inside"
    );
}

/// A path inside the volume flips, while the guest reads through it, between a directory of
/// the volume and a symlink to a directory outside: the guest sees the inside file or an
/// error, never the outside one (each path component is resolved beneath the volume, so
/// there is no window between a check and a use).
#[cfg(unix)]
#[tokio::test]
async fn a_symlink_swapped_in_during_reads_never_leads_out() {
    let root = tempfile::tempdir().unwrap();
    let volume = root.path().join("volume");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(volume.join("real")).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(volume.join("real/file.txt"), "inside").unwrap();
    std::fs::write(outside.join("file.txt"), "SECRET").unwrap();
    std::os::unix::fs::symlink(&outside, volume.join("link")).unwrap();

    let workload = load(skiff_samples::READER);
    let (mut spec, sink) = spec("swapped");
    spec.args = vec!["/data/sub/file.txt".to_string()];
    spec.env = vec![
        ("READ_EVERY_MS".to_string(), "0".to_string()),
        ("KEEP_GOING".to_string(), "1".to_string()),
    ];
    spec.volumes = vec![mount(&volume, true)];
    let container = runtime().start(&workload, spec).unwrap();

    let swapper = {
        let volume = volume.clone();
        std::thread::spawn(move || {
            let sub = volume.join("sub");
            for _ in 0..2_000 {
                std::fs::rename(volume.join("real"), &sub).unwrap();
                std::fs::rename(&sub, volume.join("real")).unwrap();
                std::fs::rename(volume.join("link"), &sub).unwrap();
                std::fs::rename(&sub, volume.join("link")).unwrap();
            }
            // Settle on the real directory, so the reader ends up reading it.
            std::fs::rename(volume.join("real"), &sub).unwrap();
        })
    };
    within(
        60,
        "the swapping",
        tokio::task::spawn_blocking(move || swapper.join()),
    )
    .await
    .unwrap()
    .unwrap();
    // The reader goes on to the inside file: it was reading all along.
    within(
        30,
        "a read of the inside file",
        sink.wait_for(|line| line.stream == LogStream::Stdout && line.line == "inside"),
    )
    .await;
    within(30, "stop", container.stop(std::time::Duration::ZERO)).await;
    let stdout = sink.text(LogStream::Stdout);
    assert!(
        stdout.iter().all(|line| line != "SECRET"),
        "the guest read through the swapped-in symlink: {stdout:?}"
    );
}
