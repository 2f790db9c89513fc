//! OPEN body and its capabilities (RFC 4271 §4.2, RFC 5492, RFC 9072 extended parameters).

use std::net::Ipv4Addr;

use super::codes::{capability_code as cap, open_param, open_subcode};
use super::error::{DecodeError, DecodeErrorKind, EncodeError};
use super::{AddPathFamily, Capability, GracefulRestart, Open};
use crate::types::Family;

/// Decode the OPEN body (everything after the 19-octet header).
pub(crate) fn decode_open(body: &[u8]) -> Result<Open, DecodeError> {
    if body.len() < 10 {
        return Err(DecodeError::malformed_open("OPEN body shorter than 10 octets"));
    }
    let version = body[0];
    let my_as = u16::from_be_bytes([body[1], body[2]]);
    let hold_time = u16::from_be_bytes([body[3], body[4]]);
    let bgp_id = Ipv4Addr::new(body[5], body[6], body[7], body[8]);
    if version != 4 {
        return Err(DecodeError::unsupported_version(version));
    }
    if hold_time == 1 || hold_time == 2 {
        return Err(DecodeError::open(
            DecodeErrorKind::UnacceptableHoldTime { hold_time },
            open_subcode::UNACCEPTABLE_HOLD_TIME,
            Vec::new(),
        ));
    }
    if bgp_id.is_unspecified() {
        return Err(DecodeError::open(DecodeErrorKind::BadBgpIdentifier, open_subcode::BAD_BGP_IDENTIFIER, Vec::new()));
    }
    let opt_len = usize::from(body[9]);
    let rest = &body[10..];
    // RFC 9072: a length of 255 followed by parameter type 255 announces 2-octet lengths.
    let (params, wide) = if opt_len == 255 && rest.first() == Some(&open_param::EXTENDED_LENGTH) {
        if rest.len() < 3 {
            return Err(DecodeError::malformed_open("extended optional parameters length truncated"));
        }
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        if rest.len() != 3 + len {
            return Err(DecodeError::malformed_open("extended optional parameters length does not match the message"));
        }
        (&rest[3..], true)
    } else {
        if rest.len() != opt_len {
            return Err(DecodeError::malformed_open("optional parameters length does not match the message"));
        }
        (rest, false)
    };
    let mut capabilities = Vec::new();
    let mut pos = 0;
    let header = if wide { 3 } else { 2 };
    while pos < params.len() {
        if params.len() - pos < header {
            return Err(DecodeError::malformed_open("optional parameter header truncated"));
        }
        let param_type = params[pos];
        let len = if wide {
            usize::from(u16::from_be_bytes([params[pos + 1], params[pos + 2]]))
        } else {
            usize::from(params[pos + 1])
        };
        let start = pos + header;
        if params.len() - start < len {
            return Err(DecodeError::malformed_open("optional parameter overruns the parameters"));
        }
        let value = &params[start..start + len];
        pos = start + len;
        if param_type != open_param::CAPABILITIES {
            return Err(DecodeError::open(
                DecodeErrorKind::UnsupportedOptionalParameter { param_type },
                open_subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
                Vec::new(),
            ));
        }
        decode_capabilities(value, &mut capabilities)?;
    }
    Ok(Open { version, my_as, hold_time, bgp_id, capabilities })
}

fn family_at(v: &[u8]) -> Family {
    Family { afi: u16::from_be_bytes([v[0], v[1]]), safi: v[2] }
}

