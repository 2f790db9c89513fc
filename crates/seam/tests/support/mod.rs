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

use std::cell::RefCell;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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
pub const POLL: Duration = Duration::from_millis(100);

/// Distinguishes the labs of one test process (tests run on several threads).
static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Address of host number `index` on the test subnet (e.g. 32 → 172.16.18.32).
pub fn v4(index: u8) -> Ipv4Addr {
    format!("{SUBNET_V4}.{index}").parse().expect("valid IPv4 test address")
}

/// IPv6 address of host number `index`, written with the same digits as the IPv4 one
/// (32 → fd00:18::32) so logs read alike.
pub fn v6(index: u8) -> Ipv6Addr {
    format!("{SUBNET_V6}::{index}").parse().expect("valid IPv6 test address")
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

/// A process the test relies on has exited: waiting longer cannot help.
#[derive(Debug)]
pub struct Dead(pub String);

impl fmt::Display for Dead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a [`wait_until`] probe did not succeed: not yet (keep polling) or never (stop now).
#[derive(Debug)]
pub enum Poll {
    NotYet(String),
    Fatal(String),
}

impl From<String> for Poll {
    fn from(why: String) -> Poll {
        Poll::NotYet(why)
    }
}

impl From<Dead> for Poll {
    fn from(dead: Dead) -> Poll {
        Poll::Fatal(dead.0)
    }
}

/// Polls `probe` every [`POLL`] until it returns `Ok`, and panics after `timeout` with the
/// last reason it gave, or at once on [`Poll::Fatal`] (a daemon died). No fixed sleeps: tests
/// are as fast as the daemons.
pub fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<T, Poll>) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(v) => return v,
            Err(Poll::Fatal(why)) => panic!("gave up waiting until {what}: {why}"),
            Err(Poll::NotYet(last)) => {
                if start.elapsed() >= timeout {
                    panic!("timed out after {:?} waiting until {what}: {last}", timeout);
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Runs a command to completion and returns its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program} (is it installed?): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            if stdout.trim().is_empty() { String::new() } else { format!(" / stdout: {}", stdout.trim()) }
        ))
    }
}

