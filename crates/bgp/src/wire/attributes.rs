//! Path attributes: decoding with the RFC 7606 error actions, and encoding (RFC 4271 §4.3, §5;
//! RFC 6793 for AS4_PATH / AS4_AGGREGATOR; RFC 4760 for MP_REACH / MP_UNREACH).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codes::{attr_flags as flags, attr_type as t, update_subcode};
use super::error::{AttributeIssue, DecodeError, DecodeErrorKind, IssueReason, NlriField, UpdateIssues};
use super::prefix::{decode_prefixes, supported_family};
use super::{
    Aggregator, AsPath, AsSegment, AsSegmentKind, CodecContext, MpNextHop, MpReach, MpUnreach, Origin, PathAttributes,
    RawAttribute,
};
use crate::types::{Family, AFI_IPV4, AFI_IPV6, AS_TRANS};

/// Everything the attribute block of one UPDATE decoded into.
#[derive(Default)]
pub(crate) struct DecodedAttributes {
    pub attrs: PathAttributes,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    pub issues: UpdateIssues,
    /// Attribute type codes met so far (duplicate detection, missing-attribute checks).
    seen: [u64; 4],
    /// AS4_PATH / AS4_AGGREGATOR kept aside until the whole block is read (RFC 6793 §4.2.3).
    as4_path: Option<AsPath>,
    as4_aggregator: Option<Aggregator>,
}

impl DecodedAttributes {
    pub(crate) fn seen(&self, type_code: u8) -> bool {
        self.seen[usize::from(type_code / 64)] & (1u64 << (type_code % 64)) != 0
    }

    fn mark_seen(&mut self, type_code: u8) {
        self.seen[usize::from(type_code / 64)] |= 1u64 << (type_code % 64);
    }

    /// Record a treat-as-withdraw cause; the first one is kept as the reported reason.
    pub(crate) fn withdraw(&mut self, type_code: u8, reason: IssueReason) {
        if self.issues.treat_as_withdraw.is_none() {
            self.issues.treat_as_withdraw = Some(AttributeIssue { type_code, reason });
        }
    }

    fn discard(&mut self, type_code: u8, reason: IssueReason) {
        self.issues.discarded.push(AttributeIssue { type_code, reason });
    }
}

/// What an attribute's definition says about its flags, or None for types we do not know.
fn expected_category(type_code: u8) -> Option<u8> {
    Some(match type_code {
        t::ORIGIN | t::AS_PATH | t::NEXT_HOP | t::LOCAL_PREF | t::ATOMIC_AGGREGATE => flags::WELL_KNOWN,
        t::MULTI_EXIT_DISC | t::ORIGINATOR_ID | t::CLUSTER_LIST | t::MP_REACH_NLRI | t::MP_UNREACH_NLRI => {
            flags::OPTIONAL_NON_TRANSITIVE
        }
        t::AGGREGATOR
        | t::COMMUNITIES
        | t::EXTENDED_COMMUNITIES
        | t::AS4_PATH
        | t::AS4_AGGREGATOR
        | t::LARGE_COMMUNITIES => flags::OPTIONAL_TRANSITIVE,
        _ => return None,
    })
}

/// Attributes whose malformation RFC 7606 (§7.6, §7.7) and RFC 6793 (§6) handle by discarding
/// the attribute rather than withdrawing the routes.
fn discard_when_malformed(type_code: u8) -> bool {
    matches!(type_code, t::ATOMIC_AGGREGATE | t::AGGREGATOR | t::AS4_PATH | t::AS4_AGGREGATOR)
}

fn u32_at(v: &[u8]) -> u32 {
    u32::from_be_bytes([v[0], v[1], v[2], v[3]])
}

fn ipv4_at(v: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(v[0], v[1], v[2], v[3])
}

