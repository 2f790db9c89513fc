//! Translation between Seam's model ([`bgp::wire`], [`crate::model`]) and GoBGP's API messages.
//!
//! GoBGP carries NLRI, path attributes and capabilities as `google.protobuf.Any`, each packed
//! with the type URL `type.googleapis.com/apipb.<Message>`. Encoding here follows what GoBGP's
//! own server emits (attributes in type-code order; IPv4 next hop as NEXT_HOP, anything else
//! in MP_REACH_NLRI; "0.0.0.0"/"::" meaning "the speaker itself"), so that GoBGP's CLI renders
//! our answers exactly as it renders gobgpd's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::SystemTime;

use bgp::types::{Family, Prefix};
use bgp::wire::{
    AddPathFamily, Aggregator, AsPath, AsSegment, AsSegmentKind, Capability, GracefulRestart,
    Origin, PathAttributes, RawAttribute,
};
use prost_types::{Any, Timestamp};

use crate::apipb;
use crate::model::{MessageCount, MessageCounters, NeighborInfo, RouteInfo, SessionState};

/// Prefix of every type URL GoBGP uses in `Any`.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/apipb.";

/// A message from a client (or server) that cannot be turned into Seam's model. The text names
/// the field or the type URL at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConvertError> {
    Err(ConvertError(msg.into()))
}

/// Pack `msg` as GoBGP does: type URL from the apipb message name.
pub fn pack<M: prost::Message>(name: &str, msg: &M) -> Any {
    Any {
        type_url: format!("{TYPE_URL_PREFIX}{name}"),
        value: msg.encode_to_vec(),
    }
}

/// The apipb message name of a packed `Any`, or an error naming the foreign type URL.
fn any_name(any: &Any) -> Result<&str, ConvertError> {
    // Any resolvers accept any host part; only the last path segment is the type name.
    let full = any.type_url.rsplit('/').next().unwrap_or("");
    match full.strip_prefix("apipb.") {
        Some(name) => Ok(name),
        None => err(format!(
            "unsupported type URL {:?} (expected an apipb message)",
            any.type_url
        )),
    }
}

fn unpack<M: prost::Message + Default>(any: &Any) -> Result<M, ConvertError> {
    M::decode(any.value.as_slice())
        .map_err(|e| ConvertError(format!("malformed {}: {e}", any.type_url)))
}

/// API family from Seam's (AFI and SAFI numbers are the IANA values in both).
pub fn family_to_api(family: Family) -> apipb::Family {
    apipb::Family {
        afi: i32::from(family.afi),
        safi: i32::from(family.safi),
    }
}

/// Seam's family from the API's, rejecting numbers outside the BGP field widths.
pub fn family_from_api(family: &apipb::Family) -> Result<Family, ConvertError> {
    let afi = u16::try_from(family.afi)
        .map_err(|_| ConvertError(format!("family.afi {} is out of range", family.afi)))?;
    let safi = u8::try_from(family.safi)
        .map_err(|_| ConvertError(format!("family.safi {} is out of range", family.safi)))?;
    Ok(Family { afi, safi })
}

/// NLRI of an IPv4/IPv6 unicast prefix (`apipb.IPAddressPrefix`).
pub fn encode_nlri(prefix: &Prefix) -> Any {
    pack(
        "IPAddressPrefix",
        &apipb::IpAddressPrefix {
            prefix_len: u32::from(prefix.prefix_len()),
            prefix: prefix.network().to_string(),
        },
    )
}

/// The prefix of an `apipb.IPAddressPrefix`; host bits must be zero.
pub fn decode_nlri(any: &Any) -> Result<Prefix, ConvertError> {
    let name = any_name(any)?;
    if name != "IPAddressPrefix" {
        return err(format!(
            "unsupported NLRI type apipb.{name}: only IPv4/IPv6 unicast prefixes are routed"
        ));
    }
    let p: apipb::IpAddressPrefix = unpack(any)?;
    let addr: IpAddr = p.prefix.parse().map_err(|_| {
        ConvertError(format!(
            "IPAddressPrefix.prefix {:?} is not an IP address",
            p.prefix
        ))
    })?;
    let len = u8::try_from(p.prefix_len).map_err(|_| {
        ConvertError(format!(
            "IPAddressPrefix.prefix_len {} is out of range",
            p.prefix_len
        ))
    })?;
    let prefix = Prefix::new(addr, len).map_err(|_| {
        ConvertError(format!(
            "IPAddressPrefix.prefix_len {len} is too long for {addr}"
        ))
    })?;
    if prefix.trunc() != prefix {
        return err(format!(
            "IPAddressPrefix {addr}/{len} has host bits set (did you mean {}?)",
            prefix.trunc()
        ));
    }
    Ok(prefix)
}

