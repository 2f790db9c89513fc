//! Network sysctls (`/proc/sys/net/...`). These are per network namespace, and /proc/sys/net
//! shows the namespace of the *thread* that opens it, so writes for another namespace are made
//! from a thread that entered it ([`NetNs::run`]).
//!
//! Keys are given as path components, not dotted strings, because interface names may contain
//! dots (`vxlan.seam`).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::links::validate_ifname;
use crate::netns::NetNs;

/// `/proc/sys/<components...>`, refusing components that could escape the tree.
fn sysctl_path(components: &[&str]) -> Result<PathBuf> {
    if components.is_empty() {
        return Err(Error::invalid("sysctl key", "is empty"));
    }
    let mut p = PathBuf::from("/proc/sys");
    for c in components {
        if c.is_empty() || *c == "." || *c == ".." || c.contains('/') || c.contains('\0') {
            return Err(Error::invalid(
                format!("sysctl key {}", components.join("/")),
                format!("bad component {c:?}"),
            ));
        }
        p.push(c);
    }
    Ok(p)
}

fn write_now(path: &PathBuf, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|source| Error::Sysctl {
        path: path.display().to_string(),
        source,
    })
}

fn read_now(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end().to_string())
        .map_err(|source| Error::Sysctl {
            path: path.display().to_string(),
            source,
        })
}

/// Writes `value` to the sysctl at `components` (e.g. `["net", "ipv4", "ip_forward"]`) in `ns`
/// (None: this process's namespace).
pub async fn set(ns: Option<&NetNs>, components: &[&str], value: &str) -> Result<()> {
    let path = sysctl_path(components)?;
    let value = value.to_string();
    match ns {
        Some(ns) => ns.run(move || write_now(&path, &value)).await?,
        None => tokio::task::spawn_blocking(move || write_now(&path, &value))
            .await
            .map_err(|e| Error::io("sysctl write task", std::io::Error::other(e)))?,
    }
}

/// Reads the sysctl at `components` in `ns` (None: this process's namespace), trimmed.
pub async fn get(ns: Option<&NetNs>, components: &[&str]) -> Result<String> {
    let path = sysctl_path(components)?;
    match ns {
        Some(ns) => ns.run(move || read_now(&path)).await?,
        None => tokio::task::spawn_blocking(move || read_now(&path))
            .await
            .map_err(|e| Error::io("sysctl read task", std::io::Error::other(e)))?,
    }
}

fn flag(on: bool) -> &'static str {
    if on {
        "1"
    } else {
        "0"
    }
}

/// `net.ipv4.conf.<iface>.proxy_arp`: answer ARP for addresses routed out of another
/// interface (how a workload reaches its 169.254.1.1 gateway on the host side of its veth).
pub async fn set_proxy_arp(ns: Option<&NetNs>, iface: &str, on: bool) -> Result<()> {
    validate_ifname("proxy_arp interface", iface)?;
    set(ns, &["net", "ipv4", "conf", iface, "proxy_arp"], flag(on)).await
}

/// `net.ipv4.neigh.<iface>.proxy_delay` (in jiffies/centiseconds): 0 makes proxy-ARP answer at
/// once instead of after up to 0.8 s.
pub async fn set_proxy_delay(ns: Option<&NetNs>, iface: &str, delay: u32) -> Result<()> {
    validate_ifname("proxy_delay interface", iface)?;
    set(
        ns,
        &["net", "ipv4", "neigh", iface, "proxy_delay"],
        &delay.to_string(),
    )
    .await
}

/// `net.ipv4.ip_forward`.
pub async fn set_ipv4_forwarding(ns: Option<&NetNs>, on: bool) -> Result<()> {
    set(ns, &["net", "ipv4", "ip_forward"], flag(on)).await
}

/// `net.ipv6.conf.<iface>.forwarding` (`iface` may be `all` or `default`).
pub async fn set_ipv6_forwarding(ns: Option<&NetNs>, iface: &str, on: bool) -> Result<()> {
    validate_ifname("ipv6 forwarding interface", iface)?;
    set(ns, &["net", "ipv6", "conf", iface, "forwarding"], flag(on)).await
}

/// `net.ipv6.conf.<iface>.accept_ra`: 0 never, 1 when not forwarding, 2 even when forwarding.
pub async fn set_accept_ra(ns: Option<&NetNs>, iface: &str, value: u8) -> Result<()> {
    validate_ifname("accept_ra interface", iface)?;
    if value > 2 {
        return Err(Error::invalid(
            format!("accept_ra for {iface}"),
            format!("{value} is not 0, 1 or 2"),
        ));
    }
    set(
        ns,
        &["net", "ipv6", "conf", iface, "accept_ra"],
        &value.to_string(),
    )
    .await
}