/// Parse AS_PATH / AS4_PATH segments with 2- or 4-octet ASNs (RFC 7606 §7.2 malformations).
pub(crate) fn decode_as_path(mut v: &[u8], four_octet: bool) -> Result<AsPath, &'static str> {
    let width = if four_octet { 4 } else { 2 };
    let mut segments = Vec::new();
    while !v.is_empty() {
        if v.len() < 2 {
            return Err("segment header truncated");
        }
        let kind = match v[0] {
            1 => AsSegmentKind::Set,
            2 => AsSegmentKind::Sequence,
            3 => AsSegmentKind::ConfedSequence,
            4 => AsSegmentKind::ConfedSet,
            _ => return Err("unknown segment type"),
        };
        let count = usize::from(v[1]);
        if count == 0 {
            return Err("empty segment");
        }
        let bytes = count * width;
        if v.len() - 2 < bytes {
            return Err("segment overruns the attribute");
        }
        let asns = v[2..2 + bytes]
            .chunks_exact(width)
            .map(|c| if four_octet { u32_at(c) } else { u32::from(u16::from_be_bytes([c[0], c[1]])) })
            .collect();
        segments.push(AsSegment { kind, asns });
        v = &v[2 + bytes..];
    }
    Ok(AsPath { segments })
}

/// Whether NEXT_HOP is usable as a unicast host address (RFC 4271 §6.3).
fn valid_next_hop(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast())
}

/// Decode the attribute block of an UPDATE into `out`. Errors that reset the session are
/// returned; the others are recorded in `out.issues`.
pub(crate) fn decode_attributes(
    block: &[u8],
    ctx: &CodecContext,
    out: &mut DecodedAttributes,
) -> Result<(), DecodeError> {
    let mut pos = 0;
    while pos < block.len() {
        // RFC 7606 §4 would allow treat-as-withdraw here, but an MP_REACH_NLRI hidden in the
        // unparsable tail could then never be withdrawn: the "more severe" session reset applies.
        let overrun = || DecodeError::malformed_attribute_list(DecodeErrorKind::AttributeOverrun { offset: pos });
        if block.len() - pos < 3 {
            return Err(overrun());
        }
        let attr_flags = block[pos];
        let type_code = block[pos + 1];
        let extended = attr_flags & flags::EXTENDED_LENGTH != 0;
        let header = if extended { 4 } else { 3 };
        if block.len() - pos < header {
            return Err(overrun());
        }
        let len = if extended {
            usize::from(u16::from_be_bytes([block[pos + 2], block[pos + 3]]))
        } else {
            usize::from(block[pos + 2])
        };
        if block.len() - pos - header < len {
            return Err(overrun());
        }
        let raw = &block[pos..pos + header + len];
        let value = &raw[header..];
        pos += header + len;

        let is_mp = type_code == t::MP_REACH_NLRI || type_code == t::MP_UNREACH_NLRI;
        if out.seen(type_code) {
            if is_mp {
                return Err(DecodeError::malformed_attribute_list(DecodeErrorKind::DuplicateMpAttribute { type_code }));
            }
            out.discard(type_code, IssueReason::Duplicate);
            continue;
        }
        out.mark_seen(type_code);

        let Some(category) = expected_category(type_code) else {
            decode_unknown(attr_flags, type_code, value, raw, out)?;
            continue;
        };
        let flags_ok = attr_flags & flags::CATEGORY_MASK == category;
        if !flags_ok && !is_mp {
            let reason = IssueReason::FlagsConflict { flags: attr_flags };
            if discard_when_malformed(type_code) {
                out.discard(type_code, reason);
            } else {
                out.withdraw(type_code, reason);
            }
            continue;
        }
        match decode_known(type_code, value, raw, ctx, out)? {
            Ok(()) => {}
            Err(reason @ IssueReason::UnsupportedFamily { .. }) => out.discard(type_code, reason),
            Err(reason) if discard_when_malformed(type_code) => out.discard(type_code, reason),
            Err(reason) => out.withdraw(type_code, reason),
        }
        if !flags_ok {
            // MP_* whose NLRI could still be located: the routes are withdrawn (RFC 7606 §3 c).
            out.withdraw(type_code, IssueReason::FlagsConflict { flags: attr_flags });
        }
    }
    merge_as4(ctx, out);
    Ok(())
}

