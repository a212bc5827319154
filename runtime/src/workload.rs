//! A compiled, pre-linked wasm binary and the kind of workload it is.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{InstancePre, Module};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::engine::Runtime;
use crate::wasi::{P1Host, P2Host};

/// What a binary is decides how it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    /// A core module exporting `_start`: a WASI preview 1 command.
    Preview1Command,
    /// A component exporting `wasi:cli/run`: a WASI preview 2 command.
    Preview2Command,
    /// A component exporting `wasi:http/incoming-handler`: an HTTP service, instantiated
    /// per request.
    HttpService,
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkloadKind::Preview1Command => "WASI preview 1 command (core module with _start)",
            WorkloadKind::Preview2Command => {
                "WASI preview 2 command (component exporting wasi:cli/run)"
            }
            WorkloadKind::HttpService => {
                "HTTP service (component exporting wasi:http/incoming-handler)"
            }
        })
    }
}

/// Why a binary could not become a workload.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a wasm module or component.
    #[error("not a WebAssembly module or component (no \\0asm header)")]
    NotWasm,
    /// wasmtime could not compile it (invalid wasm, unsupported proposal, ...).
    #[error("compiling the {what}")]
    Compile {
        /// "module" or "component".
        what: &'static str,
        /// wasmtime's reason.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// It is valid wasm but none of the three workload kinds.
    #[error(
        "not a runnable workload: a core module must export `_start`, a component `wasi:cli/run` or `wasi:http/incoming-handler`; this {what} exports {}",
        if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
    )]
    UnknownKind {
        /// "module" or "component".
        what: &'static str,
        /// The names it does export.
        exports: Vec<String>,
    },
    /// Its imports cannot be satisfied by the runtime (an import outside WASI, a version
    /// mismatch, ...).
    #[error("linking the {kind}")]
    Link {
        /// The kind that was detected.
        kind: WorkloadKind,
        /// wasmtime's reason, naming the import.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A compiled binary, linked against WASI and ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct Workload {
    pub(crate) inner: Arc<WorkloadInner>,
}

pub(crate) struct WorkloadInner {
    pub(crate) digest: String,
    pub(crate) pre: Pre,
}

/// The pre-instantiated form of each kind: imports resolved once, so starting an instance
/// does no linking.
pub(crate) enum Pre {
    P1(InstancePre<P1Host>),
    P2(CommandPre<P2Host>),
    Http(ProxyPre<P2Host>),
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("kind", &self.kind())
            .field("digest", &self.inner.digest)
            .finish()
    }
}

impl Workload {
    /// The kind detected from the binary.
    pub fn kind(&self) -> WorkloadKind {
        match self.inner.pre {
            Pre::P1(_) => WorkloadKind::Preview1Command,
            Pre::P2(_) => WorkloadKind::Preview2Command,
            Pre::Http(_) => WorkloadKind::HttpService,
        }
    }

    /// `sha256:<hex>` of the binary.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    pub(crate) fn load(runtime: &Runtime, bytes: &[u8]) -> Result<Self, LoadError> {
        let digest = format!("sha256:{:x}", Sha256::digest(bytes));
        if let Some(workload) = runtime
            .inner
            .loaded
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(&digest)
        {
            return Ok(workload.clone());
        }
        let pre = match classify_header(bytes)? {
            Header::Module => load_module(runtime, bytes)?,
            Header::Component => load_component(runtime, bytes)?,
        };
        let workload = Workload {
            inner: Arc::new(WorkloadInner {
                digest: digest.clone(),
                pre,
            }),
        };
        runtime
            .inner
            .loaded
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(digest, workload.clone());
        Ok(workload)
    }
}

enum Header {
    Module,
    Component,
}

/// Tells a core module from a component by the preamble: magic, then a version and layer
/// (`01 00 00 00` for a module, layer 1 for a component).
fn classify_header(bytes: &[u8]) -> Result<Header, LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        Ok(Header::Module)
    } else {
        Ok(Header::Component)
    }
}

fn load_module(runtime: &Runtime, bytes: &[u8]) -> Result<Pre, LoadError> {
    let module =
        Module::new(&runtime.inner.engine, bytes).map_err(|source| LoadError::Compile {
            what: "module",
            source: source.into(),
        })?;
    let has_start = module
        .exports()
        .any(|export| export.name() == "_start" && export.ty().func().is_some());
    if !has_start {
        let exports = module
            .exports()
            .map(|export| export.name().to_string())
            .collect();
        return Err(LoadError::UnknownKind {
            what: "module",
            exports,
        });
    }
    let pre = runtime
        .inner
        .p1_linker
        .instantiate_pre(&module)
        .map_err(|source| LoadError::Link {
            kind: WorkloadKind::Preview1Command,
            source: source.into(),
        })?;
    Ok(Pre::P1(pre))
}

fn load_component(runtime: &Runtime, bytes: &[u8]) -> Result<Pre, LoadError> {
    let engine = &runtime.inner.engine;
    let component = Component::new(engine, bytes).map_err(|source| LoadError::Compile {
        what: "component",
        source: source.into(),
    })?;
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let exports_interface =
        |interface: &str| exports.iter().any(|name| unversioned(name) == interface);
    let link_error = |kind| {
        move |source: wasmtime::Error| LoadError::Link {
            kind,
            source: source.into(),
        }
    };
    if exports_interface("wasi:http/incoming-handler") {
        let kind = WorkloadKind::HttpService;
        let pre = runtime
            .inner
            .p2_linker
            .instantiate_pre(&component)
            .map_err(link_error(kind))?;
        Ok(Pre::Http(ProxyPre::new(pre).map_err(link_error(kind))?))
    } else if exports_interface("wasi:cli/run") {
        let kind = WorkloadKind::Preview2Command;
        let pre = runtime
            .inner
            .p2_linker
            .instantiate_pre(&component)
            .map_err(link_error(kind))?;
        Ok(Pre::P2(CommandPre::new(pre).map_err(link_error(kind))?))
    } else {
        Err(LoadError::UnknownKind {
            what: "component",
            exports,
        })
    }
}

/// `wasi:cli/run@0.2.4` → `wasi:cli/run`.
fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tells_modules_from_components() {
        assert!(matches!(
            classify_header(b"\0asm\x01\0\0\0"),
            Ok(Header::Module)
        ));
        assert!(matches!(
            classify_header(b"\0asm\x0d\0\x01\0"),
            Ok(Header::Component)
        ));
        assert!(matches!(
            classify_header(b"#!/bin/sh\n"),
            Err(LoadError::NotWasm)
        ));
        assert!(matches!(classify_header(b"\0asm"), Err(LoadError::NotWasm)));
    }

    #[test]
    fn versions_are_ignored_when_matching_exports() {
        assert_eq!(unversioned("wasi:cli/run@0.2.4"), "wasi:cli/run");
        assert_eq!(unversioned("wasi:cli/run"), "wasi:cli/run");
    }
}
