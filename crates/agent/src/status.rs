//! `seam node status`: the BGP status table in the layout Calico users know from
//! `calicoctl node status`, built by pure functions from the API's neighbor list so that the
//! layout is unit-tested without a daemon.
//!
//! What the GoBGP API cannot carry (network policy enforcement, kernel route convergence) the
//! agent writes to a small JSON status file ([`AgentStatus`], next to its CNI socket by
//! default, see [`default_status_file`]); `seam node status --status-file` reads it and prints
//! it below the BGP tables.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use seam_api::{NeighborInfo, SessionState};
use serde::{Deserialize, Serialize};

/// One line of the table (and one object of `--json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    pub peer_address: IpAddr,
    /// "node-to-node mesh", "global", "node specific" (from the neighbor's description), or
    /// "unknown" for neighbors the agent did not configure.
    pub peer_type: String,
    /// BIRD's protocol state as Calico shows it: "up" when Established, else "start".
    pub state: String,
    /// When the session last changed state, RFC 3339 UTC; None if it never changed.
    pub since: Option<String>,
    /// The BGP FSM state name (RFC 4271 §8.2.2).
    pub info: String,
    /// Seconds since the Unix epoch of `since` (for the table's HH:MM:SS / date choice).
    #[serde(skip)]
    pub since_unix: Option<u64>,
}

/// The whole status, as `--json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub running: bool,
    pub ipv4: Vec<PeerStatus>,
    pub ipv6: Vec<PeerStatus>,
    /// The agent's own report (policy, routes), when its status file was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentStatus>,
}

/// What the agent reports about itself beyond its BGP sessions: the content of its status
/// file, rewritten every few seconds (the write time tells a reader whether it is current).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentStatus {
    /// The node the agent runs for.
    pub node: String,
    /// When the file was written, seconds since the Unix epoch.
    pub updated_unix: u64,
    pub policy: PolicyReport,
    pub routes: RouteReport,
}

/// Network policy enforcement, from the agent's policy sync.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyReport {
    /// A policy table has been loaded into the kernel (a later failure keeps it in place).
    pub loaded: bool,
    /// The last compile or load failure, None once a later sync succeeded.
    pub last_error: Option<String>,
    /// Endpoints on this node with chains in the loaded table.
    pub local_endpoints: usize,
    /// Successful whole-table loads, element-only updates and failed syncs so far.
    pub full_loads: u64,
    pub element_loads: u64,
    pub failures: u64,
    /// Duration of the last successful load (compile + nft), milliseconds.
    pub last_load_ms: Option<u64>,
}

impl From<&crate::policy::PolicyStatus> for PolicyReport {
    fn from(p: &crate::policy::PolicyStatus) -> PolicyReport {
        PolicyReport {
            // Only a whole-table load puts a table in place; element updates patch it.
            loaded: p.full_loads > 0,
            last_error: p.last_error.clone(),
            local_endpoints: p.local_endpoints,
            full_loads: p.full_loads,
            element_loads: p.element_loads,
            failures: p.failures,
            last_load_ms: p.last_load.map(|d| d.as_millis().try_into().unwrap_or(u64::MAX)),
        }
    }
}

/// Whether the routes in the kernel follow BGP, or a previous run's routes are still held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteReport {
    /// False while routes are held (after a start or a lost peer) until BGP has converged.
    pub converged: bool,
    /// How the last convergence was reached: "endOfRib" (every peer sent End-of-RIB) or
    /// "grace" (the convergence grace ran out first).
    pub converged_by: Option<String>,
}

/// Why a status file could not be used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum StatusFileError {
    #[error("cannot read the agent status file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the agent status file {path} is not a Seam agent status: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
}

/// The status file of an agent started with the default `--cni-socket /run/seam/agent.sock`.
pub const DEFAULT_STATUS_FILE: &str = "/run/seam/agent.status.json";

/// Where the agent writes its status when not told: next to its CNI socket, same name with
/// `.status.json` (`/run/seam/agent.sock` -> `/run/seam/agent.status.json`).
pub fn default_status_file(cni_socket: &Path) -> PathBuf {
    cni_socket.with_extension("status.json")
}

/// Parse a status file's content (`path` only names it in errors).
pub fn parse_status(path: &Path, text: &str) -> Result<AgentStatus, StatusFileError> {
    serde_json::from_str(text).map_err(|source| StatusFileError::Parse { path: path.to_path_buf(), source })
}

/// Read and parse a status file.
pub fn read_status_file(path: &Path) -> Result<AgentStatus, StatusFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| StatusFileError::Read { path: path.to_path_buf(), source })?;
    parse_status(path, &text)
}

