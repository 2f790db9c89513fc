//! YAML/JSON text to [`Resource`]s and back.
//!
//! YAML is read with serde-saphyr into a `serde_json::Value` first, then each document is
//! deserialized through `serde_path_to_error`, which is what gives every error its field path.
//! The v3 form is also the stored form, so the store is read with the same code.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::*;
use crate::{validate, v1, Kind, Resource, ResourceError};

/// The v3 API version Seam writes and reads (Calico's, so calicoctl v3 files apply as-is).
pub const API_VERSION: &str = "projectcalico.org/v3";

/// A problem inside one document: the field path (relative to the document) and the reason.
pub(crate) type DocError = (String, String);

/// Parse every resource in `text` (one or more YAML documents separated by `---`; a document
/// may also be a YAML list of resources, or a v3 `kind: List` with `items`). `source` names the
/// input in errors (the file name, or `-` / `<stdin>`). Documents are numbered from 1.
/// Returns all resources or the first error: nothing is partially accepted.
pub fn parse_documents(text: &str, source: &str) -> Result<Vec<Resource>, ResourceError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| ResourceError::Yaml { source_name: source.to_string(), message: e.to_string() })?;
    let mut out = Vec::new();
    for (index, doc) in docs.into_iter().enumerate() {
        parse_value(doc, "", &mut out).map_err(|(path, reason)| ResourceError::Invalid {
            source_name: source.to_string(),
            document: index + 1,
            path,
            reason,
        })?;
    }
    Ok(out)
}

/// Parse one document value, which is a resource, a list of resources or a v3 List.
pub(crate) fn parse_value(value: Value, prefix: &str, out: &mut Vec<Resource>) -> Result<(), DocError> {
    match value {
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                parse_value(item, &format!("{prefix}[{i}]"), out)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            let api = match map.get("apiVersion") {
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err((join(prefix, "apiVersion"), "must be a string".into())),
                None => {
                    return Err((
                        join(prefix, "apiVersion"),
                        format!("missing; expected {API_VERSION} or v1"),
                    ))
                }
            };
            let kind = match map.get("kind") {
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err((join(prefix, "kind"), "must be a string".into())),
                None => return Err((join(prefix, "kind"), "missing".into())),
            };
            let value = Value::Object(map);
            match api.as_str() {
                API_VERSION if kind == "List" || kind.ends_with("List") => parse_list(value, prefix, out),
                API_VERSION => {
                    out.push(parse_v3(&kind, value).map_err(|(p, r)| (join(prefix, &p), r))?);
                    Ok(())
                }
                "v1" => {
                    out.push(v1::parse_v1(&kind, value).map_err(|(p, r)| (join(prefix, &p), r))?);
                    Ok(())
                }
                other => Err((
                    join(prefix, "apiVersion"),
                    format!("unsupported apiVersion {other:?}; expected {API_VERSION} or v1"),
                )),
            }
        }
        Value::Null => Ok(()),
        _ => Err((
            prefix.to_string(),
            "expected a resource (a mapping with apiVersion, kind, metadata, spec) or a list of them".into(),
        )),
    }
}

/// `a` + `.b`, or `[0]` suffixes, without a leading dot at the top.
pub(crate) fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

fn parse_list(value: Value, prefix: &str, out: &mut Vec<Resource>) -> Result<(), DocError> {
    /// calicoctl's list output: items plus metadata we do not need.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct List {
        #[allow(dead_code)]
        api_version: String,
        #[allow(dead_code)]
        kind: String,
        #[serde(default)]
        #[allow(dead_code)]
        metadata: Option<Value>,
        #[serde(default)]
        items: Vec<Value>,
    }
    let list: List = from_value(value).map_err(|(p, r)| (join(prefix, &p), r))?;
    for (i, item) in list.items.into_iter().enumerate() {
        parse_value(item, &join(prefix, &format!("items[{i}]")), out)?;
    }
    Ok(())
}

/// Deserialize with the path of the failing field.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, DocError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.into_inner().to_string())
    })
}

/// The v3 envelope around every kind's spec.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct V3Doc<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: V3Meta,
    spec: S,
}

/// v3 object metadata. `resourceVersion`, `uid`, `creationTimestamp` and `annotations` are
/// accepted (so `seam get -o yaml` / calicoctl output can be re-applied) but not stored.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct V3Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    resource_version: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    uid: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    creation_timestamp: Option<Value>,
}

