//! Shared by the `ipam_*` integration tests: seeding a store with the seed's pools and nodes,
//! running the `seam` binary, marking allocations live with workload endpoints, and a tiny
//! random source for kill timings.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::process::{Command, Output};
use std::time::Duration;

use store::Store;

/// The seed's two pools (one per orchestrator) and a few nodes of each.
pub const SEED: &str = r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: kubernetes}
spec: {cidr: 192.168.0.0/17, nodeSelector: "coe == 'kubernetes'"}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: dcos}
spec: {cidr: 192.168.128.0/17, nodeSelector: "coe == 'dcos'"}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: k8s-1, labels: {coe: kubernetes}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: k8s-2, labels: {coe: kubernetes}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: dcos-1, labels: {coe: dcos}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: dcos-2, labels: {coe: dcos}}
"#;

pub async fn seed(store: &dyn Store) {
    let docs = resources::parse_documents(SEED, "seed.yaml").unwrap();
    resources::apply(store, docs).await.unwrap();
}

/// `seam` with the datastore in the environment, as operators would run it.
pub fn seam(datastore: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seam"));
    cmd.env("SEAM_DATASTORE", datastore);
    cmd
}

pub fn run(datastore: &str, args: &[&str]) -> Output {
    seam(datastore).args(args).output().expect("run seam")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Parse `allocate`'s `HANDLE IP[,IP]` lines (a torn last line from a killed process is
/// ignored: it was never fully reported).
pub fn parse_allocations(text: &str) -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let mut parts = line.split_whitespace();
        if let (Some(h), Some(ips)) = (parts.next(), parts.next()) {
            for ip in ips.split(',') {
                out.push((h.to_string(), ip.parse().unwrap_or_else(|_| panic!("bad line {line:?}"))));
            }
        }
    }
    out
}

/// Give these handles live workload endpoints, so gc must keep their addresses.
pub async fn mark_live(store: &dyn Store, node: &str, handles: &[String]) {
    let mut docs = Vec::new();
    for h in handles {
        let (container, iface) = h.rsplit_once('.').unwrap();
        docs.push(resources::Resource::WorkloadEndpoint(resources::WorkloadEndpoint {
            namespace: "default".into(),
            name: container.to_string(),
            labels: BTreeMap::new(),
            spec: resources::WorkloadEndpointSpec {
                node: node.to_string(),
                orchestrator: "k8s".into(),
                container_id: container.to_string(),
                endpoint: iface.to_string(),
                ..Default::default()
            },
        }));
    }
    resources::apply(store, docs).await.unwrap();
}

/// A random duration in [lo, hi) ms, from the std hasher's per-process random keys (no
/// extra crate needed for a few kill timings).
pub fn random_ms(lo: u64, hi: u64) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(lo ^ hi);
    Duration::from_millis(lo + h.finish() % (hi - lo))
}

/// A single-member etcd we started on free loopback ports, in its own tempdir. Killed by PID
/// (through `Child`) on drop, so a failing test leaves nothing running.
pub struct Etcd {
    child: std::process::Child,
    pub client_port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client_port, peer_port) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new("/usr/bin/etcd")
            .args(["--name", "ipam-test"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("ipam-test={peer}")])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/etcd (Debian package etcd-server)");
        Etcd { child, client_port, _dir: dir }
    }

    pub fn datastore(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.client_port)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
