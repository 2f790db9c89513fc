//! The plugin <-> agent protocol: one JSON [`Request`] line from the plugin, one JSON
//! [`Response`] line from the agent, over a Unix stream socket, then the connection closes.
//! Both sides use these types, so the wire format is defined once. The client half uses only
//! std (the plugin starts in about a millisecond, without a runtime).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::{codes, CniError};

/// Upper bound for one message line; a longer line is a protocol error, not an OOM.
pub const MAX_LINE: usize = 4 << 20;

/// The commands the agent handles (VERSION is answered by the plugin itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
}

impl Command {
    pub fn as_str(&self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }

    /// The agent-side command for a CNI command; None for VERSION.
    pub fn from_spec(c: crate::spec::Command) -> Option<Command> {
        use crate::spec::Command as S;
        Some(match c {
            S::Add => Command::Add,
            S::Del => Command::Del,
            S::Check => Command::Check,
            S::Gc => Command::Gc,
            S::Status => Command::Status,
            S::Version => return None,
        })
    }
}

/// One CNI invocation forwarded to the agent, already validated by the plugin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for GC and STATUS).
    #[serde(default)]
    pub container_id: String,
    /// `CNI_NETNS` (empty when the runtime gave none, e.g. DEL after the netns is gone).
    #[serde(default)]
    pub netns: String,
    /// The plugin's open file descriptor on `CNI_NETNS`, kept open until the answer arrives.
    /// A runtime may bind-mount the netns in a private mount namespace (podman under
    /// `ip netns exec`), where the agent cannot see the path; the agent then opens
    /// `/proc/PEER_PID/fd/N` (the peer's pid from `SO_PEERCRED`, never from the message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_fd: Option<i32>,
    /// `CNI_IFNAME` (empty for GC and STATUS).
    #[serde(default)]
    pub ifname: String,
    /// `CNI_ARGS` as key/value pairs (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, ...).
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// The network's `name`.
    #[serde(default)]
    pub network_name: String,
    /// The configuration's `cniVersion` (the agent stamps errors with it).
    #[serde(default)]
    pub cni_version: String,
    /// The whole stdin configuration, including `prevResult`, `runtimeConfig`, `args`, `mtu`
    /// and GC's `cni.dev/valid-attachments`.
    #[serde(default)]
    pub config: Value,
}

/// The agent's answer: the result (ADD and CHECK-less commands may carry none) in the newest
/// spec shape ([`crate::spec::CniResult`] as JSON), or a CNI error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Response {
    Ok {
        #[serde(default)]
        result: Option<Value>,
    },
    Err(CniError),
}

impl Response {
    pub fn ok(result: Option<Value>) -> Response {
        Response::Ok { result }
    }
}

/// One message as a line of JSON (newline-terminated).
pub fn encode_line<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec(msg).expect("protocol messages always serialize");
    out.push(b'\n');
    out
}

/// Parses one line (with or without its newline) into a message; `what` names it in errors.
pub fn decode_line<T: serde::de::DeserializeOwned>(what: &str, line: &[u8]) -> Result<T, CniError> {
    serde_json::from_slice(line).map_err(|e| {
        CniError::new(codes::DECODE_FAILURE, format!("malformed {what} on the Seam agent socket")).with_details(e.to_string())
    })
}

/// Sends `request` to the agent at `socket` and waits up to `timeout` for the response.
/// An unreachable agent is "try again later" (code 11) naming the socket; a STATUS that
/// cannot reach the agent is code 50, "plugin not available".
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, CniError> {
    let unavailable = if request.command == Command::Status { codes::PLUGIN_NOT_AVAILABLE } else { codes::TRY_AGAIN_LATER };
    let io_err = |what: &str, e: std::io::Error| {
        CniError::new(unavailable, format!("Seam agent at {} {what}", socket.display())).with_details(e.to_string())
    };
    let mut stream = UnixStream::connect(socket).map_err(|e| io_err("is not reachable", e))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| io_err("socket setup failed", e))?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| io_err("socket setup failed", e))?;
    stream.write_all(&encode_line(request)).map_err(|e| io_err("did not accept the request", e))?;
    // Capped at MAX_LINE bytes, so a runaway peer cannot exhaust memory.
    let mut reader = BufReader::new(std::io::Read::take(stream, MAX_LINE as u64));
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line) {
        Ok(0) => Err(CniError::new(unavailable, format!("Seam agent at {} closed the connection without answering", socket.display()))),
        Ok(_) if !line.ends_with(b"\n") && line.len() >= MAX_LINE => Err(CniError::new(
            codes::DECODE_FAILURE,
            format!("Seam agent at {} sent a response longer than {MAX_LINE} bytes", socket.display()),
        )),
        Ok(_) => decode_line("response", &line),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Err(CniError::new(
            codes::TRY_AGAIN_LATER,
            format!("Seam agent at {} did not answer within {}s", socket.display(), timeout.as_secs()),
        )),
        Err(e) => Err(io_err("failed while answering", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_shapes() {
        let req = Request {
            command: Command::Add,
            container_id: "c1".into(),
            netns: "/run/netns/p".into(),
            netns_fd: Some(3),
            ifname: "eth0".into(),
            args: [("K8S_POD_NAME".to_string(), "web".to_string())].into(),
            network_name: "seam".into(),
            cni_version: "1.1.0".into(),
            config: json!({"cniVersion":"1.1.0"}),
        };
        let line = encode_line(&req);
        assert!(line.ends_with(b"\n"));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["command"], "ADD");
        assert_eq!(decode_line::<Request>("request", &line).unwrap(), req);

        let ok = Response::ok(Some(json!({"ips":[]})));
        assert_eq!(serde_json::to_value(&ok).unwrap(), json!({"ok":{"result":{"ips":[]}}}));
        let err = Response::Err(CniError::new(3, "unknown container c1"));
        assert_eq!(serde_json::to_value(&err).unwrap(), json!({"err":{"code":3,"msg":"unknown container c1"}}));
        assert_eq!(decode_line::<Response>("response", &encode_line(&err)).unwrap(), err);
        let e = decode_line::<Response>("response", b"{\"maybe\":1}").unwrap_err();
        assert_eq!(e.code, codes::DECODE_FAILURE);
    }

    #[test]
    fn unreachable_agent_codes() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("missing.sock");
        let mut req = Request {
            command: Command::Del,
            container_id: "c".into(),
            netns: String::new(),
            netns_fd: None,
            ifname: "eth0".into(),
            args: BTreeMap::new(),
            network_name: "n".into(),
            cni_version: "1.1.0".into(),
            config: Value::Null,
        };
        let e = call(&sock, &req, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.code, codes::TRY_AGAIN_LATER);
        assert!(e.msg.contains(&sock.display().to_string()), "{e}");
        req.command = Command::Status;
        assert_eq!(call(&sock, &req, Duration::from_secs(1)).unwrap_err().code, codes::PLUGIN_NOT_AVAILABLE);
    }
}
