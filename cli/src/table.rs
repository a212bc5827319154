//! Table output like kubectl's: the columns kubectl shows for each kind.

use std::time::SystemTime;

use serde_json::Value;

/// Column headers and the row of one object, for `kind` (`-o wide` adds columns).
pub fn columns(kind: &str, wide: bool) -> Vec<&'static str> {
    let mut columns = match kind {
        "Pod" => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "Deployment" => vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "ReplicaSet" => vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        "Service" => vec![
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
        ],
        "Node" => vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "Namespace" => vec!["NAME", "STATUS", "AGE"],
        "ConfigMap" => vec!["NAME", "DATA", "AGE"],
        "Secret" => vec!["NAME", "TYPE", "DATA", "AGE"],
        "Endpoints" => vec!["NAME", "ENDPOINTS", "AGE"],
        "Event" => vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "Lease" => vec!["NAME", "HOLDER", "AGE"],
        "Job" => vec!["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        _ => vec!["NAME", "AGE"],
    };
    if wide {
        match kind {
            "Pod" => columns.extend(["IP", "NODE"]),
            "Deployment" | "ReplicaSet" | "Job" => {
                columns.extend(["CONTAINERS", "IMAGES", "SELECTOR"])
            }
            "Service" => columns.push("SELECTOR"),
            "Node" => columns.extend(["INTERNAL-IP", "OS-IMAGE"]),
            _ => {}
        }
    }
    columns
}

