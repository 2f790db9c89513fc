//! The gRPC server: GoBGP's `GobgpApi` service answered from a [`Control`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use bgp::types::{Family, Prefix};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::apipb::gobgp_api_server::{GobgpApi, GobgpApiServer};
use crate::apipb::{self, TableType};
use crate::convert::{self, ConvertError};
use crate::model::{Control, ControlError, RouteInfo, Table};
use crate::ApiError;

/// Serve the API on `addr` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    control: Arc<dyn Control>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Bind { addr, source })?;
    serve_on(listener, control, shutdown).await
}

/// Serve the API on an already bound listener (lets a caller bind port 0 and learn the port
/// before serving, without a window in which another process could take it).
pub async fn serve_on(
    listener: TcpListener,
    control: Arc<dyn Control>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let addr = listener.local_addr().map_err(|source| ApiError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    tonic::transport::Server::builder()
        .add_service(GobgpApiServer::new(Service { control }))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|source| ApiError::Serve { addr, source })
}

/// The tonic service: a thin translation layer, all state lives behind `control`.
struct Service {
    control: Arc<dyn Control>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn stream_of<T: Send + 'static>(items: Vec<T>) -> BoxStream<T> {
    Box::pin(tokio_stream::iter(items.into_iter().map(Ok)))
}

fn control_status(e: ControlError) -> Status {
    match e {
        ControlError::NotFound(m) => Status::not_found(m),
        ControlError::InvalidArgument(m) => Status::invalid_argument(m),
        ControlError::Unavailable(m) => Status::unavailable(m),
        ControlError::Internal(m) => Status::internal(m),
    }
}

fn bad_request(e: ConvertError) -> Status {
    Status::invalid_argument(e.0)
}

/// The family of a request, IPv4 unicast when absent (as GoBGP defaults).
fn request_family(family: &Option<apipb::Family>) -> Result<Family, Status> {
    match family {
        None => Ok(Family::IPV4_UNICAST),
        Some(f) => convert::family_from_api(f).map_err(bad_request),
    }
}

/// Map GoBGP's table selector (type + neighbor name) to ours.
fn request_table(table_type: i32, name: &str) -> Result<Table, Status> {
    let neighbor = |what: &str| -> Result<IpAddr, Status> {
        name.parse().map_err(|_| {
            Status::invalid_argument(format!(
                "the {what} table needs a neighbor address in \"name\", got {name:?}"
            ))
        })
    };
    match TableType::try_from(table_type) {
        Ok(TableType::Global) => Ok(Table::Global),
        Ok(TableType::AdjIn) => Ok(Table::AdjIn(neighbor("adj-in")?)),
        Ok(TableType::AdjOut) => Ok(Table::AdjOut(neighbor("adj-out")?)),
        Ok(TableType::Local) => Err(Status::unimplemented(
            "route-server local RIBs (table type LOCAL) are not supported by seam bgpd",
        )),
        Ok(TableType::Vrf) => Err(Status::unimplemented(
            "VRF tables are not supported by seam bgpd",
        )),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown table_type {table_type}"
        ))),
    }
}

/// GoBGP's prefix lookup: EXACT with a CIDR matches that prefix, EXACT with a bare address the
/// longest prefix containing it, LONGER the prefix and everything inside it, SHORTER the
/// prefix and everything containing it.
fn filter_routes(
    routes: Vec<RouteInfo>,
    lookups: &[apipb::TableLookupPrefix],
) -> Result<Vec<RouteInfo>, Status> {
    if lookups.is_empty() {
        return Ok(routes);
    }
    use apipb::table_lookup_prefix::Type;
    let mut keep: Vec<Prefix> = Vec::new();
    for lookup in lookups {
        let text = lookup.prefix.as_str();
        let (target, bare) = match text.parse::<Prefix>() {
            Ok(p) => (p.trunc(), false),
            Err(_) => match text.parse::<IpAddr>() {
                Ok(a) => (Prefix::from(a), true),
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "prefixes: {text:?} is neither a prefix nor an address"
                    )))
                }
            },
        };
        let kind = Type::try_from(lookup.r#type).unwrap_or(Type::Exact);
        match kind {
            Type::Exact if bare => {
                if let Some(p) = routes
                    .iter()
                    .map(|r| r.prefix)
                    .filter(|p| p.contains(&target.addr()))
                    .max_by_key(|p| p.prefix_len())
                {
                    keep.push(p);
                }
            }
            Type::Exact => keep.push(target),
            Type::Longer => keep.extend(
                routes
                    .iter()
                    .map(|r| r.prefix)
                    .filter(|p| target.contains(p)),
            ),
            Type::Shorter => keep.extend(
                routes
                    .iter()
                    .map(|r| r.prefix)
                    .filter(|p| p.contains(&target)),
            ),
        }
    }
    Ok(routes
        .into_iter()
        .filter(|r| keep.contains(&r.prefix))
        .collect())
}

