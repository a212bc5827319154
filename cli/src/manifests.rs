//! Reading manifests: `-f FILE`, `-f DIR` (its .yaml, .yml and .json files, sorted), or
//! `-f -` (standard input); YAML with several documents, JSON objects or `List`s.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use skiff_control_plane::apiserver::bounded;

/// One object from a manifest, with where it came from for messages.
pub struct Manifest {
    pub source: String,
    pub object: Value,
}

/// Reads every object from the given `-f` arguments.
pub fn read_all(files: &[String]) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for file in files {
        if file == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
            out.extend(parse("<stdin>", &text)?);
            continue;
        }
        let path = Path::new(file);
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .with_context(|| format!("reading directory {file}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                })
                .collect();
            entries.sort();
            for entry in entries {
                let text = std::fs::read_to_string(&entry)
                    .with_context(|| format!("reading {}", entry.display()))?;
                out.extend(parse(&entry.display().to_string(), &text)?);
            }
        } else {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {file}"))?;
            out.extend(parse(file, &text)?);
        }
    }
    if out.is_empty() {
        bail!("no objects found in {}", files.join(", "));
    }
    Ok(out)
}

/// What YAML aliases may add to one file beyond twice its length: generous, as anchors
/// in a user's own manifests are legitimate, but a bound, so a YAML bomb (billion laughs,
/// thousands of aliases of one large anchor) ends in an error instead of filling memory.
/// (The API server refuses bodies over 3 MiB anyway.)
const ALIAS_ALLOWANCE: usize = 1024 * 1024;

/// The objects of one file's text.
pub fn parse(source: &str, text: &str) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    let budget = text.len().saturating_mul(2).saturating_add(ALIAS_ALLOWANCE);
    let documents = bounded::yaml_documents(text, budget).map_err(|(index, error)| {
        let what = match error {
            bounded::DecodeError::Syntax(_) => "not valid YAML or JSON: ",
            _ => "",
        };
        anyhow::anyhow!("{source}: document {}: {what}{error}", index + 1)
    })?;
    for (index, value) in documents.into_iter().enumerate() {
        match value {
            Value::Null => continue,
            Value::Object(ref map)
                if map
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List"))
                    && map.contains_key("items") =>
            {
                for item in map["items"].as_array().into_iter().flatten() {
                    out.push(check(source, index, item.clone())?);
                }
            }
            Value::Object(_) => out.push(check(source, index, value)?),
            _ => bail!(
                "{source}: document {}: expected an object with apiVersion and kind",
                index + 1
            ),
        }
    }
    Ok(out)
}

fn check(source: &str, index: usize, object: Value) -> Result<Manifest> {
    for field in ["apiVersion", "kind"] {
        if object
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            bail!("{source}: document {}: {field} is required", index + 1);
        }
    }
    if object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && object
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        bail!(
            "{source}: document {}: metadata.name is required",
            index + 1
        );
    }
    Ok(Manifest {
        source: source.to_string(),
        object,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_several_documents_and_lists() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"b\"}}]}\n";
        let objects = parse("t", text).unwrap();
        let names: Vec<_> = objects
            .iter()
            .map(|m| m.object["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn names_the_document_and_field_that_is_missing() {
        let error = parse(
            "app.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\nkind: Pod\n",
        )
        .err()
        .unwrap();
        assert_eq!(
            error.to_string(),
            "app.yaml: document 2: apiVersion is required"
        );
        assert!(parse("x", "a: [").is_err());
    }

    #[test]
    fn yaml_bombs_end_in_an_error_naming_the_limit() {
        let laughs = {
            let mut text = String::from("a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
            for i in 1..10 {
                let refs = vec![format!("*a{}", i - 1); 10].join(",");
                text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
            }
            text
        };
        let flat = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\nanchor: &a [{}]\ndata: [{}]\n",
            vec!["x"; 20_000].join(","),
            vec!["*a"; 20_000].join(",")
        );
        let deep = format!("---\napiVersion: v1\n---\nkind: {}", "[".repeat(100_000));
        for (text, expected) in [
            (laughs, "limit"),
            (flat, "more than the limit of"),
            (
                deep,
                "bomb.yaml: document 2: nested deeper than the limit of 100 levels",
            ),
        ] {
            let error = parse("bomb.yaml", &text).err().unwrap().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
