//! The files the lab feeds to its processes, derived from the seed's own examples so that the
//! lab runs what the README documents: the route reflector's GoBGP TOML (the seed's template
//! with one neighbor entry per node), the Calico resources and the seed's policy.

use std::net::Ipv4Addr;

use anyhow::{bail, Context};

/// The seed's route-reflector config (`${ROUTER_IP}` left for `seam bgpd` to expand).
pub const REFLECTOR_TEMPLATE: &str = include_str!("../../../../examples/route-reflector.toml");
/// Where the template came from, for error messages.
pub const REFLECTOR_TEMPLATE_PATH: &str = "examples/route-reflector.toml";
/// Pools per orchestrator, the global peer, mesh off (applied before the agents start).
pub const SEED_CALICO: &str = include_str!("../../../../examples/seed-calico.yaml");
/// `allow-all` then `calico-open` (applied one document at a time, in file order).
pub const SEED_POLICY: &str = include_str!("../../../../examples/seed-policy.yaml");

/// What the lab adds to every neighbor entry of the seed's template.
///
/// Timers: GoBGP's defaults (and so the seed's) keep a reset session Idle for 30 s and retry
/// connecting every 120 s, so a restarted agent would be refused for half a minute; in the lab
/// a reset session is ready again after one second and the reflector reconnects every second.
///
/// Graceful Restart (RFC 4724): the agents announce the capability; with it enabled here the
/// reflector keeps a crashed agent's block (marked stale) and keeps advertising it to the other
/// nodes until the agent is back and has re-announced, instead of withdrawing it at once. The
/// seed's GoBGP did not do this; the lab shows agent restarts, so it does.
pub const LAB_NEIGHBOR_EXTRA: &str = "  [neighbors.timers.config]\n    connect-retry = 1\n    idle-hold-time-after-reset = 1\n  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 120\n";

/// Renders the reflector's config: the template's global section, then its `[[neighbors]]`
/// entry repeated for every node with the neighbor address replaced — "one neighbor entry for
/// every node", as the seed describes its GoBGP setup — each followed by `extra` (e.g.
/// [`LAB_NEIGHBOR_EXTRA`]).
pub fn reflector_config(template: &str, nodes: &[Ipv4Addr], extra: &str) -> anyhow::Result<String> {
    let Some(start) = template.find("[[neighbors]]") else {
        bail!("{REFLECTOR_TEMPLATE_PATH}: no [[neighbors]] entry to use as the per-node template");
    };
    let (global, neighbor) = template.split_at(start);
    if neighbor[1..].contains("[[neighbors]]") {
        bail!("{REFLECTOR_TEMPLATE_PATH}: expected exactly one [[neighbors]] entry as the template");
    }
    let address_line = neighbor
        .lines()
        .find(|l| l.trim_start().starts_with("neighbor-address"))
        .with_context(|| format!("{REFLECTOR_TEMPLATE_PATH}: the [[neighbors]] entry has no neighbor-address"))?;
    let indent: String = address_line.chars().take_while(|c| c.is_whitespace()).collect();
    let mut out = String::from(global.trim_end());
    out.push('\n');
    for node in nodes {
        out.push('\n');
        out.push_str(&neighbor.replacen(address_line, &format!("{indent}neighbor-address = \"{node}\""), 1));
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(extra);
    }
    Ok(out)
}

/// Splits a multi-document YAML text at `---` lines, dropping comment-only documents, so the
/// documents can be applied one at a time in file order.
pub fn yaml_documents(text: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, docs: &mut Vec<String>| {
        let has_content = current.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if has_content {
            docs.push(std::mem::take(current));
        }
        current.clear();
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&mut current, &mut docs);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    flush(&mut current, &mut docs);
    docs
}

/// The CNI network configuration the lab hands to `seam-cni` for a node (also the podman
/// conflist's only plugin).
pub fn cni_plugin_config(agent_socket: &str) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "seam",
        "type": "seam-cni",
        "agentSocket": agent_socket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflector_config_has_one_neighbor_per_node_from_the_template() {
        let nodes: Vec<Ipv4Addr> = ["172.16.18.33", "172.16.18.44"].iter().map(|s| s.parse().unwrap()).collect();
        let text = reflector_config(REFLECTOR_TEMPLATE, &nodes, LAB_NEIGHBOR_EXTRA).unwrap();
        assert_eq!(text.matches("[[neighbors]]").count(), 2);
        assert!(text.contains("neighbor-address = \"172.16.18.33\""));
        assert!(text.contains("neighbor-address = \"172.16.18.44\""));
        // The rest of each entry is the seed's: client of the reflector, cluster id = router id.
        assert_eq!(text.matches("route-reflector-client = true").count(), 2);
        assert_eq!(text.matches("route-reflector-cluster-id = \"${ROUTER_IP}\"").count(), 2);
        assert!(text.starts_with("[global.config]"));
        assert!(text.contains("as = 64511"));
        assert_eq!(text.matches("idle-hold-time-after-reset = 1").count(), 2);
        // What seam bgpd reads: eight neighbors, each a client with the short timers.
        let eight: Vec<Ipv4Addr> = (33..=40).map(|i| Ipv4Addr::new(172, 16, 18, i)).collect();
        let text = reflector_config(REFLECTOR_TEMPLATE, &eight, LAB_NEIGHBOR_EXTRA).unwrap();
        let router_ip = |var: &str| (var == "ROUTER_IP").then(|| "172.16.18.32".to_string());
        let config = bgpd::config::Config::from_toml_str(&text, "lab.toml", &router_ip).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.neighbors.len(), 8);
        assert!(config.neighbors.iter().all(|n| n.timers.idle_hold_time_after_reset == 1));
        assert!(config.neighbors.iter().all(|n| n.graceful_restart.is_some()));
    }

    #[test]
    fn reflector_config_rejects_a_template_without_neighbors() {
        let err = reflector_config("[global.config]\n  as = 1\n", &[], "").unwrap_err().to_string();
        assert!(err.contains("examples/route-reflector.toml") && err.contains("[[neighbors]]"), "{err}");
        let two = format!("{REFLECTOR_TEMPLATE}\n{}", &REFLECTOR_TEMPLATE[REFLECTOR_TEMPLATE.find("[[neighbors]]").unwrap()..]);
        assert!(reflector_config(&two, &[], "").is_err());
    }

    #[test]
    fn seed_policy_documents_keep_the_seed_order() {
        let docs = yaml_documents(SEED_POLICY);
        assert_eq!(docs.len(), 2);
        assert!(docs[0].contains("name: allow-all") && docs[0].contains("kind: policy"));
        assert!(docs[1].contains("name: calico-open") && docs[1].contains("kind: profile"));
    }

    #[test]
    fn seed_resources_parse() {
        for (name, text) in [("seed-calico.yaml", SEED_CALICO), ("seed-policy.yaml", SEED_POLICY)] {
            let parsed = resources::parse_documents(text, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!parsed.is_empty(), "{name} has no resources");
        }
        let docs = yaml_documents(SEED_CALICO);
        assert_eq!(docs.len(), 4, "two pools, the BGP configuration and the peer");
    }

    #[test]
    fn cni_config_names_the_agent_socket() {
        let v = cni_plugin_config("/run/seam-lab/k8s-worker1/agent.sock");
        assert_eq!(v["type"], "seam-cni");
        assert_eq!(v["agentSocket"], "/run/seam-lab/k8s-worker1/agent.sock");
    }
}
