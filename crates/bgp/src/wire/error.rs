//! Outcomes of decoding and encoding: session-resetting errors carry the NOTIFICATION to send,
//! RFC 7606 outcomes that keep the session up are reported next to the decoded message.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use super::codes::{
    error_code, header_subcode, open_subcode, route_refresh_subcode, update_subcode, UNSPECIFIC_SUBCODE,
};
use super::{Message, Notification};
use crate::types::{Family, Prefix};

/// A decoded message plus whatever RFC 7606 handling was applied to it. `issues` is empty for
/// anything but an UPDATE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub message: Message,
    pub issues: UpdateIssues,
}

/// RFC 7606 outcomes that do not reset the session. When `treat_as_withdraw` is Some, the
/// returned Update has no announcements left: every prefix of `nlri` was moved to `withdrawn`
/// and every prefix of `mp_reach` into `mp_unreach` (same family), and the attributes are
/// cleared, so the RIB just processes withdrawals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateIssues {
    /// The first error that required treat-as-withdraw (RFC 7606 §2), if any.
    pub treat_as_withdraw: Option<AttributeIssue>,
    /// Attributes that were dropped ("attribute discard", RFC 7606 §2), in the order met.
    pub discarded: Vec<AttributeIssue>,
}

impl UpdateIssues {
    /// Nothing was wrong with the UPDATE.
    pub fn is_empty(&self) -> bool {
        self.treat_as_withdraw.is_none() && self.discarded.is_empty()
    }
}

/// One attribute that was malformed, duplicated or missing, for logs and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributeIssue {
    /// The attribute type code concerned (for a missing attribute: the one that is missing).
    pub type_code: u8,
    pub reason: IssueReason,
}

impl fmt::Display for AttributeIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "path attribute type {}: {}", self.type_code, self.reason)
    }
}

/// Why an attribute was discarded or the UPDATE treated as a withdrawal. Typed so that callers
/// can count by cause and tests can assert the exact one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IssueReason {
    /// The Optional/Transitive bits contradict the attribute's definition (RFC 7606 §3 c).
    #[error("attribute flags 0x{flags:02x} conflict with the attribute type")]
    FlagsConflict { flags: u8 },
    /// The attribute's length is not one its definition allows.
    #[error("invalid attribute length {length}")]
    BadLength { length: usize },
    /// ORIGIN is not IGP, EGP or INCOMPLETE.
    #[error("invalid ORIGIN value {value}")]
    InvalidOrigin { value: u8 },
    /// AS_PATH (or AS4_PATH) segments do not parse (RFC 7606 §7.2).
    #[error("malformed AS path: {detail}")]
    MalformedAsPath { detail: &'static str },
    /// NEXT_HOP is not a usable unicast host address.
    #[error("invalid NEXT_HOP {address}")]
    InvalidNextHop { address: Ipv4Addr },
    /// A well-known mandatory attribute is absent although the UPDATE announces routes.
    #[error("missing well-known mandatory attribute")]
    MissingWellKnown,
    /// The attribute appeared more than once; later copies are dropped (RFC 7606 §3 g).
    #[error("duplicate attribute")]
    Duplicate,
    /// MP_REACH/MP_UNREACH of an address family this codec does not parse.
    #[error("unsupported address family {family}")]
    UnsupportedFamily { family: Family },
}

/// An error that resets the session: the NOTIFICATION to send and a typed reason for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub notification: Notification,
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    pub(crate) fn new(kind: DecodeErrorKind, code: u8, subcode: u8, data: Vec<u8>) -> DecodeError {
        DecodeError { notification: Notification { code, subcode, data }, kind }
    }

    pub(crate) fn header(kind: DecodeErrorKind, subcode: u8, data: Vec<u8>) -> DecodeError {
        DecodeError::new(kind, error_code::MESSAGE_HEADER, subcode, data)
    }

    pub(crate) fn open(kind: DecodeErrorKind, subcode: u8, data: Vec<u8>) -> DecodeError {
        DecodeError::new(kind, error_code::OPEN_MESSAGE, subcode, data)
    }

    pub(crate) fn update(kind: DecodeErrorKind, subcode: u8, data: Vec<u8>) -> DecodeError {
        DecodeError::new(kind, error_code::UPDATE_MESSAGE, subcode, data)
    }

    pub(crate) fn bad_length(length: u16) -> DecodeError {
        DecodeError::header(
            DecodeErrorKind::BadMessageLength { length },
            header_subcode::BAD_MESSAGE_LENGTH,
            length.to_be_bytes().to_vec(),
        )
    }

    pub(crate) fn malformed_open(detail: &'static str) -> DecodeError {
        DecodeError::open(DecodeErrorKind::MalformedOptionalParameters { detail }, UNSPECIFIC_SUBCODE, Vec::new())
    }

    pub(crate) fn malformed_capability(code: u8, detail: &'static str) -> DecodeError {
        DecodeError::open(DecodeErrorKind::MalformedCapability { code, detail }, UNSPECIFIC_SUBCODE, Vec::new())
    }

    pub(crate) fn malformed_attribute_list(kind: DecodeErrorKind) -> DecodeError {
        DecodeError::update(kind, update_subcode::MALFORMED_ATTRIBUTE_LIST, Vec::new())
    }

    pub(crate) fn route_refresh_length(message: &[u8]) -> DecodeError {
        DecodeError::new(
            DecodeErrorKind::InvalidRouteRefreshLength { length: message.len() },
            error_code::ROUTE_REFRESH_MESSAGE,
            route_refresh_subcode::INVALID_MESSAGE_LENGTH,
            message.to_vec(),
        )
    }

    pub(crate) fn unsupported_version(version: u8) -> DecodeError {
        // Data: the largest version we support (RFC 4271 §6.2), as two octets.
        DecodeError::open(
            DecodeErrorKind::UnsupportedVersion { version },
            open_subcode::UNSUPPORTED_VERSION,
            vec![0, 4],
        )
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (NOTIFICATION {}/{}, {} data octets)",
            self.kind,
            self.notification.code,
            self.notification.subcode,
            self.notification.data.len()
        )
    }
}

