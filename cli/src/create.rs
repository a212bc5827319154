//! `skiff create job`: make an object from command-line flags, as `kubectl create` does.
//! `skiff create token`: a credential for a new identity with a built-in role.

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use crate::api::Api;

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    #[command(subcommand)]
    pub what: CreateCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum CreateCommand {
    /// Create a Job that runs a wasm module until it succeeds (`--completions` times).
    Job(CreateJobArgs),
    /// Create an API token for a new identity, bound to a built-in role; prints the
    /// token once (only its SHA-256 is kept).
    Token(CreateTokenArgs),
}

/// `skiff create token --role viewer|admin [--namespace NS] [--name NAME]`.
///
/// The token is made here and only its SHA-256 goes to the server, in a Secret
/// `kube-system/skiff-token-NAME` of type `skiff.dev/token` that the API server's
/// authenticator reads; deleting that Secret revokes the token. A viewer is bound to
/// ClusterRole `view` by a RoleBinding in its namespace (reads of workloads, not
/// Secrets); an admin to `cluster-admin` by a ClusterRoleBinding.
#[derive(clap::Args, Debug)]
pub struct CreateTokenArgs {
    /// What the token may do.
    #[arg(long, value_enum)]
    pub role: TokenRole,
    /// The namespace a viewer may read (default: the kubeconfig context's, else
    /// `default`). Not for admins, whose token is for the whole cluster.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The identity's user name, as messages and bindings show it (default:
    /// `viewer-NS-XXXXXX` or `admin-XXXXXX`). A DNS-1123 subdomain, not `system:...`.
    #[arg(long)]
    pub name: Option<String>,
}

/// The built-in roles a token can get.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRole {
    /// Read the workloads of one namespace (ClusterRole `view`).
    Viewer,
    /// Everything (ClusterRole `cluster-admin`).
    Admin,
}

/// `skiff create job NAME --image IMAGE [-- ARGS...]`: a `batch/v1` Job of one
/// container named after the Job. Unset counts take the server's defaults
/// (`completions` 1, `parallelism` 1, `backoffLimit` 6).
#[derive(clap::Args, Debug)]
pub struct CreateJobArgs {
    /// The Job's name; its container is named the same.
    pub name: String,
    /// The wasm module to run: a name pushed with `skiff push`, a `sha256:` digest, an
    /// `https://` URL pinned by digest, or `file:PATH`.
    #[arg(long)]
    pub image: String,
    /// The namespace (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// How many pods must succeed.
    #[arg(long)]
    pub completions: Option<u32>,
    /// How many pods may run at once.
    #[arg(long)]
    pub parallelism: Option<u32>,
    /// How many failed pods (or container restarts under OnFailure) fail the Job.
    #[arg(long)]
    pub backoff_limit: Option<u32>,
    /// What the node does when the module fails: start a new pod (`Never`) or restart
    /// it in place (`OnFailure`).
    #[arg(long, default_value = "Never", value_parser = ["Never", "OnFailure"])]
    pub restart_policy: String,
    /// An environment variable for the module, K=V. Repeatable.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Arguments for the module (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub async fn run(api: &Api, args: CreateArgs) -> Result<u8> {
    match args.what {
        CreateCommand::Job(args) => create_job(api, args).await,
        CreateCommand::Token(args) => create_token(api, args).await,
    }
}

async fn create_token(api: &Api, args: CreateTokenArgs) -> Result<u8> {
    let namespace = match (args.role, &args.namespace) {
        (TokenRole::Admin, Some(_)) => anyhow::bail!(
            "--namespace: an admin token is for the whole cluster; leave --namespace out"
        ),
        (TokenRole::Admin, None) => None,
        (TokenRole::Viewer, given) => Some(
            given
                .clone()
                .unwrap_or_else(|| api.default_namespace.clone()),
        ),
    };
    let token = skiff_control_plane::apiserver::auth::generate_token();
    let name = match &args.name {
        Some(name) => name.clone(),
        None => {
            // Eight hex digits of the token's hash: unique enough, and never the token.
            let suffix = &skiff_control_plane::apiserver::auth::token_hash_hex(&token)[..8];
            match &namespace {
                Some(ns) => format!("viewer-{ns}-{suffix}"),
                None => format!("admin-{suffix}"),
            }
        }
    };
    let objects = token_objects(
        args.role,
        namespace.as_deref(),
        &name,
        &skiff_control_plane::apiserver::auth::token_hash_hex(&token),
    )?;
    // The binding first: a token that exists is then never without its rights.
    for (path, object) in objects {
        api.call(skiff_client::Method::POST, &path, Some(object))
            .await
            .with_context(|| format!("creating token {name:?}: POST {path}"))?;
    }
    let grant = match &namespace {
        Some(ns) => format!("ClusterRole view in namespace {ns}"),
        None => "ClusterRole cluster-admin".to_string(),
    };
    eprintln!(
        "token for user {name:?} created ({grant}); it is shown once, below. Revoke it with: skiff delete secret skiff-token-{name} -n kube-system"
    );
    outln!("{token}");
    Ok(0)
}