/// Unknown attributes: well-known ones reset the session, optional transitive ones are kept,
/// optional non-transitive ones are dropped (RFC 4271 §5, §6.3).
fn decode_unknown(
    attr_flags: u8,
    type_code: u8,
    value: &[u8],
    raw: &[u8],
    out: &mut DecodedAttributes,
) -> Result<(), DecodeError> {
    if attr_flags & flags::OPTIONAL == 0 {
        return Err(DecodeError::update(
            DecodeErrorKind::UnrecognizedWellKnown { type_code },
            update_subcode::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
            raw.to_vec(),
        ));
    }
    if attr_flags & flags::TRANSITIVE != 0 {
        out.attrs.unknown.push(RawAttribute {
            flags: attr_flags & !flags::EXTENDED_LENGTH,
            type_code,
            value: value.to_vec(),
        });
    }
    Ok(())
}

/// Decode one known attribute. The outer Err resets the session; the inner Err is a
/// malformation whose action (withdraw or discard) the caller picks by type.
fn decode_known(
    type_code: u8,
    v: &[u8],
    raw: &[u8],
    ctx: &CodecContext,
    out: &mut DecodedAttributes,
) -> Result<Result<(), IssueReason>, DecodeError> {
    let bad_len = IssueReason::BadLength { length: v.len() };
    let a = &mut out.attrs;
    match type_code {
        t::ORIGIN => {
            if v.len() != 1 {
                return Ok(Err(bad_len));
            }
            a.origin = Some(match v[0] {
                0 => Origin::Igp,
                1 => Origin::Egp,
                2 => Origin::Incomplete,
                value => return Ok(Err(IssueReason::InvalidOrigin { value })),
            });
        }
        t::AS_PATH => match decode_as_path(v, ctx.four_octet_as) {
            Ok(path) => a.as_path = path,
            Err(detail) => return Ok(Err(IssueReason::MalformedAsPath { detail })),
        },
        t::NEXT_HOP => {
            if v.len() != 4 {
                return Ok(Err(bad_len));
            }
            let address = ipv4_at(v);
            if !valid_next_hop(address) {
                return Ok(Err(IssueReason::InvalidNextHop { address }));
            }
            a.next_hop = Some(IpAddr::V4(address));
        }
        t::MULTI_EXIT_DISC | t::LOCAL_PREF => {
            if v.len() != 4 {
                return Ok(Err(bad_len));
            }
            if type_code == t::MULTI_EXIT_DISC {
                a.med = Some(u32_at(v));
            } else {
                a.local_pref = Some(u32_at(v));
            }
        }
        t::ATOMIC_AGGREGATE => {
            if !v.is_empty() {
                return Ok(Err(bad_len));
            }
            a.atomic_aggregate = true;
        }
        t::AGGREGATOR => {
            let aggregator = match (ctx.four_octet_as, v.len()) {
                (true, 8) => Aggregator { asn: u32_at(v), address: ipv4_at(&v[4..]) },
                (false, 6) => {
                    Aggregator { asn: u32::from(u16::from_be_bytes([v[0], v[1]])), address: ipv4_at(&v[2..]) }
                }
                _ => return Ok(Err(bad_len)),
            };
            a.aggregator = Some(aggregator);
        }
        t::COMMUNITIES => {
            if v.is_empty() || !v.len().is_multiple_of(4) {
                return Ok(Err(bad_len));
            }
            a.communities = v.chunks_exact(4).map(u32_at).collect();
        }
        t::ORIGINATOR_ID => {
            if v.len() != 4 {
                return Ok(Err(bad_len));
            }
            a.originator_id = Some(ipv4_at(v));
        }
        t::CLUSTER_LIST => {
            if v.is_empty() || !v.len().is_multiple_of(4) {
                return Ok(Err(bad_len));
            }
            a.cluster_list = v.chunks_exact(4).map(ipv4_at).collect();
        }
        t::EXTENDED_COMMUNITIES => {
            if v.is_empty() || !v.len().is_multiple_of(8) {
                return Ok(Err(bad_len));
            }
            a.extended_communities = v.chunks_exact(8).map(|c| <[u8; 8]>::try_from(c).expect("chunk of 8")).collect();
        }
        t::LARGE_COMMUNITIES => {
            if v.is_empty() || !v.len().is_multiple_of(12) {
                return Ok(Err(bad_len));
            }
            a.large_communities = v.chunks_exact(12).map(|c| [u32_at(c), u32_at(&c[4..]), u32_at(&c[8..])]).collect();
        }
        t::AS4_PATH => {
            if ctx.four_octet_as {
                return Ok(Ok(())); // Meaningless between 4-octet speakers (RFC 6793 §4.1): ignored.
            }
            match decode_as_path(v, true) {
                Ok(path)
                    if path
                        .segments
                        .iter()
                        .any(|s| matches!(s.kind, AsSegmentKind::ConfedSequence | AsSegmentKind::ConfedSet)) =>
                {
                    return Ok(Err(IssueReason::MalformedAsPath { detail: "confederation segment in AS4_PATH" }))
                }
                Ok(path) => out.as4_path = Some(path),
                Err(detail) => return Ok(Err(IssueReason::MalformedAsPath { detail })),
            }
        }
        t::AS4_AGGREGATOR => {
            if v.len() != 8 {
                return Ok(Err(bad_len));
            }
            if !ctx.four_octet_as {
                out.as4_aggregator = Some(Aggregator { asn: u32_at(v), address: ipv4_at(&v[4..]) });
            }
        }
        t::MP_REACH_NLRI => return decode_mp_reach(v, raw, ctx, out),
        t::MP_UNREACH_NLRI => return decode_mp_unreach(v, raw, ctx, out),
        _ => unreachable!("expected_category lists exactly the types handled here"),
    }
    Ok(Ok(()))
}

