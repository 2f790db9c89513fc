//! The parts of the CNI specification (versions 0.4.0, 1.0.0 and 1.1.0) that Seam's plugin
//! needs: the network configuration delivered on stdin, the `CNI_*` environment, results in
//! each version's shape, the error object with the spec's well-known codes, and VERSION's
//! answer. Written from the spec text (containernetworking/cni `SPEC.md`), in our own words.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The newest spec version this plugin speaks; results are built in this shape and converted.
pub const LATEST_VERSION: &str = "1.1.0";

/// Every spec version the plugin accepts in a configuration (VERSION's `supportedVersions`).
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// Where the local agent listens unless the network configuration says otherwise.
pub const DEFAULT_AGENT_SOCKET: &str = "/run/seam/agent.sock";

/// The spec's well-known error codes (SPEC.md, "Error"). Codes 1-99 are reserved by the spec;
/// Seam's own codes start at 100 (see [`codes::SEAM_IPAM`]).
pub mod codes {
    /// The configuration's `cniVersion` is not one this plugin supports.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// A field in the configuration is not supported.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// The container does not exist or is not known (CHECK of something never added).
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// A required `CNI_*` environment variable is missing or malformed.
    pub const INVALID_ENV: u32 = 4;
    /// An I/O failure (reading stdin, talking to the kernel or the agent).
    pub const IO_FAILURE: u32 = 5;
    /// The configuration or a message could not be decoded.
    pub const DECODE_FAILURE: u32 = 6;
    /// The configuration is well-formed JSON but invalid.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// A transient condition: the runtime should retry later (agent unreachable, busy store).
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot serve ADDs at all right now.
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// STATUS: ADDs work but existing workloads may have limited connectivity.
    pub const PLUGIN_LIMITED_CONNECTIVITY: u32 = 51;
    /// Seam: the IPAM could not give an address (no pool selects the node, pool exhausted).
    pub const SEAM_IPAM: u32 = 100;
    /// Seam: plumbing the workload's interface in the kernel failed.
    pub const SEAM_DATAPLANE: u32 = 101;
    /// Seam: the datastore failed or refused a write.
    pub const SEAM_DATASTORE: u32 = 102;
    /// Seam: CHECK found the workload's interface, address or routes not as ADD left them.
    pub const SEAM_CHECK_FAILED: u32 = 103;
}

/// The error object a plugin prints on stdout (with exit code 1). Exists as one type so the
/// plugin and the agent report failures identically, with the offending field in `msg`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
pub struct CniError {
    /// One of [`codes`].
    pub code: u32,
    /// Short human-readable message; names the parameter or field at fault.
    pub msg: String,
    /// Longer explanation (the underlying error); empty when there is nothing more to say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The JSON object printed on stdout, stamped with the configuration's version.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut v = json!({ "cniVersion": cni_version, "code": self.code, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

/// A spec version as three numbers, so versions compare numerically ("1.10.0" > "1.9.0").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub const V0_4_0: Version = Version(0, 4, 0);
    pub const V1_0_0: Version = Version(1, 0, 0);
    pub const V1_1_0: Version = Version(1, 1, 0);

    /// Parses `MAJOR.MINOR.PATCH`; anything else is a decode error naming `field`.
    pub fn parse(field: &str, text: &str) -> Result<Version, CniError> {
        let parts: Vec<&str> = text.split('.').collect();
        let nums: Option<Vec<u32>> = parts.iter().map(|p| p.parse::<u32>().ok()).collect();
        match nums.as_deref() {
            Some([a, b, c]) if parts.len() == 3 => Ok(Version(*a, *b, *c)),
            _ => Err(CniError::new(
                codes::INVALID_NETWORK_CONFIG,
                format!("{field}: {text:?} is not a version of the form MAJOR.MINOR.PATCH"),
            )),
        }
    }

