//! Network namespaces and the L2 segment that joins them: a bridge `br0` inside a "switch"
//! namespace, and for each host a veth pair whose host end is `eth0` in the host's namespace
//! and whose other end is a bridge port in the switch namespace. The root namespace is never
//! touched (no links, addresses or routes are created there).

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cmd::{run, Error, Result};

/// The seed's underlay (the BBVA lab): the reflector is .32, nodes .33 and up.
pub const SUBNET_V4: &str = "172.16.18";
/// Prefix length of the IPv4 underlay.
pub const PREFIX_LEN_V4: u8 = 24;
/// A ULA prefix for the IPv6 side of the same segment (only ever used inside namespaces).
pub const SUBNET_V6: &str = "fd00:18";
/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Address of host number `index` on the underlay (e.g. 32 → 172.16.18.32).
pub fn v4(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 16, 18, index)
}

/// IPv6 address of host number `index`, written with the same digits as the IPv4 one
/// (32 → fd00:18::32) so logs read alike.
pub fn v6(index: u8) -> Ipv6Addr {
    format!("{SUBNET_V6}::{index}").parse().expect("a decimal index is valid IPv6 hex")
}

/// True when a named network namespace exists.
pub fn namespace_exists(ns: &str) -> bool {
    Path::new(NETNS_DIR).join(ns).exists()
}

/// Every named network namespace (`ip netns list`, without the ids).
pub fn list_namespaces() -> Vec<String> {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else { return Vec::new() };
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect();
    names.sort();
    names
}

/// Creates a named namespace with its loopback up.
pub fn create_namespace(ns: &str) -> Result<()> {
    validate_name(ns)?;
    run("ip", &["netns", "add", ns])?;
    if let Err(e) = run("ip", &["-n", ns, "link", "set", "lo", "up"]) {
        let _ = run("ip", &["netns", "del", ns]);
        return Err(e);
    }
    Ok(())
}

/// Deletes a named namespace; its veth ends go with it (and so do their peers). Deleting a
/// namespace that does not exist is not an error (cleanup must be repeatable).
pub fn delete_namespace(ns: &str) -> Result<()> {
    if !namespace_exists(ns) {
        return Ok(());
    }
    match run("ip", &["netns", "del", ns]) {
        // Removed meanwhile by someone else (two cleanups racing): the goal is reached.
        Err(_) if !namespace_exists(ns) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Namespace names become file names under /run/netns and show in `ip` output: keep them to
/// a safe alphabet so a typo cannot escape that directory.
fn validate_name(ns: &str) -> Result<()> {
    let ok = !ns.is_empty()
        && ns.len() <= 200
        && ns.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !ns.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error(format!("invalid namespace name {ns:?}: use letters, digits, '-', '_' and '.'")))
    }
}

/// One host plugged into a [`Network`]: a namespace with `eth0` on the segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub ns: String,
    /// What runs there ("rr", "bird", "k8s-worker1", ...), for names and messages.
    pub role: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    /// Private directory for this host's files (configs, sockets, logs).
    pub dir: PathBuf,
}

/// A segment: the switch namespace and every namespace created through it. With
/// `cleanup` set (tests), dropping it deletes them all; `seam lab` clears it with
/// [`Network::keep`] so the network outlives the command and records the names instead.
pub struct Network {
    /// Every namespace name of this network starts with it.
    pub prefix: String,
    switch: String,
    /// Created namespaces, in creation order (deleted in reverse).
    namespaces: Mutex<Vec<String>>,
    /// Host indexes in use (one address per index).
    indexes: Mutex<Vec<u8>>,
    cleanup: bool,
}