fn mp_error(type_code: u8, detail: &'static str, raw: &[u8]) -> DecodeError {
    DecodeError::update(
        DecodeErrorKind::MalformedMpAttribute { type_code, detail },
        update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
        raw.to_vec(),
    )
}

fn mp_nlri_error(field: NlriField, detail: &'static str, raw: &[u8]) -> DecodeError {
    DecodeError::update(
        DecodeErrorKind::InvalidNetworkField { field, detail },
        update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
        raw.to_vec(),
    )
}

/// MP_REACH_NLRI (RFC 4760 §3). A next hop whose length does not fit the family hides where the
/// NLRI starts, so it resets the session (RFC 7606 §7.11), as does unparsable NLRI (§5.3).
fn decode_mp_reach(
    v: &[u8],
    raw: &[u8],
    ctx: &CodecContext,
    out: &mut DecodedAttributes,
) -> Result<Result<(), IssueReason>, DecodeError> {
    let ty = t::MP_REACH_NLRI;
    if v.len() < 5 {
        return Err(mp_error(ty, "shorter than AFI, SAFI and next hop length", raw));
    }
    let family = Family { afi: u16::from_be_bytes([v[0], v[1]]), safi: v[2] };
    let nh_len = usize::from(v[3]);
    if v.len() < 4 + nh_len + 1 {
        return Err(mp_error(ty, "next hop overruns the attribute", raw));
    }
    if !supported_family(family) {
        return Ok(Err(IssueReason::UnsupportedFamily { family }));
    }
    let nh = &v[4..4 + nh_len];
    let next_hop = match (family.afi, nh_len) {
        (AFI_IPV4, 4) => MpNextHop::Single(IpAddr::V4(ipv4_at(nh))),
        // 16 or 32 octets: IPv6 global [+ link-local] (RFC 2545 §3; RFC 8950 for IPv4 NLRI).
        (AFI_IPV4 | AFI_IPV6, 16) => {
            MpNextHop::Single(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(nh).expect("16 octets"))))
        }
        (AFI_IPV4 | AFI_IPV6, 32) => MpNextHop::Ipv6WithLinkLocal {
            global: Ipv6Addr::from(<[u8; 16]>::try_from(&nh[..16]).expect("16 octets")),
            link_local: Ipv6Addr::from(<[u8; 16]>::try_from(&nh[16..]).expect("16 octets")),
        },
        _ => return Err(mp_error(ty, "next hop length does not match the address family", raw)),
    };
    // One reserved octet (formerly the SNPA count) sits between next hop and NLRI; ignored.
    let nlri_bytes = &v[4 + nh_len + 1..];
    let mut nlri = Vec::new();
    decode_prefixes(nlri_bytes, family.afi, ctx.add_path_receive.contains(&family), &mut nlri)
        .map_err(|detail| mp_nlri_error(NlriField::MpReach, detail, raw))?;
    out.mp_reach = Some(MpReach { family, next_hop, nlri });
    Ok(Ok(()))
}

