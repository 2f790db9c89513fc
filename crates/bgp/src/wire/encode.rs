//! Encoding of whole messages into the caller's buffer, and UPDATE packing/splitting.

use super::attributes::{begin_attr, encode_path_attributes, end_attr, next_hop_len, write_next_hop};
use super::capabilities::encode_open;
use super::codes::attr_type as t;
use super::codes::{attr_flags, attr_type, message_type as mt, HEADER_LEN, MAX_MESSAGE_LEN};
use super::error::EncodeError;
use super::prefix::{check_family, encode_nlri, encoded_len, supported_family};
use super::{CodecContext, Message, MpReach, Nlri, PathAttributes, Update};
use crate::types::Family;

/// Write the 19-octet header with a zero length; [`finish_message`] fills the length in.
fn begin_message(out: &mut Vec<u8>, message_type: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&[0, 0, message_type]);
    start
}

fn finish_message(out: &mut Vec<u8>, start: usize) -> Result<(), EncodeError> {
    let length = out.len() - start;
    if length > MAX_MESSAGE_LEN {
        out.truncate(start);
        return Err(EncodeError::MessageTooLong { length });
    }
    out[start + 16..start + 18].copy_from_slice(&(length as u16).to_be_bytes());
    Ok(())
}

/// Encode one message, header included, appending it to `out`. An UPDATE is written as one
/// message exactly as given (use [`encode_update_split`] to pack large ones). On error nothing is
/// appended.
pub fn encode_message(msg: &Message, ctx: &CodecContext, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start;
    match msg {
        Message::Open(open) => {
            start = begin_message(out, mt::OPEN);
            if let Err(e) = encode_open(open, out) {
                out.truncate(start);
                return Err(e);
            }
        }
        Message::Update(update) => {
            validate_update(update)?;
            start = out.len();
            let plan = Plan {
                withdrawn: &update.withdrawn,
                unreach: update.mp_unreach.as_ref().map(|u| (u.family, &u.withdrawn[..])),
                reach: update.mp_reach.as_ref().map(|r| (r, &r.nlri[..])),
                attrs: Attrs::Inline(&update.attributes),
                nlri: &update.nlri,
            };
            write_update(&plan, ctx, out);
        }
        Message::Notification(n) => {
            start = begin_message(out, mt::NOTIFICATION);
            out.extend_from_slice(&[n.code, n.subcode]);
            out.extend_from_slice(&n.data);
        }
        Message::Keepalive => {
            start = begin_message(out, mt::KEEPALIVE);
        }
        Message::RouteRefresh(rr) => {
            start = begin_message(out, mt::ROUTE_REFRESH);
            out.extend_from_slice(&rr.family.afi.to_be_bytes());
            out.extend_from_slice(&[rr.subtype, rr.family.safi]);
        }
    }
    finish_message(out, start)
}

/// Check what the wire cannot express, or a peer would have to treat as withdrawn, before
/// anything is written.
fn validate_update(update: &Update) -> Result<(), EncodeError> {
    let announces = !update.nlri.is_empty() || update.mp_reach.as_ref().is_some_and(|r| !r.nlri.is_empty());
    if announces && update.attributes.origin.is_none() {
        return Err(EncodeError::MissingWellKnown { type_code: t::ORIGIN });
    }
    if !update.nlri.is_empty() && !matches!(update.attributes.next_hop, Some(std::net::IpAddr::V4(_))) {
        return Err(EncodeError::MissingWellKnown { type_code: t::NEXT_HOP });
    }
    check_family(&update.withdrawn, Family::IPV4_UNICAST)?;
    check_family(&update.nlri, Family::IPV4_UNICAST)?;
    if let Some(u) = &update.mp_unreach {
        if !supported_family(u.family) {
            return Err(EncodeError::UnsupportedFamily { family: u.family });
        }
        check_family(&u.withdrawn, u.family)?;
    }
    if let Some(r) = &update.mp_reach {
        if !supported_family(r.family) {
            return Err(EncodeError::UnsupportedFamily { family: r.family });
        }
        check_family(&r.nlri, r.family)?;
        if next_hop_len(&r.next_hop, r.family).is_none() {
            return Err(EncodeError::NextHopFamilyMismatch { next_hop: r.next_hop.address(), family: r.family });
        }
    }
    Ok(())
}

