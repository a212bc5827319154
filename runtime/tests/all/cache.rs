//! Compiled code is cached: in memory by digest, and on disk across runtimes.

use skiff_runtime::{Runtime, RuntimeConfig};

#[test]
fn second_load_in_a_process_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        pooling: false,
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(config).unwrap();
    let first = runtime.load_file(skiff_samples::CRASHER).unwrap();
    let stats = runtime.cache_stats();
    assert_eq!(stats.misses, 1);
    let second = runtime.load_file(skiff_samples::CRASHER).unwrap();
    // Neither compiled nor even looked up on disk.
    assert_eq!(
        runtime.cache_stats(),
        stats,
        "the second load compiled again"
    );
    assert_eq!(first.digest(), second.digest());
    assert!(first.digest().starts_with("sha256:"));
}

#[test]
fn a_new_runtime_with_the_same_cache_dir_loads_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        pooling: false,
        ..RuntimeConfig::default()
    };
    let first = Runtime::new(config.clone()).unwrap();
    first.load_file(skiff_samples::HELLO).unwrap();
    first.load_file(skiff_samples::HTTP_HELLO).unwrap();
    assert_eq!(first.cache_stats().hits, 0);
    assert_eq!(first.cache_stats().misses, 2);
    drop(first);

    let second = Runtime::new(config).unwrap();
    second.load_file(skiff_samples::HELLO).unwrap();
    second.load_file(skiff_samples::HTTP_HELLO).unwrap();
    assert_eq!(
        second.cache_stats().misses,
        0,
        "the second runtime compiled"
    );
    assert_eq!(second.cache_stats().hits, 2);
}

#[cfg(unix)]
#[test]
fn a_relative_cache_dir_works() {
    // `skiff server --data-dir skiff-data` hands the runtime a relative path.
    let dir = tempfile::tempdir().unwrap();
    let cwd = std::env::current_dir().unwrap();
    let ups = cwd.components().count() - 1;
    let relative: std::path::PathBuf = std::iter::repeat_n("..", ups)
        .collect::<std::path::PathBuf>()
        .join(dir.path().strip_prefix("/").unwrap())
        .join("compiled");
    assert!(relative.is_relative());
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(relative),
        pooling: false,
        ..RuntimeConfig::default()
    })
    .expect("a relative cache directory is taken from the current directory");
    runtime.load_file(skiff_samples::HELLO).unwrap();
    assert!(dir.path().join("compiled").exists());
}