/// MP_UNREACH_NLRI (RFC 4760 §4).
fn decode_mp_unreach(
    v: &[u8],
    raw: &[u8],
    ctx: &CodecContext,
    out: &mut DecodedAttributes,
) -> Result<Result<(), IssueReason>, DecodeError> {
    if v.len() < 3 {
        return Err(mp_error(t::MP_UNREACH_NLRI, "shorter than AFI and SAFI", raw));
    }
    let family = Family { afi: u16::from_be_bytes([v[0], v[1]]), safi: v[2] };
    if !supported_family(family) {
        return Ok(Err(IssueReason::UnsupportedFamily { family }));
    }
    let mut withdrawn = Vec::new();
    decode_prefixes(&v[3..], family.afi, ctx.add_path_receive.contains(&family), &mut withdrawn)
        .map_err(|detail| mp_nlri_error(NlriField::MpUnreach, detail, raw))?;
    out.mp_unreach = Some(MpUnreach { family, withdrawn });
    Ok(Ok(()))
}

/// Count of ASNs for the RFC 6793 §4.2.3 comparison (same rules as path length).
fn as4_count(path: &AsPath) -> usize {
    path.decision_length()
}

/// Rebuild the real AS path and aggregator on a 2-octet session (RFC 6793 §4.2.3).
fn merge_as4(ctx: &CodecContext, out: &mut DecodedAttributes) {
    if ctx.four_octet_as {
        return;
    }
    let as4_path = out.as4_path.take();
    let as4_aggregator = out.as4_aggregator.take();
    if let (Some(agg), Some(as4)) = (out.attrs.aggregator.as_mut(), as4_aggregator) {
        if agg.asn != u32::from(AS_TRANS) {
            // The aggregating router was an old speaker: AS4_* came from further away and
            // cannot be trusted to describe this path.
            return;
        }
        *agg = as4;
    }
    let Some(as4) = as4_path else { return };
    let have = as4_count(&out.attrs.as_path);
    let want = as4_count(&as4);
    if have < want {
        return;
    }
    let mut keep = have - want;
    let mut merged = Vec::with_capacity(out.attrs.as_path.segments.len() + as4.segments.len());
    for seg in out.attrs.as_path.segments.drain(..) {
        match seg.kind {
            // Confederation segments count zero and never appear in AS4_PATH: keep them.
            AsSegmentKind::ConfedSequence | AsSegmentKind::ConfedSet => merged.push(seg),
            _ if keep == 0 => break,
            AsSegmentKind::Set => {
                merged.push(seg);
                keep -= 1;
            }
            AsSegmentKind::Sequence => {
                let n = keep.min(seg.asns.len());
                merged.push(AsSegment { kind: seg.kind, asns: seg.asns[..n].to_vec() });
                keep -= n;
            }
        }
    }
    for seg in as4.segments {
        match merged.last_mut() {
            // Join the kept AS_SEQUENCE head with the AS4_PATH's leading sequence: one path.
            Some(last) if last.kind == AsSegmentKind::Sequence && seg.kind == AsSegmentKind::Sequence => {
                last.asns.extend(seg.asns)
            }
            _ => merged.push(seg),
        }
    }
    out.attrs.as_path.segments = merged;
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Start an attribute with a 2-octet length placeholder; [`end_attr`] shrinks it when it fits.
pub(crate) fn begin_attr(out: &mut Vec<u8>, attr_flags: u8, type_code: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[attr_flags | flags::EXTENDED_LENGTH, type_code, 0, 0]);
    start
}