/// The objects a token is: its binding, then the Secret holding its hash, each with the
/// path to POST it to.
fn token_objects(
    role: TokenRole,
    namespace: Option<&str>,
    name: &str,
    token_hash: &str,
) -> Result<Vec<(String, Value)>> {
    let problems = skiff_api::validation::is_dns1123_subdomain(name);
    if !problems.is_empty() {
        anyhow::bail!("--name {name:?}: {}", problems.join("; "));
    }
    let object_name = format!("skiff-token-{name}");
    let subject =
        json!([{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name }]);
    let binding = match namespace {
        Some(ns) => (
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": { "name": object_name, "namespace": ns },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
                "subjects": subject,
            }),
        ),
        None => (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".to_string(),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": { "name": object_name },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
                "subjects": subject,
            }),
        ),
    };
    debug_assert_eq!(namespace.is_some(), role == TokenRole::Viewer);
    let secret = (
        "/api/v1/namespaces/kube-system/secrets".to_string(),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": object_name, "namespace": "kube-system" },
            "type": "skiff.dev/token",
            "stringData": { "tokenHash": token_hash, "user": name },
        }),
    );
    Ok(vec![binding, secret])
}

async fn create_job(api: &Api, args: CreateJobArgs) -> Result<u8> {
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| api.default_namespace.clone());
    let job = job_manifest(&args, &namespace);
    let path = format!("/apis/batch/v1/namespaces/{namespace}/jobs");
    api.call(skiff_client::Method::POST, &path, Some(job))
        .await
        .with_context(|| format!("creating job {:?}", args.name))?;
    outln!("job.batch/{} created", args.name);
    Ok(0)
}

/// The Job `args` describe.
fn job_manifest(args: &CreateJobArgs, namespace: &str) -> Value {
    let mut container = json!({ "name": args.name, "image": args.image });
    if !args.args.is_empty() {
        container["args"] = json!(args.args);
    }
    if !args.env.is_empty() {
        container["env"] = args
            .env
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect();
    }
    let mut spec = Map::new();
    for (field, value) in [
        ("completions", args.completions),
        ("parallelism", args.parallelism),
        ("backoffLimit", args.backoff_limit),
    ] {
        if let Some(value) = value {
            spec.insert(field.into(), json!(value));
        }
    }
    spec.insert(
        "template".into(),
        json!({ "spec": {
            "restartPolicy": args.restart_policy,
            "containers": [container],
        } }),
    );
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": args.name, "namespace": namespace },
        "spec": spec,
    })
}

/// `--env K=V`.
fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("env {text:?} is not K=V")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        what: CreateCommand,
    }

    fn parse(args: &[&str]) -> CreateJobArgs {
        let cli = Cli::try_parse_from(["create"].iter().chain(args)).expect("parses");
        match cli.what {
            CreateCommand::Job(args) => args,
            CreateCommand::Token(_) => panic!("not a job"),
        }
    }

    #[test]
    fn a_viewer_token_is_a_role_binding_and_a_hash() {
        let cli = Cli::try_parse_from(["create", "token", "--role", "viewer", "-n", "team"])
            .expect("parses");
        let CreateCommand::Token(args) = cli.what else {
            panic!("not a token")
        };
        assert_eq!(
            (args.role, args.namespace.as_deref()),
            (TokenRole::Viewer, Some("team"))
        );
        let objects = token_objects(TokenRole::Viewer, Some("team"), "ci", "ab12").unwrap();
        assert_eq!(
            objects[0].0,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings"
        );
        assert_eq!(objects[0].1["roleRef"]["name"], "view");
        assert_eq!(objects[0].1["subjects"][0]["name"], "ci");
        assert_eq!(objects[1].0, "/api/v1/namespaces/kube-system/secrets");
        assert_eq!(
            objects[1].1["stringData"],
            json!({ "tokenHash": "ab12", "user": "ci" })
        );
        assert_eq!(objects[1].1["type"], "skiff.dev/token");

        let admin = token_objects(TokenRole::Admin, None, "ops", "cd34").unwrap();
        assert_eq!(admin[0].1["kind"], "ClusterRoleBinding");
        assert_eq!(admin[0].1["roleRef"]["name"], "cluster-admin");

        let error = token_objects(TokenRole::Viewer, Some("team"), "system:me", "x").unwrap_err();
        assert!(
            error.to_string().starts_with("--name \"system:me\""),
            "{error}"
        );
        assert!(
            Cli::try_parse_from(["create", "token", "--role", "root"]).is_err(),
            "only viewer and admin"
        );
    }

    #[test]
    fn a_job_from_flags() {
        let args = parse(&[
            "job",
            "pi",
            "--image",
            "file:pi.wasm",
            "--completions",
            "20",
            "--parallelism",
            "5",
            "--backoff-limit",
            "3",
            "--restart-policy",
            "OnFailure",
            "--env",
            "DIGITS=100",
            "--",
            "--fast",
            "x",
        ]);
        assert_eq!(
            job_manifest(&args, "batch"),
            json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": { "name": "pi", "namespace": "batch" },
                "spec": {
                    "completions": 20, "parallelism": 5, "backoffLimit": 3,
                    "template": { "spec": {
                        "restartPolicy": "OnFailure",
                        "containers": [{
                            "name": "pi", "image": "file:pi.wasm",
                            "args": ["--fast", "x"],
                            "env": [{ "name": "DIGITS", "value": "100" }],
                        }],
                    } },
                },
            })
        );
    }

    #[test]
    fn defaults_are_left_to_the_server() {
        let args = parse(&["job", "once", "--image", "hello"]);
        assert_eq!(
            job_manifest(&args, "default")["spec"],
            json!({ "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "once", "image": "hello" }],
            } } })
        );
        let cli = Cli::try_parse_from([
            "create",
            "job",
            "x",
            "--image",
            "y",
            "--restart-policy",
            "Always",
        ]);
        assert!(cli.is_err(), "Always is not a Job's policy");
        assert!(
            Cli::try_parse_from(["create", "job", "x"]).is_err(),
            "--image is required"
        );
    }
}