/// Write a status file atomically (a temporary file renamed over it), so a reader never sees
/// half of one.
pub fn write_status_file(path: &Path, status: &AgentStatus) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(status).map_err(std::io::Error::other)?;
    text.push('\n');
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// A status file older than this is reported as stale (the agent rewrites it every few
/// seconds while it runs).
pub const STATUS_STALE_AFTER: Duration = Duration::from_secs(30);

/// The FSM state's RFC 4271 name.
pub fn fsm_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Idle => "Idle",
        SessionState::Connect => "Connect",
        SessionState::Active => "Active",
        SessionState::OpenSent => "OpenSent",
        SessionState::OpenConfirm => "OpenConfirm",
        SessionState::Established => "Established",
    }
}

/// Build the status from the API's neighbors, IPv4 and IPv6 apart, sorted by address.
pub fn node_status(neighbors: &[NeighborInfo]) -> NodeStatus {
    let mut ipv4 = Vec::new();
    let mut ipv6 = Vec::new();
    for n in neighbors {
        let since_unix = n.since.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs());
        let row = PeerStatus {
            peer_address: n.address,
            peer_type: if n.description.is_empty() { "unknown".into() } else { n.description.clone() },
            state: if n.state == SessionState::Established { "up" } else { "start" }.into(),
            since: since_unix.map(rfc3339),
            info: fsm_name(n.state).into(),
            since_unix,
        };
        if n.address.is_ipv4() {
            ipv4.push(row);
        } else {
            ipv6.push(row);
        }
    }
    ipv4.sort_by_key(|r| r.peer_address);
    ipv6.sort_by_key(|r| r.peer_address);
    NodeStatus { running: true, ipv4, ipv6, agent: None }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// civil-from-days algorithm, written out here).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Seconds since the Unix epoch as an RFC 3339 UTC timestamp (`2023-11-14T22:13:20Z`).
pub fn rfc3339(unix: u64) -> String {
    let (y, m, d) = civil((unix / 86_400) as i64);
    let s = unix % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
}

/// BIRD's "since" column: the time of day when it is today (UTC), else the date.
fn since_column(since: Option<u64>, now: SystemTime) -> String {
    let Some(since) = since else { return "-".into() };
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if since / 86_400 == now / 86_400 {
        let s = since % 86_400;
        format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    } else {
        let (y, m, d) = civil((since / 86_400) as i64);
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// An ASCII table like calicoctl's: centred headers, left-aligned cells, one space padding.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| rows.iter().map(|r| r[i].chars().count()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let rule = format!("+{}+\n", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    let mut out = rule.clone();
    out.push('|');
    for (h, w) in headers.iter().zip(&widths) {
        let pad = w - h.len();
        out.push_str(&format!(" {}{}{} |", " ".repeat(pad / 2), h, " ".repeat(pad - pad / 2)));
    }
    out.push('\n');
    out.push_str(&rule);
    for row in rows {
        out.push('|');
        for (cell, w) in row.iter().zip(&widths) {
            out.push_str(&format!(" {cell:<w$} |"));
        }
        out.push('\n');
    }
    out.push_str(&rule);
    out
}

fn family_section(title: &str, none: &str, rows: &[PeerStatus], now: SystemTime) -> String {
    let mut out = format!("{title}\n");
    if rows.is_empty() {
        out.push_str(none);
        out.push('\n');
        return out;
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![r.peer_address.to_string(), r.peer_type.clone(), r.state.clone(), since_column(r.since_unix, now), r.info.clone()]
        })
        .collect();
    out.push_str(&table(&["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"], &cells));
    out
}

/// The text `seam node status` prints, given the current time.
pub fn render(status: &NodeStatus, now: SystemTime) -> String {
    let mut out = String::from(if status.running { "Seam process is running.\n\n" } else { "Seam process is not running.\n" });
    if !status.running {
        return out;
    }
    out.push_str(&family_section("IPv4 BGP status", "No IPv4 peers found.", &status.ipv4, now));
    out.push('\n');
    out.push_str(&family_section("IPv6 BGP status", "No IPv6 peers found.", &status.ipv6, now));
    out
}

