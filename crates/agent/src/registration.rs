//! Registering this node: its `Node` resource with labels and BGP address.
//!
//! Operators label nodes too (`seam apply` a Node with `rack=r1`), so registration merges:
//! labels already stored stay, the agent's own (`--labels`, `coe=`) are set on top, and the
//! BGP address is the one the agent was started with. The node's own AS and route
//! reflector cluster ID, if an operator set them, are kept.

use ipnet::Ipv4Net;
use resources::{Kind, Labels, Node, NodeBgpSpec, Resource};
use store::Store;

/// The label that says which orchestrator a node belongs to (IP pools select on it).
pub const COE_LABEL: &str = "coe";

/// What the agent knows about itself from its flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    /// The node's IPv4 address with its subnet (/32 when only an address was given).
    pub address: Ipv4Net,
    /// Labels from `--labels`.
    pub labels: Labels,
    /// `--orchestrator`, written as the `coe` label.
    pub orchestrator: Option<String>,
    /// `--as`: this node's own AS.
    pub asn: Option<u32>,
}

/// The Node to store, given what is stored now. Pure.
pub fn merged_node(existing: Option<&Node>, me: &Registration) -> Node {
    let mut node = existing.cloned().unwrap_or_else(|| Node { name: me.name.clone(), labels: Labels::new(), spec: Default::default() });
    for (k, v) in &me.labels {
        node.labels.insert(k.clone(), v.clone());
    }
    if let Some(coe) = &me.orchestrator {
        node.labels.insert(COE_LABEL.to_string(), coe.clone());
    }
    let bgp = node.spec.bgp.get_or_insert_with(NodeBgpSpec::default);
    bgp.ipv4_address = Some(me.address);
    if let Some(asn) = me.asn {
        bgp.as_number = Some(resources::Asn(asn));
    }
    node
}

/// Read, merge and write this node's resource; returns what is stored afterwards.
pub async fn register(store: &dyn Store, me: &Registration) -> anyhow::Result<Node> {
    let existing = match resources::get(store, Kind::Node, None, Some(&me.name)).await {
        Ok(mut found) => match found.pop() {
            Some(Resource::Node(node)) => Some(node),
            _ => None,
        },
        Err(resources::ResourceError::NotFound { .. }) => None,
        Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot read Node {}", me.name))),
    };
    let node = merged_node(existing.as_ref(), me);
    resources::apply(store, vec![Resource::Node(node.clone())])
        .await
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot register Node {}", me.name)))?;
    Ok(node)
}

/// Parse `--labels k=v,k=v` (empty = none), naming the bad entry.
pub fn parse_labels(text: &str) -> anyhow::Result<Labels> {
    let mut labels = Labels::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            anyhow::bail!("--labels: {item:?} is not KEY=VALUE");
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            anyhow::bail!("--labels: {item:?} has an empty key");
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

/// Parse `--address`: `10.0.0.5` (= /32) or `10.0.0.5/24`.
pub fn parse_address(text: &str) -> anyhow::Result<Ipv4Net> {
    if text.contains('/') {
        text.parse().map_err(|e| anyhow::anyhow!("--address {text:?}: {e}"))
    } else {
        let addr: std::net::Ipv4Addr = text.parse().map_err(|e| anyhow::anyhow!("--address {text:?}: {e} (expected an IPv4 address)"))?;
        Ok(Ipv4Net::from(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Registration {
        Registration {
            name: "k8s-1".into(),
            address: parse_address("10.0.0.1").unwrap(),
            labels: parse_labels("zone=a, rack = r2").unwrap(),
            orchestrator: Some("kubernetes".into()),
            asn: None,
        }
    }

    #[test]
    fn new_node_gets_labels_coe_and_address() {
        let node = merged_node(None, &me());
        assert_eq!(node.name, "k8s-1");
        assert_eq!(node.labels.get("coe").map(String::as_str), Some("kubernetes"));
        assert_eq!(node.labels.get("rack").map(String::as_str), Some("r2"));
        let bgp = node.spec.bgp.unwrap();
        assert_eq!(bgp.ipv4_address.unwrap().to_string(), "10.0.0.1/32");
        assert_eq!(bgp.as_number, None);
    }

    #[test]
    fn operator_labels_and_as_are_kept() {
        let mut stored = merged_node(None, &me());
        stored.labels.insert("team".into(), "net".into());
        stored.labels.insert("zone".into(), "old".into());
        stored.spec.bgp.as_mut().unwrap().as_number = Some(resources::Asn(65010));
        stored.spec.bgp.as_mut().unwrap().ipv4_address = Some("10.9.9.9/24".parse().unwrap());
        let node = merged_node(Some(&stored), &me());
        assert_eq!(node.labels.get("team").map(String::as_str), Some("net"));
        assert_eq!(node.labels.get("zone").map(String::as_str), Some("a"), "the agent's flag wins");
        let bgp = node.spec.bgp.unwrap();
        assert_eq!(bgp.as_number, Some(resources::Asn(65010)));
        assert_eq!(bgp.ipv4_address.unwrap().to_string(), "10.0.0.1/32");
    }

    #[test]
    fn flag_parsing_errors_name_the_flag() {
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("a=1,b").unwrap_err().to_string().contains("\"b\" is not KEY=VALUE"));
        assert!(parse_labels("=x").unwrap_err().to_string().contains("empty key"));
        assert_eq!(parse_address("10.0.0.5/24").unwrap().prefix_len(), 24);
        assert!(parse_address("fd00::1").unwrap_err().to_string().contains("--address"));
    }

    #[tokio::test]
    async fn register_merges_with_the_stored_node() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(&format!("file:{}", dir.path().join("s.redb").display())).await.unwrap();
        let first = register(&*store, &me()).await.unwrap();
        let mut edited = first.clone();
        edited.labels.insert("team".into(), "net".into());
        resources::apply(&*store, vec![Resource::Node(edited)]).await.unwrap();
        let again = register(&*store, &me()).await.unwrap();
        assert_eq!(again.labels.get("team").map(String::as_str), Some("net"));
        let stored = resources::get(&*store, Kind::Node, None, Some("k8s-1")).await.unwrap();
        assert_eq!(stored, vec![Resource::Node(again)]);
    }
}