/// Fill in the length of the attribute begun at `start`, using the 1-octet form when the value
/// is at most 255 octets. Values above 65535 octets are cut to the length field's reach (no
/// message can hold them anyway; the message encoders reject the result as too long).
pub(crate) fn end_attr(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start - 4;
    if len <= 255 {
        out[start] &= !flags::EXTENDED_LENGTH;
        out[start + 2] = len as u8;
        out.copy_within(start + 4.., start + 3);
        out.truncate(out.len() - 1);
    } else {
        let len = len.min(usize::from(u16::MAX));
        out[start + 2..start + 4].copy_from_slice(&(len as u16).to_be_bytes());
        out.truncate(start + 4 + len);
    }
}

fn is_confed(kind: AsSegmentKind) -> bool {
    matches!(kind, AsSegmentKind::ConfedSequence | AsSegmentKind::ConfedSet)
}

/// Append AS_PATH segments, splitting segments longer than 255 ASNs.
fn write_segments(path: &AsPath, four_octet: bool, skip_confed: bool, out: &mut Vec<u8>) {
    for seg in &path.segments {
        if skip_confed && is_confed(seg.kind) {
            continue;
        }
        for chunk in seg.asns.chunks(255) {
            out.push(seg.kind as u8);
            out.push(chunk.len() as u8);
            for &asn in chunk {
                if four_octet {
                    out.extend_from_slice(&asn.to_be_bytes());
                } else {
                    let narrow = u16::try_from(asn).unwrap_or(AS_TRANS);
                    out.extend_from_slice(&narrow.to_be_bytes());
                }
            }
        }
    }
}

fn write_fixed(out: &mut Vec<u8>, attr_flags: u8, type_code: u8, value: &[u8]) {
    let start = begin_attr(out, attr_flags, type_code);
    out.extend_from_slice(value);
    end_attr(out, start);
}

