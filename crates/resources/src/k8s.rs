//! Kubernetes `networking.k8s.io/v1` NetworkPolicy, as users write it for kubectl. The policy
//! compiler turns each into Calico-style namespaced policy (order 1000, Allow-only rules), so
//! this module only models and parses the document; it is not a stored Seam kind (the
//! orchestrator owns these objects, the agent reads them).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::parse::{from_value, join};
use crate::{Labels, ResourceError};

/// The `apiVersion` of the Kubernetes policy documents accepted here.
pub const K8S_NETWORKING_API: &str = "networking.k8s.io/v1";

/// One Kubernetes NetworkPolicy: which pods of its namespace it isolates and what it admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct K8sNetworkPolicy {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub spec: K8sNetworkPolicySpec,
}

/// The policy body, field for field as in the Kubernetes API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sNetworkPolicySpec {
    /// Pods of the namespace the policy selects; `{}` selects all of them.
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Directions the policy isolates; absent = Ingress, plus Egress when egress rules exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<K8sIngressRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<K8sEgressRule>>,
}

/// Kubernetes label selector: every `matchLabels` pair and every expression must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub match_labels: Labels,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry: `operator` is In, NotIn, Exists or DoesNotExist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Traffic admitted into the selected pods: from any of `from` (absent/empty = anywhere) to any
/// of `ports` (absent/empty = every port).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sIngressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<K8sPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<K8sPort>,
}

/// Traffic the selected pods may send: to any of `to` on any of `ports`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sEgressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<K8sPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<K8sPort>,
}

/// A peer: pods (by labels, in this namespace or in selected namespaces), or an address block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

/// A CIDR minus some sub-ranges.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpBlock {
    pub cidr: ipnet::IpNet,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<ipnet::IpNet>,
}

/// A port match: protocol (TCP when absent), a number or a container port name, and an
/// optional `endPort` making a numeric port a range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u32>,
}

/// Kubernetes' int-or-string: a port number or a named container port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(u32),
    String(String),
}

/// Kubernetes object metadata; fields written by the API server are accepted and dropped.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct K8sMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Labels,
}

/// The document envelope.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct K8sDoc {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: K8sMeta,
    #[serde(default)]
    spec: K8sNetworkPolicySpec,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<Value>,
}

/// Parse every `networking.k8s.io/v1` NetworkPolicy in a YAML/JSON text (documents separated by
/// `---`; `kind: List` / `NetworkPolicyList` with `items` also work). Other documents are an
/// error naming the document. A missing namespace is `default`, as kubectl does.
pub fn parse_k8s_network_policies(text: &str, source: &str) -> Result<Vec<K8sNetworkPolicy>, ResourceError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| ResourceError::Yaml { source_name: source.to_string(), message: e.to_string() })?;
    let mut out = Vec::new();
    for (index, doc) in docs.into_iter().enumerate() {
        k8s_value(doc, "", &mut out).map_err(|(path, reason)| ResourceError::Invalid {
            source_name: source.to_string(),
            document: index + 1,
            path,
            reason,
        })?;
    }
    Ok(out)
}

fn k8s_value(value: Value, prefix: &str, out: &mut Vec<K8sNetworkPolicy>) -> Result<(), (String, String)> {
    let Value::Object(map) = value else {
        return match value {
            Value::Null => Ok(()),
            _ => Err((prefix.to_string(), "expected a NetworkPolicy mapping".into())),
        };
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    if kind == "List" || kind == "NetworkPolicyList" {
        let items = map.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
        for (i, item) in items.into_iter().enumerate() {
            k8s_value(item, &join(prefix, &format!("items[{i}]")), out)?;
        }
        return Ok(());
    }
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(K8S_NETWORKING_API) => {}
        other => {
            return Err((
                join(prefix, "apiVersion"),
                format!("{other:?} is not supported here; expected {K8S_NETWORKING_API}"),
            ))
        }
    }
    if kind != "NetworkPolicy" {
        return Err((join(prefix, "kind"), format!("{kind:?} is not NetworkPolicy")));
    }
    let doc: K8sDoc = from_value(Value::Object(map)).map_err(|(p, r)| (join(prefix, &p), r))?;
    if doc.metadata.name.is_empty() {
        return Err((join(prefix, "metadata.name"), "missing".into()));
    }
    out.push(K8sNetworkPolicy {
        namespace: doc.metadata.namespace.filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into()),
        name: doc.metadata.name,
        labels: doc.metadata.labels,
        spec: doc.spec,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_listing() {
        // Seed 002, listing 4, in today's apiVersion.
        let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: test-network-policy\n  namespace: default\nspec:\n  podSelector:\n    matchLabels:\n      role: db\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels:\n          project: myproject\n    - podSelector:\n        matchLabels:\n          role: frontend\n    ports:\n    - protocol: TCP\n      port: 6379\n";
        let p = parse_k8s_network_policies(text, "np.yaml").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "test-network-policy");
        let ingress = p[0].spec.ingress.as_ref().unwrap();
        assert_eq!(ingress[0].from.len(), 2);
        assert_eq!(ingress[0].ports[0].port, Some(IntOrString::Int(6379)));
    }

    #[test]
    fn errors_name_document_and_field() {
        let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec:\n  podSelecter: {}\n";
        let e = parse_k8s_network_policies(text, "np.yaml").unwrap_err().to_string();
        assert!(e.contains("np.yaml") && e.contains("podSelecter"), "{e}");
        let text = "apiVersion: v1\nkind: NetworkPolicy\nmetadata: {name: a}\n";
        let e = parse_k8s_network_policies(text, "np.yaml").unwrap_err().to_string();
        assert!(e.contains("apiVersion"), "{e}");
    }
}
