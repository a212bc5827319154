//! kubectl's typed `create` generators against a real `skiff server`. kubectl sends
//! their objects only in Kubernetes protobuf and never retries as JSON, so each of these
//! passes only because skiff reads that protobuf (the control plane's
//! `apiserver/protobuf.rs`). Every object is read back with `kubectl get`; the
//! Deployment's pods run, the Job completes, and the RBAC objects grant what they say.

use crate::kubectl::{Kubectl, cluster, ticker};

/// `kubectl get ARGS -o jsonpath=PATH`.
fn jsonpath(kubectl: &Kubectl, args: &[&str], path: &str) -> String {
    let output = format!("jsonpath={path}");
    let mut full = vec!["get"];
    full.extend(args);
    full.extend(["-o", output.as_str()]);
    kubectl.ok(&full)
}

#[test]
fn create_generators_make_their_objects_from_protobuf() {
    let dir = tempfile::tempdir().unwrap();
    let (server, kubectl) = cluster(dir.path());

    assert_eq!(
        kubectl.ok(&["create", "namespace", "team"]),
        "namespace/team created\n"
    );
    assert_eq!(
        jsonpath(&kubectl, &["namespace", "team"], "{.status.phase}"),
        "Active"
    );

    // A ConfigMap from literals; a server-side dry run creates nothing.
    let created = kubectl.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=fast",
        "--from-literal=level=3",
    ]);
    assert_eq!(created, "configmap/settings created\n");
    assert_eq!(
        jsonpath(&kubectl, &["cm", "settings"], "{.data.mode} {.data.level}"),
        "fast 3"
    );
    let dry = kubectl.ok(&[
        "create",
        "configmap",
        "draft",
        "--from-literal=a=b",
        "--dry-run=server",
    ]);
    assert_eq!(dry, "configmap/draft created (server dry run)\n");
    let missing = kubectl.fails(&["get", "cm", "draft"]);
    assert!(missing.contains("NotFound"), "{missing}");

    // Secrets: the literal comes back, base64 in `data` as in Kubernetes.
    let created = kubectl.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=hunter2",
    ]);
    assert_eq!(created, "secret/creds created\n");
    assert_eq!(
        jsonpath(&kubectl, &["secret", "creds"], "{.type} {.data.password}"),
        "Opaque aHVudGVyMg=="
    );
    let password = kubectl.ok(&[
        "get",
        "secret",
        "creds",
        "-o",
        "go-template={{.data.password | base64decode}}",
    ]);
    assert_eq!(password, "hunter2");
    kubectl.ok(&[
        "create",
        "secret",
        "docker-registry",
        "registry",
        "--docker-server=registry.example",
        "--docker-username=u",
        "--docker-password=p",
    ]);
    let config = kubectl.ok(&[
        "get",
        "secret",
        "registry",
        "-o",
        "go-template={{.type}} {{index .data \".dockerconfigjson\" | base64decode}}",
    ]);
    assert!(
        config.starts_with("kubernetes.io/dockerconfigjson {\"auths\":{\"registry.example\":"),
        "{config}"
    );

    // A Deployment of two tickers, whose pods become ready.
    let image = format!("--image={}", ticker());
    let created = kubectl.ok(&["create", "deployment", "web", &image, "--replicas=2"]);
    assert_eq!(created, "deployment.apps/web created\n");
    let rolled_out = kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(
        rolled_out.ends_with("deployment \"web\" successfully rolled out\n"),
        "{rolled_out}"
    );
    assert_eq!(
        jsonpath(
            &kubectl,
            &["deploy", "web"],
            "{.spec.replicas} {.status.readyReplicas} {.spec.selector.matchLabels.app} \
             {.spec.template.spec.containers[0].image}"
        ),
        format!("2 2 web {}", ticker())
    );

    // Services: a ClusterIP one gets an address, a NodePort one a port in the range.
    let created = kubectl.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    assert_eq!(created, "service/web created\n");
    let service = jsonpath(
        &kubectl,
        &["svc", "web"],
        "{.spec.type} {.spec.ports[0].port} {.spec.ports[0].targetPort} \
         {.spec.selector.app} {.spec.clusterIP}",
    );
    let fields: Vec<&str> = service.split(' ').collect();
    assert_eq!(fields[..4], ["ClusterIP", "80", "8080", "web"], "{service}");
    assert!(
        fields[4].parse::<std::net::IpAddr>().is_ok(),
        "a ClusterIP: {service}"
    );
    kubectl.ok(&["create", "service", "nodeport", "edge", "--tcp=80:8080"]);
    let node_port = jsonpath(&kubectl, &["svc", "edge"], "{.spec.ports[0].nodePort}");
    assert!(
        node_port
            .parse::<u16>()
            .is_ok_and(|port| (30000..=32767).contains(&port)),
        "{node_port}"
    );

    // A Job that runs the hello module to completion.
    let hello = format!("--image=file:{}", skiff_samples::HELLO);
    let created = kubectl.ok(&["create", "job", "once", &hello]);
    assert_eq!(created, "job.batch/once created\n");
    let done = kubectl.ok(&[
        "wait",
        "--for=condition=complete",
        "job/once",
        "--timeout=90s",
    ]);
    assert_eq!(done, "job.batch/once condition met\n");
    assert_eq!(
        jsonpath(
            &kubectl,
            &["job", "once"],
            "{.spec.template.spec.restartPolicy} {.status.succeeded}"
        ),
        "Never 1"
    );

    // RBAC: a viewer of team may not read its secrets or the nodes until a Role and
    // ClusterRole made by the generators are bound to them.
    let made = server.cli(&[
        "create",
        "token",
        "--role",
        "viewer",
        "--namespace",
        "team",
        "--name",
        "viewer",
    ]);
    assert!(made.status.success(), "skiff create token: {made:?}");
    let token = String::from_utf8(made.stdout).unwrap().trim().to_string();
    let read_secrets = [
        "--token", &token, "auth", "can-i", "get", "secrets", "-n", "team",
    ];
    let list_nodes = ["--token", &token, "auth", "can-i", "list", "nodes"];
    for question in [&read_secrets[..], &list_nodes] {
        let out = kubectl.run(question);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "no\n", "{question:?}");
    }

    let created = kubectl.ok(&[
        "create",
        "role",
        "secret-reader",
        "--verb=get,list",
        "--resource=secrets,deployments.apps",
        "-n",
        "team",
    ]);
    assert_eq!(
        created,
        "role.rbac.authorization.k8s.io/secret-reader created\n"
    );
    assert_eq!(
        jsonpath(
            &kubectl,
            &["role", "secret-reader", "-n", "team"],
            "{.rules[*].resources} {.rules[*].apiGroups}"
        ),
        r#"["secrets"] ["deployments"] [""] ["apps"]"#
    );
    let created = kubectl.ok(&[
        "create",
        "rolebinding",
        "viewer-secrets",
        "--role=secret-reader",
        "--user=viewer",
        "-n",
        "team",
    ]);
    assert_eq!(
        created,
        "rolebinding.rbac.authorization.k8s.io/viewer-secrets created\n"
    );
    assert_eq!(
        jsonpath(
            &kubectl,
            &["rolebinding", "viewer-secrets", "-n", "team"],
            "{.roleRef.kind}/{.roleRef.name} {.subjects[0].kind}/{.subjects[0].name}"
        ),
        "Role/secret-reader User/viewer"
    );
    kubectl.wait_for_output(&read_secrets, "yes\n");

    let created = kubectl.ok(&[
        "create",
        "clusterrole",
        "node-reader",
        "--verb=get,list,watch",
        "--resource=nodes",
    ]);
    assert_eq!(
        created,
        "clusterrole.rbac.authorization.k8s.io/node-reader created\n"
    );
    let created = kubectl.ok(&[
        "create",
        "clusterrolebinding",
        "viewer-nodes",
        "--clusterrole=node-reader",
        "--user=viewer",
    ]);
    assert_eq!(
        created,
        "clusterrolebinding.rbac.authorization.k8s.io/viewer-nodes created\n"
    );
    assert_eq!(
        jsonpath(
            &kubectl,
            &["clusterrolebinding", "viewer-nodes"],
            "{.roleRef.kind}/{.roleRef.name} {.subjects[0].name}"
        ),
        "ClusterRole/node-reader viewer"
    );
    kubectl.wait_for_output(&list_nodes, "yes\n");
}
