//! Every acknowledged write survives `kill -9` of the server, and resourceVersions
//! never go backwards across the restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, wait_for};

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let url = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let acknowledged: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    // Eight writers stream creates and record each one the server acknowledged.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let client = server.client();
            let url = url.clone();
            let token = server.token.clone();
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let name = format!("w{w}-{i}");
                    let body =
                        json!({ "metadata": { "name": name }, "data": { "i": i.to_string() } });
                    match client.post(&url).bearer_auth(&token).json(&body).send() {
                        Ok(response) if response.status().as_u16() == 201 => {
                            let object: Value = response.json().expect("created object");
                            let rv = object["metadata"]["resourceVersion"]
                                .as_str()
                                .unwrap()
                                .parse()
                                .unwrap();
                            acknowledged.lock().unwrap().push((name, rv));
                        }
                        // The server died mid-request: this write was never acknowledged.
                        _ => break,
                    }
                }
            })
        })
        .collect();

    wait_for(
        "some writes to be acknowledged",
        Duration::from_secs(60),
        || acknowledged.lock().unwrap().len() >= 300,
    );
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let highest = acknowledged.iter().map(|(_, rv)| *rv).max().unwrap();

    let server = Server::start(dir.path());
    let url = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let list: Value = server
        .client()
        .get(&url)
        .bearer_auth(&server.token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let present: std::collections::HashMap<String, u64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["metadata"]["name"].as_str().unwrap().to_string(),
                item["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            )
        })
        .collect();
    for (name, rv) in &acknowledged {
        assert_eq!(
            present.get(name),
            Some(rv),
            "acknowledged write {name} at revision {rv} was lost"
        );
    }
    let list_rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        list_rv >= highest,
        "resourceVersion went backwards: {list_rv} < {highest}"
    );

    let after: Value = server
        .client()
        .post(&url)
        .bearer_auth(&server.token)
        .json(&json!({ "metadata": { "name": "after-restart" } }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let after_rv: u64 = after["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        after_rv > list_rv,
        "new writes continue past every revision handed out"
    );
    eprintln!(
        "{} acknowledged writes all present after SIGKILL",
        acknowledged.len()
    );
}