fn segment_kind_to_api(kind: AsSegmentKind) -> i32 {
    use apipb::as_segment::Type;
    match kind {
        AsSegmentKind::Set => Type::AsSet as i32,
        AsSegmentKind::Sequence => Type::AsSequence as i32,
        AsSegmentKind::ConfedSequence => Type::AsConfedSequence as i32,
        AsSegmentKind::ConfedSet => Type::AsConfedSet as i32,
    }
}

fn segment_kind_from_api(value: i32) -> Result<AsSegmentKind, ConvertError> {
    match value {
        1 => Ok(AsSegmentKind::Set),
        2 => Ok(AsSegmentKind::Sequence),
        3 => Ok(AsSegmentKind::ConfedSequence),
        4 => Ok(AsSegmentKind::ConfedSet),
        other => err(format!("AsPathAttribute segment type {other} is not one of AS_SET(1), AS_SEQUENCE(2), AS_CONFED_SEQUENCE(3), AS_CONFED_SET(4)")),
    }
}

/// An unspecified address is GoBGP's way of saying "next hop self".
fn next_hop_string(next_hop: Option<IpAddr>, prefix: &Prefix) -> String {
    match (next_hop, prefix) {
        (Some(nh), _) => nh.to_string(),
        (None, Prefix::V4(_)) => Ipv4Addr::UNSPECIFIED.to_string(),
        (None, Prefix::V6(_)) => Ipv6Addr::UNSPECIFIED.to_string(),
    }
}

fn parse_next_hop(field: &str, text: &str) -> Result<Option<IpAddr>, ConvertError> {
    let addr: IpAddr = text
        .parse()
        .map_err(|_| ConvertError(format!("{field} {text:?} is not an IP address")))?;
    Ok(if addr.is_unspecified() {
        None
    } else {
        Some(addr)
    })
}

/// Encode one 8-octet extended community (RFC 4360 §3) as the matching GoBGP message.
fn encode_ext_community(c: &[u8; 8]) -> Any {
    let high = c[0] & 0x3f;
    // Bit 0x40 of the type octet is "non-transitive" (RFC 4360 §2).
    let is_transitive = c[0] & 0x40 == 0;
    let bad_high = c[0] & 0x80 != 0; // IANA-authority bit: keep such types raw
    match high {
        0x00 if !bad_high => pack(
            "TwoOctetAsSpecificExtended",
            &apipb::TwoOctetAsSpecificExtended {
                is_transitive,
                sub_type: u32::from(c[1]),
                asn: u32::from(u16::from_be_bytes([c[2], c[3]])),
                local_admin: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            },
        ),
        0x01 if !bad_high => pack(
            "IPv4AddressSpecificExtended",
            &apipb::IPv4AddressSpecificExtended {
                is_transitive,
                sub_type: u32::from(c[1]),
                address: Ipv4Addr::new(c[2], c[3], c[4], c[5]).to_string(),
                local_admin: u32::from(u16::from_be_bytes([c[6], c[7]])),
            },
        ),
        0x02 if !bad_high => pack(
            "FourOctetAsSpecificExtended",
            &apipb::FourOctetAsSpecificExtended {
                is_transitive,
                sub_type: u32::from(c[1]),
                asn: u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                local_admin: u32::from(u16::from_be_bytes([c[6], c[7]])),
            },
        ),
        0x03 if !bad_high => pack(
            "OpaqueExtended",
            &apipb::OpaqueExtended {
                is_transitive,
                value: c[1..].to_vec(),
            },
        ),
        _ => pack(
            "UnknownExtended",
            &apipb::UnknownExtended {
                r#type: u32::from(c[0]),
                value: c[1..].to_vec(),
            },
        ),
    }
}

fn narrow<T: TryFrom<u32>>(field: &str, value: u32) -> Result<T, ConvertError> {
    T::try_from(value).map_err(|_| ConvertError(format!("{field} {value} is out of range")))
}

