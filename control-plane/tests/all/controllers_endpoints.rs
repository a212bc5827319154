//! The endpoints controller against a real API server; the test plays the node.

use serde_json::json;
use skiff_api::core::{EndpointSubset, Endpoints, Pod, Service};
use skiff_client::{Api, DeleteParams};

use crate::controllers_support::{Cluster, WAIT, wait_for};

fn pod(name: &str, named_port: bool) -> Pod {
    let ports = if named_port {
        json!([{ "name": "http", "containerPort": 8080 }])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": "ep" } },
        "spec": { "containers": [{ "name": "main", "image": "hello.wasm", "ports": ports }] },
    }))
    .unwrap()
}

/// (ready IPs, not ready IPs, port numbers) of each subset.
fn shape(subsets: &[EndpointSubset]) -> Vec<(Vec<String>, Vec<String>, Vec<i32>)> {
    subsets
        .iter()
        .map(|s| {
            (
                s.addresses.iter().map(|a| a.ip.clone()).collect(),
                s.not_ready_addresses.iter().map(|a| a.ip.clone()).collect(),
                s.ports.iter().map(|p| p.port).collect(),
            )
        })
        .collect()
}

async fn expect_shape(
    api: &Api<Endpoints>,
    what: &str,
    wanted: Vec<(Vec<&str>, Vec<&str>, Vec<i32>)>,
) -> Endpoints {
    let wanted: Vec<(Vec<String>, Vec<String>, Vec<i32>)> = wanted
        .into_iter()
        .map(|(a, n, p)| {
            (
                a.into_iter().map(String::from).collect(),
                n.into_iter().map(String::from).collect(),
                p,
            )
        })
        .collect();
    wait_for(what, WAIT, || async {
        let ep = api.get_opt("front").await.unwrap()?;
        let mut got = shape(&ep.subsets);
        got.sort();
        let mut want = wanted.clone();
        want.sort();
        (got == want).then_some(ep)
    })
    .await
}

#[tokio::test]
async fn endpoints_follow_pod_readiness() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let pods: Api<Pod> = cluster.api("default");
    let endpoints: Api<Endpoints> = cluster.api("default");
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": "front", "labels": { "tier": "edge" } },
        "spec": {
            "selector": { "app": "ep" },
            "ports": [
                { "name": "web", "port": 80, "targetPort": "http" },
                { "name": "raw", "port": 81, "targetPort": 9000 },
            ],
        },
    }))
    .unwrap();
    cluster
        .api::<Service>("default")
        .create(&service)
        .await
        .unwrap();
    pods.create(&pod("p1", true)).await.unwrap();
    pods.create(&pod("p2", true)).await.unwrap();

    // Without IPs nobody is listed, but the object exists and carries the labels.
    let ep = expect_shape(&endpoints, "empty endpoints", vec![]).await;
    assert_eq!(
        ep.metadata.labels.get("tier").map(String::as_str),
        Some("edge")
    );

    cluster
        .set_pod_state("default", "p1", "10.0.0.1", true)
        .await;
    cluster
        .set_pod_state("default", "p2", "10.0.0.2", false)
        .await;
    let ep = expect_shape(
        &endpoints,
        "p1 ready, p2 not",
        vec![(vec!["10.0.0.1"], vec!["10.0.0.2"], vec![8080, 9000])],
    )
    .await;
    let address = &ep.subsets[0].addresses[0];
    let target = address.target_ref.as_ref().expect("targetRef");
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("p1"))
    );
    let names: Vec<Option<&str>> = ep.subsets[0]
        .ports
        .iter()
        .map(|p| p.name.as_deref())
        .collect();
    assert!(names.contains(&Some("web")) && names.contains(&Some("raw")));

    cluster
        .set_pod_state("default", "p2", "10.0.0.2", true)
        .await;
    cluster
        .set_pod_state("default", "p1", "10.0.0.1", false)
        .await;
    expect_shape(
        &endpoints,
        "p2 ready, p1 not",
        vec![(vec!["10.0.0.2"], vec!["10.0.0.1"], vec![8080, 9000])],
    )
    .await;

    // A pod without the named port serves only the numbered one: a subset of its own.
    pods.create(&pod("p3", false)).await.unwrap();
    cluster
        .set_pod_state("default", "p3", "10.0.0.3", true)
        .await;
    expect_shape(
        &endpoints,
        "p3 in a subset of its own",
        vec![
            (vec!["10.0.0.2"], vec!["10.0.0.1"], vec![8080, 9000]),
            (vec!["10.0.0.3"], vec![], vec![9000]),
        ],
    )
    .await;

    pods.delete("p2", &DeleteParams::default()).await.unwrap();
    expect_shape(
        &endpoints,
        "p2 gone",
        vec![
            (vec![], vec!["10.0.0.1"], vec![8080, 9000]),
            (vec!["10.0.0.3"], vec![], vec![9000]),
        ],
    )
    .await;

    cluster
        .api::<Service>("default")
        .delete("front", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the endpoints to go with the service", WAIT, || async {
        endpoints
            .get_opt("front")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}
