//! `skiff get`, `skiff describe`, `skiff delete`.

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::Value;

use crate::api::Api;
use crate::manifests;
use crate::resources::{Kind, Kinds};
use crate::table;

/// Where to look: one namespace, or all of them.
#[derive(clap::Args, Debug, Clone)]
pub struct Scope {
    /// The namespace (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The kind: `pods`, `po`, `deployments`, `deploy`, `nodes`, ...
    pub kind: String,
    /// Only these objects.
    pub names: Vec<String>,
    #[command(flatten)]
    pub scope: Scope,
    /// Only objects whose labels match (`app=web,tier!=db`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Only objects whose fields match (`status.phase=Running`).
    #[arg(long)]
    pub field_selector: Option<String>,
    /// `wide`, `yaml`, `json` or `name`.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// After listing, watch for changes and print them.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Keep `metadata.managedFields` in YAML and JSON output (left out by default, as
    /// kubectl does: they are for server-side apply, not for reading).
    #[arg(long)]
    pub show_managed_fields: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Table { wide: bool },
    Yaml,
    Json,
    Name,
}

impl Output {
    fn parse(value: Option<&str>) -> Result<Output> {
        Ok(match value {
            None => Output::Table { wide: false },
            Some("wide") => Output::Table { wide: true },
            Some("yaml") => Output::Yaml,
            Some("json") => Output::Json,
            Some("name") => Output::Name,
            Some(other) => {
                bail!("--output: unsupported format {other:?} (use wide, yaml, json or name)")
            }
        })
    }
}

fn namespace_of(api: &Api, scope: &Scope, kind: &Kind) -> Option<String> {
    if !kind.namespaced || scope.all_namespaces {
        None
    } else {
        Some(
            scope
                .namespace
                .clone()
                .unwrap_or_else(|| api.default_namespace.clone()),
        )
    }
}