/// Like [`run`], panicking on failure (for setup steps that must work).
pub fn must(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a command inside network namespace `ns`.
pub fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// A tool the harness needs must exist; a missing one is a failure naming the package, never a skip.
pub fn require_tool(path: &str, package: &str) {
    if !Path::new(path).exists() {
        panic!("{path} is missing: install the Debian package `{package}` (the interop tests never skip)");
    }
}

/// One test's network: a switch namespace with a bridge and the host namespaces plugged into
/// it, plus a temporary directory for configs, sockets and logs. Dropping it removes every
/// namespace it created (daemons must be dropped first, which declaration order gives for free:
/// daemons are created after the lab and so dropped before it).
pub struct Lab {
    /// Unique per lab: `seam-t<pid>-<counter>`.
    pub id: String,
    /// Configs, sockets and logs; removed on drop.
    pub dir: tempfile::TempDir,
    switch: String,
    namespaces: RefCell<Vec<String>>,
    /// Host index → port number on the bridge, to name the switch-side veth ends.
    hosts: RefCell<Vec<u8>>,
}

/// One host of a [`Lab`]: a namespace with `eth0` on the test segment.
#[derive(Clone, Debug)]
pub struct Host {
    pub ns: String,
    /// What runs there ("rr", "bird", ...), for names and messages.
    pub role: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    /// Private directory for this host's files (world-traversable: FRR drops to user `frr`).
    pub dir: PathBuf,
}

impl Lab {
    pub fn new() -> Lab {
        require_tool("/usr/sbin/ip", "iproute2");
        let n = LAB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("seam-t{}-{n}", std::process::id());
        let dir = tempfile::Builder::new().prefix(&format!("{id}-")).tempdir().expect("create temp dir");
        // FRR daemons run as user `frr` and must reach their files below this directory.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        let switch = format!("{id}-sw");
        let lab = Lab { id, dir, switch: switch.clone(), namespaces: RefCell::new(Vec::new()), hosts: RefCell::new(Vec::new()) };
        lab.add_namespace(&switch);
        must("ip", &["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        must("ip", &["-n", &switch, "link", "set", "br0", "up"]);
        lab
    }

    fn add_namespace(&self, ns: &str) {
        must("ip", &["netns", "add", ns]);
        self.namespaces.borrow_mut().push(ns.to_string());
        must("ip", &["-n", ns, "link", "set", "lo", "up"]);
    }

    /// Adds host `index` (its addresses are 172.16.18.`index`/24 and fd00:18::`index`/64).
    pub fn host(&self, role: &str, index: u8) -> Host {
        assert!(!self.hosts.borrow().contains(&index), "host index {index} used twice in one lab");
        self.hosts.borrow_mut().push(index);
        let ns = format!("{}-{role}{index}", self.id);
        self.add_namespace(&ns);
        let port = format!("p{index}");
        must("ip", &["-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &self.switch]);
        must("ip", &["-n", &self.switch, "link", "set", &port, "master", "br0"]);
        must("ip", &["-n", &self.switch, "link", "set", &port, "up"]);
        let (a4, a6) = (v4(index), v6(index));
        must("ip", &["-n", &ns, "addr", "add", &format!("{a4}/24"), "dev", "eth0"]);
        // nodad: the address is usable at once (no tentative phase), the segment is private.
        must("ip", &["-n", &ns, "addr", "add", &format!("{a6}/64"), "dev", "eth0", "nodad"]);
        must("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        let dir = self.dir.path().join(format!("{role}{index}"));
        fs::create_dir_all(&dir).expect("create host dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod host dir");
        Host { ns, role: role.to_string(), v4: a4, v6: a6, dir }
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
        for ns in self.namespaces.borrow().iter().rev() {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// A long-running process started inside a host namespace, with stdout/stderr captured to
/// files. Killed (by its PID) on drop; on a test failure its output is printed first.
pub struct Daemon {
    pub name: String,
    ns: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Log files the daemon writes itself, printed with stdout/stderr on failure.
    logs: Vec<PathBuf>,
    child: RefCell<Option<Child>>,
}

impl Daemon {
    /// Starts `argv` in `host`'s namespace. `ip netns exec` execs the program, so the PID we
    /// hold is the daemon's own (every daemon here is run in the foreground).
    pub fn start(name: &str, host: &Host, argv: Vec<String>, env: Vec<(String, String)>, logs: Vec<PathBuf>) -> Daemon {
        // Callers check their tools with `require_tool` (naming the package); this catches the rest.
        assert!(Path::new(&argv[0]).exists(), "{} is missing: cannot start {name}", argv[0]);
        let d = Daemon {
            name: format!("{name}@{}", host.v4),
            ns: host.ns.clone(),
            argv,
            env,
            stdout: host.dir.join(format!("{name}.stdout")),
            stderr: host.dir.join(format!("{name}.stderr")),
            logs,
            child: RefCell::new(None),
        };
        d.spawn();
        d
    }

    fn spawn(&self) {
        let open = |p: &Path| -> File {
            OpenOptions::new().create(true).append(true).open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
        };
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).args(&self.argv);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(open(&self.stdout)).stderr(open(&self.stderr));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        *self.child.borrow_mut() = Some(child);
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.borrow().as_ref().map(|c| c.id())
    }

    /// Kills the process (SIGKILL: a crash, as far as its peers can tell) and reaps it.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.borrow_mut().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the same command again (after [`Daemon::kill`]); output is appended to the same files.
    pub fn restart(&self) {
        self.kill();
        self.spawn();
    }

    /// Err with the exit status and the tail of stderr when the process has exited.
    pub fn check_alive(&self) -> Result<(), Dead> {
        let mut guard = self.child.borrow_mut();
        let Some(child) = guard.as_mut() else {
            return Err(Dead(format!("{} is not running (killed by the test)", self.name)));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Dead(format!(
                "{} exited ({status}); stderr: {}",
                self.name,
                tail(&self.stderr, 20).trim()
            ))),
            Err(e) => Err(Dead(format!("{}: {e}", self.name))),
        }
    }

    /// Prints the captured output and log files (used when a test fails).
    pub fn dump(&self) {
        eprintln!("===== {} in {}: {}", self.name, self.ns, self.argv.join(" "));
        for path in [&self.stdout, &self.stderr].into_iter().chain(self.logs.iter()) {
            eprintln!("----- {}", path.display());
            eprintln!("{}", tail(path, 150));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        self.kill();
    }
}

/// The last `lines` lines of a file (or a note that it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({e})"),
    }
}

/// Writes a file, panicking with its path on failure.
pub fn write_file(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
