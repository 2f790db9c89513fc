//! Running helper programs (`ip`, daemons' CLIs) and turning their failures into messages
//! that name the command and quote its stderr.

use std::path::Path;
use std::process::{Command, Stdio};

/// Why a testbed operation failed, as a message for a human: the command, its exit status
/// and its stderr, or the file that could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.0
    }
}

/// Result of every fallible testbed call.
pub type Result<T> = std::result::Result<T, Error>;

/// Runs a command to completion and returns its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error(format!("cannot run {program} (is it installed?): {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(Error(format!(
            "`{program} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            if stdout.trim().is_empty() { String::new() } else { format!(" / stdout: {}", stdout.trim()) }
        )))
    }
}

/// Runs a command inside network namespace `ns` (`ip netns exec`).
pub fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// A tool must exist; the error names the Debian package that provides it.
pub fn require_tool(path: &str, package: &str) -> Result<()> {
    if Path::new(path).exists() {
        Ok(())
    } else {
        Err(Error(format!("{path} is missing: install the Debian package `{package}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_returns_stdout_and_reports_failures_with_stderr() {
        assert_eq!(run("sh", &["-c", "echo hello"]).unwrap(), "hello\n");
        let err = run("sh", &["-c", "echo oops >&2; exit 3"]).unwrap_err();
        assert!(err.0.contains("oops") && err.0.contains("exit status: 3"), "{err}");
        let err = run("/nonexistent/tool", &[]).unwrap_err();
        assert!(err.0.contains("cannot run /nonexistent/tool"), "{err}");
    }

    #[test]
    fn require_tool_names_the_package() {
        assert!(require_tool("/bin/sh", "dash").is_ok());
        let err = require_tool("/nonexistent/bird", "bird2").unwrap_err();
        assert!(err.0.contains("`bird2`"), "{err}");
    }
}