pub fn row(kind: &str, object: &Value, wide: bool) -> Vec<String> {
    let s = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let n = |pointer: &str| object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    let name = s("/metadata/name");
    let age = age(object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str));
    let mut row = match kind {
        "Pod" => {
            let statuses = object
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = object
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|c| c["ready"].as_bool() == Some(true))
                .count();
            let restarts: i64 = statuses
                .iter()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum();
            vec![
                name,
                format!("{ready}/{total}"),
                pod_status(object),
                restarts.to_string(),
                age,
            ]
        }
        "Deployment" => vec![
            name,
            format!(
                "{}/{}",
                n("/status/readyReplicas"),
                object
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            ),
            n("/status/updatedReplicas").to_string(),
            n("/status/availableReplicas").to_string(),
            age,
        ],
        "ReplicaSet" => vec![
            name,
            object
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .to_string(),
            n("/status/replicas").to_string(),
            n("/status/readyReplicas").to_string(),
            age,
        ],
        "Service" => {
            let ports = object
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ports| {
                    ports
                        .iter()
                        .map(|p| {
                            let port = p["port"].as_i64().unwrap_or(0);
                            let protocol = p["protocol"].as_str().unwrap_or("TCP");
                            match p["nodePort"].as_i64() {
                                Some(node) => format!("{port}:{node}/{protocol}"),
                                None => format!("{port}/{protocol}"),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let cluster_ip = s("/spec/clusterIP");
            vec![
                name,
                s("/spec/type"),
                if cluster_ip.is_empty() {
                    "<none>".into()
                } else {
                    cluster_ip
                },
                "<none>".into(),
                or_none(ports),
                age,
            ]
        }
        "Node" => {
            let ready = object
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            let status = if object
                .pointer("/spec/unschedulable")
                .and_then(Value::as_bool)
                == Some(true)
            {
                format!("{ready},SchedulingDisabled")
            } else {
                ready.to_string()
            };
            vec![
                name,
                status,
                "<none>".into(),
                age,
                s("/status/nodeInfo/kubeletVersion"),
            ]
        }
        "Namespace" => vec![name, s("/status/phase"), age],
        "ConfigMap" => {
            let count = object
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + object
                    .get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
            vec![name, count.to_string(), age]
        }
        "Secret" => vec![
            name,
            s("/type"),
            object
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                .to_string(),
            age,
        ],
        "Endpoints" => {
            let mut endpoints = Vec::new();
            for subset in object
                .get("subsets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for address in subset["addresses"].as_array().into_iter().flatten() {
                    for port in subset["ports"].as_array().into_iter().flatten() {
                        endpoints.push(format!(
                            "{}:{}",
                            address["ip"].as_str().unwrap_or(""),
                            port["port"]
                        ));
                    }
                }
            }
            vec![name, or_none(endpoints.join(",")), age]
        }
        "Event" => {
            let last = object
                .get("lastTimestamp")
                .or_else(|| object.get("eventTime"))
                .and_then(Value::as_str);
            vec![
                self::age(last),
                s("/type"),
                s("/reason"),
                format!(
                    "{}/{}",
                    s("/involvedObject/kind").to_lowercase(),
                    s("/involvedObject/name")
                ),
                s("/message"),
            ]
        }
        "Lease" => vec![name, s("/spec/holderIdentity"), age],
        "Job" => vec![
            name,
            job_status(object),
            job_completions(object),
            job_duration(object),
            age,
        ],
        _ => vec![name, age],
    };
    if wide {
        match kind {
            "Pod" => {
                row.push(or_none(s("/status/podIP")));
                row.push(or_none(s("/spec/nodeName")));
            }
            "Deployment" | "ReplicaSet" | "Job" => {
                let containers = object
                    .pointer("/spec/template/spec/containers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                row.push(
                    containers
                        .iter()
                        .filter_map(|c| c["name"].as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                );
                row.push(
                    containers
                        .iter()
                        .filter_map(|c| c["image"].as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                );
                row.push(selector(object.pointer("/spec/selector/matchLabels")));
            }
            "Service" => row.push(selector(object.pointer("/spec/selector"))),
            "Node" => {
                let ip = object
                    .pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
                    .and_then(|a| a["address"].as_str())
                    .unwrap_or("<none>")
                    .to_string();
                row.push(ip);
                row.push(or_none(s("/status/nodeInfo/osImage")));
            }
            _ => {}
        }
    }
    row
}

/// The STATUS column of a pod: a waiting or terminated reason when there is one,
/// `Terminating` while deleting, the phase otherwise.
fn pod_status(pod: &Value) -> String {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    for status in pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(reason) = status
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
        {
            return reason.to_string();
        }
        if let Some(reason) = status
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
            && pod.pointer("/status/phase").and_then(Value::as_str) != Some("Succeeded")
        {
            return reason.to_string();
        }
    }
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Unknown")
        .to_string()
}

/// The STATUS column of a Job, as kubectl shows it: a finished Job's outcome first,
/// then `Terminating`, `Suspended`, the conditions that come before the outcome, and
/// `Running` otherwise.
fn job_status(job: &Value) -> String {
    let holds = |type_: &str| {
        job.pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    };
    let status = if holds("Complete") {
        "Complete"
    } else if holds("Failed") {
        "Failed"
    } else if job.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if holds("Suspended") {
        "Suspended"
    } else if holds("FailureTarget") {
        "FailureTarget"
    } else if holds("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    status.to_string()
}

/// The COMPLETIONS column of a Job: `succeeded/completions`, or for a work-queue Job
/// (no completions) `succeeded/1 of parallelism`, as kubectl shows them.
fn job_completions(job: &Value) -> String {
    let succeeded = job
        .pointer("/status/succeeded")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let parallelism = job
        .pointer("/spec/parallelism")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    match job.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
        None => format!("{succeeded}/1"),
    }
}

/// The DURATION column of a Job: from its start to its completion, or to now while it
/// runs; empty before it starts.
fn job_duration(job: &Value) -> String {
    let time = |pointer: &str| {
        job.pointer(pointer)
            .and_then(Value::as_str)
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    };
    let Some(start) = time("/status/startTime") else {
        return String::new();
    };
    let end = time("/status/completionTime").unwrap_or_else(SystemTime::now);
    skiff_api::meta::human_duration(end.duration_since(start).map_or(0, |d| d.as_secs()))
}

fn selector(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "<none>".into())
}

fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

/// kubectl's compact age: `45s`, `5m`, `3h`, `2d`.
pub fn age(timestamp: Option<&str>) -> String {
    let Some(time) = timestamp.and_then(|t| humantime::parse_rfc3339_weak(t).ok()) else {
        return "<unknown>".into();
    };
    let seconds = SystemTime::now()
        .duration_since(time)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Renders rows aligned in columns separated by three spaces, as kubectl does.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_rows_show_readiness_reason_and_restarts() {
        let pod = json!({
            "metadata": { "name": "web", "creationTimestamp": "2020-01-01T00:00:00Z" },
            "spec": { "containers": [{ "name": "a" }, { "name": "b" }], "nodeName": "n1" },
            "status": { "phase": "Running", "podIP": "10.244.0.5", "containerStatuses": [
                { "name": "a", "ready": true, "restartCount": 1, "state": { "running": {} } },
                { "name": "b", "ready": false, "restartCount": 3, "state": { "waiting": { "reason": "CrashLoopBackOff" } } },
            ] },
        });
        let row = row("Pod", &pod, true);
        assert_eq!(row[..4], ["web", "1/2", "CrashLoopBackOff", "4"]);
        assert!(row[4].ends_with('d'));
        assert_eq!(row[5..], ["10.244.0.5", "n1"]);
    }

    #[test]
    fn job_rows_show_status_completions_and_duration() {
        let running = json!({
            "metadata": { "name": "pi", "creationTimestamp": "2020-01-01T00:00:00Z" },
            "spec": { "completions": 20, "parallelism": 5, "selector": { "matchLabels": { "batch.kubernetes.io/controller-uid": "u1" } },
                      "template": { "spec": { "containers": [{ "name": "pi", "image": "pi.wasm" }] } } },
            "status": { "succeeded": 3, "startTime": "2020-01-01T00:00:00Z" },
        });
        let cells = row("Job", &running, true);
        assert_eq!(cells[..3], ["pi", "Running", "3/20"]);
        assert!(cells[3].contains('y'), "running since 2020: {}", cells[3]);
        assert_eq!(
            cells[5..],
            ["pi", "pi.wasm", "batch.kubernetes.io/controller-uid=u1"]
        );
        assert_eq!(
            columns("Job", false),
            ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
        );

        let done = json!({
            "metadata": { "name": "pi" },
            "spec": { "completions": 1 },
            "status": { "succeeded": 1, "startTime": "2020-01-01T00:00:00Z", "completionTime": "2020-01-01T00:05:30Z",
                        "conditions": [{ "type": "SuccessCriteriaMet", "status": "True" }, { "type": "Complete", "status": "True" }] },
        });
        assert_eq!(
            row("Job", &done, false)[..4],
            ["pi", "Complete", "1/1", "5m30s"]
        );
        let failed = json!({
            "metadata": { "name": "pi" },
            "spec": { "parallelism": 3 },
            "status": { "failed": 7, "conditions": [{ "type": "FailureTarget", "status": "True" }, { "type": "Failed", "status": "True" }] },
        });
        assert_eq!(
            row("Job", &failed, false)[..4],
            ["pi", "Failed", "0/1 of 3", ""]
        );
        let suspended = json!({
            "metadata": { "name": "pi" },
            "status": { "conditions": [{ "type": "Suspended", "status": "True" }] },
        });
        assert_eq!(
            row("Job", &suspended, false)[..3],
            ["pi", "Suspended", "0/1"]
        );
    }

    #[test]
    fn render_aligns_columns() {
        let text = render(
            &["NAME", "AGE"],
            &[
                vec!["a-long-name".into(), "5m".into()],
                vec!["b".into(), "1d".into()],
            ],
        );
        assert_eq!(
            text,
            "NAME          AGE\na-long-name   5m\nb             1d\n"
        );
    }
}
