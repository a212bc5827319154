//! `skiff token create|list|delete`: join tokens, with which new nodes join the cluster
//! (`skiff node --token`), as `kubeadm token` manages Kubernetes' bootstrap tokens.
//!
//! A join token is `ID.SECRET`. It is made here; only its SHA-256 goes to the server, in
//! the Secret `kube-system/bootstrap-token-ID` (type `bootstrap.kubernetes.io/token`) with
//! its expiration. A node presents it once, to get a credential of its own; after the
//! expiration it authenticates no one. Deleting it stops further joins, not the nodes
//! that joined with it.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use skiff_control_plane::apiserver::auth::token_hash_hex;
use skiff_control_plane::apiserver::tokens::{
    BOOTSTRAP_TOKEN_PREFIX, BOOTSTRAP_TOKEN_TYPE, JoinToken, generate_join_token,
};

use crate::api::Api;

const SECRETS: &str = "/api/v1/namespaces/kube-system/secrets";

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub what: TokenCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a join token and print it (once: only its SHA-256 is kept).
    Create(CreateArgs),
    /// List the join tokens: ID, time left, description.
    List,
    /// Delete a join token by its ID (the part before the dot): no node joins with it
    /// any more.
    Delete {
        /// The token's ID, or the whole token.
        id: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// How long the token lets nodes join (`90m`, `24h`, `7d`; at most 365 days).
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// What the token is for, shown by `skiff token list`.
    #[arg(long, default_value = "")]
    pub description: String,
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    if ttl.is_zero() || ttl > Duration::from_secs(365 * 24 * 3600) {
        return Err(format!(
            "{text:?}: a join token lives more than 0 and at most 365 days"
        ));
    }
    Ok(ttl)
}

pub async fn run(api: &Api, args: TokenArgs) -> Result<u8> {
    match args.what {
        TokenCommand::Create(args) => create(api, args).await,
        TokenCommand::List => list(api).await,
        TokenCommand::Delete { id } => delete(api, &id).await,
    }
}

async fn create(api: &Api, args: CreateArgs) -> Result<u8> {
    let token = generate_join_token();
    let expires = SystemTime::now() + args.ttl;
    api.call(
        skiff_client::Method::POST,
        SECRETS,
        Some(secret(&token, expires, &args.description)),
    )
    .await
    .context("creating the join token")?;
    eprintln!(
        "join token {} created, valid until {}; it is shown once, below. Join a node with: \
         skiff node --server URL --certificate-authority ca.crt --token TOKEN",
        token.id,
        humantime::format_rfc3339_seconds(expires)
    );
    outln!("{token}");
    Ok(0)
}

/// The Secret a join token is kept as.
fn secret(token: &JoinToken, expires: SystemTime, description: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("{BOOTSTRAP_TOKEN_PREFIX}{}", token.id),
            "namespace": "kube-system",
        },
        "type": BOOTSTRAP_TOKEN_TYPE,
        "stringData": {
            "token-id": token.id,
            "tokenHash": token_hash_hex(&token.to_string()),
            "expiration": humantime::format_rfc3339_seconds(expires).to_string(),
            "usage-bootstrap-authentication": "true",
            "description": description,
        },
    })
}

async fn list(api: &Api) -> Result<u8> {
    let secrets = api
        .call(skiff_client::Method::GET, SECRETS, None)
        .await
        .context("listing join tokens")?;
    let now = SystemTime::now();
    let rows: Vec<Vec<String>> = secrets["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|secret| secret["type"] == BOOTSTRAP_TOKEN_TYPE)
        .map(|secret| {
            let field = |key: &str| decoded(secret, key).unwrap_or_default();
            let expiration = field("expiration");
            let left = match humantime::parse_rfc3339_weak(&expiration) {
                Ok(at) => match at.duration_since(now) {
                    Ok(left) => {
                        humantime::format_duration(Duration::from_secs(left.as_secs())).to_string()
                    }
                    Err(_) => "expired".to_string(),
                },
                Err(_) => "<invalid>".to_string(),
            };
            vec![field("token-id"), left, expiration, field("description")]
        })
        .collect();
    outln!(
        "{}",
        crate::table::render(&["ID", "TTL", "EXPIRES", "DESCRIPTION"], &rows).trim_end()
    );
    Ok(0)
}

/// The decoded text of `data.KEY` of a Secret as the API returns it.
fn decoded(secret: &Value, key: &str) -> Option<String> {
    let secret: skiff_api::core::Secret = serde_json::from_value(secret.clone()).ok()?;
    String::from_utf8(secret.value(key)?).ok()
}

async fn delete(api: &Api, id: &str) -> Result<u8> {
    // The whole token works too; only its ID goes to the server.
    let id = id.split_once('.').map_or(id, |(id, _)| id);
    let path = format!("{SECRETS}/{BOOTSTRAP_TOKEN_PREFIX}{id}");
    api.call(skiff_client::Method::DELETE, &path, None)
        .await
        .with_context(|| format!("deleting join token {id}"))?;
    outln!("join token {id} deleted");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_token_secret_authenticates_as_a_bootstrapper_and_holds_no_secret() {
        let token = generate_join_token();
        let expires = SystemTime::now() + Duration::from_secs(3600);
        let value = secret(&token, expires, "for rack 3");
        assert!(!value.to_string().contains(&token.secret));
        // What the API server makes of it, once stored (stringData becomes data).
        let mut stored: skiff_api::core::Secret = serde_json::from_value(json!({
            "metadata": value["metadata"],
            "type": value["type"],
        }))
        .unwrap();
        for (key, text) in value["stringData"].as_object().unwrap() {
            stored.insert(key.clone(), text.as_str().unwrap());
        }
        let (_, credential) = skiff_control_plane::apiserver::tokens::credential_of(&stored)
            .unwrap()
            .unwrap();
        assert_eq!(
            credential.user.name,
            format!("system:bootstrap:{}", token.id)
        );
        assert!(credential.valid_at(SystemTime::now()));
        assert!(!credential.valid_at(expires + Duration::from_secs(1)));
    }

    #[test]
    fn ttls_are_bounded() {
        assert_eq!(parse_ttl("90m").unwrap(), Duration::from_secs(5400));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("400d").unwrap_err().contains("365 days"));
        assert!(parse_ttl("soon").unwrap_err().contains("soon"));
    }
}
