//! Framing, KEEPALIVE, NOTIFICATION, ROUTE-REFRESH and OPEN: good bytes -> value, bad bytes ->
//! the exact NOTIFICATION, value -> bytes. Vectors written by hand from RFC 4271 §4, RFC 5492,
//! RFC 2918 / 7313, RFC 4724, RFC 6793, RFC 7911 and RFC 9072.

use std::net::Ipv4Addr;

use bgp::types::Family;
use bgp::wire::{
    decode_message, encode_message, frame_length, AddPathFamily, Capability, CodecContext, DecodeError,
    DecodeErrorKind, EncodeError, GracefulRestart, Message, Notification, Open, RouteRefresh,
};

fn frame(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    v.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    v.push(ty);
    v.extend_from_slice(body);
    v
}

fn ctx() -> CodecContext {
    CodecContext::default()
}

fn decode(bytes: &[u8]) -> Message {
    let r = decode_message(bytes, &ctx()).expect("decodes");
    assert!(r.issues.is_empty());
    r.message
}

fn decode_err(bytes: &[u8]) -> DecodeError {
    decode_message(bytes, &ctx()).expect_err("must be rejected")
}

fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(msg, &ctx(), &mut out).expect("encodes");
    out
}

fn assert_notification(e: &DecodeError, code: u8, subcode: u8, data: &[u8]) {
    assert_eq!(e.notification, Notification { code, subcode, data: data.to_vec() }, "wrong NOTIFICATION for {e}");
}

// ---------------------------------------------------------------------------------------------
// Framing

#[test]
fn frame_length_waits_for_header_and_body() {
    let ka = frame(4, &[]);
    assert_eq!(frame_length(&[]).unwrap(), None);
    assert_eq!(frame_length(&ka[..10]).unwrap(), None);
    assert_eq!(frame_length(&ka[..18]).unwrap(), None);
    assert_eq!(frame_length(&ka).unwrap(), Some(19));
    let notif = frame(3, &[6, 2, 1, 2, 3]);
    assert_eq!(frame_length(&notif[..19]).unwrap(), None);
    assert_eq!(frame_length(&notif[..23]).unwrap(), None);
    assert_eq!(frame_length(&notif).unwrap(), Some(24));
    // Two messages back to back: only the first is framed.
    let mut two = ka.clone();
    two.extend_from_slice(&notif);
    assert_eq!(frame_length(&two).unwrap(), Some(19));
    assert_eq!(frame_length(&two[19..]).unwrap(), Some(24));
}

#[test]
fn frame_length_header_errors() {
    // Bad marker, detected even before the header is complete.
    let mut bad = frame(4, &[]);
    bad[3] = 0xfe;
    let e = frame_length(&bad[..5]).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::ConnectionNotSynchronized);
    assert_notification(&e, 1, 1, &[]);
    assert_notification(&frame_length(&bad).unwrap_err(), 1, 1, &[]);

    // Length below 19 and above 4096.
    let mut short = frame(4, &[]);
    short[16..18].copy_from_slice(&18u16.to_be_bytes());
    let e = frame_length(&short).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::BadMessageLength { length: 18 });
    assert_notification(&e, 1, 2, &[0, 18]);
    let mut long = frame(2, &[0, 0, 0, 0]);
    long[16..18].copy_from_slice(&4097u16.to_be_bytes());
    assert_notification(&frame_length(&long).unwrap_err(), 1, 2, &[0x10, 0x01]);

    // Wrong length for the type.
    assert_notification(&frame_length(&frame(4, &[0])).unwrap_err(), 1, 2, &[0, 20]);
    assert_notification(&frame_length(&frame(1, &[0; 9])).unwrap_err(), 1, 2, &[0, 28]);
    assert_notification(&frame_length(&frame(2, &[0; 3])).unwrap_err(), 1, 2, &[0, 22]);
    assert_notification(&frame_length(&frame(3, &[6])).unwrap_err(), 1, 2, &[0, 20]);

    // Unknown type.
    let e = frame_length(&frame(9, &[])).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::BadMessageType { message_type: 9 });
    assert_notification(&e, 1, 3, &[9]);
}

