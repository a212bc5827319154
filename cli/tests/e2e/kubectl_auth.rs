//! The real kubectl asking a real `skiff server` about access: `auth can-i` (yes or no,
//! exit code 0 or 1), `auth can-i --list` and `auth whoami`, as the admin and as a viewer
//! made with `skiff create token --role viewer`.

use crate::kubectl::{Kubectl, cluster};

/// `kubectl auth ARGS` as the kubeconfig's admin or, given a token, as its user: the
/// standard output and the exit code. kubectl must print nothing on standard error (no
/// warning about a resource discovery does not list).
fn auth(kubectl: &Kubectl, token: Option<&str>, args: &[&str]) -> (String, i32) {
    let mut full = Vec::new();
    if let Some(token) = token {
        full.extend(["--token", token]);
    }
    full.push("auth");
    full.extend(args);
    let out = kubectl.run(&full);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "kubectl {full:?}: {stderr}");
    let code = out.status.code().expect("kubectl exited");
    (String::from_utf8(out.stdout).unwrap(), code)
}

/// `kubectl auth can-i ARGS`: prints `yes` and exits 0, or prints `no` and exits 1.
fn can_i(kubectl: &Kubectl, token: Option<&str>, args: &[&str]) -> bool {
    let mut full = vec!["can-i"];
    full.extend(args);
    match auth(kubectl, token, &full) {
        (out, 0) if out == "yes\n" => true,
        (out, 1) if out == "no\n" => false,
        (out, code) => panic!("kubectl auth {full:?}: exit code {code}, printed {out:?}"),
    }
}

/// The rows of `kubectl auth can-i --list`: resource, non-resource URLs, resource names,
/// verbs.
fn list(kubectl: &Kubectl, token: Option<&str>, namespace: &str) -> Vec<Vec<String>> {
    let (out, code) = auth(kubectl, token, &["can-i", "--list", "-n", namespace]);
    assert_eq!(code, 0, "{out}");
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("Resources") && header.ends_with("Verbs"),
        "{out}"
    );
    lines
        .map(|line| {
            // A non-resource rule's row starts with an empty cell.
            let cells = line.split("  ").map(str::trim).filter(|c| !c.is_empty());
            let mut cells: Vec<String> = cells.map(String::from).collect();
            if line.starts_with(' ') {
                cells.insert(0, String::new());
            }
            cells
        })
        .collect()
}

#[test]
fn auth_can_i_and_whoami() {
    let dir = tempfile::tempdir().unwrap();
    let (server, kubectl) = cluster(dir.path());
    // From a manifest (`kubectl create namespace` is tested in kubectl_create.rs).
    kubectl.ok_with_input(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata: { name: team }\n",
    );
    let made = server.cli(&[
        "create",
        "token",
        "--role",
        "viewer",
        "--namespace",
        "team",
        "--name",
        "viewer-team",
    ]);
    assert!(made.status.success(), "skiff create token: {made:?}");
    let token = String::from_utf8(made.stdout).unwrap().trim().to_string();
    let viewer = Some(token.as_str());

    // The admin may do anything.
    for args in [
        &["delete", "pods", "-n", "team"][..],
        &["create", "deployments.apps", "-n", "team"],
        &["get", "secrets", "--all-namespaces"],
        &["*", "*"],
        &["get", "/metrics"],
    ] {
        assert!(can_i(&kubectl, None, args), "admin: {args:?}");
    }

    // The viewer reads team's workloads, nothing else.
    for (args, expected) in [
        (&["get", "pods", "-n", "team"][..], true),
        (&["list", "deployments.apps", "-n", "team"], true),
        (&["get", "pods", "--subresource", "log", "-n", "team"], true),
        (&["get", "pods/ticker", "-n", "team"], true),
        (&["delete", "pods", "-n", "team"], false),
        (&["create", "deployments.apps", "-n", "team"], false),
        (&["get", "secrets", "-n", "team"], false),
        (&["get", "pods", "-n", "default"], false),
        (&["get", "pods", "--all-namespaces"], false),
        (&["get", "/metrics"], false),
    ] {
        assert_eq!(can_i(&kubectl, viewer, args), expected, "viewer: {args:?}");
    }

    // `--list`: the viewer's rules in team (`view`, and what everyone may do); in
    // default only the latter.
    let rules = list(&kubectl, viewer, "team");
    let row = |rules: &[Vec<String>], resource: &str| {
        rules
            .iter()
            .find(|row| row.first().is_some_and(|r| r == resource))
            .cloned()
    };
    assert_eq!(
        row(&rules, "pods"),
        Some(vec![
            "pods".to_string(),
            "[]".into(),
            "[]".into(),
            "[get list watch]".into()
        ]),
        "{rules:?}"
    );
    assert!(row(&rules, "deployments.apps").is_some(), "{rules:?}");
    assert!(
        row(&rules, "selfsubjectaccessreviews.authorization.k8s.io").is_some(),
        "{rules:?}"
    );
    assert!(row(&rules, "secrets").is_none(), "{rules:?}");
    assert!(
        rules
            .iter()
            .any(|row| row.first().is_some_and(String::is_empty)
                && row.get(1).is_some_and(|urls| urls.contains("/api/*"))),
        "the discovery paths: {rules:?}"
    );
    let elsewhere = list(&kubectl, viewer, "default");
    assert!(row(&elsewhere, "pods").is_none(), "{elsewhere:?}");
    let admin_rules = list(&kubectl, None, "team");
    assert_eq!(
        row(&admin_rules, "*.*"),
        Some(vec![
            "*.*".to_string(),
            "[]".into(),
            "[]".into(),
            "[*]".into()
        ]),
        "{admin_rules:?}"
    );

    // `whoami`: the user and their groups.
    for (token, user, groups) in [
        (None, "admin", "[system:masters system:authenticated]"),
        (viewer, "viewer-team", "[system:authenticated]"),
    ] {
        let (out, code) = auth(&kubectl, token, &["whoami"]);
        assert_eq!(code, 0, "{out}");
        let rows: Vec<Vec<&str>> = out
            .lines()
            .map(|line| {
                line.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        assert_eq!(
            rows,
            [
                vec!["ATTRIBUTE", "VALUE"],
                vec!["Username", user],
                vec!["Groups", groups]
            ],
            "{out}"
        );
    }
    let (out, _) = auth(&kubectl, viewer, &["whoami", "-o", "json"]);
    let review: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(review["kind"], "SelfSubjectReview", "{out}");
    assert_eq!(review["status"]["userInfo"]["username"], "viewer-team");
}