/// Append the attribute block (everything but MP_REACH/MP_UNREACH) in type-code order, then the
/// unknown attributes as received. On 2-octet sessions, ASNs above 65535 become AS_TRANS and
/// AS4_PATH / AS4_AGGREGATOR carry the real values (RFC 6793 §4.2.2).
pub fn encode_path_attributes(attrs: &PathAttributes, ctx: &CodecContext, out: &mut Vec<u8>) {
    let four = ctx.four_octet_as;
    if let Some(origin) = attrs.origin {
        write_fixed(out, flags::WELL_KNOWN, t::ORIGIN, &[origin as u8]);
    }
    if attrs.origin.is_some() || !attrs.as_path.segments.is_empty() {
        let start = begin_attr(out, flags::WELL_KNOWN, t::AS_PATH);
        write_segments(&attrs.as_path, four, false, out);
        end_attr(out, start);
    }
    if let Some(IpAddr::V4(nh)) = attrs.next_hop {
        write_fixed(out, flags::WELL_KNOWN, t::NEXT_HOP, &nh.octets());
    }
    if let Some(med) = attrs.med {
        write_fixed(out, flags::OPTIONAL_NON_TRANSITIVE, t::MULTI_EXIT_DISC, &med.to_be_bytes());
    }
    if let Some(lp) = attrs.local_pref {
        write_fixed(out, flags::WELL_KNOWN, t::LOCAL_PREF, &lp.to_be_bytes());
    }
    if attrs.atomic_aggregate {
        write_fixed(out, flags::WELL_KNOWN, t::ATOMIC_AGGREGATE, &[]);
    }
    if let Some(agg) = attrs.aggregator {
        let start = begin_attr(out, flags::OPTIONAL_TRANSITIVE, t::AGGREGATOR);
        if four {
            out.extend_from_slice(&agg.asn.to_be_bytes());
        } else {
            out.extend_from_slice(&u16::try_from(agg.asn).unwrap_or(AS_TRANS).to_be_bytes());
        }
        out.extend_from_slice(&agg.address.octets());
        end_attr(out, start);
    }
    if !attrs.communities.is_empty() {
        let start = begin_attr(out, flags::OPTIONAL_TRANSITIVE, t::COMMUNITIES);
        for c in &attrs.communities {
            out.extend_from_slice(&c.to_be_bytes());
        }
        end_attr(out, start);
    }
    if let Some(id) = attrs.originator_id {
        write_fixed(out, flags::OPTIONAL_NON_TRANSITIVE, t::ORIGINATOR_ID, &id.octets());
    }
    if !attrs.cluster_list.is_empty() {
        let start = begin_attr(out, flags::OPTIONAL_NON_TRANSITIVE, t::CLUSTER_LIST);
        for id in &attrs.cluster_list {
            out.extend_from_slice(&id.octets());
        }
        end_attr(out, start);
    }
    if !attrs.extended_communities.is_empty() {
        let start = begin_attr(out, flags::OPTIONAL_TRANSITIVE, t::EXTENDED_COMMUNITIES);
        for c in &attrs.extended_communities {
            out.extend_from_slice(c);
        }
        end_attr(out, start);
    }
    if !four {
        let wide_path = attrs
            .as_path
            .segments
            .iter()
            .any(|s| !is_confed(s.kind) && s.asns.iter().any(|&a| a > u32::from(u16::MAX)));
        if wide_path {
            let start = begin_attr(out, flags::OPTIONAL_TRANSITIVE, t::AS4_PATH);
            write_segments(&attrs.as_path, true, true, out);
            end_attr(out, start);
        }
        if let Some(agg) = attrs.aggregator.filter(|a| a.asn > u32::from(u16::MAX)) {
            let start = begin_attr(out, flags::OPTIONAL_TRANSITIVE, t::AS4_AGGREGATOR);
            out.extend_from_slice(&agg.asn.to_be_bytes());
            out.extend_from_slice(&agg.address.octets());
            end_attr(out, start);
        }
    }
    if !attrs.large_communities.is_empty() {
        let start = begin_attr(out, flags::OPTIONAL_TRANSITIVE, t::LARGE_COMMUNITIES);
        for c in &attrs.large_communities {
            for part in c {
                out.extend_from_slice(&part.to_be_bytes());
            }
        }
        end_attr(out, start);
    }
    for raw in &attrs.unknown {
        let mut f = raw.flags & !flags::EXTENDED_LENGTH;
        if f & flags::CATEGORY_MASK == flags::OPTIONAL_TRANSITIVE {
            f |= flags::PARTIAL; // We pass it on without understanding it (RFC 4271 §5).
        }
        write_fixed(out, f, raw.type_code, &raw.value);
    }
}

/// Which address family a next hop may be encoded for, as MP_REACH next hop octets.
pub(crate) fn next_hop_len(next_hop: &MpNextHop, family: Family) -> Option<usize> {
    match (family.afi, next_hop) {
        (AFI_IPV4, MpNextHop::Single(IpAddr::V4(_))) => Some(4),
        (AFI_IPV4 | AFI_IPV6, MpNextHop::Single(IpAddr::V6(_))) => Some(16),
        (AFI_IPV4 | AFI_IPV6, MpNextHop::Ipv6WithLinkLocal { .. }) => Some(32),
        _ => None,
    }
}

pub(crate) fn write_next_hop(next_hop: &MpNextHop, out: &mut Vec<u8>) {
    match next_hop {
        MpNextHop::Single(IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
        MpNextHop::Single(IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
        MpNextHop::Ipv6WithLinkLocal { global, link_local } => {
            out.extend_from_slice(&global.octets());
            out.extend_from_slice(&link_local.octets());
        }
    }
}
