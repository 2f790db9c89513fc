//! Kubernetes NetworkPolicy to Calico-style namespaced policy, the way Calico maps them: order
//! 1000, Allow-only rules, one rule per (peer, protocol). Union semantics then fall out of the
//! tier evaluation: an endpoint selected by any such policy is isolated in that direction and
//! is let through only by some rule of some selecting policy (end-of-tier drop otherwise).

use resources::{
    Action, EntityRule, K8sNetworkPolicy, K8sPeer, K8sPort, IntOrString, LabelSelector, NetworkPolicy,
    NetworkPolicySpec, PolicyType, Port, Protocol, Rule, Selector,
};

use crate::PolicyError;

/// The order Calico gives converted Kubernetes policies.
pub const K8S_POLICY_ORDER: f64 = 1000.0;

/// Name prefix of converted policies (Calico's), so they cannot clash with user policies.
pub const K8S_POLICY_PREFIX: &str = "knp.default.";

/// Turn a Kubernetes label selector into the selector language.
pub fn label_selector(sel: &LabelSelector, what: &str) -> Result<Selector, PolicyError> {
    let mut out = Selector::All;
    for (k, v) in &sel.match_labels {
        out = out.and(Selector::Eq(k.clone(), v.clone()));
    }
    for (i, e) in sel.match_expressions.iter().enumerate() {
        let s = match e.operator.as_str() {
            "In" => Selector::In(e.key.clone(), e.values.clone()),
            "NotIn" => Selector::NotIn(e.key.clone(), e.values.clone()),
            "Exists" => Selector::Has(e.key.clone()),
            "DoesNotExist" => Selector::Not(Box::new(Selector::Has(e.key.clone()))),
            other => {
                return Err(PolicyError::new(
                    what,
                    format!("matchExpressions[{i}].operator"),
                    format!("unknown operator {other:?}; expected In, NotIn, Exists or DoesNotExist"),
                ))
            }
        };
        out = out.and(s);
    }
    Ok(out)
}

fn protocol(text: Option<&str>, obj: &str, field: &str) -> Result<Protocol, PolicyError> {
    match text.map(|t| t.to_ascii_uppercase()).as_deref() {
        None | Some("TCP") => Ok(Protocol::Tcp),
        Some("UDP") => Ok(Protocol::Udp),
        Some("SCTP") => Ok(Protocol::Sctp),
        Some(other) => Err(PolicyError::new(obj, field, format!("protocol {other:?} is not TCP, UDP or SCTP"))),
    }
}

/// Group a rule's ports by protocol: each group becomes one Calico rule. An entry without
/// `port` means every port of its protocol (the group's port list is then empty).
/// One Calico rule's worth of ports: a protocol (None = any) and its ports (empty = all).
type PortGroup = (Option<Protocol>, Vec<Port>);

fn port_groups(ports: &[K8sPort], obj: &str, field: &str) -> Result<Vec<PortGroup>, PolicyError> {
    if ports.is_empty() {
        return Ok(vec![(None, Vec::new())]);
    }
    let mut groups: Vec<(Protocol, Option<Vec<Port>>)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let f = format!("{field}.ports[{i}]");
        let proto = protocol(p.protocol.as_deref(), obj, &format!("{f}.protocol"))?;
        let port = match (&p.port, p.end_port) {
            (None, None) => None,
            (None, Some(_)) => return Err(PolicyError::new(obj, format!("{f}.endPort"), "endPort needs a numeric port")),
            (Some(IntOrString::Int(n)), end) => {
                let n = u16::try_from(*n).ok().filter(|n| *n > 0);
                let n = n.ok_or_else(|| PolicyError::new(obj, format!("{f}.port"), "port is not in 1-65535"))?;
                match end {
                    None => Some(Port::Number(n)),
                    Some(e) => match u16::try_from(e) {
                        Ok(e) if e >= n => Some(Port::Range(n, e)),
                        _ => {
                            return Err(PolicyError::new(obj, format!("{f}.endPort"), format!("endPort {e} is not in {n}-65535")))
                        }
                    },
                }
            }
            (Some(IntOrString::String(s)), None) => match s.parse::<u16>() {
                Ok(n) if n > 0 => Some(Port::Number(n)),
                _ if !s.is_empty() => Some(Port::Named(s.clone())),
                _ => return Err(PolicyError::new(obj, format!("{f}.port"), "empty port name")),
            },
            (Some(IntOrString::String(_)), Some(_)) => {
                return Err(PolicyError::new(obj, format!("{f}.endPort"), "endPort cannot be used with a named port"))
            }
        };
        let slot = match groups.iter_mut().find(|g| g.0 == proto) {
            Some(g) => g,
            None => {
                groups.push((proto, Some(Vec::new())));
                groups.last_mut().expect("just pushed")
            }
        };
        match (port, &mut slot.1) {
            // "every port" absorbs the group.
            (None, list) => *list = None,
            (Some(port), Some(list)) => list.push(port),
            (Some(_), None) => {}
        }
    }
    Ok(groups.into_iter().map(|(p, l)| (Some(p), l.unwrap_or_default())).collect())
}