fn decode_ext_community(any: &Any) -> Result<[u8; 8], ConvertError> {
    let name = any_name(any)?;
    let transitive_bit = |t: bool| if t { 0x00 } else { 0x40 };
    let mut c = [0u8; 8];
    match name {
        "TwoOctetAsSpecificExtended" => {
            let m: apipb::TwoOctetAsSpecificExtended = unpack(any)?;
            c[0] = transitive_bit(m.is_transitive);
            c[1] = narrow("TwoOctetAsSpecificExtended.sub_type", m.sub_type)?;
            c[2..4].copy_from_slice(
                &narrow::<u16>("TwoOctetAsSpecificExtended.asn", m.asn)?.to_be_bytes(),
            );
            c[4..8].copy_from_slice(&m.local_admin.to_be_bytes());
        }
        "IPv4AddressSpecificExtended" => {
            let m: apipb::IPv4AddressSpecificExtended = unpack(any)?;
            let addr: Ipv4Addr = m.address.parse().map_err(|_| {
                ConvertError(format!(
                    "IPv4AddressSpecificExtended.address {:?} is not an IPv4 address",
                    m.address
                ))
            })?;
            c[0] = 0x01 | transitive_bit(m.is_transitive);
            c[1] = narrow("IPv4AddressSpecificExtended.sub_type", m.sub_type)?;
            c[2..6].copy_from_slice(&addr.octets());
            c[6..8].copy_from_slice(
                &narrow::<u16>("IPv4AddressSpecificExtended.local_admin", m.local_admin)?
                    .to_be_bytes(),
            );
        }
        "FourOctetAsSpecificExtended" => {
            let m: apipb::FourOctetAsSpecificExtended = unpack(any)?;
            c[0] = 0x02 | transitive_bit(m.is_transitive);
            c[1] = narrow("FourOctetAsSpecificExtended.sub_type", m.sub_type)?;
            c[2..6].copy_from_slice(&m.asn.to_be_bytes());
            c[6..8].copy_from_slice(
                &narrow::<u16>("FourOctetAsSpecificExtended.local_admin", m.local_admin)?
                    .to_be_bytes(),
            );
        }
        "OpaqueExtended" => {
            let m: apipb::OpaqueExtended = unpack(any)?;
            if m.value.len() != 7 {
                return err(format!(
                    "OpaqueExtended.value has {} octets, expected 7",
                    m.value.len()
                ));
            }
            c[0] = 0x03 | transitive_bit(m.is_transitive);
            c[1..].copy_from_slice(&m.value);
        }
        "UnknownExtended" => {
            let m: apipb::UnknownExtended = unpack(any)?;
            if m.value.len() != 7 {
                return err(format!(
                    "UnknownExtended.value has {} octets, expected 7",
                    m.value.len()
                ));
            }
            c[0] = narrow("UnknownExtended.type", m.r#type)?;
            c[1..].copy_from_slice(&m.value);
        }
        other => return err(format!("unsupported extended community type apipb.{other}")),
    }
    Ok(c)
}

/// Encode the attributes of a route to `prefix` as GoBGP's `Path.pattrs`.
///
/// Order is by attribute type code, like GoBGP. The next hop goes in NEXT_HOP for an IPv4
/// prefix with an IPv4 next hop and in MP_REACH_NLRI (with the prefix as its NLRI) otherwise.
pub fn encode_path_attributes(prefix: &Prefix, attrs: &PathAttributes) -> Vec<Any> {
    let mut out = Vec::new();
    if let Some(origin) = attrs.origin {
        out.push(pack(
            "OriginAttribute",
            &apipb::OriginAttribute {
                origin: origin as u32,
            },
        ));
    }
    // GoBGP always reports AS_PATH (empty for iBGP-originated routes).
    out.push(pack(
        "AsPathAttribute",
        &apipb::AsPathAttribute {
            segments: attrs
                .as_path
                .segments
                .iter()
                .map(|s| apipb::AsSegment {
                    r#type: segment_kind_to_api(s.kind),
                    numbers: s.asns.clone(),
                })
                .collect(),
        },
    ));
    let next_hop = next_hop_string(attrs.next_hop, prefix);
    let v4_next_hop =
        matches!(prefix, Prefix::V4(_)) && !matches!(attrs.next_hop, Some(IpAddr::V6(_)));
    if v4_next_hop {
        out.push(pack(
            "NextHopAttribute",
            &apipb::NextHopAttribute {
                next_hop: next_hop.clone(),
            },
        ));
    }
    if let Some(med) = attrs.med {
        out.push(pack(
            "MultiExitDiscAttribute",
            &apipb::MultiExitDiscAttribute { med },
        ));
    }
    if let Some(local_pref) = attrs.local_pref {
        out.push(pack(
            "LocalPrefAttribute",
            &apipb::LocalPrefAttribute { local_pref },
        ));
    }
    if attrs.atomic_aggregate {
        out.push(pack(
            "AtomicAggregateAttribute",
            &apipb::AtomicAggregateAttribute {},
        ));
    }
    if let Some(agg) = attrs.aggregator {
        out.push(pack(
            "AggregatorAttribute",
            &apipb::AggregatorAttribute {
                asn: agg.asn,
                address: agg.address.to_string(),
            },
        ));
    }
    if !attrs.communities.is_empty() {
        out.push(pack(
            "CommunitiesAttribute",
            &apipb::CommunitiesAttribute {
                communities: attrs.communities.clone(),
            },
        ));
    }
    if let Some(id) = attrs.originator_id {
        out.push(pack(
            "OriginatorIdAttribute",
            &apipb::OriginatorIdAttribute { id: id.to_string() },
        ));
    }
    if !attrs.cluster_list.is_empty() {
        out.push(pack(
            "ClusterListAttribute",
            &apipb::ClusterListAttribute {
                ids: attrs.cluster_list.iter().map(|id| id.to_string()).collect(),
            },
        ));
    }
    if !v4_next_hop {
        out.push(pack(
            "MpReachNLRIAttribute",
            &apipb::MpReachNlriAttribute {
                family: Some(family_to_api(Family::of_prefix(prefix))),
                next_hops: vec![next_hop],
                nlris: vec![encode_nlri(prefix)],
            },
        ));
    }
    if !attrs.extended_communities.is_empty() {
        out.push(pack(
            "ExtendedCommunitiesAttribute",
            &apipb::ExtendedCommunitiesAttribute {
                communities: attrs
                    .extended_communities
                    .iter()
                    .map(encode_ext_community)
                    .collect(),
            },
        ));
    }
    if !attrs.large_communities.is_empty() {
        out.push(pack(
            "LargeCommunitiesAttribute",
            &apipb::LargeCommunitiesAttribute {
                communities: attrs
                    .large_communities
                    .iter()
                    .map(|[g, d1, d2]| apipb::LargeCommunity {
                        global_admin: *g,
                        local_data1: *d1,
                        local_data2: *d2,
                    })
                    .collect(),
            },
        ));
    }
    for raw in &attrs.unknown {
        out.push(pack(
            "UnknownAttribute",
            &apipb::UnknownAttribute {
                flags: u32::from(raw.flags),
                r#type: u32::from(raw.type_code),
                value: raw.value.clone(),
            },
        ));
    }
    out
}

/// Decode GoBGP's `Path.pattrs` into Seam's attribute set.
///
/// The next hop comes from NEXT_HOP or from the first address of MP_REACH_NLRI; "0.0.0.0" and
/// "::" become `None` ("the speaker itself"). Each attribute may appear once.
pub fn decode_path_attributes(pattrs: &[Any]) -> Result<PathAttributes, ConvertError> {
    let mut attrs = PathAttributes::default();
    let mut seen: Vec<&str> = Vec::new();
    for any in pattrs {
        let name = any_name(any)?;
        if seen.contains(&name) {
            return err(format!("path attribute apipb.{name} appears twice"));
        }
        seen.push(name);
        match name {
            "OriginAttribute" => {
                let m: apipb::OriginAttribute = unpack(any)?;
                attrs.origin =
                    Some(match m.origin {
                        0 => Origin::Igp,
                        1 => Origin::Egp,
                        2 => Origin::Incomplete,
                        other => return err(format!(
                            "OriginAttribute.origin {other} is not IGP(0), EGP(1) or INCOMPLETE(2)"
                        )),
                    });
            }
            "AsPathAttribute" => {
                let m: apipb::AsPathAttribute = unpack(any)?;
                let mut segments = Vec::with_capacity(m.segments.len());
                for s in m.segments {
                    segments.push(AsSegment {
                        kind: segment_kind_from_api(s.r#type)?,
                        asns: s.numbers,
                    });
                }
                attrs.as_path = AsPath { segments };
            }
            "NextHopAttribute" => {
                let m: apipb::NextHopAttribute = unpack(any)?;
                attrs.next_hop = parse_next_hop("NextHopAttribute.next_hop", &m.next_hop)?;
            }
            "MultiExitDiscAttribute" => {
                let m: apipb::MultiExitDiscAttribute = unpack(any)?;
                attrs.med = Some(m.med);
            }
            "LocalPrefAttribute" => {
                let m: apipb::LocalPrefAttribute = unpack(any)?;
                attrs.local_pref = Some(m.local_pref);
            }
            "AtomicAggregateAttribute" => attrs.atomic_aggregate = true,
            "AggregatorAttribute" => {
                let m: apipb::AggregatorAttribute = unpack(any)?;
                let address = m.address.parse().map_err(|_| {
                    ConvertError(format!(
                        "AggregatorAttribute.address {:?} is not an IPv4 address",
                        m.address
                    ))
                })?;
                attrs.aggregator = Some(Aggregator {
                    asn: m.asn,
                    address,
                });
            }
            "CommunitiesAttribute" => {
                let m: apipb::CommunitiesAttribute = unpack(any)?;
                attrs.communities = m.communities;
            }
            "OriginatorIdAttribute" => {
                let m: apipb::OriginatorIdAttribute = unpack(any)?;
                attrs.originator_id = Some(m.id.parse().map_err(|_| {
                    ConvertError(format!(
                        "OriginatorIdAttribute.id {:?} is not an IPv4 address",
                        m.id
                    ))
                })?);
            }
            "ClusterListAttribute" => {
                let m: apipb::ClusterListAttribute = unpack(any)?;
                attrs.cluster_list = m
                    .ids
                    .iter()
                    .map(|id| {
                        id.parse().map_err(|_| {
                            ConvertError(format!(
                                "ClusterListAttribute.ids entry {id:?} is not an IPv4 address"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "MpReachNLRIAttribute" => {
                let m: apipb::MpReachNlriAttribute = unpack(any)?;
                // NLRI are validated so that a bad prefix is reported, but the route's prefix
                // comes from Path.nlri.
                for nlri in &m.nlris {
                    decode_nlri(nlri)?;
                }
                if let Some(first) = m.next_hops.first() {
                    let nh = parse_next_hop("MpReachNLRIAttribute.next_hops[0]", first)?;
                    if attrs.next_hop.is_none() {
                        attrs.next_hop = nh;
                    }
                }
            }
            "ExtendedCommunitiesAttribute" => {
                let m: apipb::ExtendedCommunitiesAttribute = unpack(any)?;
                attrs.extended_communities = m
                    .communities
                    .iter()
                    .map(decode_ext_community)
                    .collect::<Result<_, _>>()?;
            }
            "LargeCommunitiesAttribute" => {
                let m: apipb::LargeCommunitiesAttribute = unpack(any)?;
                attrs.large_communities = m
                    .communities
                    .iter()
                    .map(|c| [c.global_admin, c.local_data1, c.local_data2])
                    .collect();
            }
            "UnknownAttribute" => {
                let m: apipb::UnknownAttribute = unpack(any)?;
                attrs.unknown.push(RawAttribute {
                    flags: narrow("UnknownAttribute.flags", m.flags)?,
                    type_code: narrow("UnknownAttribute.type", m.r#type)?,
                    value: m.value,
                });
                // Several unknown attributes of different types may follow each other.
                seen.pop();
            }
            other => return err(format!("unsupported path attribute type apipb.{other}")),
        }
    }
    Ok(attrs)
}

/// Prefix and attributes of an API path (`AddPath`, `DeletePath`, `ListPath` answers).
pub fn decode_path(path: &apipb::Path) -> Result<(Prefix, PathAttributes), ConvertError> {
    let prefix = match (&path.nlri, path.nlri_binary.is_empty()) {
        (Some(nlri), _) => decode_nlri(nlri)?,
        (None, false) => {
            return err(
                "path.nlri_binary is not supported; send path.nlri as apipb.IPAddressPrefix",
            )
        }
        (None, true) => return err("path.nlri is missing"),
    };
    if let Some(family) = &path.family {
        let family = family_from_api(family)?;
        if family != Family::of_prefix(&prefix) {
            return err(format!(
                "path.family {family} does not match the prefix {prefix}"
            ));
        }
    }
    if path.pattrs.is_empty() && !path.pattrs_binary.is_empty() {
        return err("path.pattrs_binary is not supported; send path.pattrs");
    }
    Ok((prefix, decode_path_attributes(&path.pattrs)?))
}

/// The API path for one route. `source_asn` is the AS of the neighbor it came from (0 if local)
/// and `local_asn` our own, used for GoBGP's `is_from_external`.
pub fn encode_route(route: &RouteInfo, source_asn: u32, local_asn: u32) -> apipb::Path {
    apipb::Path {
        nlri: Some(encode_nlri(&route.prefix)),
        pattrs: encode_path_attributes(&route.prefix, &route.attrs),
        age: Some(Timestamp::from(route.since)),
        best: route.best,
        family: Some(family_to_api(Family::of_prefix(&route.prefix))),
        source_asn,
        source_id: route.source_id.map(|id| id.to_string()).unwrap_or_default(),
        neighbor_ip: route.source.map(|ip| ip.to_string()).unwrap_or_default(),
        is_from_external: route.source.is_some() && source_asn != 0 && source_asn != local_asn,
        ..apipb::Path::default()
    }
}

fn system_time(ts: &Timestamp) -> SystemTime {
    SystemTime::try_from(*ts).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A route as a client sees it, from an API path.
pub fn decode_route(path: &apipb::Path) -> Result<RouteInfo, ConvertError> {
    let (prefix, attrs) = decode_path(path)?;
    Ok(RouteInfo {
        prefix,
        attrs: Arc::new(attrs),
        since: path
            .age
            .as_ref()
            .map(system_time)
            .unwrap_or(SystemTime::UNIX_EPOCH),
        best: path.best,
        // gobgpd writes "<nil>" for local paths; anything unparsable means "no neighbor".
        source: path.neighbor_ip.parse().ok(),
        source_id: path
            .source_id
            .parse()
            .ok()
            .filter(|id: &Ipv4Addr| !id.is_unspecified()),
    })
}

/// Encode one capability as GoBGP's message of the same meaning.
pub fn encode_capability(cap: &Capability) -> Any {
    match cap {
        Capability::Multiprotocol(f) => pack(
            "MultiProtocolCapability",
            &apipb::MultiProtocolCapability {
                family: Some(family_to_api(*f)),
            },
        ),
        Capability::RouteRefresh => {
            pack("RouteRefreshCapability", &apipb::RouteRefreshCapability {})
        }
        Capability::EnhancedRouteRefresh => pack(
            "EnhancedRouteRefreshCapability",
            &apipb::EnhancedRouteRefreshCapability {},
        ),
        Capability::FourOctetAs(asn) => pack(
            "FourOctetASNCapability",
            &apipb::FourOctetAsnCapability { asn: *asn },
        ),
        Capability::GracefulRestart(gr) => pack(
            "GracefulRestartCapability",
            &apipb::GracefulRestartCapability {
                // GoBGP keeps the 4 flag bits of RFC 4724 §3 unshifted: R = 0x08, N = 0x04.
                flags: (u32::from(gr.restarting) << 3) | (u32::from(gr.notification) << 2),
                time: u32::from(gr.restart_time),
                tuples: gr
                    .families
                    .iter()
                    .map(|(f, forwarding)| apipb::GracefulRestartCapabilityTuple {
                        family: Some(family_to_api(*f)),
                        flags: if *forwarding { 0x80 } else { 0 },
                    })
                    .collect(),
            },
        ),
        Capability::AddPath(families) => pack(
            "AddPathCapability",
            &apipb::AddPathCapability {
                tuples: families
                    .iter()
                    .map(|a| apipb::AddPathCapabilityTuple {
                        family: Some(family_to_api(a.family)),
                        mode: i32::from(a.receive) | (i32::from(a.send) << 1),
                    })
                    .collect(),
            },
        ),
        Capability::Unknown { code, data } => pack(
            "UnknownCapability",
            &apipb::UnknownCapability {
                code: u32::from(*code),
                value: data.clone(),
            },
        ),
    }
}

fn required_family(field: &str, family: &Option<apipb::Family>) -> Result<Family, ConvertError> {
    match family {
        Some(f) => family_from_api(f),
        None => err(format!("{field} is missing")),
    }
}

/// Capability codes for which GoBGP's API has a dedicated message (extended next hop,
/// extended message, software version, long-lived GR, FQDN, and the ones Seam models). The
/// gobgp CLI asserts the dedicated type for these codes and panics on an `UnknownCapability`
/// carrying one, so raw capabilities with these codes are left out of neighbor reports.
const GOBGP_TYPED_CAPABILITY_CODES: &[u8] = &[1, 2, 5, 6, 9, 64, 65, 69, 70, 71, 73, 128];

/// The capabilities to report for a neighbor: everything Seam models, plus raw ones whose code
/// GoBGP's CLI does not expect in a dedicated message.
fn reportable_capabilities(capabilities: &[Capability]) -> Vec<Any> {
    capabilities
        .iter()
        .filter(|cap| !matches!(cap, Capability::Unknown { code, .. } if GOBGP_TYPED_CAPABILITY_CODES.contains(code)))
        .map(encode_capability)
        .collect()
}

/// Decode a capability reported by a server.
pub fn decode_capability(any: &Any) -> Result<Capability, ConvertError> {
    Ok(match any_name(any)? {
        "MultiProtocolCapability" => {
            let m: apipb::MultiProtocolCapability = unpack(any)?;
            Capability::Multiprotocol(required_family(
                "MultiProtocolCapability.family",
                &m.family,
            )?)
        }
        "RouteRefreshCapability" => Capability::RouteRefresh,
        "EnhancedRouteRefreshCapability" => Capability::EnhancedRouteRefresh,
        "FourOctetASNCapability" => {
            let m: apipb::FourOctetAsnCapability = unpack(any)?;
            Capability::FourOctetAs(m.asn)
        }
        "GracefulRestartCapability" => {
            let m: apipb::GracefulRestartCapability = unpack(any)?;
            let mut families = Vec::with_capacity(m.tuples.len());
            for t in &m.tuples {
                families.push((
                    required_family("GracefulRestartCapabilityTuple.family", &t.family)?,
                    t.flags & 0x80 != 0,
                ));
            }
            Capability::GracefulRestart(GracefulRestart {
                restarting: m.flags & 0x08 != 0,
                notification: m.flags & 0x04 != 0,
                restart_time: narrow("GracefulRestartCapability.time", m.time)?,
                families,
            })
        }
        "AddPathCapability" => {
            let m: apipb::AddPathCapability = unpack(any)?;
            let mut families = Vec::with_capacity(m.tuples.len());
            for t in &m.tuples {
                families.push(AddPathFamily {
                    family: required_family("AddPathCapabilityTuple.family", &t.family)?,
                    receive: t.mode & 1 != 0,
                    send: t.mode & 2 != 0,
                });
            }
            Capability::AddPath(families)
        }
        "UnknownCapability" => {
            let m: apipb::UnknownCapability = unpack(any)?;
            Capability::Unknown {
                code: narrow("UnknownCapability.code", m.code)?,
                data: m.value,
            }
        }
        other => return err(format!("unsupported capability type apipb.{other}")),
    })
}

fn session_state_to_api(state: SessionState) -> apipb::peer_state::SessionState {
    use apipb::peer_state::SessionState as S;
    match state {
        SessionState::Idle => S::Idle,
        SessionState::Connect => S::Connect,
        SessionState::Active => S::Active,
        SessionState::OpenSent => S::Opensent,
        SessionState::OpenConfirm => S::Openconfirm,
        SessionState::Established => S::Established,
    }
}

fn session_state_from_api(value: i32) -> SessionState {
    use apipb::peer_state::SessionState as S;
    match S::try_from(value) {
        Ok(S::Connect) => SessionState::Connect,
        Ok(S::Active) => SessionState::Active,
        Ok(S::Opensent) => SessionState::OpenSent,
        Ok(S::Openconfirm) => SessionState::OpenConfirm,
        Ok(S::Established) => SessionState::Established,
        Ok(S::Idle) | Ok(S::Unknown) | Err(_) => SessionState::Idle,
    }
}

fn count_to_api(c: &MessageCount) -> apipb::Message {
    apipb::Message {
        notification: c.notification,
        update: c.update,
        open: c.open,
        keepalive: c.keepalive,
        refresh: c.refresh,
        discarded: c.discarded,
        total: c.total,
        ..apipb::Message::default()
    }
}

fn count_from_api(m: &Option<apipb::Message>) -> MessageCount {
    let m = m.unwrap_or_default();
    MessageCount {
        open: m.open,
        update: m.update,
        notification: m.notification,
        keepalive: m.keepalive,
        refresh: m.refresh,
        discarded: m.discarded,
        total: m.total,
    }
}

/// The API peer for a neighbor. Every sub-message GoBGP's CLI dereferences is present (its
/// code does not check for nil), so a missing one would crash `gobgp neighbor`.
pub fn encode_neighbor(n: &NeighborInfo) -> apipb::Peer {
    let peer_type = if n.peer_as == n.local_as {
        apipb::PeerType::Internal
    } else {
        apipb::PeerType::External
    } as i32;
    let (uptime, downtime) = match (n.since, n.state) {
        (None, _) => (None, None),
        (Some(t), SessionState::Established) => (Some(Timestamp::from(t)), None),
        // GoBGP only shows Downtime when Uptime is set ("never" otherwise); we know one instant.
        (Some(t), _) => (Some(Timestamp::from(t)), Some(Timestamp::from(t))),
    };
    let afi_safis = n
        .families
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (received, accepted, advertised) = if i == 0 {
                (n.received, n.accepted, n.advertised)
            } else {
                (0, 0, 0)
            };
            apipb::AfiSafi {
                config: Some(apipb::AfiSafiConfig {
                    family: Some(family_to_api(*f)),
                    enabled: true,
                }),
                state: Some(apipb::AfiSafiState {
                    family: Some(family_to_api(*f)),
                    enabled: true,
                    received,
                    accepted,
                    advertised,
                }),
            }
        })
        .collect();
    apipb::Peer {
        conf: Some(apipb::PeerConf {
            description: n.description.clone(),
            local_asn: n.local_as,
            neighbor_address: n.address.to_string(),
            peer_asn: n.peer_as,
            r#type: peer_type,
            ..apipb::PeerConf::default()
        }),
        route_reflector: Some(apipb::RouteReflector {
            route_reflector_client: n.route_reflector_client,
            route_reflector_cluster_id: n.cluster_id.map(|c| c.to_string()).unwrap_or_default(),
        }),
        state: Some(apipb::PeerState {
            description: n.description.clone(),
            local_asn: n.local_as,
            messages: Some(apipb::Messages {
                received: Some(count_to_api(&n.messages.received)),
                sent: Some(count_to_api(&n.messages.sent)),
            }),
            neighbor_address: n.address.to_string(),
            peer_asn: n.peer_as,
            r#type: peer_type,
            queues: Some(apipb::Queues::default()),
            session_state: session_state_to_api(n.state) as i32,
            admin_state: apipb::peer_state::AdminState::Up as i32,
            remote_cap: reportable_capabilities(&n.remote_capabilities),
            local_cap: reportable_capabilities(&n.local_capabilities),
            router_id: n.router_id.map(|id| id.to_string()).unwrap_or_default(),
            ..apipb::PeerState::default()
        }),
        timers: Some(apipb::Timers {
            config: Some(apipb::TimersConfig {
                hold_time: u64::from(n.hold_time),
                keepalive_interval: u64::from(n.keepalive),
                ..apipb::TimersConfig::default()
            }),
            state: Some(apipb::TimersState {
                hold_time: u64::from(n.hold_time),
                keepalive_interval: u64::from(n.keepalive),
                negotiated_hold_time: u64::from(n.hold_time),
                uptime,
                downtime,
                ..apipb::TimersState::default()
            }),
        }),
        transport: Some(apipb::Transport {
            local_address: n.local_address.map(|a| a.to_string()).unwrap_or_default(),
            passive_mode: n.passive,
            remote_address: n.address.to_string(),
            ..apipb::Transport::default()
        }),
        route_server: Some(apipb::RouteServer::default()),
        afi_safis,
    }
}

/// A neighbor as a client sees it, from an API peer (ours or gobgpd's).
pub fn decode_neighbor(p: &apipb::Peer) -> Result<NeighborInfo, ConvertError> {
    let conf = p.conf.clone().unwrap_or_default();
    let state = p.state.clone().unwrap_or_default();
    let address_text = if state.neighbor_address.is_empty() {
        &conf.neighbor_address
    } else {
        &state.neighbor_address
    };
    let address: IpAddr = address_text.parse().map_err(|_| {
        ConvertError(format!(
            "peer.state.neighbor_address {address_text:?} is not an IP address"
        ))
    })?;
    let peer_as = if state.peer_asn != 0 {
        state.peer_asn
    } else {
        conf.peer_asn
    };
    let local_as = if state.local_asn != 0 {
        state.local_asn
    } else {
        conf.local_asn
    };
    let mut n = NeighborInfo::new(address, peer_as, local_as);
    n.router_id = state
        .router_id
        .parse()
        .ok()
        .filter(|id: &Ipv4Addr| !id.is_unspecified());
    n.state = session_state_from_api(state.session_state);
    n.description = if state.description.is_empty() {
        conf.description.clone()
    } else {
        state.description.clone()
    };
    let timers = p.timers.unwrap_or_default();
    let tstate = timers.state.unwrap_or_default();
    let tconf = timers.config.unwrap_or_default();
    n.since = match n.state {
        SessionState::Established => tstate.uptime.as_ref().map(system_time),
        _ if tstate.uptime.is_some() => tstate
            .downtime
            .as_ref()
            .or(tstate.uptime.as_ref())
            .map(system_time),
        _ => None,
    };
    n.hold_time = u16::try_from(tconf.hold_time).map_err(|_| {
        ConvertError(format!(
            "peer.timers.config.hold_time {} is out of range",
            tconf.hold_time
        ))
    })?;
    n.keepalive = u16::try_from(tconf.keepalive_interval).map_err(|_| {
        ConvertError(format!(
            "peer.timers.config.keepalive_interval {} is out of range",
            tconf.keepalive_interval
        ))
    })?;
    if let Some(rr) = &p.route_reflector {
        n.route_reflector_client = rr.route_reflector_client;
        n.cluster_id = rr.route_reflector_cluster_id.parse().ok();
    }
    n.families.clear();
    for a in &p.afi_safis {
        let st = a.state.unwrap_or_default();
        let family = st.family.or(a.config.as_ref().and_then(|c| c.family));
        if let Some(f) = family {
            n.families.push(family_from_api(&f)?);
        }
        n.received += st.received;
        n.accepted += st.accepted;
        n.advertised += st.advertised;
    }
    if let Some(t) = &p.transport {
        n.local_address = t
            .local_address
            .parse()
            .ok()
            .filter(|a: &IpAddr| !a.is_unspecified());
        n.passive = t.passive_mode;
    }
    if let Some(m) = &state.messages {
        n.messages = MessageCounters {
            sent: count_from_api(&m.sent),
            received: count_from_api(&m.received),
        };
    }
    // gobgpd also reports capabilities Seam has no model for (FQDN, LLGR...): skip those
    // rather than refuse to show the neighbor at all.
    n.local_capabilities = state
        .local_cap
        .iter()
        .filter_map(|c| decode_capability(c).ok())
        .collect();
    n.remote_capabilities = state
        .remote_cap
        .iter()
        .filter_map(|c| decode_capability(c).ok())
        .collect();
    Ok(n)
}
