//! The store-server protocol, without I/O: frame encoding/decoding and the JSON messages.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of one JSON object.
//! Requests carry a client-chosen `id`; every response and every watch event carries the id of
//! the request it answers (for watches: the id of the `watch` request), so a client can have
//! many requests in flight on one connection and match answers as they come.
//!
//! ```text
//! -> {"id":7,"op":"put","key":"a","value":"dmFs","condition":{"revision":3}}
//! <- {"id":7,"reply":"revision","revision":4}
//! -> {"id":8,"op":"watch","prefix":"a","from":0}
//! <- {"id":8,"reply":"watch_started","from":5}
//! <- {"id":8,"reply":"event","event":{"type":"put","key":"a","value":"","create_revision":5,"mod_revision":5}}
//! ```

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{Condition, KeyValue, Revision, StoreError, WatchEvent};

/// Largest frame either side accepts. Values are small records; a bigger length prefix means
/// a peer that does not speak this protocol (or a corrupted stream), and must not make us
/// allocate gigabytes.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Request id chosen by the client; unique per client for the life of the client (watch ids
/// survive reconnects, so they must not be reused on a new connection).
pub type RequestId = u64;

/// Prepends the length prefix to an encoded message.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Checks a received length prefix before the body is read.
pub fn check_len(prefix: [u8; 4]) -> Result<usize, String> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(format!(
            "frame of {len} bytes exceeds the {MAX_FRAME}-byte limit (not a seam store peer?)"
        ));
    }
    Ok(len)
}

/// Serializes `msg` into a complete frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Our message types contain only strings, integers and enums: serialization cannot fail.
    frame(&serde_json::to_vec(msg).expect("wire messages always serialize"))
}

/// Values travel as standard base64 strings: JSON has no byte strings, and an array of
/// numbers would be four times larger.
mod b64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("value is not base64: {e}")))
    }
}

/// `Condition` on the wire: `"always"`, `"absent"` or `{"revision": N}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireCondition {
    Always,
    Absent,
    Revision(Revision),
}

impl From<Condition> for WireCondition {
    fn from(c: Condition) -> Self {
        match c {
            Condition::Always => WireCondition::Always,
            Condition::Absent => WireCondition::Absent,
            Condition::Revision(r) => WireCondition::Revision(r),
        }
    }
}

impl From<WireCondition> for Condition {
    fn from(c: WireCondition) -> Self {
        match c {
            WireCondition::Always => Condition::Always,
            WireCondition::Absent => Condition::Absent,
            WireCondition::Revision(r) => Condition::Revision(r),
        }
    }
}

/// `KeyValue` on the wire (value in base64).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireKv {
    pub key: String,
    #[serde(with = "b64")]
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

impl From<KeyValue> for WireKv {
    fn from(kv: KeyValue) -> Self {
        WireKv {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        }
    }
}

impl From<WireKv> for KeyValue {
    fn from(kv: WireKv) -> Self {
        KeyValue {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        }
    }
}

/// `WatchEvent` on the wire, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireEvent {
    Put(WireKv),
    Delete { key: String, revision: Revision },
}

impl From<WatchEvent> for WireEvent {
    fn from(e: WatchEvent) -> Self {
        match e {
            WatchEvent::Put(kv) => WireEvent::Put(kv.into()),
            WatchEvent::Delete { key, revision } => WireEvent::Delete { key, revision },
        }
    }
}

impl From<WireEvent> for WatchEvent {
    fn from(e: WireEvent) -> Self {
        match e {
            WireEvent::Put(kv) => WatchEvent::Put(kv.into()),
            WireEvent::Delete { key, revision } => WatchEvent::Delete { key, revision },
        }
    }
}

/// `StoreError` on the wire, one variant per variant, so a client sees exactly the error the
/// server's backend returned (callers retry on Conflict and re-list on Compacted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireError {
    Conflict {
        key: String,
        current: Option<Revision>,
    },
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    InvalidSpec {
        spec: String,
        reason: String,
    },
    Backend {
        backend: String,
        message: String,
    },
}

impl From<StoreError> for WireError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { key, current } => WireError::Conflict { key, current },
            StoreError::Compacted {
                requested,
                compacted,
            } => WireError::Compacted {
                requested,
                compacted,
            },
            StoreError::InvalidSpec { spec, reason } => WireError::InvalidSpec { spec, reason },
            StoreError::Backend { backend, message } => WireError::Backend {
                backend: backend.to_string(),
                message,
            },
        }
    }
}

impl From<WireError> for StoreError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Conflict { key, current } => StoreError::Conflict { key, current },
            WireError::Compacted {
                requested,
                compacted,
            } => StoreError::Compacted {
                requested,
                compacted,
            },
            WireError::InvalidSpec { spec, reason } => StoreError::InvalidSpec { spec, reason },
            WireError::Backend { backend, message } => {
                // `StoreError::Backend` names its backend with a static string: keep the known
                // names, and fold an unknown one into the message rather than lose it.
                match backend.as_str() {
                    "embedded" => StoreError::Backend {
                        backend: "embedded",
                        message,
                    },
                    "etcd" => StoreError::Backend {
                        backend: "etcd",
                        message,
                    },
                    REMOTE => StoreError::Backend {
                        backend: REMOTE,
                        message,
                    },
                    other => StoreError::Backend {
                        backend: REMOTE,
                        message: format!("{other} backend: {message}"),
                    },
                }
            }
        }
    }
}

/// The backend name of errors the unix-socket client and server produce themselves.
pub const REMOTE: &str = "remote";

