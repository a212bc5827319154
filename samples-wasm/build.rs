//! Builds the guest programs under `guests/` for wasm32-wasip1 and wasm32-wasip2 and copies
//! each artifact to `$OUT_DIR/<name>.wasm`, where `src/lib.rs` points at it.
//!
//! The guests are their own cargo workspace, built with their own target directory under
//! OUT_DIR: the outer cargo holds the lock on its target directory while build scripts run,
//! so sharing it would deadlock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, target, artifact file name in the target dir, name under OUT_DIR).
const ARTIFACTS: &[(&str, &str, &str, &str)] = &[
    ("hello", "wasm32-wasip1", "hello.wasm", "hello.wasm"),
    ("hello", "wasm32-wasip2", "hello.wasm", "hello-p2.wasm"),
    ("ticker", "wasm32-wasip1", "ticker.wasm", "ticker.wasm"),
    ("crasher", "wasm32-wasip1", "crasher.wasm", "crasher.wasm"),
    ("trapper", "wasm32-wasip1", "trapper.wasm", "trapper.wasm"),
    ("memhog", "wasm32-wasip1", "memhog.wasm", "memhog.wasm"),
    ("cpuspin", "wasm32-wasip1", "cpuspin.wasm", "cpuspin.wasm"),
    (
        "http-hello",
        "wasm32-wasip2",
        "http_hello.wasm",
        "http-hello.wasm",
    ),
    (
        "tcp-echo",
        "wasm32-wasip2",
        "tcp-echo.wasm",
        "tcp-echo.wasm",
    ),
    ("writer", "wasm32-wasip1", "writer.wasm", "writer.wasm"),
    ("reader", "wasm32-wasip2", "reader.wasm", "reader.wasm"),
    (
        "http-load",
        "wasm32-wasip2",
        "http-load.wasm",
        "http-load.wasm",
    ),
];

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let guests = manifest_dir.join("guests");
    rerun_if_changed(&guests);

    let targets = ["wasm32-wasip1", "wasm32-wasip2"];
    ensure_targets(&targets);

    let target_dir = out_dir.join("guests-target");
    for target in targets {
        let mut cargo = guest_cargo(&guests);
        cargo
            .args(["build", "--release", "--target", target, "--target-dir"])
            .arg(&target_dir);
        for (package, _, _, _) in ARTIFACTS.iter().filter(|artifact| artifact.1 == target) {
            cargo.args(["-p", package]);
        }
        run(&mut cargo, &format!("building the guests for {target}"));
    }
    for (_, target, file, name) in ARTIFACTS {
        let from = target_dir.join(target).join("release").join(file);
        let to = out_dir.join(name);
        if let Err(error) = std::fs::copy(&from, &to) {
            panic!("copying {} to {}: {error}", from.display(), to.display());
        }
    }
}

/// A `cargo` command for the guest workspace with the outer build's settings removed: they
/// name host flags, the outer target dir and the outer jobserver, none of which apply.
fn guest_cargo(guests: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(guests);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let outer = key.starts_with("CARGO_ENCODED_")
            || key.starts_with("CARGO_TARGET_")
            || key.starts_with("CARGO_BUILD_")
            || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("DEP_")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "CARGO_MAKEFLAGS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "RUSTC_LINKER"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_LLVM_COV"
            );
        if outer {
            command.env_remove(key);
        }
    }
    command
}

/// Adds the wasm targets with rustup when they are missing, so `cargo test` works on a
/// fresh machine.
fn ensure_targets(targets: &[&str]) {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let installed = match installed {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        // No rustup (a distribution's toolchain): assume the targets are there; the build
        // below says clearly if they are not.
        _ => return,
    };
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|target| !installed.lines().any(|line| line.trim() == *target))
        .collect();
    if !missing.is_empty() {
        run(
            Command::new("rustup")
                .args(["target", "add"])
                .args(&missing),
            "adding the wasm targets with rustup",
        );
    }
}

fn run(command: &mut Command, what: &str) {
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("{what}: {command:?} exited with {status}"),
        Err(error) => panic!("{what}: could not start {command:?}: {error}"),
    }
}

/// Registers every file under `dir` except those in a `target` directory. Files, not the
/// directory itself: cargo would scan a directory recursively, target directories included.
fn rerun_if_changed(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|name| name == "target") {
            continue;
        }
        if path.is_dir() {
            rerun_if_changed(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