impl Service {
    /// Peer AS by neighbor address, to fill `Path.source_asn`.
    async fn peer_asns(&self) -> HashMap<IpAddr, u32> {
        self.control
            .neighbors()
            .await
            .into_iter()
            .map(|n| (n.address, n.peer_as))
            .collect()
    }
}

#[tonic::async_trait]
impl GobgpApi for Service {
    async fn get_bgp(
        &self,
        _request: Request<apipb::GetBgpRequest>,
    ) -> Result<Response<apipb::GetBgpResponse>, Status> {
        let g = self.control.global().await;
        Ok(Response::new(apipb::GetBgpResponse {
            global: Some(apipb::Global {
                asn: g.asn,
                router_id: g.router_id.to_string(),
                listen_port: g.listen_port.map(i32::from).unwrap_or(-1),
                listen_addresses: g.listen_addresses.iter().map(|a| a.to_string()).collect(),
                ..apipb::Global::default()
            }),
        }))
    }

    type ListPeerStream = BoxStream<apipb::ListPeerResponse>;

    async fn list_peer(
        &self,
        request: Request<apipb::ListPeerRequest>,
    ) -> Result<Response<Self::ListPeerStream>, Status> {
        let req = request.into_inner();
        let wanted: Option<IpAddr> = if req.address.is_empty() {
            None
        } else {
            Some(req.address.parse().map_err(|_| {
                Status::invalid_argument(format!("address {:?} is not an IP address", req.address))
            })?)
        };
        let peers = self
            .control
            .neighbors()
            .await
            .iter()
            .filter(|n| wanted.is_none_or(|w| w == n.address))
            .map(|n| apipb::ListPeerResponse {
                peer: Some(convert::encode_neighbor(n)),
            })
            .collect();
        Ok(Response::new(stream_of(peers)))
    }

    async fn add_path(
        &self,
        request: Request<apipb::AddPathRequest>,
    ) -> Result<Response<apipb::AddPathResponse>, Status> {
        let req = request.into_inner();
        if req.table_type != TableType::Global as i32 {
            return Err(Status::unimplemented(
                "AddPath: only the global table is supported by seam bgpd",
            ));
        }
        let path = req
            .path
            .ok_or_else(|| Status::invalid_argument("AddPath: path is missing"))?;
        let (prefix, attrs) = convert::decode_path(&path)
            .map_err(|e| Status::invalid_argument(format!("AddPath: {e}")))?;
        if path.is_withdraw {
            self.control
                .delete_path(prefix)
                .await
                .map_err(control_status)?;
        } else {
            self.control
                .add_path(prefix, attrs)
                .await
                .map_err(control_status)?;
        }
        // Paths are keyed by prefix; Seam hands out no UUIDs.
        Ok(Response::new(apipb::AddPathResponse { uuid: Vec::new() }))
    }

    async fn delete_path(
        &self,
        request: Request<apipb::DeletePathRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        if req.table_type != TableType::Global as i32 {
            return Err(Status::unimplemented(
                "DeletePath: only the global table is supported by seam bgpd",
            ));
        }
        match (&req.path, req.uuid.is_empty()) {
            (Some(path), _) => {
                let (prefix, _) = convert::decode_path(path)
                    .map_err(|e| Status::invalid_argument(format!("DeletePath: {e}")))?;
                self.control
                    .delete_path(prefix)
                    .await
                    .map_err(control_status)?;
            }
            (None, false) => return Err(Status::invalid_argument(
                "DeletePath: seam bgpd does not issue path UUIDs; delete by path (prefix) instead",
            )),
            (None, true) => {
                // `gobgp global rib del all`: withdraw every locally originated path of the family.
                let family = request_family(&req.family)?;
                let routes = self
                    .control
                    .routes(Table::Global, family)
                    .await
                    .map_err(control_status)?;
                let mut local: Vec<Prefix> = routes
                    .iter()
                    .filter(|r| r.source.is_none())
                    .map(|r| r.prefix)
                    .collect();
                local.dedup();
                for prefix in local {
                    self.control
                        .delete_path(prefix)
                        .await
                        .map_err(control_status)?;
                }
            }
        }
        Ok(Response::new(()))
    }

    type ListPathStream = BoxStream<apipb::ListPathResponse>;

