//! The one error type of the client.

use skiff_api::Status;

/// What went wrong with a call to the API server, or with the client's configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-2xx status; the `Status` is the one it sent, or
    /// one made from the HTTP status when the body was not a `Status`. Boxed: it is
    /// large and errors travel through every `Result`.
    #[error("{}", describe(.0))]
    Api(Box<Status>),

    /// The request could not be sent, or its answer could not be read (connection
    /// refused or dropped, timeout, TLS failure).
    #[error("request to the api server failed")]
    Request(#[from] reqwest::Error),

    /// An answer (or one line of a watch) was not the JSON that was expected.
    #[error("decoding {what}")]
    Decode {
        /// What was being decoded: `"Pod list"`, `"watch event"`, ...
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// A kubeconfig could not be read, parsed, or lacks what is needed.
    #[error("kubeconfig: {message}")]
    Kubeconfig {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The configuration cannot make a client: a bad server URL or CA certificate.
    #[error("client configuration: {message}")]
    Config {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// The result of client calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The server's `Status`, when the server answered with an error.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Error::Api(status) => Some(status),
            _ => None,
        }
    }

    /// The HTTP status code the server answered, when it answered with an error.
    pub fn code(&self) -> Option<u16> {
        self.status().and_then(|s| s.code)
    }

    fn reason(&self) -> Option<&str> {
        self.status().and_then(|s| s.reason.as_deref())
    }

    /// 404: the object (or the path) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404) || self.reason() == Some("NotFound")
    }

    /// 409 `Conflict`: the resourceVersion (or a precondition) did not match; reread
    /// and try again. `AlreadyExists`, also a 409, is not a conflict.
    pub fn is_conflict(&self) -> bool {
        match self.reason() {
            Some("Conflict") => true,
            Some(_) => false,
            None => self.code() == Some(409),
        }
    }

    /// 409 `AlreadyExists`: a create found an object of that name.
    pub fn is_already_exists(&self) -> bool {
        self.reason() == Some("AlreadyExists")
    }

    /// 410: the resourceVersion asked for is older than the server keeps; relist.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410) || matches!(self.reason(), Some("Expired" | "Gone"))
    }

    /// 422 `Invalid`: the object failed validation; the causes name the fields.
    pub fn is_invalid(&self) -> bool {
        self.code() == Some(422) || self.reason() == Some("Invalid")
    }

    pub(crate) fn decode(what: impl Into<String>, source: serde_json::Error) -> Error {
        Error::Decode {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn kubeconfig(message: impl Into<String>) -> Error {
        Error::Kubeconfig {
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn config(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Config {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

fn describe(status: &Status) -> String {
    let code = status
        .code
        .map(|c| c.to_string())
        .unwrap_or_else(|| "?".into());
    let reason = status.reason.as_deref().unwrap_or("Failure");
    match status.message.as_deref() {
        Some(message) if !message.is_empty() => format!("{reason} ({code}): {message}"),
        _ => format!("{reason} ({code})"),
    }
}

/// The `Status` for an error answer whose body was not one: Kubernetes' reason for
/// the HTTP code, and the body (if any) as the message.
pub(crate) fn status_from_http(code: u16, body: &[u8]) -> Status {
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    };
    let text = String::from_utf8_lossy(body).trim().to_string();
    Status {
        api_version: "v1".into(),
        kind: "Status".into(),
        status: Some("Failure".into()),
        message: Some(if text.is_empty() {
            reason.to_string()
        } else {
            text
        }),
        reason: Some(reason.into()),
        code: Some(code),
        ..Status::default()
    }
}

/// Decodes an error answer: the server's `Status` when the body is one.
pub(crate) fn status_from_body(code: u16, body: &[u8]) -> Status {
    match serde_json::from_slice::<Status>(body) {
        Ok(mut status) if status.kind == "Status" => {
            status.code.get_or_insert(code);
            status
        }
        _ => status_from_http(code, body),
    }
}

/// `error` and its causes, `: `-separated, for logs and messages: an error's own message
/// often says only what failed (reqwest's: which URL), its causes why.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
