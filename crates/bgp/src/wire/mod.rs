//! The BGP message model and its codec.
//!
//! The model types live here; decoding and encoding live in submodules. Decoding is done
//! against a [`CodecContext`] because the same bytes mean different things depending on what
//! the session negotiated (2- or 4-octet AS numbers, ADD-PATH per family).
//!
//! Receiving: [`frame_length`] finds message boundaries in a byte stream, [`decode_message`]
//! turns one frame into a [`Received`]: the message plus the RFC 7606 outcomes that keep the
//! session up. Errors that reset the session come back as a [`DecodeError`] holding the exact
//! NOTIFICATION to send. Sending: [`encode_message`] appends one message to the caller's buffer,
//! [`encode_update_split`] packs a large UPDATE into as many 4096-octet messages as needed, and
//! [`encode_path_attributes`] produces the attribute block alone for callers that cache it.

mod attributes;
mod capabilities;
pub mod codes;
mod decode;
mod encode;
mod error;
mod prefix;

pub use attributes::encode_path_attributes;
pub use decode::{decode_message, frame_length};
pub use encode::{encode_message, encode_update_split};
pub use error::{
    AttributeIssue, DecodeError, DecodeErrorKind, EncodeError, IssueReason, NlriField, Received, UpdateIssues,
};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::types::{Family, Prefix};

/// What the session negotiated that changes how UPDATEs are encoded and decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodecContext {
    /// Both sides advertised the 4-octet AS capability (RFC 6793): AS_PATH carries 4-octet ASNs.
    pub four_octet_as: bool,
    /// Families in which NLRI we receive carry a Path Identifier (RFC 7911).
    pub add_path_receive: Vec<Family>,
    /// Families in which NLRI we send carry a Path Identifier (RFC 7911).
    pub add_path_send: Vec<Family>,
}

/// One BGP message (RFC 4271 §4).
// Updates dominate traffic, so keeping them unboxed (and the API stable) beats a smaller enum.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

/// OPEN (RFC 4271 §4.2) with its capabilities (RFC 5492) already unpacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The 2-octet "My Autonomous System" field; AS_TRANS when the real AS needs 4 octets.
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

/// A capability advertised in OPEN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    /// RFC 4760: the sender can carry routes of this family.
    Multiprotocol(Family),
    /// RFC 2918.
    RouteRefresh,
    /// RFC 7313, parsed so that peers advertising it are understood.
    EnhancedRouteRefresh,
    /// RFC 6793: the sender's real AS number.
    FourOctetAs(u32),
    /// RFC 4724.
    GracefulRestart(GracefulRestart),
    /// RFC 7911: per family, whether the sender can send and/or receive multiple paths.
    AddPath(Vec<AddPathFamily>),
    /// Anything else, kept raw so it can be logged and reported.
    Unknown { code: u8, data: Vec<u8> },
}

/// The graceful restart capability (RFC 4724 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GracefulRestart {
    /// The R bit: the sender has restarted.
    pub restarting: bool,
    /// The N bit (RFC 8538), carried through.
    pub notification: bool,
    /// Seconds the peer should keep our routes while we restart (12 bits).
    pub restart_time: u16,
    /// Families whose forwarding state is preserved, with the F bit.
    pub families: Vec<(Family, bool)>,
}

/// One entry of the ADD-PATH capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddPathFamily {
    pub family: Family,
    pub receive: bool,
    pub send: bool,
}

/// UPDATE (RFC 4271 §4.3), with MP_REACH/MP_UNREACH (RFC 4760) broken out of the attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// IPv4 unicast withdrawals from the Withdrawn Routes field.
    pub withdrawn: Vec<Nlri>,
    /// Path attributes other than MP_REACH_NLRI and MP_UNREACH_NLRI.
    pub attributes: PathAttributes,
    /// IPv4 unicast announcements from the NLRI field.
    pub nlri: Vec<Nlri>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
}

impl Update {
    /// End-of-RIB marker (RFC 4724 §2) for a family: an UPDATE that withdraws and
    /// announces nothing (IPv4) or carries an empty MP_UNREACH (other families).
    pub fn end_of_rib(family: Family) -> Update {
        if family == Family::IPV4_UNICAST {
            Update::default()
        } else {
            Update { mp_unreach: Some(MpUnreach { family, withdrawn: Vec::new() }), ..Update::default() }
        }
    }

    /// Which family's End-of-RIB this is, if it is one.
    pub fn as_end_of_rib(&self) -> Option<Family> {
        let no_plain = self.withdrawn.is_empty() && self.nlri.is_empty() && self.mp_reach.is_none();
        if !no_plain {
            return None;
        }
        match &self.mp_unreach {
            None if self.attributes == PathAttributes::default() => Some(Family::IPV4_UNICAST),
            Some(unreach) if unreach.withdrawn.is_empty() => Some(unreach.family),
            _ => None,
        }
    }
}