/// One peer as the far side of a rule (`from` for ingress, `to` for egress).
fn peer_entity(peer: &K8sPeer, obj: &str, field: &str) -> Result<EntityRule, PolicyError> {
    let mut e = EntityRule::default();
    if let Some(b) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            return Err(PolicyError::new(obj, field, "ipBlock cannot be combined with podSelector or namespaceSelector"));
        }
        for x in &b.except {
            if !b.cidr.contains(x) {
                return Err(PolicyError::new(obj, format!("{field}.ipBlock.except"), format!("{x} is not inside {}", b.cidr)));
            }
        }
        e.nets = vec![b.cidr];
        e.not_nets = b.except.clone();
        return Ok(e);
    }
    match (&peer.pod_selector, &peer.namespace_selector) {
        (None, None) => Err(PolicyError::new(obj, field, "a peer needs podSelector, namespaceSelector or ipBlock")),
        (pods, nss) => {
            // An explicit selector (even `{}` = all()) restricts the peer to endpoints, which
            // is why all() is written out rather than left empty (empty = any address).
            let pods = match pods {
                Some(s) => label_selector(s, &format!("{obj} {field}.podSelector"))?,
                None => Selector::All,
            };
            e.selector = pods.to_string();
            if let Some(ns) = nss {
                e.namespace_selector = label_selector(ns, &format!("{obj} {field}.namespaceSelector"))?.to_string();
            }
            Ok(e)
        }
    }
}

/// Convert one Kubernetes policy into the namespaced Calico form the compiler evaluates.
pub fn convert(p: &K8sNetworkPolicy) -> Result<NetworkPolicy, PolicyError> {
    let obj = format!("NetworkPolicy {}/{} (networking.k8s.io/v1)", p.namespace, p.name);
    let spec = &p.spec;
    let types = match &spec.policy_types {
        Some(ts) => {
            let mut out = Vec::new();
            for (i, t) in ts.iter().enumerate() {
                out.push(match t.as_str() {
                    "Ingress" => PolicyType::Ingress,
                    "Egress" => PolicyType::Egress,
                    other => {
                        return Err(PolicyError::new(
                            &obj,
                            format!("spec.policyTypes[{i}]"),
                            format!("{other:?} is not Ingress or Egress"),
                        ))
                    }
                });
            }
            out
        }
        None => {
            let mut out = vec![PolicyType::Ingress];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                out.push(PolicyType::Egress);
            }
            out
        }
    };
    let mut ingress = Vec::new();
    for (i, r) in spec.ingress.iter().flatten().enumerate() {
        let field = format!("spec.ingress[{i}]");
        let peers = peers(&r.from, &obj, &format!("{field}.from"))?;
        for (proto, ports) in port_groups(&r.ports, &obj, &field)? {
            for peer in &peers {
                let mut rule = allow_rule(proto);
                rule.source = peer.clone();
                rule.destination.ports = ports.clone();
                ingress.push(rule);
            }
        }
    }
    let mut egress = Vec::new();
    for (i, r) in spec.egress.iter().flatten().enumerate() {
        let field = format!("spec.egress[{i}]");
        let peers = peers(&r.to, &obj, &format!("{field}.to"))?;
        for (proto, ports) in port_groups(&r.ports, &obj, &field)? {
            for peer in &peers {
                let mut rule = allow_rule(proto);
                rule.destination = peer.clone();
                rule.destination.ports = ports.clone();
                egress.push(rule);
            }
        }
    }
    Ok(NetworkPolicy {
        namespace: p.namespace.clone(),
        name: format!("{K8S_POLICY_PREFIX}{}", p.name),
        labels: p.labels.clone(),
        spec: NetworkPolicySpec {
            order: Some(K8S_POLICY_ORDER),
            selector: label_selector(&spec.pod_selector, &format!("{obj} spec.podSelector"))?.to_string(),
            types,
            ingress,
            egress,
            service_account_selector: String::new(),
        },
    })
}

/// The peers of a rule; none means "from/to anywhere" (one unrestricted entity).
fn peers(list: &[K8sPeer], obj: &str, field: &str) -> Result<Vec<EntityRule>, PolicyError> {
    if list.is_empty() {
        return Ok(vec![EntityRule::default()]);
    }
    list.iter().enumerate().map(|(i, p)| peer_entity(p, obj, &format!("{field}[{i}]"))).collect()
}

fn allow_rule(protocol: Option<Protocol>) -> Rule {
    Rule {
        action: Action::Allow,
        ip_version: None,
        protocol,
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source: EntityRule::default(),
        destination: EntityRule::default(),
    }
}
