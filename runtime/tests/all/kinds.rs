//! Each kind of workload is detected from the binary and runs.

use skiff_runtime::{ExitStatus, LoadError, LogStream, WorkloadKind};

use crate::{load, runtime, spec, within};

#[test]
fn every_sample_is_detected_as_its_kind() {
    let expected = [
        (skiff_samples::HELLO, WorkloadKind::Preview1Command),
        (skiff_samples::HELLO_P2, WorkloadKind::Preview2Command),
        (skiff_samples::TICKER, WorkloadKind::Preview1Command),
        (skiff_samples::CRASHER, WorkloadKind::Preview1Command),
        (skiff_samples::TRAPPER, WorkloadKind::Preview1Command),
        (skiff_samples::MEMHOG, WorkloadKind::Preview1Command),
        (skiff_samples::CPUSPIN, WorkloadKind::Preview1Command),
        (skiff_samples::HTTP_HELLO, WorkloadKind::HttpService),
        (skiff_samples::TCP_ECHO, WorkloadKind::Preview2Command),
        (skiff_samples::WRITER, WorkloadKind::Preview1Command),
        (skiff_samples::READER, WorkloadKind::Preview2Command),
        (skiff_samples::HTTP_LOAD, WorkloadKind::Preview2Command),
    ];
    assert_eq!(
        expected.len(),
        skiff_samples::ALL.len(),
        "a sample is missing from this test"
    );
    for (path, kind) in expected {
        assert_eq!(load(path).kind(), kind, "{path}");
    }
}

#[tokio::test]
async fn preview1_command_prints_args_and_env_and_exits_zero() {
    let workload = load(skiff_samples::HELLO);
    let (mut spec, sink) = spec("hello");
    spec.args = vec!["one".into(), "two words".into()];
    spec.env = vec![("GREETING".into(), "ahoy".into())];
    let container = runtime().start(&workload, spec).unwrap();
    assert_eq!(
        within(30, "hello", container.wait()).await,
        ExitStatus::Exited(0)
    );
    assert_eq!(
        sink.text(LogStream::Stdout),
        [
            "hello from wasm",
            "arg: one",
            "arg: two words",
            "GREETING=ahoy"
        ]
    );
    assert_eq!(sink.text(LogStream::Stderr), ["hello on stderr"]);
}

#[tokio::test]
async fn preview2_command_runs_with_args_and_env() {
    let workload = load(skiff_samples::HELLO_P2);
    let (mut spec, sink) = spec("hello-p2");
    spec.args = vec!["x".into()];
    spec.env = vec![("GREETING".into(), "hi".into())];
    let container = runtime().start(&workload, spec).unwrap();
    assert_eq!(
        within(30, "hello-p2", container.wait()).await,
        ExitStatus::Exited(0)
    );
    assert_eq!(
        sink.text(LogStream::Stdout),
        ["hello from wasm", "arg: x", "GREETING=hi"]
    );
}

#[tokio::test]
async fn the_host_environment_is_not_inherited() {
    // The test process's environment (PATH, HOME, ...) must not reach the guest.
    let workload = load(skiff_samples::HELLO);
    let (spec, sink) = spec("hello");
    let container = runtime().start(&workload, spec).unwrap();
    assert_eq!(
        within(30, "hello", container.wait()).await,
        ExitStatus::Exited(0)
    );
    assert!(std::env::var_os("PATH").is_some());
    assert_eq!(sink.text(LogStream::Stdout), ["hello from wasm"]);
}

#[test]
fn a_module_without_start_is_refused_naming_its_exports() {
    // (module (func (export "foo")))
    let module: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
        0x03, 0x02, 0x01, 0x00, // function section
        0x07, 0x07, 0x01, 0x03, b'f', b'o', b'o', 0x00, 0x00, // export "foo"
        0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code section
    ];
    let error = runtime().load(module).unwrap_err();
    assert!(
        matches!(&error, LoadError::UnknownKind { exports, .. } if exports == &["foo".to_string()]),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("exports foo") && message.contains("_start"),
        "{message}"
    );
}

#[test]
fn bytes_that_are_not_wasm_are_refused() {
    assert!(matches!(
        runtime().load(b"#!/bin/sh\necho hi\n"),
        Err(LoadError::NotWasm)
    ));
}

#[test]
fn invalid_wasm_is_a_compile_error() {
    let error = runtime().load(b"\0asm\x01\0\0\0\x01\xff").unwrap_err();
    assert!(
        matches!(error, LoadError::Compile { what: "module", .. }),
        "{error:?}"
    );
}
