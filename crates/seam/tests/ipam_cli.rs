//! `seam ipam` end to end on the embedded store: allocate, show, check, release, gc.

mod ipam_common;

use std::sync::Arc;

use ipam_common::*;
use store::Store;

#[tokio::test]
async fn allocate_show_check_release_gc() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seam.redb");
    let ds = format!("file:{}", path.display());
    {
        let s: Arc<dyn Store> = Arc::new(store::EmbeddedStore::open(&path).await.unwrap());
        seed(&*s).await;
    } // the CLI needs the file to itself

    let out = run(&ds, &["ipam", "allocate", "--node", "k8s-1", "--handle", "web", "--count", "3", "--namespace", "default", "--pod", "web-0", "--orchestrator", "k8s"]);
    assert!(out.status.success(), "{out:?}");
    let allocs = parse_allocations(&stdout(&out));
    let handles: Vec<&str> = allocs.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(handles, ["web-0.eth0", "web-1.eth0", "web-2.eth0"]);
    assert!(allocs.iter().all(|(_, ip)| ip.to_string().starts_with("192.168.0.")));
    let out = run(&ds, &["ipam", "allocate", "--node", "dcos-1", "--handle", "db", "--ipv4", "1"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).starts_with("db.eth0 192.168.128.0"), "{}", stdout(&out));

    let out = run(&ds, &["ipam", "show"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("192.168.0.0/17") && text.contains("kubernetes"), "{text}");
    assert!(text.contains("k8s-1") && text.contains("192.168.0.0/26") && text.contains("3/64"), "{text}");
    assert!(text.contains("dcos-1") && text.contains("192.168.128.0/26") && text.contains("1/64"), "{text}");
    let out = run(&ds, &["ipam", "show", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["pools"][0]["used"], 3);

    // Within the grace period nothing is a leak; with none, every endpoint-less IP is.
    let out = run(&ds, &["ipam", "check"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("4 allocations, 4 handles: no problems"), "{}", stdout(&out));
    let out = run(&ds, &["ipam", "check", "--grace", "0"]);
    assert!(!out.status.success(), "check must fail when it finds leaks");
    assert_eq!(stdout(&out).matches("LEAK ").count(), 4, "{}", stdout(&out));

    // Release is by handle and idempotent.
    let out = run(&ds, &["ipam", "release", "--handle", "web", "--count", "3"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).lines().filter(|l| !l.ends_with(" -")).count(), 3);
    let out = run(&ds, &["ipam", "release", "--handle", "web-0"]);
    assert_eq!(stdout(&out).trim(), "web-0.eth0 -");

    let out = run(&ds, &["ipam", "gc", "--grace", "0", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["released_ips"].as_array().unwrap().len(), 1, "{json}");
    let out = run(&ds, &["ipam", "check", "--grace", "0"]);
    assert!(out.status.success(), "{}", stdout(&out));

    // Strict affinity is a cluster setting.
    let out = run(&ds, &["ipam", "config", "--strict-affinity", "true"]);
    assert_eq!(stdout(&out).trim(), "strictAffinity: true");

    // Bad input names what is wrong.
    let out = run(&ds, &["ipam", "allocate", "--node", "nowhere", "--handle", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nowhere\" does not exist"), "{out:?}");
    let out = run(&ds, &["ipam", "allocate", "--node", "k8s-1", "--handle", "a/b"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid handle"), "{out:?}");
    let out = run("mysql://x", &["ipam", "show"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("mysql"), "{out:?}");
}
