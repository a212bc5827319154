//! `skiff create job`: make an object from command-line flags, as `kubectl create` does.

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
    }
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
        }
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