fn query(selector: &Option<String>, field_selector: &Option<String>) -> String {
    let mut parts = Vec::new();
    if let Some(s) = selector {
        parts.push(format!("labelSelector={}", encode(s)));
    }
    if let Some(s) = field_selector {
        parts.push(format!("fieldSelector={}", encode(s)));
    }
    parts.join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Leaves `metadata.managedFields` out of an object.
fn hide_managed_fields(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
}

pub async fn get(api: &Api, args: GetArgs) -> Result<u8> {
    let output = Output::parse(args.output.as_deref())?;
    let kinds = Kinds::discover(api).await?;
    let kind = kinds.resolve(&args.kind)?.clone();
    let namespace = namespace_of(api, &args.scope, &kind);
    let ns = namespace.as_deref();
    let show_namespace = kind.namespaced && args.scope.all_namespaces;

    let (mut items, resource_version) = if args.names.is_empty() {
        let mut path = kind.path(ns, None);
        let q = query(&args.selector, &args.field_selector);
        if !q.is_empty() {
            path = format!("{path}?{q}");
        }
        let list = api.get(&path).await?;
        let rv = list
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        (list["items"].as_array().cloned().unwrap_or_default(), rv)
    } else {
        let mut items = Vec::new();
        for name in &args.names {
            items.push(api.get(&kind.path(ns, Some(name))).await?);
        }
        (items, String::new())
    };

    if !args.show_managed_fields {
        items.iter_mut().for_each(hide_managed_fields);
    }
    match output {
        Output::Yaml if args.names.len() == 1 => out!("{}", serde_yaml::to_string(&items[0])?),
        Output::Json if args.names.len() == 1 => {
            outln!("{}", serde_json::to_string_pretty(&items[0])?)
        }
        Output::Yaml | Output::Json => {
            let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": "" }, "items": items });
            if output == Output::Yaml {
                out!("{}", serde_yaml::to_string(&list)?);
            } else {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            }
        }
        Output::Name => {
            for item in &items {
                outln!(
                    "{}/{}",
                    kind.display(),
                    item.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                );
            }
        }
        Output::Table { wide } => {
            if items.is_empty() && !args.watch {
                match ns {
                    Some(ns) => eprintln!("No resources found in {ns} namespace."),
                    None => eprintln!("No resources found"),
                }
            } else {
                let (headers, rows) = table_rows(&kind, &items, wide, show_namespace);
                out!("{}", table::render(&headers, &rows));
            }
        }
    }

    if args.watch {
        let q = query(&args.selector, &args.field_selector);
        let path = format!(
            "{}?watch=1&resourceVersion={resource_version}{}{q}",
            kind.path(ns, None),
            if q.is_empty() { "" } else { "&" }
        );
        let mut events = api
            .client()
            .request_json_lines(skiff_client::Method::GET, &path)
            .await?;
        while let Some(event) = events.next().await {
            let event = event?;
            if event["type"] == "ERROR" {
                bail!(
                    "watch failed: {}",
                    event["object"]["message"]
                        .as_str()
                        .unwrap_or("unknown error")
                );
            }
            let mut object = event["object"].clone();
            if !args.show_managed_fields {
                hide_managed_fields(&mut object);
            }
            let object = &object;
            match output {
                Output::Table { wide } => {
                    let (_, rows) =
                        table_rows(&kind, std::slice::from_ref(object), wide, show_namespace);
                    let headers = table::columns(&kind.kind, wide);
                    // Rows of a watch line up under the first table only roughly, as kubectl's.
                    let text = table::render(&headers, &rows);
                    out!(
                        "{}",
                        text.lines()
                            .skip(1)
                            .map(|l| format!("{l}\n"))
                            .collect::<String>()
                    );
                }
                Output::Yaml => out!("---\n{}", serde_yaml::to_string(object)?),
                Output::Json => outln!("{}", serde_json::to_string_pretty(object)?),
                Output::Name => outln!(
                    "{}/{}",
                    kind.display(),
                    object
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ),
            }
        }
    }
    Ok(0)
}

fn table_rows(
    kind: &Kind,
    items: &[Value],
    wide: bool,
    show_namespace: bool,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut headers = table::columns(&kind.kind, wide);
    if show_namespace {
        headers.insert(0, "NAMESPACE");
    }
    let rows = items
        .iter()
        .map(|item| {
            let mut row = table::row(&kind.kind, item, wide);
            if show_namespace {
                row.insert(
                    0,
                    item.pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                );
            }
            row
        })
        .collect();
    (headers, rows)
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    pub kind: String,
    pub name: String,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// `skiff describe`: the object's metadata, spec and status in readable form, then the
/// events about it.
pub async fn describe(api: &Api, args: DescribeArgs) -> Result<u8> {
    let kinds = Kinds::discover(api).await?;
    let kind = kinds.resolve(&args.kind)?.clone();
    let scope = Scope {
        namespace: args.namespace.clone(),
        all_namespaces: false,
    };
    let namespace = namespace_of(api, &scope, &kind);
    let object = api
        .get(&kind.path(namespace.as_deref(), Some(&args.name)))
        .await?;
    let meta = &object["metadata"];
    let field = |label: &str, value: &str| {
        outln!(
            "{:<20}{}",
            format!("{label}:"),
            if value.is_empty() { "<none>" } else { value }
        )
    };
    field("Name", meta["name"].as_str().unwrap_or(""));
    if kind.namespaced {
        field("Namespace", meta["namespace"].as_str().unwrap_or(""));
    }
    let pairs = |value: &Value| {
        value
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join("\n                    ")
            })
            .unwrap_or_default()
    };
    field("Labels", &pairs(&meta["labels"]));
    let mut annotations = meta["annotations"].clone();
    if let Some(map) = annotations.as_object_mut() {
        map.remove(crate::apply::LAST_APPLIED);
    }
    field("Annotations", &pairs(&annotations));
    field(
        "CreationTimestamp",
        meta["creationTimestamp"].as_str().unwrap_or(""),
    );
    if let Some(deletion) = meta["deletionTimestamp"].as_str() {
        field("DeletionTimestamp", deletion);
    }
    if let Some(owner) = meta["ownerReferences"].as_array().and_then(|o| o.first()) {
        field(
            "Controlled By",
            &format!(
                "{}/{}",
                owner["kind"].as_str().unwrap_or(""),
                owner["name"].as_str().unwrap_or("")
            ),
        );
    }
    for section in ["spec", "data", "status"] {
        if let Some(value) = object.get(section).filter(|v| !v.is_null()) {
            outln!("{}:", capitalize(section));
            for line in serde_yaml::to_string(value)?.lines() {
                outln!("  {line}");
            }
        }
    }
    let uid = meta["uid"].as_str().unwrap_or("");
    let event_ns = namespace.clone().unwrap_or_else(|| "default".into());
    let events = api
        .get(&format!(
            "/api/v1/namespaces/{event_ns}/events?fieldSelector={}",
            encode(&format!("involvedObject.uid={uid}"))
        ))
        .await
        .context("reading events")?;
    let items = events["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        outln!("Events:             <none>");
    } else {
        outln!("Events:");
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|e| {
                vec![
                    e["type"].as_str().unwrap_or("").to_string(),
                    e["reason"].as_str().unwrap_or("").to_string(),
                    table::age(e["lastTimestamp"].as_str()),
                    e.pointer("/source/component")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                ]
            })
            .collect();
        for line in table::render(&["Type", "Reason", "Age", "From", "Message"], &rows).lines() {
            outln!("  {line}");
        }
    }
    Ok(0)
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The kind, then names (omit both with `-f`).
    pub args: Vec<String>,
    /// Delete the objects of these manifests.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Seconds the objects get to stop (0 deletes at once).
    #[arg(long)]
    pub grace_period: Option<i64>,
    /// `background` (default), `foreground` or `orphan`.
    #[arg(long, default_value = "background")]
    pub cascade: String,
}