fn parse_v3(kind: &str, mut value: Value) -> Result<Resource, DocError> {
    // A missing spec reads as an empty one, so the error names the missing field inside it.
    if let Value::Object(map) = &mut value {
        map.entry("spec").or_insert_with(|| Value::Object(Default::default()));
    }
    fn doc<S: serde::de::DeserializeOwned>(value: Value) -> Result<(V3Meta, S), DocError> {
        let d: V3Doc<S> = from_value(value)?;
        Ok((d.metadata, d.spec))
    }
    fn cluster_scoped(meta: &V3Meta) -> Result<(), DocError> {
        match &meta.namespace {
            Some(ns) if !ns.is_empty() => {
                Err(("metadata.namespace".into(), "this kind is not namespaced; remove the namespace".into()))
            }
            _ => Ok(()),
        }
    }
    fn namespace(meta: &mut V3Meta) -> String {
        match meta.namespace.take() {
            Some(ns) if !ns.is_empty() => ns,
            _ => "default".to_string(),
        }
    }
    let resource = match kind {
        "IPPool" => {
            let (m, spec) = doc::<IPPoolSpec>(value)?;
            cluster_scoped(&m)?;
            Resource::IPPool(IPPool { name: m.name, labels: m.labels, spec })
        }
        "BGPConfiguration" => {
            let (m, spec) = doc::<BGPConfigurationSpec>(value)?;
            cluster_scoped(&m)?;
            let name = if m.name.is_empty() { "default".to_string() } else { m.name };
            Resource::BGPConfiguration(BGPConfiguration { name, labels: m.labels, spec })
        }
        "BGPPeer" => {
            let (m, spec) = doc::<BGPPeerSpec>(value)?;
            cluster_scoped(&m)?;
            Resource::BGPPeer(BGPPeer { name: m.name, labels: m.labels, spec })
        }
        "Node" => {
            let (m, spec) = doc::<NodeSpec>(value)?;
            cluster_scoped(&m)?;
            Resource::Node(Node { name: m.name, labels: m.labels, spec })
        }
        "WorkloadEndpoint" => {
            let (mut m, spec) = doc::<WorkloadEndpointSpec>(value)?;
            let namespace = namespace(&mut m);
            Resource::WorkloadEndpoint(WorkloadEndpoint { namespace, name: m.name, labels: m.labels, spec })
        }
        "NetworkPolicy" => {
            let (mut m, spec) = doc::<NetworkPolicySpec>(value)?;
            let namespace = namespace(&mut m);
            Resource::NetworkPolicy(NetworkPolicy { namespace, name: m.name, labels: m.labels, spec })
        }
        "GlobalNetworkPolicy" => {
            let (m, spec) = doc::<GlobalNetworkPolicySpec>(value)?;
            cluster_scoped(&m)?;
            Resource::GlobalNetworkPolicy(GlobalNetworkPolicy { name: m.name, labels: m.labels, spec })
        }
        "Profile" => {
            let (m, spec) = doc::<ProfileSpec>(value)?;
            cluster_scoped(&m)?;
            Resource::Profile(Profile { name: m.name, labels: m.labels, spec })
        }
        other => {
            return Err((
                "kind".into(),
                format!(
                    "unknown kind {other:?} for {API_VERSION}; expected one of {}",
                    Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ))
        }
    };
    validate::normalize_and_validate(resource)
}

/// v3 metadata as written out.
#[derive(Serialize)]
struct MetaOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Labels::is_empty")]
    labels: &'a Labels,
}

/// The v3 envelope as written out.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V3Out<'a, S> {
    api_version: &'static str,
    kind: &'static str,
    metadata: MetaOut<'a>,
    spec: &'a S,
}

impl Resource {
    /// The v3 document (`apiVersion`, `kind`, `metadata`, `spec`) as JSON; this is also what is
    /// stored.
    pub fn to_value(&self) -> Value {
        fn out<S: Serialize>(r: &Resource, spec: &S) -> Value {
            let v = V3Out {
                api_version: API_VERSION,
                kind: r.kind().as_str(),
                metadata: MetaOut { name: r.name(), namespace: r.namespace(), labels: r.labels() },
                spec,
            };
            serde_json::to_value(v).expect("resource types always serialize to JSON")
        }
        match self {
            Resource::IPPool(r) => out(self, &r.spec),
            Resource::BGPConfiguration(r) => out(self, &r.spec),
            Resource::BGPPeer(r) => out(self, &r.spec),
            Resource::Node(r) => out(self, &r.spec),
            Resource::WorkloadEndpoint(r) => out(self, &r.spec),
            Resource::NetworkPolicy(r) => out(self, &r.spec),
            Resource::GlobalNetworkPolicy(r) => out(self, &r.spec),
            Resource::Profile(r) => out(self, &r.spec),
        }
    }

    /// Read back a stored (or any single v3) document; `origin` names it in errors.
    pub fn from_value(value: Value, origin: &str) -> Result<Resource, ResourceError> {
        let mut out = Vec::new();
        let corrupt = |reason: String| ResourceError::Corrupt { key: origin.to_string(), reason };
        parse_value(value, "", &mut out).map_err(|(p, r)| corrupt(format!("{p}: {r}")))?;
        match out.len() {
            1 => Ok(out.pop().expect("one element")),
            n => Err(corrupt(format!("expected one resource, found {n}"))),
        }
    }
}

/// What `get` prints: one document for one resource, a v3 `<Kind>List` for several.
fn output_value(resources: &[Resource], list_kind: Option<Kind>) -> Value {
    match (resources, list_kind) {
        ([one], None) => one.to_value(),
        _ => {
            let same = resources.windows(2).all(|w| w[0].kind() == w[1].kind());
            let kind = list_kind.or_else(|| resources.first().map(Resource::kind).filter(|_| same));
            let kind = kind.map(|k| format!("{}List", k.as_str())).unwrap_or_else(|| "List".to_string());
            serde_json::json!({
                "apiVersion": API_VERSION,
                "kind": kind,
                "items": resources.iter().map(Resource::to_value).collect::<Vec<_>>(),
            })
        }
    }
}

/// JSON output. `list_kind`: Some to always print a `<Kind>List` (a `get` without a name).
pub fn to_json(resources: &[Resource], list_kind: Option<Kind>) -> String {
    serde_json::to_string_pretty(&output_value(resources, list_kind)).expect("JSON values always serialize")
}

/// YAML output (v3 style), written with serde-saphyr; it parses back to the same resources.
pub fn to_yaml(resources: &[Resource], list_kind: Option<Kind>) -> Result<String, ResourceError> {
    serde_saphyr::to_string(&output_value(resources, list_kind))
        .map_err(|e| ResourceError::Request(format!("cannot write YAML: {e}")))
}
