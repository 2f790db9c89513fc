//! `seam node status`: the BGP status table in the layout Calico users know from
//! `calicoctl node status`, built by pure functions from the API's neighbor list so that the
//! layout is unit-tested without a daemon.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use seam_api::{NeighborInfo, SessionState};
use serde::Serialize;

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
}

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
    NodeStatus { running: true, ipv4, ipv6 }
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

fn rfc3339(unix: u64) -> String {
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
        let down = NodeStatus { running: false, ipv4: vec![], ipv6: vec![] };
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
}
