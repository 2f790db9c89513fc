//! The outgoing-NAT ruleset loads into a real kernel (needs root): inside a network namespace
//! this test creates (and removes on drop), the table appears with its masquerade rule, is
//! replaced atomically on reload, and disappears when no pool asks for NAT.

use std::process::{Command, Stdio};

use agent::pools::{nat_ruleset, NAT_TABLE};
use resources::{IPPool, Labels};

/// A namespace removed on drop, even when the test fails.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(ns: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn pool(name: &str, cidr: &str, nat: bool) -> IPPool {
    let mut p = IPPool { name: name.into(), labels: Labels::new(), spec: serde_json::from_value(serde_json::json!({ "cidr": cidr })).unwrap() };
    p.spec.nat_outgoing = nat;
    p
}

#[test]
fn nat_table_loads_reloads_and_goes_away() {
    let ns = Ns(format!("seam-nat-{}", std::process::id()));
    assert!(Command::new("ip").args(["netns", "add", &ns.0]).status().unwrap().success(), "ip netns add (needs root)");

    let first = nat_ruleset(&[pool("k8s", "10.244.0.0/16", true), pool("dcos", "10.245.0.0/16", false)]);
    run(&ns.0, &["nft", "-f", "-"], Some(&first)).expect("ruleset loads");
    let listed = run(&ns.0, &["nft", "list", "table", "ip", NAT_TABLE], None).unwrap();
    assert!(listed.contains("ip saddr @nat-pools ip daddr != @all-pools masquerade"), "{listed}");
    assert!(listed.contains("10.245.0.0/16"), "{listed}");

    // Reload with another pool set: replaced, not appended.
    let second = nat_ruleset(&[pool("k8s", "10.244.0.0/16", true)]);
    run(&ns.0, &["nft", "-f", "-"], Some(&second)).expect("reload");
    let listed = run(&ns.0, &["nft", "list", "table", "ip", NAT_TABLE], None).unwrap();
    assert!(!listed.contains("10.245.0.0/16"), "{listed}");
    assert_eq!(listed.matches("masquerade").count(), 1, "{listed}");

    // No NAT pool: the table goes; loading that twice is fine.
    let none = nat_ruleset(&[pool("k8s", "10.244.0.0/16", false)]);
    run(&ns.0, &["nft", "-f", "-"], Some(&none)).expect("removal");
    run(&ns.0, &["nft", "-f", "-"], Some(&none)).expect("removal again");
    assert!(run(&ns.0, &["nft", "list", "table", "ip", NAT_TABLE], None).is_err(), "table still there");
}
