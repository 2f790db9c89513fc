//! One error type for parsing, validating and storing resources, so the CLI prints every
//! failure the same way: where (file, document, field path) and why.

use crate::Kind;

/// Why a resource operation failed. Document numbers count from 1, in file order, among the
/// non-empty YAML documents.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The text is not YAML at all (the parser's message carries line and column).
    #[error("{source_name}: YAML syntax error: {message}")]
    Yaml { source_name: String, message: String },
    /// A document is YAML but not a valid resource.
    #[error("{source_name}, document {document} (1-based), {}: {reason}", if path.is_empty() { "at top level" } else { path.as_str() })]
    Invalid {
        source_name: String,
        /// 1-based index of the YAML document in the file.
        document: usize,
        /// Field path inside the document, e.g. `spec.natOutgoing` or `[1].metadata.peerIP`.
        path: String,
        reason: String,
    },
    /// `get NAME` / `delete` of something that does not exist.
    #[error("{kind} {} not found", display_name(namespace.as_deref(), name))]
    NotFound { kind: Kind, namespace: Option<String>, name: String },
    /// The request itself is wrong (e.g. a namespaced kind without a namespace).
    #[error("{0}")]
    Request(String),
    /// A stored value cannot be read back (written by something else, or corrupted).
    #[error("stored value at {key} is not a valid resource: {reason}")]
    Corrupt { key: String, reason: String },
    /// The datastore failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

fn display_name(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}