impl std::error::Error for DecodeError {}

/// Which NLRI-carrying field a prefix error was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NlriField {
    Withdrawn,
    Nlri,
    MpReach,
    MpUnreach,
}

impl fmt::Display for NlriField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NlriField::Withdrawn => "Withdrawn Routes",
            NlriField::Nlri => "NLRI",
            NlriField::MpReach => "MP_REACH_NLRI",
            NlriField::MpUnreach => "MP_UNREACH_NLRI",
        })
    }
}

/// Why a message could not be accepted; each variant maps to one NOTIFICATION.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// 1/1: the 16-octet marker is not all ones.
    #[error("message header marker is not all ones")]
    ConnectionNotSynchronized,
    /// 1/2: the Length field is out of range or wrong for the message type.
    #[error("bad message length {length}")]
    BadMessageLength { length: u16 },
    /// 1/2: the frame handed to `decode_message` is not exactly one message.
    #[error("frame is {actual} octets but its header says {declared}")]
    FrameLengthMismatch { declared: usize, actual: usize },
    /// 1/3.
    #[error("unknown message type {message_type}")]
    BadMessageType { message_type: u8 },
    /// 2/1.
    #[error("unsupported BGP version {version}")]
    UnsupportedVersion { version: u8 },
    /// 2/6: hold time 1 or 2 seconds (RFC 4271 §6.2).
    #[error("unacceptable hold time {hold_time}")]
    UnacceptableHoldTime { hold_time: u16 },
    /// 2/3: identifier 0.0.0.0 (RFC 6286 §2.2).
    #[error("BGP identifier 0.0.0.0")]
    BadBgpIdentifier,
    /// 2/0: the optional parameters do not parse.
    #[error("malformed OPEN optional parameters: {detail}")]
    MalformedOptionalParameters { detail: &'static str },
    /// 2/4: an optional parameter other than Capabilities.
    #[error("unsupported optional parameter type {param_type}")]
    UnsupportedOptionalParameter { param_type: u8 },
    /// 2/0: a capability we understand has a malformed value.
    #[error("malformed capability {code}: {detail}")]
    MalformedCapability { code: u8, detail: &'static str },
    /// 3/1: Withdrawn Routes Length runs past the message.
    #[error("withdrawn routes length {length} overruns the UPDATE")]
    WithdrawnLengthOverrun { length: u16 },
    /// 3/1: Total Path Attribute Length runs past the message.
    #[error("total path attribute length {length} overruns the UPDATE")]
    AttributeLengthOverrun { length: u16 },
    /// 3/1: an attribute header or value runs past the attribute block.
    #[error("path attribute at offset {offset} of the attribute block overruns it")]
    AttributeOverrun { offset: usize },
    /// 3/1: MP_REACH_NLRI or MP_UNREACH_NLRI appears twice (RFC 7606 §3 g).
    #[error("attribute {type_code} appears more than once")]
    DuplicateMpAttribute { type_code: u8 },
    /// 3/1: treat-as-withdraw would need two MP_UNREACH families in one UPDATE.
    #[error("cannot treat {family} announcements as withdrawn next to a {other} MP_UNREACH_NLRI")]
    WithdrawFamilyClash { family: Family, other: Family },
    /// 3/2.
    #[error("unrecognized well-known attribute {type_code}")]
    UnrecognizedWellKnown { type_code: u8 },
    /// 3/10 (NLRI / Withdrawn Routes field) or 3/9 (inside MP_REACH/MP_UNREACH).
    #[error("malformed prefix in {field}: {detail}")]
    InvalidNetworkField { field: NlriField, detail: &'static str },
    /// 3/9: MP_REACH/MP_UNREACH too short, or a next hop length the family does not allow.
    #[error("malformed attribute {type_code}: {detail}")]
    MalformedMpAttribute { type_code: u8, detail: &'static str },
    /// 7/1: ROUTE-REFRESH whose length is not 23 (RFC 7313 §5).
    #[error("ROUTE-REFRESH of {length} octets")]
    InvalidRouteRefreshLength { length: usize },
}

/// Why a message could not be encoded. Nothing is left in the output buffer on error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {length} octets exceeds the 4096-octet limit")]
    MessageTooLong { length: usize },
    #[error("path attributes of {length} octets leave no room for NLRI in a 4096-octet UPDATE")]
    AttributesTooLong { length: usize },
    #[error("prefix {prefix} cannot be carried as {family}")]
    PrefixFamilyMismatch { prefix: Prefix, family: Family },
    #[error("next hop {next_hop} cannot be carried for {family}")]
    NextHopFamilyMismatch { next_hop: IpAddr, family: Family },
    /// ORIGIN (or, for NLRI-field prefixes, an IPv4 NEXT_HOP) is missing from an announcement;
    /// the peer would withdraw the routes (RFC 7606 §3 d) or, if older, reset the session.
    #[error("announcement without the well-known attribute {type_code}")]
    MissingWellKnown { type_code: u8 },
    #[error("address family {family} is not supported by the codec")]
    UnsupportedFamily { family: Family },
    #[error("capability {code} value of {length} octets exceeds 255")]
    CapabilityTooLong { code: u8, length: usize },
    #[error("OPEN optional parameters of {length} octets exceed 65535")]
    OptionalParametersTooLong { length: usize },
    #[error("graceful restart time {restart_time} exceeds 12 bits")]
    RestartTimeTooLarge { restart_time: u16 },
}