impl Network {
    /// Creates the switch namespace `{prefix}-sw` with bridge `br0`.
    pub fn create(prefix: &str) -> Result<Network> {
        crate::require_tool("/usr/sbin/ip", "iproute2").or_else(|_| crate::require_tool("/sbin/ip", "iproute2"))?;
        let switch = format!("{prefix}-sw");
        let network = Network {
            prefix: prefix.to_string(),
            switch: switch.clone(),
            namespaces: Mutex::new(Vec::new()),
            indexes: Mutex::new(Vec::new()),
            cleanup: true,
        };
        network.add_namespace(&switch)?;
        run("ip", &["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &switch, "link", "set", "br0", "up"])?;
        Ok(network)
    }

    /// The switch namespace's name.
    pub fn switch(&self) -> &str {
        &self.switch
    }

    /// Creates a namespace owned by this network (removed with it).
    pub fn add_namespace(&self, ns: &str) -> Result<()> {
        create_namespace(ns)?;
        self.namespaces.lock().expect("namespace list").push(ns.to_string());
        Ok(())
    }

    /// Names of the namespaces created so far, in creation order.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces.lock().expect("namespace list").clone()
    }

    /// Adds host `index` as namespace `{prefix}-{name}`, with 172.16.18.`index`/24 and
    /// fd00:18::`index`/64 on `eth0`. `dir` is created (mode 0755) for the host's files.
    pub fn add_host(&self, name: &str, index: u8, dir: &Path) -> Result<Host> {
        {
            let mut used = self.indexes.lock().expect("index list");
            if used.contains(&index) {
                return Err(Error(format!("host index {index} used twice in network {}", self.prefix)));
            }
            used.push(index);
        }
        let ns = format!("{}-{name}", self.prefix);
        self.add_namespace(&ns)?;
        let port = format!("p{index}");
        run("ip", &["-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &self.switch])?;
        run("ip", &["-n", &self.switch, "link", "set", &port, "master", "br0"])?;
        run("ip", &["-n", &self.switch, "link", "set", &port, "up"])?;
        let (a4, a6) = (v4(index), v6(index));
        run("ip", &["-n", &ns, "addr", "add", &format!("{a4}/{PREFIX_LEN_V4}"), "dev", "eth0"])?;
        // nodad: the address is usable at once (no tentative phase); the segment is private.
        run("ip", &["-n", &ns, "addr", "add", &format!("{a6}/64"), "dev", "eth0", "nodad"])?;
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        create_dir(dir)?;
        Ok(Host { ns, role: name.to_string(), v4: a4, v6: a6, dir: dir.to_path_buf() })
    }

    /// Stops the drop-time cleanup and returns the namespace names, for a caller that removes
    /// them later (from a state file).
    pub fn keep(mut self) -> Vec<String> {
        self.cleanup = false;
        self.namespaces()
    }

    /// Deletes every namespace of this network now (reverse creation order); returns the
    /// errors, if any, after trying them all.
    pub fn destroy(&self) -> Vec<Error> {
        let mut errors = Vec::new();
        let mut names = self.namespaces.lock().expect("namespace list");
        for ns in names.iter().rev() {
            if let Err(e) = delete_namespace(ns) {
                errors.push(e);
            }
        }
        names.clear();
        errors
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if self.cleanup {
            for e in self.destroy() {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Creates a directory (and parents) readable by daemons that drop privileges (FRR runs as
/// user `frr`).
pub fn create_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir).map_err(|e| Error(format!("create {}: {e}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(|e| Error(format!("chmod {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_seed_numbering() {
        assert_eq!(v4(32).to_string(), "172.16.18.32");
        assert_eq!(v6(45).to_string(), "fd00:18::45");
    }

    #[test]
    fn namespace_names_are_checked() {
        assert!(validate_name("seam-lab-k8s-worker1").is_ok());
        for bad in ["", "../etc", ".hidden", "a b", "x/y"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// Needs root: builds a two-host segment and checks the hosts reach each other and that
    /// dropping the network removes every namespace.
    #[test]
    fn two_hosts_ping_and_drop_removes_namespaces() {
        let dir = std::env::temp_dir().join(format!("testbed-unit-{}", std::process::id()));
        let prefix = format!("testbed-u{}", std::process::id());
        let names = {
            let net = Network::create(&prefix).expect("create network (needs root)");
            let a = net.add_host("a", 1, &dir.join("a")).unwrap();
            let b = net.add_host("b", 2, &dir.join("b")).unwrap();
            assert!(net.add_host("again", 2, &dir.join("c")).is_err(), "an index is used once");
            crate::run_in(&a.ns, "ping", &["-c", "1", "-W", "5", &b.v4.to_string()]).expect("a pings b");
            net.namespaces()
        };
        assert_eq!(names.len(), 3);
        for ns in names {
            assert!(!namespace_exists(&ns), "{ns} still exists after drop");
        }
        let _ = fs::remove_dir_all(dir);
    }
}
