//! Parsing of the one `--datastore` option every seam command takes.

use std::path::PathBuf;

use crate::StoreError;

/// A parsed `--datastore` value. Kept separate from opening so that commands can validate the
/// option (and print a clear error) before doing any I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatastoreSpec {
    /// `file:PATH`: the embedded redb file.
    File(PathBuf),
    /// `etcd://HOST:PORT[,HOST:PORT...]`: etcd v3 cluster members, as `host:port` strings
    /// (IPv6 hosts keep their brackets).
    Etcd(Vec<String>),
    /// `unix:PATH`: the socket of a store server (`seam datastore serve`) that owns the real
    /// backend, so that many processes share one embedded file.
    Unix(PathBuf),
}

impl DatastoreSpec {
    /// Parses `file:PATH`, `etcd://HOST:PORT[,HOST:PORT...]` or `unix:PATH`.
    pub fn parse(spec: &str) -> Result<DatastoreSpec, StoreError> {
        let invalid = |reason: String| StoreError::InvalidSpec {
            spec: spec.to_string(),
            reason,
        };
        let trimmed = spec.trim();
        if let Some(path) = trimmed.strip_prefix("file:") {
            if path.is_empty() {
                return Err(invalid(
                    "empty path after `file:` (expected file:PATH)".into(),
                ));
            }
            return Ok(DatastoreSpec::File(PathBuf::from(path)));
        }
        if let Some(path) = trimmed.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(invalid(
                    "empty path after `unix:` (expected unix:PATH of a store server socket)"
                        .into(),
                ));
            }
            return Ok(DatastoreSpec::Unix(PathBuf::from(path)));
        }
        if let Some(list) = trimmed.strip_prefix("etcd://") {
            if list.is_empty() {
                return Err(invalid(
                    "no endpoints after `etcd://` (expected etcd://HOST:PORT[,HOST:PORT...])"
                        .into(),
                ));
            }
            let mut endpoints = Vec::new();
            for (i, member) in list.split(',').enumerate() {
                let member = member.trim();
                check_host_port(member)
                    .map_err(|why| invalid(format!("endpoint {} {member:?}: {why}", i + 1)))?;
                if endpoints.iter().any(|e| e == member) {
                    return Err(invalid(format!("endpoint {member:?} is listed twice")));
                }
                endpoints.push(member.to_string());
            }
            return Ok(DatastoreSpec::Etcd(endpoints));
        }
        let scheme = trimmed.split_once(':').map(|(s, _)| s).unwrap_or(trimmed);
        Err(invalid(format!(
            "unknown datastore scheme {scheme:?} (expected file:PATH, etcd://HOST:PORT[,HOST:PORT...] or unix:PATH)"
        )))
    }
}

/// Validates one `HOST:PORT` (hostname, IPv4, or `[IPv6]`), port 1..=65535.
fn check_host_port(member: &str) -> Result<(), String> {
    if member.is_empty() {
        return Err("empty endpoint (stray comma?)".into());
    }
    let port = if let Some(rest) = member.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("missing `]` after IPv6 address")?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{v6:?} is not an IPv6 address"))?;
        after.strip_prefix(':').ok_or("missing `:PORT` after `]`")?
    } else {
        let (host, port) = member.rsplit_once(':').ok_or("missing `:PORT`")?;
        if host.is_empty() {
            return Err("empty host".into());
        }
        if host.contains(':') {
            return Err("IPv6 addresses must be written in brackets, e.g. [::1]:2379".into());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        {
            return Err(format!("{host:?} is not a valid host name or address"));
        }
        port
    };
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 is not a valid port".into()),
        Ok(_) => Ok(()),
        Err(_) => Err(format!("{port:?} is not a port number (1-65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(spec: &str) -> String {
        match DatastoreSpec::parse(spec) {
            Err(StoreError::InvalidSpec { spec: s, reason }) => {
                assert_eq!(s, spec);
                reason
            }
            other => panic!("{spec:?}: expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn parses_file_and_etcd() {
        assert_eq!(
            DatastoreSpec::parse("file:/var/lib/seam/seam.redb").unwrap(),
            DatastoreSpec::File("/var/lib/seam/seam.redb".into())
        );
        assert_eq!(
            DatastoreSpec::parse("file:rel/x.redb").unwrap(),
            DatastoreSpec::File("rel/x.redb".into())
        );
        assert_eq!(
            DatastoreSpec::parse("etcd://127.0.0.1:2379,etcd-1.lab:2379,[::1]:12379").unwrap(),
            DatastoreSpec::Etcd(vec![
                "127.0.0.1:2379".into(),
                "etcd-1.lab:2379".into(),
                "[::1]:12379".into()
            ])
        );
        assert_eq!(
            DatastoreSpec::parse("unix:/run/seam/store.sock").unwrap(),
            DatastoreSpec::Unix("/run/seam/store.sock".into())
        );
    }

    #[test]
    fn rejects_bad_specs_with_reasons() {
        assert!(reason("").contains("unknown datastore scheme"));
        assert!(reason("redis://x:1").contains("\"redis\""));
        assert!(reason("file:").contains("empty path"));
        assert!(reason("etcd://").contains("no endpoints"));
        assert!(reason("etcd://127.0.0.1").contains("missing `:PORT`"));
        assert!(reason("etcd://127.0.0.1:0").contains("port 0"));
        assert!(reason("etcd://127.0.0.1:99999").contains("not a port number"));
        assert!(reason("etcd://:2379").contains("empty host"));
        assert!(reason("etcd://a:1,,b:2").contains("endpoint 2"));
        assert!(reason("etcd://::1:2379").contains("brackets"));
        assert!(reason("etcd://[zz]:1").contains("not an IPv6"));
        assert!(reason("etcd://a:1,a:1").contains("listed twice"));
        assert!(reason("etcd://a b:1").contains("not a valid host"));
        assert!(reason("unix:").contains("empty path after `unix:`"));
    }

    #[cfg(not(feature = "etcd"))]
    #[tokio::test]
    async fn etcd_without_feature_is_a_clear_error() {
        match crate::open("etcd://127.0.0.1:2379").await {
            Err(StoreError::InvalidSpec { reason, .. }) => {
                assert!(reason.contains("`etcd` cargo feature"), "{reason}")
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("etcd opened without the feature"),
        }
    }
}
