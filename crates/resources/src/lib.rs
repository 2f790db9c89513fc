//! Seam's resources: the typed model behind `seam apply/get/delete`.
//!
//! Users write Calico YAML in either of its styles — v3 (`apiVersion: projectcalico.org/v3`)
//! or the older v1 (`apiVersion: v1`, as in the BBVA experiment) — and every document becomes
//! one canonical, Calico-v3-shaped [`Resource`]. Errors name the file, the document and the
//! field path. Stored values are the v3 JSON form under [`key`].

mod error;
mod k8s;
mod parse;
mod selector;
mod storage;
mod types;
mod v1;
mod validate;

pub use error::ResourceError;
pub use k8s::*;
pub use parse::{parse_documents, to_json, to_yaml, API_VERSION};
pub use selector::{validate_selector, Selector, SelectorError};
pub use storage::{apply, delete, get, key, kind_prefix, ApplyOutcome, ApplySummary, KEY_PREFIX};
pub use types::*;

use std::fmt;

/// Every kind of resource Seam stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    IPPool,
    BGPConfiguration,
    BGPPeer,
    Node,
    WorkloadEndpoint,
    NetworkPolicy,
    GlobalNetworkPolicy,
    Profile,
}

impl Kind {
    /// Every kind, in the order `apply` writes them (pools and nodes before what uses them).
    pub const ALL: [Kind; 8] = [
        Kind::IPPool,
        Kind::BGPConfiguration,
        Kind::Node,
        Kind::BGPPeer,
        Kind::Profile,
        Kind::GlobalNetworkPolicy,
        Kind::NetworkPolicy,
        Kind::WorkloadEndpoint,
    ];

    /// The v3 `kind:` value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::IPPool => "IPPool",
            Kind::BGPConfiguration => "BGPConfiguration",
            Kind::BGPPeer => "BGPPeer",
            Kind::Node => "Node",
            Kind::WorkloadEndpoint => "WorkloadEndpoint",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            Kind::Profile => "Profile",
        }
    }

    /// The path segment used in store keys (lowercase plural, like Kubernetes resources).
    pub fn plural(&self) -> &'static str {
        match self {
            Kind::IPPool => "ippools",
            Kind::BGPConfiguration => "bgpconfigurations",
            Kind::BGPPeer => "bgppeers",
            Kind::Node => "nodes",
            Kind::WorkloadEndpoint => "workloadendpoints",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::GlobalNetworkPolicy => "globalnetworkpolicies",
            Kind::Profile => "profiles",
        }
    }

    /// Namespaced kinds live under a namespace in keys and need `-n` on delete.
    pub fn is_namespaced(&self) -> bool {
        matches!(self, Kind::WorkloadEndpoint | Kind::NetworkPolicy)
    }

    /// What `seam get/delete KIND` accepts: the kind, its plural and calicoctl's short forms,
    /// case-insensitively.
    pub fn from_cli(text: &str) -> Option<Kind> {
        let t = text.to_ascii_lowercase();
        Some(match t.as_str() {
            "ippool" | "ippools" | "pool" | "pools" => Kind::IPPool,
            "bgpconfiguration" | "bgpconfigurations" | "bgpconfig" | "bgpconfigs" => Kind::BGPConfiguration,
            "bgppeer" | "bgppeers" | "bgpp" | "bgpps" | "bp" | "bps" => Kind::BGPPeer,
            "node" | "nodes" | "no" => Kind::Node,
            "workloadendpoint" | "workloadendpoints" | "wep" | "weps" => Kind::WorkloadEndpoint,
            "networkpolicy" | "networkpolicies" | "netpol" | "np" | "policy" | "policies" => Kind::NetworkPolicy,
            "globalnetworkpolicy" | "globalnetworkpolicies" | "gnp" => Kind::GlobalNetworkPolicy,
            "profile" | "profiles" | "pro" => Kind::Profile,
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource of any kind, as parsed from YAML or read from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    IPPool(IPPool),
    BGPConfiguration(BGPConfiguration),
    BGPPeer(BGPPeer),
    Node(Node),
    WorkloadEndpoint(WorkloadEndpoint),
    NetworkPolicy(NetworkPolicy),
    GlobalNetworkPolicy(GlobalNetworkPolicy),
    Profile(Profile),
}

impl Resource {
    pub fn kind(&self) -> Kind {
        match self {
            Resource::IPPool(_) => Kind::IPPool,
            Resource::BGPConfiguration(_) => Kind::BGPConfiguration,
            Resource::BGPPeer(_) => Kind::BGPPeer,
            Resource::Node(_) => Kind::Node,
            Resource::WorkloadEndpoint(_) => Kind::WorkloadEndpoint,
            Resource::NetworkPolicy(_) => Kind::NetworkPolicy,
            Resource::GlobalNetworkPolicy(_) => Kind::GlobalNetworkPolicy,
            Resource::Profile(_) => Kind::Profile,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Resource::IPPool(r) => &r.name,
            Resource::BGPConfiguration(r) => &r.name,
            Resource::BGPPeer(r) => &r.name,
            Resource::Node(r) => &r.name,
            Resource::WorkloadEndpoint(r) => &r.name,
            Resource::NetworkPolicy(r) => &r.name,
            Resource::GlobalNetworkPolicy(r) => &r.name,
            Resource::Profile(r) => &r.name,
        }
    }

    /// The namespace of namespaced kinds.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Resource::WorkloadEndpoint(r) => Some(&r.namespace),
            Resource::NetworkPolicy(r) => Some(&r.namespace),
            _ => None,
        }
    }

    pub fn labels(&self) -> &Labels {
        match self {
            Resource::IPPool(r) => &r.labels,
            Resource::BGPConfiguration(r) => &r.labels,
            Resource::BGPPeer(r) => &r.labels,
            Resource::Node(r) => &r.labels,
            Resource::WorkloadEndpoint(r) => &r.labels,
            Resource::NetworkPolicy(r) => &r.labels,
            Resource::GlobalNetworkPolicy(r) => &r.labels,
            Resource::Profile(r) => &r.labels,
        }
    }

    /// This resource's store key.
    pub fn key(&self) -> String {
        key(self.kind(), self.namespace(), self.name())
    }
}
