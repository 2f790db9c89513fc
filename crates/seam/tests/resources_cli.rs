//! `seam apply/get/delete` through the built binary against an embedded datastore file.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../resources/tests/data/seed_list.yaml");
const SEED_DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../resources/tests/data/seed_docs.yaml");

/// One datastore per test, removed with the temp dir.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap() }
    }

    fn datastore(&self) -> String {
        format!("file:{}", self.dir.path().join("s.redb").display())
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_seam"));
        cmd.args(args).arg("--datastore").arg(self.datastore()).env_remove("SEAM_DATASTORE");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(out.status.success(), "seam {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(!out.status.success(), "seam {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    }
}

#[test]
fn apply_the_seed_then_get_in_every_format_then_delete() {
    let env = Env::new();
    let out = env.ok(&["apply", "-f", SEED]);
    assert!(out.contains("IPPool 192-168-0-0-17 created"), "{out}");
    assert!(out.contains("Successfully applied 4 resource(s)"), "{out}");
    // The `---` form of the same snippets is the same resources.
    let out = env.ok(&["apply", "-f", SEED_DOCS]);
    assert_eq!(out.matches("unchanged").count(), 4, "{out}");

    let table = env.ok(&["get", "ippools"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["NAME", "CIDR", "SELECTOR"]);
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["192-168-0-0-17", "192.168.0.0/17", "all()"]);
    let peers = env.ok(&["get", "BGPPeer"]);
    assert!(peers.lines().nth(1).unwrap().contains("172.16.18.32"), "{peers}");
    assert!(peers.contains("64511"), "{peers}");

    let yaml = env.ok(&["get", "gnp", "allow-all", "-o", "yaml"]);
    assert!(yaml.starts_with("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"), "{yaml}");
    assert!(yaml.contains("- action: Allow"), "{yaml}");
    let json = env.ok(&["get", "profiles", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["kind"], "ProfileList");
    assert_eq!(v["items"][0]["metadata"]["name"], "calico-open");
    assert_eq!(v["items"][0]["spec"]["ingress"][0]["action"], "Allow");

    // What `get -o yaml` prints applies back unchanged (through stdin).
    let all = env.ok(&["get", "ippool", "-o", "yaml"]);
    let out = env.run(&["apply", "-f", "-"], Some(&all));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("IPPool 192-168-0-0-17 unchanged"));

    let out = env.ok(&["delete", "profile", "calico-open"]);
    assert!(out.contains("Profile calico-open deleted"), "{out}");
    let err = env.fails(&["delete", "profile", "calico-open"], None);
    assert!(err.contains("Profile calico-open not found"), "{err}");
    let err = env.fails(&["get", "profile", "calico-open"], None);
    assert!(err.contains("Profile calico-open not found"), "{err}");
}

#[test]
fn a_bad_third_document_is_reported_and_nothing_is_written() {
    let env = Env::new();
    let file = env.dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: profile\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\n---\napiVersion: v1\nkind: bgpPeer\nmetadata: {peerIP: 172.16.18.32, scope: global}\nspec: {asNumber: sixty}\n",
    )
    .unwrap();
    let err = env.fails(&["apply", "-f", file.to_str().unwrap()], None);
    assert!(
        err.contains(&format!("{}, document 3 (1-based), spec.asNumber:", file.display())),
        "{err}"
    );
    assert_eq!(env.ok(&["get", "profiles"]).lines().count(), 1, "only the header: nothing written");
    assert_eq!(env.ok(&["get", "ippools"]).lines().count(), 1);
}

#[test]
fn usage_errors_are_clear() {
    let env = Env::new();
    let err = env.fails(&["get", "hostendpoint"], None);
    assert!(err.contains("unknown resource kind \"hostendpoint\""), "{err}");
    let err = env.fails(&["apply", "-f", "/nonexistent/x.yaml"], None);
    assert!(err.contains("cannot read /nonexistent/x.yaml"), "{err}");
    let err = env.fails(&["apply", "-f", "-"], Some("a: [1\n"));
    assert!(err.contains("<stdin>: YAML syntax error"), "{err}");
    let err = env.fails(&["apply", "-f", "-"], Some("# nothing\n"));
    assert!(err.contains("<stdin>: no resources found"), "{err}");
}

#[test]
fn namespaced_and_node_resources() {
    let env = Env::new();
    let docs = "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: n1-k8s-web-eth0, namespace: prod}
spec: {node: n1, orchestrator: k8s, pod: web, containerID: c1, endpoint: eth0, interfaceName: cali1, ipNetworks: [192.168.0.5/32]}
---
apiVersion: v1
kind: node
metadata: {name: n1, labels: {coe: kubernetes}}
spec: {bgp: {ipv4Address: 10.0.0.1/24, asNumber: 64512}}
";
    let out = env.run(&["apply", "-f", "-"], Some(docs));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let weps = env.ok(&["get", "wep"]);
    assert!(weps.lines().nth(1).unwrap().starts_with("prod "), "{weps}");
    assert!(weps.contains("192.168.0.5/32"), "{weps}");
    let err = env.fails(&["delete", "wep", "n1-k8s-web-eth0"], None);
    assert!(err.contains("WorkloadEndpoint default/n1-k8s-web-eth0 not found"), "{err}");
    env.ok(&["delete", "wep", "n1-k8s-web-eth0", "-n", "prod"]);
    let nodes = env.ok(&["get", "nodes"]);
    assert!(nodes.contains("10.0.0.1/24") && nodes.contains("64512"), "{nodes}");
    let out = env.ok(&["delete", "node", "n1"]);
    assert!(out.contains("Node n1 deleted") && out.contains("Released 0 empty block(s)"), "{out}");
    assert_eq!(env.ok(&["get", "nodes"]).lines().count(), 1);
}