/// A prefix with its optional ADD-PATH Path Identifier (RFC 7911).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri {
    pub prefix: Prefix,
    pub path_id: Option<u32>,
}

impl From<Prefix> for Nlri {
    fn from(prefix: Prefix) -> Self {
        Nlri { prefix, path_id: None }
    }
}

/// MP_REACH_NLRI (RFC 4760 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpReach {
    pub family: Family,
    pub next_hop: MpNextHop,
    pub nlri: Vec<Nlri>,
}

/// The next hop of MP_REACH_NLRI: one address, or for IPv6 a global plus a link-local
/// address (RFC 2545 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MpNextHop {
    Single(IpAddr),
    Ipv6WithLinkLocal { global: Ipv6Addr, link_local: Ipv6Addr },
}

impl MpNextHop {
    /// The address packets are forwarded to (the global one when two are present).
    pub fn address(&self) -> IpAddr {
        match *self {
            MpNextHop::Single(addr) => addr,
            MpNextHop::Ipv6WithLinkLocal { global, .. } => IpAddr::V6(global),
        }
    }
}

/// MP_UNREACH_NLRI (RFC 4760 §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: Family,
    pub withdrawn: Vec<Nlri>,
}

/// ORIGIN values (RFC 4271 §5.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Origin {
    #[default]
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// AS_PATH segment types (RFC 4271 §4.3, RFC 5065 for the confederation ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AsSegmentKind {
    Set = 1,
    Sequence = 2,
    ConfedSequence = 3,
    ConfedSet = 4,
}

/// One AS_PATH segment. ASNs are always held as 4 octets; the codec narrows them for
/// 2-octet sessions and builds AS4_PATH (RFC 6793 §4.2.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AsSegment {
    pub kind: AsSegmentKind,
    pub asns: Vec<u32>,
}

/// The AS_PATH, after AS4_PATH has been merged in on receipt (RFC 6793 §4.2.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// Path length for the decision process: a SET counts as one, confederation segments as zero
    /// (RFC 4271 §9.1.2.2, RFC 5065 §5.3).
    pub fn decision_length(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                AsSegmentKind::Sequence => s.asns.len(),
                AsSegmentKind::Set => 1,
                AsSegmentKind::ConfedSequence | AsSegmentKind::ConfedSet => 0,
            })
            .sum()
    }

    /// The neighbouring AS: the first ASN of a leading AS_SEQUENCE.
    pub fn first_asn(&self) -> Option<u32> {
        self.segments
            .iter()
            .find(|s| matches!(s.kind, AsSegmentKind::Sequence | AsSegmentKind::Set))
            .filter(|s| s.kind == AsSegmentKind::Sequence)
            .and_then(|s| s.asns.first().copied())
    }

    /// Whether `asn` appears anywhere in the path (eBGP loop detection).
    pub fn contains(&self, asn: u32) -> bool {
        self.segments.iter().any(|s| s.asns.contains(&asn))
    }

    /// Prepend `asn` as an eBGP speaker does when it advertises a route (RFC 4271 §5.1.2).
    pub fn prepend(&mut self, asn: u32) {
        match self.segments.first_mut() {
            Some(first) if first.kind == AsSegmentKind::Sequence && first.asns.len() < 255 => first.asns.insert(0, asn),
            _ => self.segments.insert(0, AsSegment { kind: AsSegmentKind::Sequence, asns: vec![asn] }),
        }
    }
}

/// AGGREGATOR (RFC 4271 §5.1.7), with the AS held as 4 octets (AS4_AGGREGATOR merged in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Aggregator {
    pub asn: u32,
    pub address: Ipv4Addr,
}

/// A path attribute Seam does not interpret, kept as received so that optional transitive
/// ones can be passed on (with the Partial bit set, RFC 4271 §5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// The path attributes of a route, apart from MP_REACH/MP_UNREACH. This is the unit the RIB
/// interns: many prefixes share one `Arc<PathAttributes>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathAttributes {
    pub origin: Option<Origin>,
    pub as_path: AsPath,
    /// The NEXT_HOP attribute (IPv4). For other families the next hop comes from MP_REACH;
    /// the RIB stores whichever applies to the route here, so it may be IPv6.
    pub next_hop: Option<IpAddr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    /// RFC 1997, each as the 32-bit value.
    pub communities: Vec<u32>,
    /// RFC 4360, each as its 8 octets.
    pub extended_communities: Vec<[u8; 8]>,
    /// RFC 8092: global administrator, local data 1, local data 2.
    pub large_communities: Vec<[u32; 3]>,
    /// RFC 4456.
    pub originator_id: Option<Ipv4Addr>,
    /// RFC 4456, first entry is the most recent cluster.
    pub cluster_list: Vec<Ipv4Addr>,
    /// Attributes we do not interpret, in the order received.
    pub unknown: Vec<RawAttribute>,
}

/// NOTIFICATION (RFC 4271 §4.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// ROUTE-REFRESH (RFC 2918, subtype from RFC 7313).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: Family,
    pub subtype: u8,
}