/// The slice of an Update that goes into one message.
struct Plan<'a> {
    withdrawn: &'a [Nlri],
    unreach: Option<(Family, &'a [Nlri])>,
    reach: Option<(&'a MpReach, &'a [Nlri])>,
    attrs: Attrs<'a>,
    nlri: &'a [Nlri],
}

/// Where a message's attribute block comes from: encoded once and copied into every message of
/// a split, or encoded straight into the output for a single message.
enum Attrs<'a> {
    Encoded(&'a [u8]),
    Inline(&'a PathAttributes),
}

/// Write one UPDATE (header included). MP_UNREACH and MP_REACH come first in the attribute
/// block so that a receiver can find the NLRI even if a later attribute is malformed
/// (RFC 7606 §5.1).
fn write_update(plan: &Plan<'_>, ctx: &CodecContext, out: &mut Vec<u8>) {
    let start = begin_message(out, mt::UPDATE);
    let v4_add_path = ctx.add_path_send.contains(&Family::IPV4_UNICAST);
    let w_len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    for n in plan.withdrawn {
        encode_nlri(n, v4_add_path, out);
    }
    let w_len = out.len() - w_len_at - 2;
    out[w_len_at..w_len_at + 2].copy_from_slice(&(w_len as u16).to_be_bytes());
    let a_len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    if let Some((family, withdrawn)) = plan.unreach {
        let add_path = ctx.add_path_send.contains(&family);
        let at = begin_attr(out, attr_flags::OPTIONAL_NON_TRANSITIVE, attr_type::MP_UNREACH_NLRI);
        out.extend_from_slice(&family.afi.to_be_bytes());
        out.push(family.safi);
        for n in withdrawn {
            encode_nlri(n, add_path, out);
        }
        end_attr(out, at);
    }
    if let Some((reach, nlri)) = plan.reach {
        let add_path = ctx.add_path_send.contains(&reach.family);
        let at = begin_attr(out, attr_flags::OPTIONAL_NON_TRANSITIVE, attr_type::MP_REACH_NLRI);
        out.extend_from_slice(&reach.family.afi.to_be_bytes());
        out.push(reach.family.safi);
        out.push(next_hop_len(&reach.next_hop, reach.family).unwrap_or(0) as u8);
        write_next_hop(&reach.next_hop, out);
        out.push(0); // Reserved.
        for n in nlri {
            encode_nlri(n, add_path, out);
        }
        end_attr(out, at);
    }
    match plan.attrs {
        Attrs::Encoded(bytes) => out.extend_from_slice(bytes),
        Attrs::Inline(attrs) => encode_path_attributes(attrs, ctx, out),
    }
    let a_len = out.len() - a_len_at - 2;
    out[a_len_at..a_len_at + 2].copy_from_slice(&(a_len as u16).to_be_bytes());
    for n in plan.nlri {
        encode_nlri(n, v4_add_path, out);
    }
    let length = out.len() - start;
    out[start + 16..start + 18].copy_from_slice(&(length as u16).to_be_bytes());
}

/// How many leading prefixes of `items` fit in `space` octets; also subtracts them from it.
fn take_fitting(items: &[Nlri], add_path: bool, space: &mut usize) -> usize {
    let mut n = 0;
    for item in items {
        let len = encoded_len(item, add_path);
        if len > *space {
            break;
        }
        *space -= len;
        n += 1;
    }
    n
}

/// Room for the attribute header written with a 2-octet length (the worst case).
const ATTR_HEADER: usize = 4;
/// Largest single prefix on the wire: path id, length octet, 16 address octets.
const MAX_PREFIX_LEN: usize = 4 + 1 + 16;

/// Encode an UPDATE, splitting its NLRI / withdrawals / MP NLRI over as many messages as needed
/// so that none exceeds 4096 octets; each message that announces routes gets the full attribute
/// block. Withdrawals are packed first, then MP_REACH NLRI, then NLRI-field prefixes, each message
/// filled as far as it goes. An Update with nothing to split is written as one message (so an
/// End-of-RIB stays one message). Appends every message to `out` and returns how many were
/// written; on error nothing is appended.
pub fn encode_update_split(update: &Update, ctx: &CodecContext, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    validate_update(update)?;
    let begin = out.len();
    let mut attrs = Vec::new();
    encode_path_attributes(&update.attributes, ctx, &mut attrs);

    let v4_add_path = ctx.add_path_send.contains(&Family::IPV4_UNICAST);
    let unreach_ap = update.mp_unreach.as_ref().is_some_and(|u| ctx.add_path_send.contains(&u.family));
    let reach_ap = update.mp_reach.as_ref().is_some_and(|r| ctx.add_path_send.contains(&r.family));
    let reach_header = update
        .mp_reach
        .as_ref()
        .map_or(0, |r| ATTR_HEADER + 3 + 1 + next_hop_len(&r.next_hop, r.family).unwrap_or(0) + 1);
    let announces = update.mp_reach.is_some() || !update.nlri.is_empty();

    // Progress through each list.
    let (mut wi, mut ui, mut ri, mut ni) = (0, 0, 0, 0);
    let mut unreach_pending = update.mp_unreach.is_some();
    let mut reach_pending = update.mp_reach.is_some();
    // Attributes of an Update that announces nothing still go out once.
    let mut bare_attrs_pending = !announces && !attrs.is_empty();
    // An Update with nothing at all (IPv4 End-of-RIB) is still one message.
    let nothing = update.withdrawn.is_empty() && update.mp_unreach.is_none() && !announces && attrs.is_empty();
    let mut count = 0;
    loop {
        let mut space = MAX_MESSAGE_LEN - HEADER_LEN - 4;
        let w = take_fitting(&update.withdrawn[wi..], v4_add_path, &mut space);
        let withdrawals_done = wi + w == update.withdrawn.len();
        let mut unreach = None;
        let mut unreach_done = !unreach_pending;
        if withdrawals_done && unreach_pending && space >= ATTR_HEADER + 3 {
            space -= ATTR_HEADER + 3;
            let u = update.mp_unreach.as_ref().expect("pending implies present");
            let n = take_fitting(&u.withdrawn[ui..], unreach_ap, &mut space);
            unreach = Some((u.family, &u.withdrawn[ui..ui + n]));
            unreach_done = ui + n == u.withdrawn.len();
            ui += n;
        }
        let mut reach = None;
        let mut nlri_taken = 0;
        let mut with_attrs = false;
        if withdrawals_done && unreach_done {
            let first_needs = if reach_pending { reach_header + MAX_PREFIX_LEN } else { MAX_PREFIX_LEN };
            if announces && (reach_pending || ni < update.nlri.len()) && space >= attrs.len() + first_needs {
                with_attrs = true;
                space -= attrs.len();
                if reach_pending {
                    space -= reach_header;
                    let r = update.mp_reach.as_ref().expect("pending implies present");
                    let n = take_fitting(&r.nlri[ri..], reach_ap, &mut space);
                    reach = Some((r, &r.nlri[ri..ri + n]));
                    ri += n;
                    reach_pending = ri < r.nlri.len();
                }
                if !reach_pending {
                    nlri_taken = take_fitting(&update.nlri[ni..], v4_add_path, &mut space);
                }
            } else if bare_attrs_pending && space >= attrs.len() {
                with_attrs = true;
                bare_attrs_pending = false;
            }
        }
        let progressed = w > 0 || unreach.is_some() || with_attrs || (count == 0 && nothing);
        if !progressed {
            out.truncate(begin);
            return Err(EncodeError::AttributesTooLong { length: attrs.len() });
        }
        let plan = Plan {
            withdrawn: &update.withdrawn[wi..wi + w],
            unreach,
            reach,
            attrs: Attrs::Encoded(if with_attrs { &attrs } else { &[] }),
            nlri: &update.nlri[ni..ni + nlri_taken],
        };
        write_update(&plan, ctx, out);
        count += 1;
        wi += w;
        ni += nlri_taken;
        if unreach.is_some() {
            unreach_pending = !unreach_done;
        }
        let done = wi == update.withdrawn.len()
            && !unreach_pending
            && !reach_pending
            && ni == update.nlri.len()
            && !bare_attrs_pending;
        if done {
            return Ok(count);
        }
    }
}