    async fn list_path(
        &self,
        request: Request<apipb::ListPathRequest>,
    ) -> Result<Response<Self::ListPathStream>, Status> {
        let req = request.into_inner();
        let table = request_table(req.table_type, &req.name)?;
        let family = request_family(&req.family)?;
        if req.enable_only_binary {
            return Err(Status::unimplemented(
                "ListPath: enable_only_binary is not supported by seam bgpd",
            ));
        }
        let routes = self
            .control
            .routes(table, family)
            .await
            .map_err(control_status)?;
        let routes = filter_routes(routes, &req.prefixes)?;
        let local_asn = self.control.global().await.asn;
        let asns = self.peer_asns().await;
        // One Destination per prefix, in prefix order (GoBGP's SortType PREFIX; harmless for NONE).
        let mut by_prefix: BTreeMap<Prefix, Vec<apipb::Path>> = BTreeMap::new();
        for route in &routes {
            let source_asn = route
                .source
                .and_then(|s| asns.get(&s).copied())
                .unwrap_or(0);
            by_prefix
                .entry(route.prefix)
                .or_default()
                .push(convert::encode_route(route, source_asn, local_asn));
        }
        let destinations = by_prefix
            .into_iter()
            .map(|(prefix, mut paths)| {
                // Best path first, as gobgpd lists them.
                paths.sort_by_key(|p| !p.best);
                apipb::ListPathResponse {
                    destination: Some(apipb::Destination {
                        prefix: prefix.to_string(),
                        paths,
                    }),
                }
            })
            .collect();
        Ok(Response::new(stream_of(destinations)))
    }

    async fn get_table(
        &self,
        request: Request<apipb::GetTableRequest>,
    ) -> Result<Response<apipb::GetTableResponse>, Status> {
        let req = request.into_inner();
        let table = request_table(req.table_type, &req.name)?;
        let family = request_family(&req.family)?;
        let routes = self
            .control
            .routes(table, family)
            .await
            .map_err(control_status)?;
        let mut prefixes: Vec<Prefix> = routes.iter().map(|r| r.prefix).collect();
        prefixes.sort();
        prefixes.dedup();
        let num_path = routes.len() as u64;
        Ok(Response::new(apipb::GetTableResponse {
            num_destination: prefixes.len() as u64,
            num_path,
            // Seam keeps no rejected paths in Adj-RIB-In listings: all listed are accepted.
            num_accepted: if matches!(table, Table::AdjIn(_)) {
                num_path
            } else {
                0
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn route(p: &str) -> RouteInfo {
        RouteInfo {
            prefix: p.parse().unwrap(),
            attrs: Arc::default(),
            since: SystemTime::UNIX_EPOCH,
            best: true,
            source: None,
            source_id: None,
        }
    }

    fn lookup(prefix: &str, kind: apipb::table_lookup_prefix::Type) -> apipb::TableLookupPrefix {
        apipb::TableLookupPrefix {
            prefix: prefix.into(),
            r#type: kind as i32,
        }
    }

    fn prefixes(routes: &[RouteInfo]) -> Vec<String> {
        routes.iter().map(|r| r.prefix.to_string()).collect()
    }

    #[test]
    fn prefix_lookups_follow_gobgp_semantics() {
        use apipb::table_lookup_prefix::Type;
        let all = vec![
            route("10.0.0.0/8"),
            route("10.1.0.0/16"),
            route("10.1.2.0/24"),
            route("192.168.0.0/16"),
        ];
        let f = |l| prefixes(&filter_routes(all.clone(), &[l]).unwrap());
        assert_eq!(f(lookup("10.1.0.0/16", Type::Exact)), ["10.1.0.0/16"]);
        assert_eq!(f(lookup("10.1.2.3", Type::Exact)), ["10.1.2.0/24"]);
        assert_eq!(
            f(lookup("10.1.0.0/16", Type::Longer)),
            ["10.1.0.0/16", "10.1.2.0/24"]
        );
        assert_eq!(
            f(lookup("10.1.0.0/16", Type::Shorter)),
            ["10.0.0.0/8", "10.1.0.0/16"]
        );
        assert!(f(lookup("172.16.0.0/12", Type::Exact)).is_empty());
        assert!(filter_routes(all, &[lookup("nonsense", Type::Exact)]).is_err());
    }

    #[test]
    fn table_selection_names_the_bad_neighbor() {
        assert_eq!(
            request_table(TableType::Global as i32, "").unwrap(),
            Table::Global
        );
        assert_eq!(
            request_table(TableType::AdjIn as i32, "192.0.2.1").unwrap(),
            Table::AdjIn("192.0.2.1".parse().unwrap())
        );
        let e = request_table(TableType::AdjOut as i32, "peer1").unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("\"peer1\""), "{}", e.message());
        assert_eq!(
            request_table(TableType::Vrf as i32, "").unwrap_err().code(),
            tonic::Code::Unimplemented
        );
    }
}