fn decode_capabilities(mut data: &[u8], out: &mut Vec<Capability>) -> Result<(), DecodeError> {
    while !data.is_empty() {
        if data.len() < 2 {
            return Err(DecodeError::malformed_open("capability header truncated"));
        }
        let code = data[0];
        let len = usize::from(data[1]);
        if data.len() - 2 < len {
            return Err(DecodeError::malformed_capability(code, "capability overruns its parameter"));
        }
        let v = &data[2..2 + len];
        data = &data[2 + len..];
        let capability = match code {
            cap::MULTIPROTOCOL => {
                if len != 4 {
                    return Err(DecodeError::malformed_capability(code, "length is not 4"));
                }
                // AFI (2), reserved (1), SAFI (1).
                Capability::Multiprotocol(Family { afi: u16::from_be_bytes([v[0], v[1]]), safi: v[3] })
            }
            cap::ROUTE_REFRESH | cap::ENHANCED_ROUTE_REFRESH => {
                if len != 0 {
                    return Err(DecodeError::malformed_capability(code, "length is not 0"));
                }
                if code == cap::ROUTE_REFRESH {
                    Capability::RouteRefresh
                } else {
                    Capability::EnhancedRouteRefresh
                }
            }
            cap::FOUR_OCTET_AS => {
                if len != 4 {
                    return Err(DecodeError::malformed_capability(code, "length is not 4"));
                }
                Capability::FourOctetAs(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            }
            cap::GRACEFUL_RESTART => {
                if len < 2 || (len - 2) % 4 != 0 {
                    return Err(DecodeError::malformed_capability(code, "length is not 2 + 4n"));
                }
                let head = u16::from_be_bytes([v[0], v[1]]);
                let families = v[2..].chunks_exact(4).map(|c| (family_at(c), c[3] & 0x80 != 0)).collect();
                Capability::GracefulRestart(GracefulRestart {
                    restarting: head & 0x8000 != 0,
                    notification: head & 0x4000 != 0,
                    restart_time: head & 0x0fff,
                    families,
                })
            }
            cap::ADD_PATH => {
                if len == 0 || len % 4 != 0 {
                    return Err(DecodeError::malformed_capability(code, "length is not a non-zero multiple of 4"));
                }
                let mut entries = Vec::with_capacity(len / 4);
                for c in v.chunks_exact(4) {
                    // RFC 7911 §4: an entry whose Send/Receive value is not 1, 2 or 3 is ignored
                    // (not a session error).
                    if !(1..=3).contains(&c[3]) {
                        continue;
                    }
                    entries.push(AddPathFamily { family: family_at(c), receive: c[3] & 1 != 0, send: c[3] & 2 != 0 });
                }
                Capability::AddPath(entries)
            }
            _ => Capability::Unknown { code, data: v.to_vec() },
        };
        out.push(capability);
    }
    Ok(())
}

/// Append one capability as code, length, value.
fn encode_capability(c: &Capability, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    let code = match c {
        Capability::Multiprotocol(f) => {
            out.extend_from_slice(&f.afi.to_be_bytes());
            out.extend_from_slice(&[0, f.safi]);
            cap::MULTIPROTOCOL
        }
        Capability::RouteRefresh => cap::ROUTE_REFRESH,
        Capability::EnhancedRouteRefresh => cap::ENHANCED_ROUTE_REFRESH,
        Capability::FourOctetAs(asn) => {
            out.extend_from_slice(&asn.to_be_bytes());
            cap::FOUR_OCTET_AS
        }
        Capability::GracefulRestart(gr) => {
            if gr.restart_time > 0x0fff {
                out.truncate(start);
                return Err(EncodeError::RestartTimeTooLarge { restart_time: gr.restart_time });
            }
            let head = (u16::from(gr.restarting) << 15) | (u16::from(gr.notification) << 14) | gr.restart_time;
            out.extend_from_slice(&head.to_be_bytes());
            for (f, forwarding) in &gr.families {
                out.extend_from_slice(&f.afi.to_be_bytes());
                out.extend_from_slice(&[f.safi, if *forwarding { 0x80 } else { 0 }]);
            }
            cap::GRACEFUL_RESTART
        }
        Capability::AddPath(entries) => {
            for e in entries {
                out.extend_from_slice(&e.family.afi.to_be_bytes());
                out.extend_from_slice(&[e.family.safi, u8::from(e.receive) | (u8::from(e.send) << 1)]);
            }
            cap::ADD_PATH
        }
        Capability::Unknown { code, data } => {
            out.extend_from_slice(data);
            *code
        }
    };
    let len = out.len() - start - 2;
    if len > 255 {
        out.truncate(start);
        return Err(EncodeError::CapabilityTooLong { code, length: len });
    }
    out[start] = code;
    out[start + 1] = len as u8;
    Ok(())
}

/// Append the OPEN body. Each capability goes in its own Capabilities parameter (the most widely
/// accepted layout); if they need more than 255 octets the RFC 9072 extended format is used.
pub(crate) fn encode_open(open: &Open, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.push(open.version);
    out.extend_from_slice(&open.my_as.to_be_bytes());
    out.extend_from_slice(&open.hold_time.to_be_bytes());
    out.extend_from_slice(&open.bgp_id.octets());
    let len_at = out.len();
    out.push(0);
    let params_start = out.len();
    for c in &open.capabilities {
        out.push(open_param::CAPABILITIES);
        out.push(0);
        let cap_start = out.len();
        if let Err(e) = encode_capability(c, out) {
            out.truncate(start);
            return Err(e);
        }
        out[cap_start - 1] = (out.len() - cap_start) as u8;
    }
    let params_len = out.len() - params_start;
    if params_len < 255 {
        out[len_at] = params_len as u8;
        return Ok(());
    }
    // Re-lay the parameters with 2-octet lengths (RFC 9072 §2).
    let narrow = out.split_off(params_start);
    let mut pos = 0;
    let mut wide = Vec::with_capacity(narrow.len() + narrow.len() / 2 + 3);
    while pos < narrow.len() {
        let len = usize::from(narrow[pos + 1]);
        wide.push(narrow[pos]);
        wide.extend_from_slice(&(len as u16).to_be_bytes());
        wide.extend_from_slice(&narrow[pos + 2..pos + 2 + len]);
        pos += 2 + len;
    }
    if wide.len() > usize::from(u16::MAX) {
        out.truncate(start);
        return Err(EncodeError::OptionalParametersTooLong { length: wide.len() });
    }
    out[len_at] = 255;
    out.push(open_param::EXTENDED_LENGTH);
    out.extend_from_slice(&(wide.len() as u16).to_be_bytes());
    out.extend_from_slice(&wide);
    Ok(())
}
