//! `skiff run`: one workload run locally, end to end through the real binary.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// The output of a finished `skiff run`.
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn skiff(args: &[&str], cache: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
    command
        .arg("run")
        .args(args)
        .env("SKIFF_CACHE_DIR", cache)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs `skiff run ARGS` to completion, failing the test if it takes over a minute.
async fn run(args: &[&str]) -> Finished {
    let cache = tempfile::tempdir().unwrap();
    let output = skiff(args, cache.path()).output();
    let output = match tokio::time::timeout(Duration::from_secs(60), output).await {
        Ok(output) => output.expect("starting skiff"),
        Err(_) => panic!("skiff run {args:?} did not finish within 60s: likely deadlocked"),
    };
    Finished {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn hello_prints_and_exits_zero() {
    let finished = run(&[
        skiff_samples::HELLO,
        "--env",
        "GREETING=ahoy",
        "--",
        "first",
        "second",
    ])
    .await;
    assert_eq!(finished.code, Some(0), "stderr: {}", finished.stderr);
    assert_eq!(
        finished.stdout,
        "hello from wasm\narg: first\narg: second\nGREETING=ahoy\n"
    );
    assert!(
        finished.stderr.contains("hello on stderr"),
        "{}",
        finished.stderr
    );
}

#[tokio::test]
async fn a_preview2_command_runs_too() {
    let finished = run(&[skiff_samples::HELLO_P2]).await;
    assert_eq!(finished.code, Some(0), "stderr: {}", finished.stderr);
    assert_eq!(finished.stdout, "hello from wasm\n");
}

#[tokio::test]
async fn the_guest_exit_code_propagates() {
    let finished = run(&[
        "--env",
        "EXIT_CODE=7",
        "--env",
        "CRASH_AFTER_MS=10",
        skiff_samples::CRASHER,
    ])
    .await;
    assert_eq!(finished.code, Some(7), "stderr: {}", finished.stderr);
    assert!(
        finished.stderr.contains("crasher exiting with 7"),
        "{}",
        finished.stderr
    );
}

#[tokio::test]
async fn a_trap_fails_with_its_message() {
    let finished = run(&[skiff_samples::TRAPPER]).await;
    assert_eq!(finished.code, Some(134));
    assert!(
        finished.stderr.contains("trapped") && finished.stderr.contains("unreachable"),
        "{}",
        finished.stderr
    );
}

#[tokio::test]
async fn a_guest_over_its_memory_limit_fails_as_out_of_memory() {
    let finished = run(&[
        "--memory",
        "32Mi",
        "--env",
        "STEP_MS=1",
        skiff_samples::MEMHOG,
    ])
    .await;
    assert_eq!(finished.code, Some(137));
    assert!(
        finished.stderr.contains("out of memory"),
        "{}",
        finished.stderr
    );
}

#[tokio::test]
async fn a_volume_is_visible_and_read_only_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let rw = format!("{}:/data", dir.path().display());
    let ro = format!("{}:/data:ro", dir.path().display());

    let written = run(&[
        "--volume",
        &rw,
        "--env",
        "CONTENT=through skiff run",
        skiff_samples::WRITER,
    ])
    .await;
    assert_eq!(written.code, Some(0), "stderr: {}", written.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("message.txt")).unwrap(),
        "through skiff run"
    );

    let read = run(&["--volume", &ro, skiff_samples::READER]).await;
    assert_eq!(read.code, Some(0), "stderr: {}", read.stderr);
    assert_eq!(read.stdout, "through skiff run\n");

    let refused = run(&[
        "--volume",
        &ro,
        skiff_samples::WRITER,
        "--",
        "/data/other.txt",
    ])
    .await;
    assert_eq!(refused.code, Some(1), "a read-only volume took a write");
    assert!(
        refused.stderr.contains("write /data/other.txt"),
        "{}",
        refused.stderr
    );
    assert!(!dir.path().join("other.txt").exists());
}

#[tokio::test]
async fn bad_flags_are_refused_with_a_message() {
    let finished = run(&["--memory", "lots", skiff_samples::HELLO]).await;
    assert_ne!(finished.code, Some(0));
    assert!(finished.stderr.contains("lots"), "{}", finished.stderr);
}

#[tokio::test]
async fn http_hello_is_served_with_listen() {
    let cache = tempfile::tempdir().unwrap();
    let mut child = skiff(
        &[
            "--listen",
            "127.0.0.1:0",
            "--env",
            "POD_NAME=e2e-pod",
            skiff_samples::HTTP_HELLO,
        ],
        cache.path(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .expect("starting skiff");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    match tokio::time::timeout(Duration::from_secs(60), stdout.read_line(&mut line)).await {
        Ok(read) => read.unwrap(),
        Err(_) => panic!("skiff run --listen printed no address within 60s: likely deadlocked"),
    };
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    for path in ["/", "/again"] {
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        };
        let response = match tokio::time::timeout(Duration::from_secs(30), exchange).await {
            Ok(response) => response,
            Err(_) => panic!("no HTTP response from skiff run within 30s: likely deadlocked"),
        };
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(
            response.contains(&format!("hello from e2e-pod at {path}\n")),
            "{response}"
        );
    }
    child.kill().await.unwrap();
}
