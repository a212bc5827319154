//! Jobs end to end: `skiff create job` over a sample that fails half the time, its pods
//! run as wasm on the embedded node and counted by the Job controller.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::Server;

const JOB: &str = "/apis/batch/v1/namespaces/default/jobs/flaky";
const PODS: &str =
    "/api/v1/namespaces/default/pods?labelSelector=batch.kubernetes.io%2Fjob-name%3Dflaky";
const COMPLETIONS: i64 = 20;
const PARALLELISM: usize = 5;
/// About as many failures as a fair coin gives before its 20th success (20 on average,
/// give or take 6): the Job completes about half the time and fails the other half, and
/// the test checks each outcome for what it must be.
const BACKOFF_LIMIT: i64 = 20;

/// Runs the CLI against the server and returns its standard output, failing on error.
fn skiff(server: &Server, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--kubeconfig")
        .arg(server.data_dir.join("kubeconfig"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skiff {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

fn deleting(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_string()
}

/// The condition of `type_` that holds, if any.
fn condition<'a>(job: &'a Value, type_: &str) -> Option<&'a Value> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

#[test]
fn a_flaky_job_completes_within_its_backoff_limit_or_fails_for_exceeding_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &["--name", "node-a", "--restart-backoff", "100ms"],
    );
    let image = format!("file:{}", skiff_samples::CRASHER);
    let created = skiff(
        &server,
        &[
            "create",
            "job",
            "flaky",
            "--image",
            &image,
            "--completions",
            &COMPLETIONS.to_string(),
            "--parallelism",
            &PARALLELISM.to_string(),
            "--backoff-limit",
            &BACKOFF_LIMIT.to_string(),
            "--env",
            "FAIL_PERCENT=50",
            "--env",
            "CRASH_AFTER_MS=20",
        ],
    );
    assert_eq!(created, "job.batch/flaky created\n");

    // While it runs, never more than `parallelism` pods are active at once.
    let start = Instant::now();
    let mut most_active = 0;
    let job = loop {
        let job = server.get(JOB);
        let pods = server.get(PODS);
        let active = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| !deleting(p) && !matches!(phase(p), "Succeeded" | "Failed"))
            .count();
        assert!(active <= PARALLELISM, "{active} pods active at once");
        most_active = most_active.max(active);
        if condition(&job, "Complete").is_some() || condition(&job, "Failed").is_some() {
            break job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the job did not finish in 60 s: {}",
            job["status"]
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        most_active >= 2,
        "pods ran side by side ({most_active} seen)"
    );

    // Pods it stopped go; the finished ones stay, each counted once.
    let mut pods = Vec::new();
    crate::support::wait_for("the stopped pods to go", Duration::from_secs(30), || {
        pods = server.get(PODS)["items"].as_array().unwrap().clone();
        pods.iter()
            .all(|p| !deleting(p) && matches!(phase(p), "Succeeded" | "Failed"))
    });
    let count = |wanted: &str| pods.iter().filter(|p| phase(p) == wanted).count() as i64;
    let (succeeded_pods, failed_pods) = (count("Succeeded"), count("Failed"));
    let status = &job["status"];
    eprintln!(
        "the job ended {} after {:?}: {status}",
        if condition(&job, "Complete").is_some() {
            "Complete"
        } else {
            "Failed"
        },
        start.elapsed()
    );
    let (succeeded, failed) = (
        status["succeeded"].as_i64().unwrap_or(0),
        status["failed"].as_i64().unwrap_or(0),
    );
    assert_eq!(status["active"].as_i64().unwrap_or(0), 0, "{status}");
    assert_eq!(succeeded, succeeded_pods, "{status}");
    let failed_exit = pods
        .iter()
        .filter(|p| phase(p) == "Failed")
        .all(|p| p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3);
    assert!(failed_exit, "failed pods exited with EXIT_CODE");

    let table = skiff(&server, &["get", "jobs"]);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("flaky "))
        .unwrap_or_else(|| panic!("no row for the job in:\n{table}"))
        .split_whitespace()
        .collect();
    assert!(table.starts_with("NAME"), "{table}");

    if condition(&job, "Complete").is_some() {
        assert_eq!(succeeded, COMPLETIONS, "{status}");
        assert_eq!(failed, failed_pods, "{status}");
        assert!(failed <= BACKOFF_LIMIT, "{status}");
        assert!(status["completionTime"].is_string(), "{status}");
        assert_eq!(row[..3], ["flaky", "Complete", "20/20"], "{table}");
    } else {
        let failure = condition(&job, "Failed").unwrap();
        assert_eq!(failure["reason"], "BackoffLimitExceeded", "{job}");
        assert!(succeeded < COMPLETIONS, "{status}");
        assert!(failed_pods > BACKOFF_LIMIT, "{status}");
        // The pods running when it failed were stopped and count as failed: each one
        // told by a SuccessfulDelete event.
        let events = server
            .get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dflaky");
        let stopped: HashSet<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["reason"] == "SuccessfulDelete")
            .filter_map(|e| e["message"].as_str())
            .collect();
        assert_eq!(failed, failed_pods + stopped.len() as i64, "{status}");
        assert!(status["completionTime"].is_null(), "{status}");
        assert_eq!(
            row[..3],
            ["flaky", "Failed", &format!("{succeeded}/20")],
            "{table}"
        );
    }
}