#[test]
fn decode_message_rejects_partial_or_padded_frames() {
    let ka = frame(4, &[]);
    let e = decode_err(&ka[..18]);
    assert!(matches!(e.kind, DecodeErrorKind::FrameLengthMismatch { actual: 18, .. }));
    let mut padded = ka.clone();
    padded.push(0);
    let e = decode_err(&padded);
    assert_eq!(e.kind, DecodeErrorKind::FrameLengthMismatch { declared: 19, actual: 20 });
    assert_notification(&e, 1, 2, &[0, 19]);
}

// ---------------------------------------------------------------------------------------------
// KEEPALIVE, NOTIFICATION, ROUTE-REFRESH

const KEEPALIVE: [u8; 19] =
    [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x13, 0x04];

#[test]
fn keepalive_three_ways() {
    assert_eq!(decode(&KEEPALIVE), Message::Keepalive);
    assert_eq!(encode(&Message::Keepalive), KEEPALIVE);
    let mut long = KEEPALIVE.to_vec();
    long[17] = 20;
    long.push(0);
    assert_notification(&decode_err(&long), 1, 2, &[0, 20]);
}

#[test]
fn notification_three_ways() {
    // Cease / Administrative Shutdown with a shutdown communication (RFC 9003 layout: len, text).
    let bytes = frame(3, &[6, 2, 3, b'b', b'y', b'e']);
    let value = Notification { code: 6, subcode: 2, data: vec![3, b'b', b'y', b'e'] };
    assert_eq!(decode(&bytes), Message::Notification(value.clone()));
    assert_eq!(encode(&Message::Notification(value)), bytes);
    // No data at all.
    let bare = frame(3, &[4, 0]);
    assert_eq!(decode(&bare), Message::Notification(Notification { code: 4, subcode: 0, data: vec![] }));
    assert_eq!(encode(&Message::Notification(Notification { code: 4, subcode: 0, data: vec![] })), bare);
    // Too short to hold code and subcode.
    assert_notification(&decode_err(&frame(3, &[4])), 1, 2, &[0, 20]);
    // Too much data to fit a message.
    let huge = Notification { code: 6, subcode: 0, data: vec![0; 4096] };
    let mut out = vec![1, 2, 3];
    let e = encode_message(&Message::Notification(huge), &ctx(), &mut out).unwrap_err();
    assert_eq!(e, EncodeError::MessageTooLong { length: 4096 + 21 });
    assert_eq!(out, [1, 2, 3], "nothing appended on error");
}

#[test]
fn route_refresh_three_ways() {
    // AFI 2, subtype 0 (plain refresh), SAFI 1.
    let bytes = frame(5, &[0, 2, 0, 1]);
    let value = RouteRefresh { family: Family::IPV6_UNICAST, subtype: 0 };
    assert_eq!(decode(&bytes), Message::RouteRefresh(value));
    assert_eq!(encode(&Message::RouteRefresh(value)), bytes);
    // RFC 7313 Begin-of-RIB-Route-Refresh for IPv4.
    let borr = frame(5, &[0, 1, 1, 1]);
    assert_eq!(decode(&borr), Message::RouteRefresh(RouteRefresh { family: Family::IPV4_UNICAST, subtype: 1 }));
    // Bad lengths: 7/1 with the whole message as data (RFC 7313 §5).
    for body in [&[0u8, 1, 0, 1, 0][..], &[0, 1, 0][..], &[][..]] {
        let bad = frame(5, body);
        let e = decode_err(&bad);
        assert_eq!(e.kind, DecodeErrorKind::InvalidRouteRefreshLength { length: bad.len() });
        assert_notification(&e, 7, 1, &bad);
    }
}

// ---------------------------------------------------------------------------------------------
// OPEN

/// OPEN from AS 4200000001 (AS_TRANS in My AS), hold time 90, id 192.0.2.1, one capability per
/// optional parameter.
const OPEN_BODY: &[u8] = &[
    0x04, 0x5b, 0xa0, 0x00, 0x5a, 0xc0, 0x00, 0x02, 0x01, 61, // version .. opt len
    0x02, 0x06, 0x01, 0x04, 0x00, 0x01, 0x00, 0x01, // MP IPv4 unicast
    0x02, 0x06, 0x01, 0x04, 0x00, 0x02, 0x00, 0x01, // MP IPv6 unicast
    0x02, 0x02, 0x02, 0x00, // Route Refresh
    0x02, 0x02, 0x46, 0x00, // Enhanced Route Refresh
    0x02, 0x06, 0x41, 0x04, 0xfa, 0x56, 0xea, 0x01, // 4-octet AS 4200000001
    0x02, 0x08, 0x40, 0x06, 0x80, 0x78, 0x00, 0x01, 0x01, 0x80, // GR: R, 120 s, IPv4 with F
    0x02, 0x0a, 0x45, 0x08, 0x00, 0x01, 0x01, 0x03, 0x00, 0x02, 0x01, 0x01, // ADD-PATH
    0x02, 0x05, 0x63, 0x03, 0xaa, 0xbb, 0xcc, // unknown capability 99
];