/// The text below the BGP tables: policy enforcement and route convergence from the agent's
/// status file (`Err`: why it could not be read), given the current time.
pub fn render_agent(agent: Result<&AgentStatus, &str>, now: SystemTime) -> String {
    let mut out = String::from("Policy status\n");
    let agent = match agent {
        Ok(agent) => agent,
        Err(why) => {
            out.push_str(&format!("Unknown: {why}\n"));
            return out;
        }
    };
    let p = &agent.policy;
    let loaded = match (p.loaded, p.last_load_ms) {
        (true, Some(ms)) => format!("yes ({ms} ms)"),
        (true, None) => "yes".to_string(),
        (false, _) => "no".to_string(),
    };
    let error = p.last_error.clone().unwrap_or_else(|| "-".to_string());
    out.push_str(&table(&["LOADED", "ENDPOINTS", "LAST ERROR"], &[vec![loaded, p.local_endpoints.to_string(), error]]));
    let routes = match (agent.routes.converged, agent.routes.converged_by.as_deref()) {
        (true, Some("endOfRib")) => "converged (End-of-RIB from every peer)".to_string(),
        (true, Some("grace")) => "converged (convergence grace expired)".to_string(),
        (true, _) => "converged".to_string(),
        (false, _) => "holding previous routes until BGP converges".to_string(),
    };
    out.push_str(&format!("\nKernel routes: {routes}\n"));
    let now_unix = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if now_unix.saturating_sub(agent.updated_unix) > STATUS_STALE_AFTER.as_secs() {
        out.push_str(&format!(
            "Warning: the agent status was last written at {}; the agent may not be running.\n",
            rfc3339(agent.updated_unix)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    fn neighbor(addr: &str, state: SessionState, description: &str, since: Option<u64>) -> NeighborInfo {
        let mut n = NeighborInfo::new(addr.parse().unwrap(), 64512, 64512);
        n.state = state;
        n.description = description.into();
        n.since = since.map(at);
        n
    }

    // 2023-11-14T22:13:20Z
    const T: u64 = 1_700_000_000;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn renders_calicoctl_layout() {
        let status = node_status(&[neighbor("172.16.18.32", SessionState::Established, "global", Some(T))]);
        let text = render(&status, at(T + 60));
        let expected = String::from(
            "Seam process is running.\n\n\
             IPv4 BGP status\n\
             +--------------+-----------+-------+----------+-------------+\n\
             | PEER ADDRESS | PEER TYPE | STATE |  SINCE   |    INFO     |\n\
             +--------------+-----------+-------+----------+-------------+\n\
             | 172.16.18.32 | global    | up    | 22:13:20 | Established |\n\
             +--------------+-----------+-------+----------+-------------+\n\n\
             IPv6 BGP status\n\
             No IPv6 peers found.\n",
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn rows_are_split_by_family_sorted_and_mapped() {
        let status = node_status(&[
            neighbor("10.0.0.9", SessionState::Active, "node-to-node mesh", None),
            neighbor("fd00::1", SessionState::Established, "node specific", Some(T)),
            neighbor("10.0.0.2", SessionState::OpenSent, "", Some(T)),
        ]);
        let v4: Vec<_> = status.ipv4.iter().map(|r| (r.peer_address.to_string(), r.peer_type.as_str(), r.state.as_str(), r.info.as_str())).collect();
        assert_eq!(v4, vec![("10.0.0.2".into(), "unknown", "start", "OpenSent"), ("10.0.0.9".into(), "node-to-node mesh", "start", "Active")]);
        assert_eq!(status.ipv6.len(), 1);
        assert_eq!(status.ipv6[0].state, "up");
        let text = render(&status, at(T + 2 * 86_400));
        assert!(text.contains("| 10.0.0.9     | node-to-node mesh | start | -          | Active   |"), "{text}");
        assert!(!text.contains("No IPv4 peers found."));
        // A day later, "since" is a date.
        assert_eq!(since_column(Some(T), at(T + 86_400)), rfc3339(T)[..10]);
    }

    #[test]
    fn empty_and_not_running() {
        let text = render(&node_status(&[]), at(T));
        assert_eq!(text, "Seam process is running.\n\nIPv4 BGP status\nNo IPv4 peers found.\n\nIPv6 BGP status\nNo IPv6 peers found.\n");
        let down = NodeStatus { running: false, ipv4: vec![], ipv6: vec![], agent: None };
        assert_eq!(render(&down, at(T)), "Seam process is not running.\n");
    }

    #[test]
    fn json_shape_is_stable() {
        let status = node_status(&[neighbor("10.0.0.2", SessionState::Established, "global", Some(1_700_000_000))]);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "running": true,
                "ipv4": [{"peerAddress": "10.0.0.2", "peerType": "global", "state": "up", "since": "2023-11-14T22:13:20Z", "info": "Established"}],
                "ipv6": []
            })
        );
    }

    fn agent_status(updated_unix: u64) -> AgentStatus {
        AgentStatus {
            node: "a".into(),
            updated_unix,
            policy: PolicyReport {
                loaded: true,
                last_error: Some("seam.p1: spec.selector: bad".into()),
                local_endpoints: 3,
                full_loads: 1,
                element_loads: 4,
                failures: 1,
                last_load_ms: Some(12),
            },
            routes: RouteReport { converged: true, converged_by: Some("endOfRib".into()) },
        }
    }

    #[test]
    fn status_file_round_trips_and_names_the_file_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = default_status_file(&dir.path().join("agent.sock"));
        assert_eq!(path, dir.path().join("agent.status.json"));
        assert_eq!(default_status_file(Path::new("/run/seam/agent.sock")), Path::new(DEFAULT_STATUS_FILE));
        let status = agent_status(T);
        write_status_file(&path, &status).unwrap();
        assert_eq!(read_status_file(&path).unwrap(), status);
        // Rewriting replaces it whole.
        let mut next = status.clone();
        next.policy.last_error = None;
        write_status_file(&path, &next).unwrap();
        assert_eq!(read_status_file(&path).unwrap(), next);

        let missing = read_status_file(&dir.path().join("nope.json")).unwrap_err();
        assert!(matches!(missing, StatusFileError::Read { .. }));
        assert!(missing.to_string().contains("nope.json"), "{missing}");
        let bad = parse_status(Path::new("/run/seam/x.status.json"), "{\"node\": 1}").unwrap_err();
        assert!(bad.to_string().starts_with("the agent status file /run/seam/x.status.json is not"), "{bad}");
        let unknown = parse_status(Path::new("f"), r#"{"node":"a","updatedUnix":1,"policy":{},"routes":{},"extra":1}"#);
        assert!(unknown.is_err(), "unknown fields are refused");
    }

    #[test]
    fn status_file_json_shape_is_stable() {
        let json = serde_json::to_value(agent_status(T)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "node": "a",
                "updatedUnix": T,
                "policy": {"loaded": true, "lastError": "seam.p1: spec.selector: bad", "localEndpoints": 3,
                           "fullLoads": 1, "elementLoads": 4, "failures": 1, "lastLoadMs": 12},
                "routes": {"converged": true, "convergedBy": "endOfRib"}
            })
        );
        // In `seam node status --json`, under "agent"; absent when there is no status file.
        let mut status = node_status(&[]);
        assert!(serde_json::to_value(&status).unwrap().get("agent").is_none());
        status.agent = Some(agent_status(T));
        assert_eq!(serde_json::to_value(&status).unwrap()["agent"]["policy"]["localEndpoints"], 3);
    }

    #[test]
    fn renders_policy_and_route_state() {
        let text = render_agent(Ok(&agent_status(T)), at(T + 5));
        assert_eq!(
            text,
            "Policy status\n\
             +-------------+-----------+-----------------------------+\n\
             |   LOADED    | ENDPOINTS |         LAST ERROR          |\n\
             +-------------+-----------+-----------------------------+\n\
             | yes (12 ms) | 3         | seam.p1: spec.selector: bad |\n\
             +-------------+-----------+-----------------------------+\n\
             \n\
             Kernel routes: converged (End-of-RIB from every peer)\n"
        );
        let mut holding = agent_status(T);
        holding.policy = PolicyReport::default();
        holding.routes = RouteReport { converged: false, converged_by: None };
        let text = render_agent(Ok(&holding), at(T + 60));
        assert!(text.contains("| no     | 0         | -          |"), "{text}");
        assert!(text.contains("Kernel routes: holding previous routes until BGP converges\n"), "{text}");
        assert!(text.contains("Warning: the agent status was last written at 2023-11-14T22:13:20Z"), "{text}");
        assert_eq!(render_agent(Err("no status file at /x"), at(T)), "Policy status\nUnknown: no status file at /x\n");
    }

    #[test]
    // `..Default::default()`: PolicyStatus belongs to the policy sync and may grow fields.
    #[allow(clippy::needless_update)]
    fn policy_report_from_the_sync_status() {
        let none = PolicyReport::from(&crate::policy::PolicyStatus::default());
        assert_eq!(none, PolicyReport::default());
        assert!(!none.loaded);
        let sync = crate::policy::PolicyStatus {
            full_loads: 2,
            element_loads: 7,
            failures: 1,
            last_error: Some("nft: table inet seam: error".into()),
            local_endpoints: 5,
            last_load: Some(Duration::from_micros(2_500)),
            ..Default::default()
        };
        let report = PolicyReport::from(&sync);
        assert!(report.loaded);
        assert_eq!((report.local_endpoints, report.full_loads, report.element_loads, report.failures), (5, 2, 7, 1));
        assert_eq!(report.last_error.as_deref(), Some("nft: table inet seam: error"));
        assert_eq!(report.last_load_ms, Some(2));
    }
}
