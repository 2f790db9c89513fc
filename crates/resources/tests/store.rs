//! apply/get/delete against the embedded store: create/replace/unchanged, all-or-nothing,
//! pool overlaps, not-found errors.

use resources::*;

async fn open() -> (std::sync::Arc<dyn store::Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = store::open(&format!("file:{}", dir.path().join("s.redb").display())).await.unwrap();
    (s, dir)
}

fn seed() -> Vec<Resource> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/seed_docs.yaml")).unwrap();
    parse_documents(&text, "seed_docs.yaml").unwrap()
}

#[tokio::test]
async fn apply_get_delete_round_trip() {
    let (s, _dir) = open().await;
    let summary = apply(&*s, seed()).await.unwrap();
    assert_eq!(summary.count(ApplyOutcome::Created), 4);
    // Same again: nothing changes.
    let again = apply(&*s, seed()).await.unwrap();
    assert_eq!(again.count(ApplyOutcome::Unchanged), 4);

    let pools = get(&*s, Kind::IPPool, None, None).await.unwrap();
    assert_eq!(pools, seed()[..1].to_vec());
    let kv = s.get("/seam/v1/resources/ippools/192-168-0-0-17").await.unwrap().unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    assert_eq!(stored["spec"]["cidr"], "192.168.0.0/17");
    assert_eq!(stored["spec"]["blockSize"], 26);
    assert_eq!(stored["kind"], "IPPool");

    // Replace: natOutgoing flips.
    let mut changed = seed()[..1].to_vec();
    if let Resource::IPPool(p) = &mut changed[0] {
        p.spec.nat_outgoing = true;
    }
    let r = apply(&*s, changed.clone()).await.unwrap();
    assert_eq!(r.results[0].3, ApplyOutcome::Replaced);
    assert_eq!(get(&*s, Kind::IPPool, None, Some("192-168-0-0-17")).await.unwrap(), changed);

    let gone = delete(&*s, Kind::Profile, None, "calico-open").await.unwrap();
    assert_eq!(gone.name(), "calico-open");
    let e = delete(&*s, Kind::Profile, None, "calico-open").await.unwrap_err();
    assert_eq!(e.to_string(), "Profile calico-open not found");
    let e = get(&*s, Kind::BGPPeer, None, Some("nope")).await.unwrap_err();
    assert_eq!(e.to_string(), "BGPPeer nope not found");
}

#[tokio::test]
async fn a_file_with_a_bad_third_document_writes_nothing() {
    let (s, _dir) = open().await;
    let text = "apiVersion: v1\nkind: profile\nmetadata: {name: a}\n---\napiVersion: v1\nkind: profile\nmetadata: {name: b}\n---\napiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec: {nat-outgoing: true, bogus: 1}\n";
    let e = parse_documents(text, "bad.yaml").unwrap_err();
    assert!(e.to_string().starts_with("bad.yaml, document 3 (1-based), spec.bogus: unknown field"), "{e}");
    let before = s.revision().await.unwrap();
    // The CLI only applies what parsed; apply itself re-validates what it is given too.
    let mut docs = parse_documents(&text.replace(", bogus: 1", ""), "ok.yaml").unwrap();
    if let Resource::IPPool(p) = &mut docs[2] {
        p.spec.block_size = 8;
    }
    let e = apply(&*s, docs).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "apply (IPPool 10-0-0-0-8), document 3 (1-based), spec.blockSize: 8 is out of range 20..=32 for 10.0.0.0/8"
    );
    assert_eq!(s.revision().await.unwrap(), before);
    assert!(s.list(KEY_PREFIX).await.unwrap().0.is_empty());
}

#[tokio::test]
async fn overlapping_pools_are_refused_before_any_write() {
    let (s, _dir) = open().await;
    apply(&*s, seed()).await.unwrap();
    let before = s.revision().await.unwrap();
    let docs = parse_documents(
        "apiVersion: v1\nkind: profile\nmetadata: {name: x}\n---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: inner}\nspec: {cidr: 192.168.64.0/18}\n",
        "o.yaml",
    )
    .unwrap();
    let e = apply(&*s, docs).await.unwrap_err().to_string();
    assert!(e.contains("document 2 (1-based), spec.cidr: 192.168.64.0/18 overlaps IPPool 192-168-0-0-17"), "{e}");
    assert_eq!(s.revision().await.unwrap(), before);
    // The seed's second pool (the other orchestrator's half) is fine.
    let docs = parse_documents("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 192.168.128.0/17}\n", "p.yaml").unwrap();
    apply(&*s, docs).await.unwrap();
    assert_eq!(get(&*s, Kind::IPPool, None, None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn namespaced_kinds_default_and_list_all_namespaces() {
    let (s, _dir) = open().await;
    let docs = parse_documents(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {selector: all()}\n---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec: {}\n",
        "n.yaml",
    )
    .unwrap();
    apply(&*s, docs).await.unwrap();
    assert_eq!(get(&*s, Kind::NetworkPolicy, None, None).await.unwrap().len(), 2);
    assert_eq!(get(&*s, Kind::NetworkPolicy, Some("prod"), None).await.unwrap().len(), 1);
    assert_eq!(get(&*s, Kind::NetworkPolicy, None, Some("p")).await.unwrap()[0].namespace(), Some("default"));
    delete(&*s, Kind::NetworkPolicy, Some("prod"), "p").await.unwrap();
    let e = delete(&*s, Kind::NetworkPolicy, Some("prod"), "p").await.unwrap_err();
    assert_eq!(e.to_string(), "NetworkPolicy prod/p not found");
}