fn open_value() -> Open {
    Open {
        version: 4,
        my_as: 23456,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(192, 0, 2, 1),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::EnhancedRouteRefresh,
            Capability::FourOctetAs(4_200_000_001),
            Capability::GracefulRestart(GracefulRestart {
                restarting: true,
                notification: false,
                restart_time: 120,
                families: vec![(Family::IPV4_UNICAST, true)],
            }),
            Capability::AddPath(vec![
                AddPathFamily { family: Family::IPV4_UNICAST, receive: true, send: true },
                AddPathFamily { family: Family::IPV6_UNICAST, receive: true, send: false },
            ]),
            Capability::Unknown { code: 99, data: vec![0xaa, 0xbb, 0xcc] },
        ],
    }
}

#[test]
fn open_three_ways() {
    let bytes = frame(1, OPEN_BODY);
    assert_eq!(decode(&bytes), Message::Open(open_value()));
    assert_eq!(encode(&Message::Open(open_value())), bytes);
}

#[test]
fn open_with_several_capabilities_in_one_parameter_and_no_parameters() {
    let body = [
        4, 0xfd, 0xe9, 0, 180, 10, 0, 0, 1, 14, // AS 65001, hold 180, id 10.0.0.1, opt len 14
        2, 12, 1, 4, 0, 1, 0, 1, 2, 0, 64, 2, 0x40, 0x00, // MP v4, RR, GR with only the N bit
    ];
    let Message::Open(open) = decode(&frame(1, &body)) else { panic!("not an OPEN") };
    assert_eq!(
        open.capabilities,
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::GracefulRestart(GracefulRestart {
                restarting: false,
                notification: true,
                restart_time: 0,
                families: vec![]
            }),
        ]
    );
    let bare = [4, 0xfd, 0xe9, 0, 0, 10, 0, 0, 1, 0];
    let open =
        Open { version: 4, my_as: 65001, hold_time: 0, bgp_id: Ipv4Addr::new(10, 0, 0, 1), capabilities: vec![] };
    assert_eq!(decode(&frame(1, &bare)), Message::Open(open.clone()));
    assert_eq!(encode(&Message::Open(open)), frame(1, &bare));
}

#[test]
fn open_extended_optional_parameters_rfc9072() {
    // 60 unknown capabilities of 3 data octets: 60 * (3 + 2 + 2) = 420 octets of parameters.
    let caps: Vec<Capability> = (0..60).map(|i| Capability::Unknown { code: 200, data: vec![i, i, i] }).collect();
    let open = Open { version: 4, my_as: 65001, hold_time: 90, bgp_id: Ipv4Addr::new(10, 0, 0, 1), capabilities: caps };
    let bytes = encode(&Message::Open(open.clone()));
    let body = &bytes[19..];
    assert_eq!(body[9], 255, "non-extended length signals RFC 9072");
    assert_eq!(body[10], 255, "non-extended type signals RFC 9072");
    assert_eq!(u16::from_be_bytes([body[11], body[12]]), 60 * 8);
    // First parameter: type 2, 2-octet length 5, then the capability.
    assert_eq!(&body[13..21], &[2, 0, 5, 200, 3, 0, 0, 0]);
    assert_eq!(decode(&bytes), Message::Open(open));
}

