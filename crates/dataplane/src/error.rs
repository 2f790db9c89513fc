//! One error type for the whole crate, so the agent and the CNI plugin can report *what* failed
//! (which namespace, link, route, sysctl or nft batch) without seeing rtnetlink's types.

use std::io;

/// Why a dataplane operation failed. Every variant names the object it was working on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening, creating, entering or deleting a network namespace failed.
    #[error("netns {ns}: {op}: {source}")]
    Netns {
        ns: String,
        op: &'static str,
        source: io::Error,
    },
    /// The kernel (or the netlink transport) refused a request; `errno` is set when the kernel
    /// answered with an error code, so callers can tell EEXIST/ENOENT/ESRCH apart.
    #[error("netlink: {op}: {message}")]
    Netlink {
        op: String,
        errno: Option<i32>,
        message: String,
    },
    /// A link looked up by name does not exist (in the namespace the handle is bound to).
    #[error("link {name:?} not found{}", ns.as_deref().map(|n| format!(" in netns {n}")).unwrap_or_default())]
    LinkNotFound { name: String, ns: Option<String> },
    /// Reading or writing a `/proc/sys` entry failed.
    #[error("sysctl {path}: {source}")]
    Sysctl { path: String, source: io::Error },
    /// `nft` rejected a ruleset (the previous ruleset is still in place) or could not run.
    #[error("nft {op} failed ({status}): {stderr}")]
    Nft {
        op: &'static str,
        status: String,
        stderr: String,
    },
    /// The caller passed something the kernel would reject or that Seam refuses to do; the
    /// message names the field.
    #[error("invalid {what}: {why}")]
    Invalid { what: String, why: String },
    /// Any other OS-level failure (spawning a thread or a process, reading a file).
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kernel errno behind this error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Netlink { errno, .. } => *errno,
            Error::Netns { source, .. }
            | Error::Sysctl { source, .. }
            | Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True when the object the operation needed does not exist (ENOENT, ENODEV, ESRCH, or a
    /// link looked up by name that is missing).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::LinkNotFound { .. })
            || matches!(
                self.errno(),
                Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ESRCH)
            )
    }

    /// True when the object the operation wanted to create already exists (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    pub(crate) fn invalid(what: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps an rtnetlink error, keeping the kernel's errno (positive) when there is one.
    pub(crate) fn netlink(op: impl Into<String>, e: rtnetlink::Error) -> Self {
        let (errno, message) = match &e {
            rtnetlink::Error::NetlinkError(msg) => {
                let code = msg.raw_code();
                // The kernel sends the negated errno.
                let errno = if code < 0 { Some(-code) } else { None };
                let text = match errno {
                    Some(n) => io::Error::from_raw_os_error(n).to_string(),
                    None => e.to_string(),
                };
                (errno, text)
            }
            other => (None, other.to_string()),
        };
        Error::Netlink {
            op: op.into(),
            errno,
            message,
        }
    }
}