    /// Parses and checks the version is one this plugin supports (code 1 otherwise).
    pub fn supported(field: &str, text: &str) -> Result<Version, CniError> {
        let v = Version::parse(field, text)?;
        if SUPPORTED_VERSIONS.contains(&v.to_string().as_str()) {
            Ok(v)
        } else {
            Err(CniError::new(
                codes::INCOMPATIBLE_VERSION,
                format!("{field}: CNI version {text} is not supported (supported: {})", SUPPORTED_VERSIONS.join(", ")),
            ))
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The CNI operations (the value of `CNI_COMMAND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(text: &str) -> Result<Command, CniError> {
        Ok(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::new(
                    codes::INVALID_ENV,
                    format!("CNI_COMMAND: unknown command {other:?} (expected ADD, DEL, CHECK, GC, STATUS or VERSION)"),
                ))
            }
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }

    /// The first spec version that defines this command.
    pub fn since(&self) -> Version {
        match self {
            Command::Gc | Command::Status => Version::V1_1_0,
            _ => Version::V0_4_0,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The runtime's `CNI_*` environment, validated for the command it carries. Exists so the
/// plugin validates once and the agent receives clean values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    /// `CNI_CONTAINERID`; empty for commands that take none (GC, STATUS, VERSION).
    pub container_id: String,
    /// `CNI_NETNS`; empty when not given (allowed for DEL, whose netns may be gone).
    pub netns: String,
    /// `CNI_IFNAME`; empty for GC, STATUS, VERSION.
    pub ifname: String,
    /// `CNI_ARGS` split into `KEY=VALUE` pairs.
    pub args: BTreeMap<String, String>,
    /// `CNI_PATH`, as given (Seam needs no delegate plugins; kept for logs).
    pub path: String,
}

/// A container ID: letters, digits, `_`, `.` and `-`, starting with a letter or digit.
fn valid_container_id(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// An interface name the kernel accepts: 1-15 bytes, no `/`, `:` or whitespace, not `.`/`..`.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
}

/// Splits `CNI_ARGS` (`K=V;K=V`); an item without `=` is an error naming it.
pub fn parse_cni_args(text: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for item in text.split(';').filter(|s| !s.is_empty()) {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            _ => {
                return Err(CniError::new(
                    codes::INVALID_ENV,
                    format!("CNI_ARGS: {item:?} is not of the form KEY=VALUE"),
                ))
            }
        }
    }
    Ok(out)
}

impl Env {
    /// Reads and validates the environment through `var` (std::env::var in the binary, a map
    /// in tests). Which variables are required depends on the command, as the spec says.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let command = match var("CNI_COMMAND") {
            Some(c) if !c.is_empty() => Command::parse(&c)?,
            _ => return Err(CniError::new(codes::INVALID_ENV, "CNI_COMMAND is not set")),
        };
        let get = |name: &str| var(name).unwrap_or_default();
        let require = |name: &str| -> Result<String, CniError> {
            match var(name) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(CniError::new(codes::INVALID_ENV, format!("{name} is not set (required for {command})"))),
            }
        };
        let (container_id, netns, ifname) = match command {
            Command::Add | Command::Check => {
                (require("CNI_CONTAINERID")?, require("CNI_NETNS")?, require("CNI_IFNAME")?)
            }
            Command::Del => (require("CNI_CONTAINERID")?, get("CNI_NETNS"), require("CNI_IFNAME")?),
            Command::Gc | Command::Status | Command::Version => (String::new(), String::new(), String::new()),
        };
        if !container_id.is_empty() && !valid_container_id(&container_id) {
            return Err(CniError::new(
                codes::INVALID_ENV,
                format!("CNI_CONTAINERID: {container_id:?} must contain only letters, digits, '_', '.' and '-', starting with a letter or digit"),
            ));
        }
        if !ifname.is_empty() && !valid_ifname(&ifname) {
            return Err(CniError::new(
                codes::INVALID_ENV,
                format!("CNI_IFNAME: {ifname:?} is not a valid interface name (1-15 bytes, no '/', ':' or whitespace)"),
            ));
        }
        if !netns.is_empty() && !netns.starts_with('/') {
            return Err(CniError::new(codes::INVALID_ENV, format!("CNI_NETNS: {netns:?} is not an absolute path")));
        }
        let args = parse_cni_args(&get("CNI_ARGS"))?;
        Ok(Env { command, container_id, netns, ifname, args, path: get("CNI_PATH") })
    }
}

/// A network configuration as the plugin receives it on stdin (a `.conf`, or one plugin entry
/// of a `.conflist` with `name` and `cniVersion` copied in by the runtime). `raw` keeps the
/// whole document: the agent reads `prevResult`, `runtimeConfig`, `args` and
/// `cni.dev/valid-attachments` from it.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub version: Version,
    /// The network's name (`name`).
    pub name: String,
    /// The plugin type (`type`), normally `seam-cni`.
    pub plugin_type: String,
    /// The previous plugin's result in a chain (CHECK and chained ADD).
    pub prev_result: Option<Value>,
    /// Capabilities the runtime fills in (`runtimeConfig`).
    pub runtime_config: Option<Value>,
    /// Free-form `args` (e.g. `args.cni.labels`).
    pub args: Option<Value>,
    /// Seam: the agent's Unix socket (`agentSocket`).
    pub agent_socket: PathBuf,
    /// Seam: MTU for the workload's interface (`mtu`); the agent's default when None.
    pub mtu: Option<u32>,
    /// Seam: a file the plugin appends one line per invocation to (`logFile`).
    pub log_file: Option<PathBuf>,
    /// The whole configuration as received.
    pub raw: Value,
}

fn bad_conf(field: &str, why: impl fmt::Display) -> CniError {
    CniError::new(codes::INVALID_NETWORK_CONFIG, format!("{field}: {why}"))
}

fn opt_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, CniError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad_conf(field, format!("must be a string, got {other}"))),
    }
}

fn opt_object(obj: &Map<String, Value>, field: &str) -> Result<Option<Value>, CniError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(other) => Err(bad_conf(field, format!("must be an object, got {other}"))),
    }
}

impl NetConf {
    /// Parses stdin. Not JSON → code 6; a missing or bad field → code 7 naming it; an
    /// unsupported `cniVersion` → code 1.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(codes::DECODE_FAILURE, "network configuration on stdin is not valid JSON")
                .with_details(e.to_string())
        })?;
        let Value::Object(obj) = &raw else {
            return Err(CniError::new(codes::DECODE_FAILURE, "network configuration on stdin is not a JSON object"));
        };
        let cni_version = opt_str(obj, "cniVersion")?.ok_or_else(|| bad_conf("cniVersion", "missing"))?.to_string();
        let version = Version::supported("cniVersion", &cni_version)?;
        let name = opt_str(obj, "name")?.ok_or_else(|| bad_conf("name", "missing"))?.to_string();
        if name.is_empty() {
            return Err(bad_conf("name", "must not be empty"));
        }
        let plugin_type = opt_str(obj, "type")?.ok_or_else(|| bad_conf("type", "missing"))?.to_string();
        let agent_socket = match opt_str(obj, "agentSocket")? {
            None => PathBuf::from(DEFAULT_AGENT_SOCKET),
            Some(s) if s.starts_with('/') => PathBuf::from(s),
            Some(s) => return Err(bad_conf("agentSocket", format!("{s:?} must be an absolute path"))),
        };
        let mtu = match obj.get("mtu") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(m @ 68..=65535) => Some(m as u32),
                _ => return Err(bad_conf("mtu", format!("{v} must be an integer between 68 and 65535"))),
            },
        };
        let log_file = match opt_str(obj, "logFile")? {
            None | Some("") => None,
            Some(s) if s.starts_with('/') => Some(PathBuf::from(s)),
            Some(s) => return Err(bad_conf("logFile", format!("{s:?} must be an absolute path"))),
        };
        Ok(NetConf {
            cni_version,
            version,
            name,
            plugin_type,
            prev_result: opt_object(obj, "prevResult")?,
            runtime_config: opt_object(obj, "runtimeConfig")?,
            args: opt_object(obj, "args")?,
            agent_socket,
            mtu,
            log_file,
            raw: raw.clone(),
        })
    }
}

/// An interface in a result. `sandbox` is the netns path for container-side interfaces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// 1.1.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// One address assigned to the workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length (`10.0.0.5/32`).
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route set up in the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// 1.1.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// 1.1.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

/// DNS settings (Seam leaves DNS to the runtime, so normally empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

/// A successful ADD's result, held in the newest shape and converted to the configuration's
/// version on output. The agent sends it in this shape; CHECK reads `prevResult` into it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

impl CniResult {
    /// Reads a result in any supported version's shape (0.4.0's `ips[].version` is ignored;
    /// the address says its family). A missing `cniVersion` is taken as the latest.
    pub fn from_value(value: &Value) -> Result<CniResult, CniError> {
        if let Some(v) = value.get("cniVersion").and_then(Value::as_str) {
            Version::supported("prevResult.cniVersion", v)?;
        }
        let mut v = value.clone();
        if let Some(ips) = v.get_mut("ips").and_then(Value::as_array_mut) {
            for ip in ips {
                if let Some(o) = ip.as_object_mut() {
                    o.remove("version");
                }
            }
        }
        if let Some(o) = v.as_object_mut() {
            o.remove("cniVersion");
        }
        serde_json::from_value(v).map_err(|e| {
            CniError::new(codes::DECODE_FAILURE, "result is not a valid CNI result").with_details(e.to_string())
        })
    }

    /// The result as printed for a configuration of version `version`: 1.1.0 as is; 1.0.0
    /// without the 1.1.0-only fields (interface and route `mtu`, route `scope`); 0.4.0 like
    /// 1.0.0 plus `ips[].version` ("4" or "6").
    pub fn to_json(&self, cni_version: &str) -> Value {
        let version = Version::parse("cniVersion", cni_version).unwrap_or(Version::V1_1_0);
        let mut v = serde_json::to_value(self).expect("results always serialize");
        if version < Version::V1_1_0 {
            for iface in v["interfaces"].as_array_mut().into_iter().flatten() {
                iface.as_object_mut().map(|o| o.remove("mtu"));
            }
            for route in v["routes"].as_array_mut().into_iter().flatten() {
                if let Some(o) = route.as_object_mut() {
                    o.remove("mtu");
                    o.remove("scope");
                }
            }
        }
        if version < Version::V1_0_0 {
            for (ip, cfg) in v["ips"].as_array_mut().into_iter().flatten().zip(&self.ips) {
                let family = if cfg.address.addr().is_ipv4() { "4" } else { "6" };
                ip["version"] = Value::String(family.into());
            }
        }
        v["cniVersion"] = Value::String(cni_version.to_string());
        v
    }
}

/// VERSION's answer: the version the request asked in (when supported) and every version
/// this plugin supports.
pub fn version_answer(requested: Option<&str>) -> Value {
    let version = requested.filter(|v| SUPPORTED_VERSIONS.contains(v)).unwrap_or(LATEST_VERSION);
    json!({ "cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS })
}

/// One entry of 1.1.0's `cni.dev/valid-attachments` (GC's list of attachments to keep).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Reads `cni.dev/valid-attachments` from a GC configuration. An empty list means "none is
/// valid"; a GC without the key at all is refused (code 7), so a runtime bug cannot wipe
/// every workload on the node.
pub fn valid_attachments(config: &Value) -> Result<Vec<Attachment>, CniError> {
    match config.get("cni.dev/valid-attachments") {
        None | Some(Value::Null) => Err(bad_conf("cni.dev/valid-attachments", "missing (required for GC)")),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            bad_conf("cni.dev/valid-attachments", "must be a list of {\"containerID\", \"ifname\"} objects")
                .with_details(e.to_string())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::from_vars(|k| map.get(k).cloned())
    }

    const ADD_ENV: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=web;K8S_POD_NAME=nginx-1;IgnoreUnknown=1"),
    ];

    #[test]
    fn env_add_parses_args() {
        let e = env(&ADD_ENV).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id, "abc123");
        assert_eq!(e.args["K8S_POD_NAMESPACE"], "web");
        assert_eq!(e.args["K8S_POD_NAME"], "nginx-1");
        assert_eq!(e.args.len(), 3);
    }

    #[test]
    fn env_errors_name_the_variable() {
        let without = |name: &str| -> Vec<(&str, &str)> { ADD_ENV.iter().copied().filter(|(k, _)| *k != name).collect() };
        for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let e = env(&without(var)).unwrap_err();
            assert_eq!(e.code, codes::INVALID_ENV);
            assert!(e.msg.starts_with(&format!("{var} is not set")), "{e}");
        }
        let e = env(&without("CNI_COMMAND")).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (4, "CNI_COMMAND is not set"));
        let e = env(&[("CNI_COMMAND", "FROB")]).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("FROB"));
        let mut bad = ADD_ENV.to_vec();
        bad[4] = ("CNI_ARGS", "K8S_POD_NAME=x;garbage");
        let e = env(&bad).unwrap_err();
        assert!(e.msg.contains("CNI_ARGS") && e.msg.contains("garbage"), "{e}");
        bad[4] = ("CNI_IFNAME", "much-too-long-ifname");
        let e = env(&bad).unwrap_err();
        assert!(e.msg.starts_with("CNI_IFNAME"), "{e}");
        bad[4] = ("CNI_CONTAINERID", "../etc");
        let e = env(&bad).unwrap_err();
        assert!(e.msg.starts_with("CNI_CONTAINERID"), "{e}");
        bad[4] = ("CNI_NETNS", "relative/ns");
        let e = env(&bad).unwrap_err();
        assert!(e.msg.starts_with("CNI_NETNS"), "{e}");
    }

    #[test]
    fn env_del_without_netns_and_gc_without_container() {
        let e = env(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")]).unwrap();
        assert_eq!(e.netns, "");
        let e = env(&[("CNI_COMMAND", "GC")]).unwrap();
        assert_eq!((e.command, e.container_id.as_str()), (Command::Gc, ""));
        assert_eq!(env(&[("CNI_COMMAND", "STATUS")]).unwrap().command, Command::Status);
        assert_eq!(env(&[("CNI_COMMAND", "VERSION")]).unwrap().command, Command::Version);
    }

    #[test]
    fn netconf_defaults_and_seam_keys() {
        let c = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"seam","type":"seam-cni"}"#).unwrap();
        assert_eq!(c.version, Version::V1_1_0);
        assert_eq!(c.agent_socket, PathBuf::from(DEFAULT_AGENT_SOCKET));
        assert_eq!((c.mtu, c.log_file.clone()), (None, None));
        let c = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"n","type":"seam-cni","agentSocket":"/tmp/a.sock","mtu":1400,
                "logFile":"/tmp/l","prevResult":{"ips":[]},"runtimeConfig":{"x":1},"args":{"cni":{"labels":{"a":"b"}}}}"#,
        )
        .unwrap();
        assert_eq!(c.agent_socket, PathBuf::from("/tmp/a.sock"));
        assert_eq!(c.mtu, Some(1400));
        assert!(c.prev_result.is_some() && c.runtime_config.is_some() && c.args.is_some());
        assert_eq!(c.raw["args"]["cni"]["labels"]["a"], "b");
    }

    #[test]
    fn netconf_errors() {
        let cases: &[(&[u8], u32, &str)] = &[
            (b"not json", codes::DECODE_FAILURE, "network configuration on stdin is not valid JSON"),
            (b"[1]", codes::DECODE_FAILURE, "network configuration on stdin is not a JSON object"),
            (br#"{"name":"n","type":"t"}"#, 7, "cniVersion: missing"),
            (br#"{"cniVersion":"0.3.1","name":"n","type":"t"}"#, 1, "cniVersion: CNI version 0.3.1 is not supported"),
            (br#"{"cniVersion":"one","name":"n","type":"t"}"#, 7, "cniVersion: \"one\""),
            (br#"{"cniVersion":"1.0.0","type":"t"}"#, 7, "name: missing"),
            (br#"{"cniVersion":"1.0.0","name":"n"}"#, 7, "type: missing"),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"t","agentSocket":"rel.sock"}"#, 7, "agentSocket:"),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"t","agentSocket":5}"#, 7, "agentSocket: must be a string"),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":10}"#, 7, "mtu:"),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"t","logFile":"x"}"#, 7, "logFile:"),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"t","prevResult":3}"#, 7, "prevResult: must be an object"),
        ];
        for (input, code, msg) in cases {
            let e = NetConf::parse(input).unwrap_err();
            assert_eq!(e.code, *code, "{e}");
            assert!(e.msg.starts_with(msg), "{:?} does not start with {msg:?}", e.msg);
        }
    }

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface { name: "seam1234".into(), mac: "ee:ee:ee:ee:ee:ee".into(), mtu: Some(1500), sandbox: String::new() },
                Interface { name: "eth0".into(), mac: "02:00:00:00:00:01".into(), mtu: Some(1500), sandbox: "/run/netns/p".into() },
            ],
            ips: vec![
                IpConfig { address: "10.1.0.5/32".parse().unwrap(), gateway: Some("169.254.1.1".parse().unwrap()), interface: Some(1) },
                IpConfig { address: "fd00::5/128".parse().unwrap(), gateway: None, interface: Some(1) },
            ],
            routes: vec![Route { dst: "0.0.0.0/0".parse().unwrap(), gw: Some("169.254.1.1".parse().unwrap()), mtu: Some(1500), scope: Some(0) }],
            dns: Dns::default(),
        }
    }

    #[test]
    fn result_formats_per_version() {
        let r = sample();
        let v11 = r.to_json("1.1.0");
        assert_eq!(v11["cniVersion"], "1.1.0");
        assert_eq!(v11["interfaces"][1]["mtu"], 1500);
        assert_eq!(v11["routes"][0]["mtu"], 1500);
        assert_eq!(v11["ips"][0]["address"], "10.1.0.5/32");
        assert_eq!(v11["ips"][0]["gateway"], "169.254.1.1");
        assert_eq!(v11["ips"][0]["interface"], 1);
        assert!(v11["ips"][0].get("version").is_none());
        assert!(v11.get("dns").is_none());

        let v10 = r.to_json("1.0.0");
        assert_eq!(v10["cniVersion"], "1.0.0");
        assert!(v10["interfaces"][1].get("mtu").is_none());
        assert!(v10["routes"][0].get("mtu").is_none() && v10["routes"][0].get("scope").is_none());
        assert!(v10["ips"][0].get("version").is_none());

        let v04 = r.to_json("0.4.0");
        assert_eq!(v04["cniVersion"], "0.4.0");
        assert_eq!(v04["ips"][0]["version"], "4");
        assert_eq!(v04["ips"][1]["version"], "6");
        assert!(v04["interfaces"][0].get("mtu").is_none());

        // Every version's output reads back to the same addresses and routes.
        for v in ["0.4.0", "1.0.0", "1.1.0"] {
            let back = CniResult::from_value(&r.to_json(v)).unwrap();
            assert_eq!(back.ips, r.ips, "{v}");
            assert_eq!(back.routes.len(), 1);
        }
        assert_eq!(CniResult::from_value(&r.to_json("1.1.0")).unwrap(), r);
    }

    #[test]
    fn result_decode_errors() {
        let e = CniResult::from_value(&json!({"cniVersion":"0.2.0","ips":[]})).unwrap_err();
        assert_eq!(e.code, codes::INCOMPATIBLE_VERSION);
        assert!(e.msg.starts_with("prevResult.cniVersion"));
        let e = CniResult::from_value(&json!({"ips":[{"address":"nope"}]})).unwrap_err();
        assert_eq!(e.code, codes::DECODE_FAILURE);
    }

    #[test]
    fn error_json_shape() {
        let e = CniError::new(codes::TRY_AGAIN_LATER, "agent down").with_details("connection refused");
        assert_eq!(
            e.to_json("1.0.0"),
            json!({"cniVersion":"1.0.0","code":11,"msg":"agent down","details":"connection refused"})
        );
        assert_eq!(CniError::new(3, "x").to_json("1.1.0"), json!({"cniVersion":"1.1.0","code":3,"msg":"x"}));
        assert_eq!(e.to_string(), "CNI error 11: agent down (connection refused)");
    }

    #[test]
    fn version_answer_shape() {
        let v = version_answer(Some("1.0.0"));
        assert_eq!(v, json!({"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}));
        assert_eq!(version_answer(Some("0.1.0"))["cniVersion"], "1.1.0");
        assert_eq!(version_answer(None)["cniVersion"], "1.1.0");
        assert!(Version::parse("v", "1.10.0").unwrap() > Version::parse("v", "1.9.0").unwrap());
    }

    #[test]
    fn valid_attachments_parse() {
        let conf = json!({"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]});
        assert_eq!(valid_attachments(&conf).unwrap(), vec![Attachment { container_id: "a".into(), ifname: "eth0".into() }]);
        assert_eq!(valid_attachments(&json!({})).unwrap_err().code, 7);
        let e = valid_attachments(&json!({"cni.dev/valid-attachments":[{"ifname":"eth0"}]})).unwrap_err();
        assert!(e.msg.starts_with("cni.dev/valid-attachments"));
    }
}