#[test]
fn open_errors() {
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut body = OPEN_BODY.to_vec();
        f(&mut body);
        decode_err(&frame(1, &body))
    };
    let e = with(&|b| b[0] = 3);
    assert_eq!(e.kind, DecodeErrorKind::UnsupportedVersion { version: 3 });
    assert_notification(&e, 2, 1, &[0, 4]);
    let e = with(&|b| b[3..5].copy_from_slice(&[0, 2]));
    assert_eq!(e.kind, DecodeErrorKind::UnacceptableHoldTime { hold_time: 2 });
    assert_notification(&e, 2, 6, &[]);
    let e = with(&|b| b[5..9].copy_from_slice(&[0, 0, 0, 0]));
    assert_eq!(e.kind, DecodeErrorKind::BadBgpIdentifier);
    assert_notification(&e, 2, 3, &[]);
    // Optional parameter type 1 (deprecated authentication).
    let e = with(&|b| b[10] = 1);
    assert_eq!(e.kind, DecodeErrorKind::UnsupportedOptionalParameter { param_type: 1 });
    assert_notification(&e, 2, 4, &[]);
    // Optional parameters length disagreeing with the message.
    let e = with(&|b| b[9] = 60);
    assert!(matches!(e.kind, DecodeErrorKind::MalformedOptionalParameters { .. }), "{e}");
    assert_notification(&e, 2, 0, &[]);
    // Parameter length overrunning the parameters.
    let e = with(&|b| b[11] = 200);
    assert!(matches!(e.kind, DecodeErrorKind::MalformedOptionalParameters { .. }), "{e}");
    // Multiprotocol capability of length 3 (inside a parameter of consistent length).
    let body = [4, 0, 1, 0, 90, 1, 1, 1, 1, 7, 2, 5, 1, 3, 0, 1, 0];
    let e = decode_err(&frame(1, &body));
    assert!(matches!(e.kind, DecodeErrorKind::MalformedCapability { code: 1, .. }), "{e}");
    assert_notification(&e, 2, 0, &[]);
    // Capability overrunning its parameter.
    let body = [4, 0, 1, 0, 90, 1, 1, 1, 1, 4, 2, 2, 65, 4];
    assert!(matches!(decode_err(&frame(1, &body)).kind, DecodeErrorKind::MalformedCapability { code: 65, .. }));
    // RFC 7911 §4: an ADD-PATH entry with send/receive 0 is ignored, not a session error.
    let body = [4, 0, 1, 0, 90, 1, 1, 1, 1, 8, 2, 6, 69, 4, 0, 1, 1, 0];
    match decode_message(&frame(1, &body), &CodecContext::default()).expect("decodes").message {
        Message::Open(open) => assert_eq!(open.capabilities, vec![Capability::AddPath(Vec::new())]),
        other => panic!("expected OPEN, got {other:?}"),
    }
    // 4-octet AS of length 2, GR of length 3, RR with data.
    for cap in [&[65u8, 2, 0, 1][..], &[64, 3, 0, 0, 0], &[2, 1, 0]] {
        let mut body = vec![4, 0, 1, 0, 90, 1, 1, 1, 1, cap.len() as u8 + 2, 2, cap.len() as u8];
        body.extend_from_slice(cap);
        let e = decode_err(&frame(1, &body));
        assert_eq!(
            e.kind,
            DecodeErrorKind::MalformedCapability {
                code: cap[0],
                detail: match cap[0] {
                    65 => "length is not 4",
                    64 => "length is not 2 + 4n",
                    _ => "length is not 0",
                }
            }
        );
    }
    // RFC 9072 marker with a truncated extended length.
    let body = [4, 0, 1, 0, 90, 1, 1, 1, 1, 255, 255, 0];
    assert!(matches!(decode_err(&frame(1, &body)).kind, DecodeErrorKind::MalformedOptionalParameters { .. }));
}

#[test]
fn open_encode_errors() {
    let mut open = open_value();
    open.capabilities = vec![Capability::GracefulRestart(GracefulRestart {
        restarting: false,
        notification: false,
        restart_time: 4096,
        families: vec![],
    })];
    let mut out = Vec::new();
    assert_eq!(
        encode_message(&Message::Open(open.clone()), &ctx(), &mut out),
        Err(EncodeError::RestartTimeTooLarge { restart_time: 4096 })
    );
    assert!(out.is_empty());
    open.capabilities = vec![Capability::Unknown { code: 7, data: vec![0; 256] }];
    assert_eq!(
        encode_message(&Message::Open(open), &ctx(), &mut out),
        Err(EncodeError::CapabilityTooLong { code: 7, length: 256 })
    );
    assert!(out.is_empty());
}
