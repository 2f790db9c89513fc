//! Seam's network policy: the model (Kubernetes NetworkPolicy, Calico-style global and
//! namespaced policies, profiles, label selectors) and its compiler to one nftables table,
//! `inet seam`, as a pure function of resources and endpoints — testable without a kernel.
//!
//! Evaluation, per workload endpoint and direction (Calico's semantics):
//! 1. the policies that select the endpoint and govern the direction, by `order` (lower first,
//!    none = last, ties by name); in each, the first matching rule decides: Allow / Deny end it,
//!    Log logs and goes on, Pass skips the remaining policies and goes to the profiles;
//!    a policy where nothing matches hands over to the next one;
//! 2. if at least one policy applied and none decided: Deny (end of tier);
//! 3. otherwise (no policy applies, or Pass): the endpoint's profiles in order, first matching
//!    rule decides; nothing matching: Deny.
//!
//! Kubernetes policies become namespaced policies of order 1000 with Allow-only rules
//! ([`k8s::convert`]), which yields Kubernetes' isolation-and-union semantics.
//!
//! The compiled table (see [`nft`]) uses one named set per distinct selector and verdict maps
//! from workload interfaces to chains shared by every endpoint with the same policies and
//! profiles, so a new pod usually changes only set and map elements ([`endpoint_delta`]).

pub mod compile;
pub mod eval;
pub mod incremental;
pub mod k8s;
pub mod nft;

use std::collections::BTreeMap;

use ipnet::IpNet;
use resources::{
    Action, EntityRule, GlobalNetworkPolicy, K8sNetworkPolicy, Labels, NetworkPolicy, Profile, ProfileSpec,
    Protocol, Rule, WorkloadEndpoint,
};

pub use compile::compile;
pub use eval::{evaluate, trace, Packet, Trace, Verdict};
pub use incremental::{compile_indexed, ElementDelta, EndpointIndex};
pub use nft::{endpoint_delta, CtState, Ruleset};

/// Label every endpoint gets with its namespace (Calico's name), so selectors can use it.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
/// Label every endpoint gets with its orchestrator (Calico's name).
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";
/// Label every namespace gets with its own name (Kubernetes sets it too).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A container port with a name, so policies can say `http` instead of a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// A workload endpoint as the compiler needs it. All endpoints of the cluster are listed (they
/// fill the selector sets); those with an `interface` are local and get chains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub namespace: String,
    /// `k8s`, `mesos`, `nomad`... (also a label, see [`ORCHESTRATOR_LABEL`]).
    pub orchestrator: String,
    pub labels: Labels,
    /// The workload's addresses (normally /32 and /128).
    pub addresses: Vec<IpNet>,
    /// Host-side veth name when the endpoint is on this node.
    pub interface: Option<String>,
    /// Profiles in the order they apply (e.g. `kns.<namespace>`, the orchestrator default).
    pub profiles: Vec<String>,
    /// Named container ports, for rules that use port names.
    pub ports: Vec<NamedPort>,
}

impl Endpoint {
    /// The compiler's view of a stored WorkloadEndpoint; it is local when it is on `this_node`.
    /// (WorkloadEndpoint has no named ports field; callers add them from runtime metadata.)
    pub fn from_workload(wep: &WorkloadEndpoint, this_node: &str) -> Endpoint {
        let local = wep.spec.node == this_node && !wep.spec.interface_name.is_empty();
        Endpoint {
            name: wep.name.clone(),
            namespace: wep.namespace.clone(),
            orchestrator: wep.spec.orchestrator.clone(),
            labels: wep.labels.clone(),
            addresses: wep.spec.ip_networks.clone(),
            interface: local.then(|| wep.spec.interface_name.clone()),
            profiles: wep.spec.profiles.clone(),
            ports: Vec::new(),
        }
    }
}

/// Everything the compiler reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyInput {
    pub endpoints: Vec<Endpoint>,
    pub global_policies: Vec<GlobalNetworkPolicy>,
    pub policies: Vec<NetworkPolicy>,
    pub k8s_policies: Vec<K8sNetworkPolicy>,
    pub profiles: Vec<Profile>,
    /// Labels per namespace, for namespace selectors.
    pub namespaces: BTreeMap<String, Labels>,
}

/// Input the compiler refuses, naming the object and field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {reason}")]
pub struct PolicyError {
    pub object: String,
    pub field: String,
    pub reason: String,
}

impl PolicyError {
    pub(crate) fn new(object: impl Into<String>, field: impl Into<String>, reason: impl Into<String>) -> PolicyError {
        PolicyError { object: object.into(), field: field.into(), reason: reason.into() }
    }
}

/// One orchestrator and the pool ranges its workloads take addresses from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrchestratorPools {
    pub orchestrator: String,
    pub cidrs: Vec<IpNet>,
}

/// Name of an orchestrator's default profile.
pub fn default_profile_name(orchestrator: &str) -> String {
    format!("seam.{orchestrator}")
}

/// The seed's default behaviour as profiles the agent installs, one per orchestrator: ingress
/// is allowed from that orchestrator's own pools (everything else falls to the profile's
/// end-of-rules drop, so other orchestrators and outside hosts are blocked until a policy or
/// profile such as the seed's `calico-open` allows them); egress is allowed.
pub fn default_profiles(orchestrators: &[OrchestratorPools]) -> Vec<Profile> {
    orchestrators
        .iter()
        .map(|o| {
            let allow = |source: EntityRule| Rule {
                action: Action::Allow,
                ip_version: None,
                protocol: None,
                not_protocol: None,
                icmp: None,
                not_icmp: None,
                source,
                destination: EntityRule::default(),
            };
            let ingress = if o.cidrs.is_empty() {
                Vec::new()
            } else {
                vec![allow(EntityRule { nets: o.cidrs.clone(), ..Default::default() })]
            };
            Profile {
                name: default_profile_name(&o.orchestrator),
                labels: Labels::new(),
                spec: ProfileSpec { ingress, egress: vec![allow(EntityRule::default())], labels_to_apply: Labels::new() },
            }
        })
        .collect()
}
