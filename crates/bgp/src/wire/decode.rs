//! Framing and decoding of whole messages (RFC 4271 §4, §6.1; RFC 7606 for UPDATE).

use super::attributes::{decode_attributes, DecodedAttributes};
use super::capabilities::decode_open;
use super::codes::{
    attr_type as t, header_subcode, message_type as mt, update_subcode, HEADER_LEN, MAX_MESSAGE_LEN, MIN_MESSAGE_LEN,
    MIN_NOTIFICATION_LEN, MIN_OPEN_LEN, MIN_UPDATE_LEN, ROUTE_REFRESH_BODY_LEN,
};
use super::error::{DecodeError, DecodeErrorKind, IssueReason, NlriField, Received, UpdateIssues};
use super::prefix::decode_prefixes;
use super::{CodecContext, Message, MpUnreach, Notification, PathAttributes, RouteRefresh, Update};
use crate::types::{Family, AFI_IPV4};

/// Streaming framing: given the bytes received so far, the length of the first complete message
/// if one is complete (Ok(Some(len))), Ok(None) if more bytes are needed, or the header error
/// (bad marker -> 1/1 Connection Not Synchronized; length < 19 or > 4096 or wrong for the type
/// -> 1/2 Bad Message Length with the length as data; unknown type -> 1/3 with the type as data).
/// Header errors are reported as soon as the 19 header octets are in, before the body arrives.
pub fn frame_length(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let marker_seen = buf.len().min(16);
    if buf[..marker_seen].iter().any(|&b| b != 0xff) {
        return Err(DecodeError::header(
            DecodeErrorKind::ConnectionNotSynchronized,
            header_subcode::CONNECTION_NOT_SYNCHRONIZED,
            Vec::new(),
        ));
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let length = u16::from_be_bytes([buf[16], buf[17]]);
    let len = usize::from(length);
    if !(MIN_MESSAGE_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(DecodeError::bad_length(length));
    }
    let message_type = buf[18];
    let fits = match message_type {
        mt::OPEN => len >= MIN_OPEN_LEN,
        mt::UPDATE => len >= MIN_UPDATE_LEN,
        mt::NOTIFICATION => len >= MIN_NOTIFICATION_LEN,
        mt::KEEPALIVE => len == HEADER_LEN,
        // A wrong ROUTE-REFRESH length has its own error (7/1, RFC 7313 §5), raised on decode.
        mt::ROUTE_REFRESH => true,
        _ => {
            return Err(DecodeError::header(
                DecodeErrorKind::BadMessageType { message_type },
                header_subcode::BAD_MESSAGE_TYPE,
                vec![message_type],
            ))
        }
    };
    if !fits {
        return Err(DecodeError::bad_length(length));
    }
    Ok((buf.len() >= len).then_some(len))
}

/// Decode one complete message (header included); `frame` must be exactly one message, as
/// delimited by [`frame_length`].
pub fn decode_message(frame: &[u8], ctx: &CodecContext) -> Result<Received, DecodeError> {
    let declared = match frame_length(frame)? {
        Some(len) if len == frame.len() => len,
        other => {
            let declared = match other {
                Some(len) => len,
                None if frame.len() >= HEADER_LEN => usize::from(u16::from_be_bytes([frame[16], frame[17]])),
                None => 0,
            };
            return Err(DecodeError::header(
                DecodeErrorKind::FrameLengthMismatch { declared, actual: frame.len() },
                header_subcode::BAD_MESSAGE_LENGTH,
                (declared as u16).to_be_bytes().to_vec(),
            ));
        }
    };
    let body = &frame[HEADER_LEN..declared];
    let message = match frame[18] {
        mt::OPEN => Message::Open(decode_open(body)?),
        mt::UPDATE => {
            let (update, issues) = decode_update(body, ctx)?;
            return Ok(Received { message: Message::Update(update), issues });
        }
        mt::NOTIFICATION => {
            Message::Notification(Notification { code: body[0], subcode: body[1], data: body[2..].to_vec() })
        }
        mt::KEEPALIVE => Message::Keepalive,
        mt::ROUTE_REFRESH => {
            if body.len() != ROUTE_REFRESH_BODY_LEN {
                return Err(DecodeError::route_refresh_length(frame));
            }
            Message::RouteRefresh(RouteRefresh {
                family: Family { afi: u16::from_be_bytes([body[0], body[1]]), safi: body[3] },
                subtype: body[2],
            })
        }
        _ => unreachable!("frame_length rejects unknown types"),
    };
    Ok(Received { message, issues: UpdateIssues::default() })
}

fn network_field_error(field: NlriField, detail: &'static str) -> DecodeError {
    DecodeError::update(
        DecodeErrorKind::InvalidNetworkField { field, detail },
        update_subcode::INVALID_NETWORK_FIELD,
        Vec::new(),
    )
}

/// Decode an UPDATE body and apply the RFC 7606 actions.
pub(crate) fn decode_update(body: &[u8], ctx: &CodecContext) -> Result<(Update, UpdateIssues), DecodeError> {
    let withdrawn_len = u16::from_be_bytes([body[0], body[1]]);
    let w_end = 2 + usize::from(withdrawn_len);
    if body.len() < w_end + 2 {
        return Err(DecodeError::malformed_attribute_list(DecodeErrorKind::WithdrawnLengthOverrun {
            length: withdrawn_len,
        }));
    }
    let attr_len = u16::from_be_bytes([body[w_end], body[w_end + 1]]);
    let a_start = w_end + 2;
    let a_end = a_start + usize::from(attr_len);
    if body.len() < a_end {
        return Err(DecodeError::malformed_attribute_list(DecodeErrorKind::AttributeLengthOverrun {
            length: attr_len,
        }));
    }
    let v4_add_path = ctx.add_path_receive.contains(&Family::IPV4_UNICAST);
    let mut withdrawn = Vec::new();
    decode_prefixes(&body[2..w_end], AFI_IPV4, v4_add_path, &mut withdrawn)
        .map_err(|d| network_field_error(NlriField::Withdrawn, d))?;
    let mut nlri = Vec::new();
    decode_prefixes(&body[a_end..], AFI_IPV4, v4_add_path, &mut nlri)
        .map_err(|d| network_field_error(NlriField::Nlri, d))?;

    let mut decoded = DecodedAttributes::default();
    decode_attributes(&body[a_start..a_end], ctx, &mut decoded)?;

    // Well-known mandatory attributes are only required when routes are announced; NEXT_HOP only
    // for the NLRI field (RFC 4760 §3, RFC 7606 §3 d).
    let announces_mp = decoded.mp_reach.as_ref().is_some_and(|r| !r.nlri.is_empty());
    if !nlri.is_empty() || announces_mp {
        let required: &[u8] =
            if nlri.is_empty() { &[t::ORIGIN, t::AS_PATH] } else { &[t::ORIGIN, t::AS_PATH, t::NEXT_HOP] };
        for &type_code in required {
            if !decoded.seen(type_code) {
                decoded.withdraw(type_code, IssueReason::MissingWellKnown);
            }
        }
    }

    let DecodedAttributes { attrs, mp_reach, mp_unreach, issues, .. } = decoded;
    let mut update = Update { withdrawn, attributes: attrs, nlri, mp_reach, mp_unreach };
    if issues.treat_as_withdraw.is_some() {
        treat_as_withdraw(&mut update)?;
    }
    Ok((update, issues))
}

/// Turn every announcement into a withdrawal and drop the attributes (RFC 7606 §2).
fn treat_as_withdraw(update: &mut Update) -> Result<(), DecodeError> {
    update.withdrawn.append(&mut update.nlri);
    update.attributes = PathAttributes::default();
    let Some(mut reach) = update.mp_reach.take() else { return Ok(()) };
    if reach.family == Family::IPV4_UNICAST {
        update.withdrawn.append(&mut reach.nlri);
        return Ok(());
    }
    match &mut update.mp_unreach {
        Some(unreach) if unreach.family == reach.family => unreach.withdrawn.append(&mut reach.nlri),
        Some(unreach) => {
            return Err(DecodeError::malformed_attribute_list(DecodeErrorKind::WithdrawFamilyClash {
                family: reach.family,
                other: unreach.family,
            }))
        }
        None => update.mp_unreach = Some(MpUnreach { family: reach.family, withdrawn: reach.nlri }),
    }
    Ok(())
}
