//! Who is calling: bearer tokens checked in one middleware layer in front of the API.
//!
//! Tokens are kept only as SHA-256 hashes, so a leaked data directory does not leak
//! credentials. Anything without a valid token gets 401, except the health and version
//! endpoints that load balancers and version probes call unauthenticated.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiServer;
use super::error::ApiError;

/// Paths anyone may call.
pub const PUBLIC_PATHS: &[&str] = &["/healthz", "/readyz", "/livez", "/version"];

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// Known tokens, by hash.
#[derive(Default)]
pub struct Authenticator {
    tokens: HashMap<[u8; 32], User>,
}

impl Authenticator {
    /// Accepts `token` as `user`.
    pub fn add_token(&mut self, token: &str, user: User) {
        self.tokens.insert(hash(token), user);
    }

    /// Accepts a token known only by its hex SHA-256 hash (as stored on disk).
    pub fn add_token_hash(&mut self, hex_hash: &str, user: User) -> Result<(), String> {
        self.tokens.insert(parse_hash(hex_hash)?, user);
        Ok(())
    }

    pub fn authenticate(&self, token: &str) -> Option<&User> {
        self.tokens.get(&hash(token))
    }
}

/// A hex SHA-256, as [`token_hash_hex`] writes it, back to bytes.
pub fn parse_hash(hex_hash: &str) -> Result<[u8; 32], String> {
    let bytes = (0..hex_hash.len())
        .step_by(2)
        .map(|i| {
            hex_hash
                .get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| "token hash is not hex".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "token hash is not 32 bytes".to_string())
}

/// The hex SHA-256 of a token, as stored.
pub fn token_hash_hex(token: &str) -> String {
    hash(token).iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token: 32 bytes from the OS's generator (two v4 UUIDs), hex.
pub fn generate_token() -> String {
    let mut out = String::with_capacity(64);
    for _ in 0..2 {
        for b in uuid::Uuid::new_v4().into_bytes() {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

/// The middleware: 401 without a known bearer token, except on public paths.
pub async fn authenticate(
    State(server): State<Arc<ApiServer>>,
    mut request: Request,
    next: Next,
) -> Response {
    if PUBLIC_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    // The tokens given at start first, then those made at runtime (`skiff create
    // token`), which live hashed in Secrets and reach us through the access index.
    // A join token past its expiration proves nothing.
    let user = token.and_then(|t| {
        let hashed = hash(t);
        server.auth.tokens.get(&hashed).cloned().or_else(|| {
            let access = server.access.snapshot();
            let credential = access.token_credential(&hashed)?;
            credential
                .valid_at(std::time::SystemTime::now())
                .then(|| credential.user.clone())
        })
    });
    match user {
        Some(user) => {
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        None => {
            // Counted by the client's address, where the listener tells it.
            let address = request
                .extensions()
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|ConnectInfo(address)| address.ip());
            let limited = address.and_then(|address| {
                server
                    .throttle
                    .admit_failed_auth(&server.config.client_limits, address)
                    .err()
            });
            limited
                .unwrap_or_else(ApiError::unauthorized)
                .into_response()
        }
    }
}