pub async fn delete(api: &Api, args: DeleteArgs) -> Result<u8> {
    let kinds = Kinds::discover(api).await?;
    let policy = match args.cascade.as_str() {
        "background" | "true" => "Background",
        "foreground" => "Foreground",
        "orphan" | "false" => "Orphan",
        other => bail!("--cascade: {other:?} is not one of background, foreground, orphan"),
    };
    let mut targets: Vec<(Kind, Option<String>, String)> = Vec::new();
    if !args.files.is_empty() {
        if !args.args.is_empty() {
            bail!("give either -f or KIND NAME..., not both");
        }
        for manifest in manifests::read_all(&args.files)? {
            let object = &manifest.object;
            let kind = kinds
                .for_manifest(
                    object["apiVersion"].as_str().unwrap_or(""),
                    object["kind"].as_str().unwrap_or(""),
                )?
                .clone();
            let namespace = object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| args.namespace.clone())
                .unwrap_or_else(|| api.default_namespace.clone());
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            targets.push((kind.clone(), kind.namespaced.then_some(namespace), name));
        }
    } else {
        let (kind_name, names) = args
            .args
            .split_first()
            .context("give a kind and names, or -f FILE")?;
        let (kind_name, names): (&str, Vec<String>) = match kind_name.split_once('/') {
            Some((kind, name)) => (
                kind,
                std::iter::once(name.to_string())
                    .chain(names.iter().cloned())
                    .collect(),
            ),
            None => (kind_name.as_str(), names.to_vec()),
        };
        if names.is_empty() {
            bail!("give the names of the {kind_name} to delete");
        }
        let kind = kinds.resolve(kind_name)?.clone();
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| api.default_namespace.clone());
        for name in names {
            targets.push((
                kind.clone(),
                kind.namespaced.then(|| namespace.clone()),
                name,
            ));
        }
    }
    let mut failed = false;
    for (kind, namespace, name) in targets {
        let mut path = format!(
            "{}?propagationPolicy={policy}",
            kind.path(namespace.as_deref(), Some(&name))
        );
        if let Some(grace) = args.grace_period {
            path.push_str(&format!("&gracePeriodSeconds={grace}"));
        }
        match api.call(skiff_client::Method::DELETE, &path, None).await {
            Ok(_) => outln!("{} {name:?} deleted", kind.display()),
            Err(error) => {
                eprintln!("error: {error}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}
