//! Shared helpers for tests that run real routing daemons (BIRD 2, FRR, GoBGP, `seam bgpd`)
//! inside network namespaces the test creates.
//!
//! Why a harness: interop is only believable against the real implementations, and those need
//! a network. Each test builds its own throw-away L2 segment (a bridge in a "switch" namespace,
//! one veth per host namespace), so nothing leaves the machine and tests can run in parallel.
//! Everything a test starts is owned by a value whose `Drop` kills it (by PID) and removes the
//! namespaces, also when the test panics; on a panic the daemons' logs are printed first.
#![allow(dead_code)] // each test file uses a different subset of the helpers

pub mod bird;
pub mod frr;
pub mod gobgp;

use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use ipnet::IpNet;

/// The test subnet of the seed (the BBVA lab): the reflector is .32, nodes .33 and up.
pub const SUBNET_V4: &str = "172.16.18";
/// A ULA prefix for the IPv6 side of the same segment (only ever used inside test namespaces).
pub const SUBNET_V6: &str = "fd00:18";
/// The seed's AS: the reflector and every node share it.
pub const AS: u32 = 64511;
/// How long a condition may take before a wait fails (sessions come up within a few seconds
/// with the short timers the test configs use).
pub const WAIT: Duration = Duration::from_secs(30);
/// Polling period of [`wait_until`].
pub const POLL: Duration = testbed::wait::POLL;

/// Distinguishes the labs of one test process (tests run on several threads).
static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Address of host number `index` on the test subnet (e.g. 32 → 172.16.18.32).
pub fn v4(index: u8) -> Ipv4Addr {
    testbed::v4(index)
}

/// IPv6 address of host number `index`, written with the same digits as the IPv4 one
/// (32 → fd00:18::32) so logs read alike.
pub fn v6(index: u8) -> Ipv6Addr {
    testbed::v6(index)
}

/// Parses a prefix written in a test (panics on a typo in the test itself).
pub fn net(text: &str) -> IpNet {
    text.parse().unwrap_or_else(|e| panic!("test prefix {text:?}: {e}"))
}

/// Which address family a RIB query is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// One path to a prefix as a speaker shows it, reduced to the attributes the interop tests
/// compare. Each daemon's output (BIRD text, FRR JSON, GoBGP JSON) is parsed into this, so a
/// scenario asserts the same facts whatever the implementation on the other end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: IpNet,
    /// The BGP NEXT_HOP (or the first MP_REACH next hop for IPv6); `None` for local routes
    /// a daemon shows without one.
    pub next_hop: Option<IpAddr>,
    /// AS_PATH flattened (sequences and sets in order).
    pub as_path: Vec<u32>,
    /// ORIGINATOR_ID (RFC 4456), set on reflected routes.
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST (RFC 4456), first element = the last reflector.
    pub cluster_list: Vec<Ipv4Addr>,
    /// Learned from a BGP neighbor (as opposed to originated by this speaker).
    pub learned: bool,
    /// Selected as best by the speaker.
    pub best: bool,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} nh={} as_path={:?} originator={:?} cluster_list={:?} learned={} best={}",
            self.prefix,
            self.next_hop.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            self.as_path,
            self.originator_id,
            self.cluster_list,
            self.learned,
            self.best
        )
    }
}

/// Anything whose routing table a test can read: the three implementations implement it.
pub trait Speaker {
    /// A name for messages ("bird@172.16.18.33").
    fn name(&self) -> String;
    /// The routes of one family the speaker currently has (learned and originated).
    fn routes(&self, family: Family) -> Result<Vec<Route>, String>;
    /// Fails when one of the speaker's processes has exited, so a wait stops early with the
    /// reason instead of timing out.
    fn check_alive(&self) -> Result<(), Dead>;
}

fn family_of(prefix: &IpNet) -> Family {
    match prefix {
        IpNet::V4(_) => Family::Ipv4,
        IpNet::V6(_) => Family::Ipv6,
    }
}

/// Waits until `speaker` has a learned path to `prefix` that `check` accepts; returns it.
/// `check` returns why a path does not fit, which the timeout message shows.
pub fn wait_learned(
    speaker: &dyn Speaker,
    prefix: &str,
    check: impl Fn(&Route) -> Result<(), String>,
) -> Route {
    let prefix = net(prefix);
    wait_until(&format!("{} learns {prefix}", speaker.name()), WAIT, || {
        speaker.check_alive()?;
        let routes = speaker.routes(family_of(&prefix))?;
        let paths: Vec<&Route> = routes.iter().filter(|r| r.prefix == prefix && r.learned).collect();
        if paths.is_empty() {
            return Err(format!("no learned path; table: {}", summary(&routes)).into());
        }
        let mut why = Vec::new();
        for path in paths {
            match check(path) {
                Ok(()) => return Ok(path.clone()),
                Err(e) => why.push(format!("{path}: {e}")),
            }
        }
        Err(why.join("; ").into())
    })
}