/// A client request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    #[serde(flatten)]
    pub op: Op,
}

/// The operations: one per `Store` method, plus watch cancellation and a server description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Get {
        key: String,
    },
    Put {
        key: String,
        #[serde(with = "b64")]
        value: Vec<u8>,
        condition: WireCondition,
    },
    Delete {
        key: String,
        condition: WireCondition,
    },
    List {
        prefix: String,
    },
    /// Starts a watch whose events carry this request's id. `from == 0`: from the next write;
    /// the server answers `watch_started` with the concrete start revision it chose, so a
    /// client that reconnects can resume from a real revision.
    Watch {
        prefix: String,
        from: Revision,
    },
    /// Stops the watch started by request `watch` (the consumer went away).
    CancelWatch {
        watch: RequestId,
    },
    Compact {
        revision: Revision,
    },
    Revision,
    /// What the server serves (for `seam datastore status`) and its current revision.
    Info,
}

/// A server message: the answer to request `id`, or an event of watch `id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub id: RequestId,
    #[serde(flatten)]
    pub reply: Reply,
}

/// The kinds of server messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Answer to `get`.
    Value { kv: Option<WireKv> },
    /// Answer to `put` and `revision`.
    Revision { revision: Revision },
    /// Answer to `delete` (None: the key was absent).
    Deleted { revision: Option<Revision> },
    /// Answer to `list`.
    List {
        kvs: Vec<WireKv>,
        revision: Revision,
    },
    /// Answer to `compact` and `cancel_watch`.
    Done,
    /// Answer to `info`.
    Info { serving: String, revision: Revision },
    /// The watch is registered; events with revision >= `from` follow.
    WatchStarted { from: Revision },
    /// One change seen by the watch.
    Event { event: WireEvent },
    /// The watch ended because the server's store shut down (no error).
    WatchClosed,
    /// The request failed; for a watch this ends it.
    Error { error: WireError },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_request(r: Request) -> String {
        let f = encode(&r);
        let len = check_len(f[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, f.len() - 4);
        let back: Request = serde_json::from_slice(&f[4..]).unwrap();
        assert_eq!(back, r);
        String::from_utf8(f[4..].to_vec()).unwrap()
    }

    #[test]
    fn requests_are_readable_json() {
        let json = roundtrip_request(Request {
            id: 7,
            op: Op::Put {
                key: "a".into(),
                value: b"val".to_vec(),
                condition: WireCondition::Revision(3),
            },
        });
        assert_eq!(
            json,
            r#"{"id":7,"op":"put","key":"a","value":"dmFs","condition":{"revision":3}}"#
        );
        let json = roundtrip_request(Request {
            id: 1,
            op: Op::Revision,
        });
        assert_eq!(json, r#"{"id":1,"op":"revision"}"#);
        roundtrip_request(Request {
            id: 2,
            op: Op::Delete {
                key: "k".into(),
                condition: WireCondition::Absent,
            },
        });
        roundtrip_request(Request {
            id: 3,
            op: Op::Watch {
                prefix: "p/".into(),
                from: 0,
            },
        });
    }

    #[test]
    fn responses_roundtrip() {
        for reply in [
            Reply::Value { kv: None },
            Reply::Value {
                kv: Some(WireKv {
                    key: "k".into(),
                    value: vec![0, 255, 7],
                    create_revision: 2,
                    mod_revision: 9,
                }),
            },
            Reply::Deleted { revision: Some(4) },
            Reply::Done,
            Reply::WatchClosed,
            Reply::Event {
                event: WireEvent::Delete {
                    key: "k".into(),
                    revision: 11,
                },
            },
            Reply::Error {
                error: WireError::Compacted {
                    requested: 1,
                    compacted: 5,
                },
            },
        ] {
            let r = Response { id: 42, reply };
            let back: Response = serde_json::from_slice(&encode(&r)[4..]).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn errors_map_one_to_one() {
        let cases = [
            StoreError::Conflict {
                key: "k".into(),
                current: Some(3),
            },
            StoreError::Conflict {
                key: "k".into(),
                current: None,
            },
            StoreError::Compacted {
                requested: 2,
                compacted: 8,
            },
            StoreError::InvalidSpec {
                spec: "x".into(),
                reason: "why".into(),
            },
            StoreError::Backend {
                backend: "embedded",
                message: "disk full".into(),
            },
            StoreError::Backend {
                backend: "etcd",
                message: "no leader".into(),
            },
        ];
        for e in cases {
            let text = e.to_string();
            let wire: WireError = e.into();
            let json = serde_json::to_string(&wire).unwrap();
            let back: StoreError = serde_json::from_str::<WireError>(&json).unwrap().into();
            assert_eq!(back.to_string(), text);
        }
        let unknown: StoreError = WireError::Backend {
            backend: "martian".into(),
            message: "boom".into(),
        }
        .into();
        assert!(
            matches!(&unknown, StoreError::Backend { backend: "remote", message } if message == "martian backend: boom"),
            "{unknown:?}"
        );
    }

    #[test]
    fn bad_input_is_rejected_clearly() {
        assert!(check_len((MAX_FRAME as u32 + 1).to_be_bytes())
            .unwrap_err()
            .contains("exceeds"));
        let e = serde_json::from_str::<Request>(
            r#"{"id":1,"op":"put","key":"a","value":"%%%","condition":"always"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not base64"), "{e}");
        assert!(serde_json::from_str::<Request>(r#"{"id":1,"op":"frobnicate"}"#).is_err());
    }
}