/// Waits until `speaker` has no learned path to `prefix` any more.
pub fn wait_lost(speaker: &dyn Speaker, prefix: &str) {
    let prefix = net(prefix);
    wait_until(&format!("{} loses {prefix}", speaker.name()), WAIT, || {
        speaker.check_alive()?;
        let routes = speaker.routes(family_of(&prefix))?;
        match routes.iter().find(|r| r.prefix == prefix && r.learned) {
            Some(r) => Err(format!("still has {r}").into()),
            None => Ok(()),
        }
    })
}

fn summary(routes: &[Route]) -> String {
    if routes.is_empty() {
        return "(empty)".into();
    }
    routes.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(" | ")
}

/// Compares one attribute, returning a message naming it on mismatch (for `wait_learned`).
pub fn expect_eq<T: PartialEq + fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what} is {got:?}, expected {want:?}"))
    }
}

pub use testbed::{Dead, Poll};

/// Polls `probe` every [`POLL`] until it returns `Ok`, and panics after `timeout` with the
/// last reason it gave, or at once on [`Poll::Fatal`] (a daemon died). No fixed sleeps: tests
/// are as fast as the daemons.
pub fn wait_until<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Result<T, Poll>) -> T {
    testbed::wait_until(what, timeout, probe).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a command to completion and returns its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    testbed::run(program, args).map_err(String::from)
}

/// Like [`run`], panicking on failure (for setup steps that must work).
pub fn must(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a command inside network namespace `ns`.
pub fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<String, String> {
    testbed::run_in(ns, program, args).map_err(String::from)
}

/// A tool the harness needs must exist; a missing one is a failure naming the package, never a skip.
pub fn require_tool(path: &str, package: &str) {
    if let Err(e) = testbed::require_tool(path, package) {
        panic!("{e} (the interop tests never skip)");
    }
}

/// One test's network: a [`testbed::Network`] (switch namespace with a bridge, host namespaces
/// plugged into it) plus a temporary directory for configs, sockets and logs. Dropping it
/// removes every namespace it created (daemons must be dropped first, which declaration order
/// gives for free: daemons are created after the lab and so dropped before it).
pub struct Lab {
    /// Unique per lab: `seam-t<pid>-<counter>`.
    pub id: String,
    // Field order = drop order: namespaces go before the directory holding their files.
    network: testbed::Network,
    /// Configs, sockets and logs; removed on drop.
    pub dir: tempfile::TempDir,
}

/// One host of a [`Lab`]: a namespace with `eth0` on the test segment.
pub use testbed::Host;

impl Lab {
    pub fn new() -> Lab {
        let n = LAB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("seam-t{}-{n}", std::process::id());
        let dir = tempfile::Builder::new().prefix(&format!("{id}-")).tempdir().expect("create temp dir");
        // FRR daemons run as user `frr` and must reach their files below this directory.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        let network = testbed::Network::create(&id).unwrap_or_else(|e| panic!("create lab network: {e}"));
        Lab { id, network, dir }
    }

    /// Adds host `index` (its addresses are 172.16.18.`index`/24 and fd00:18::`index`/64).
    pub fn host(&self, role: &str, index: u8) -> Host {
        let name = format!("{role}{index}");
        let mut host = self
            .network
            .add_host(&name, index, &self.dir.path().join(&name))
            .unwrap_or_else(|e| panic!("add host {name}: {e}"));
        host.role = role.to_string();
        host
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- lab {} failed; its files were in {}", self.id, self.dir.path().display());
        }
    }
}

/// A long-running process started inside a host namespace, with stdout/stderr captured to
/// files: a [`testbed::Daemon`] that panics instead of returning errors, and prints its output
/// when the test fails.
pub struct Daemon {
    pub name: String,
    inner: testbed::Daemon,
}

impl Daemon {
    /// Starts `argv` in `host`'s namespace. `ip netns exec` execs the program, so the PID we
    /// hold is the daemon's own (every daemon here is run in the foreground).
    pub fn start(name: &str, host: &Host, argv: Vec<String>, env: Vec<(String, String)>, logs: Vec<PathBuf>) -> Daemon {
        let full_name = format!("{name}@{}", host.v4);
        let spec = testbed::DaemonSpec {
            name: full_name.clone(),
            ns: Some(host.ns.clone()),
            argv,
            env,
            stdout: host.dir.join(format!("{name}.stdout")),
            stderr: host.dir.join(format!("{name}.stderr")),
            logs,
            detach: false,
        };
        let inner = testbed::Daemon::start(spec).unwrap_or_else(|e| panic!("{e}"));
        Daemon { name: full_name, inner }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }

    /// Kills the process (SIGKILL: a crash, as far as its peers can tell) and reaps it.
    pub fn kill(&self) {
        self.inner.kill();
    }

    /// Starts the same command again (after [`Daemon::kill`]); output is appended to the same files.
    pub fn restart(&self) {
        self.inner.restart().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Err with the exit status and the tail of stderr when the process has exited.
    pub fn check_alive(&self) -> Result<(), Dead> {
        self.inner.check_alive()
    }

    /// Prints the captured output and log files (used when a test fails).
    pub fn dump(&self) {
        self.inner.dump();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        self.inner.kill();
    }
}

/// The last `lines` lines of a file (or a note that it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    testbed::tail(path, lines)
}

/// Writes a file, panicking with its path on failure.
pub fn write_file(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
