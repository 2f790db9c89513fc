//! The management API of `seam bgpd`: a compatible subset of GoBGP 3.x's gRPC service
//! `apipb.GobgpApi`, so that GoBGP's `gobgp` CLI and client libraries work against Seam.
//!
//! - [`Control`]: what the daemon implements; plain types from [`model`].
//! - [`serve`] / [`serve_on`]: the gRPC server over a `Control`.
//! - [`Client`]: the same API from the caller's side (used by `seam bgp`).
//! - [`convert`]: NLRI, path attributes and capabilities to and from `google.protobuf.Any`.

pub mod client;
pub mod convert;
pub mod model;
pub mod server;

/// Types generated from `proto/` (package `apipb`, GoBGP's names and field numbers).
#[allow(clippy::all, missing_docs)]
pub mod apipb {
    tonic::include_proto!("apipb");
}

use std::net::SocketAddr;

pub use client::Client;
pub use model::{
    Control, ControlError, GlobalInfo, MessageCount, MessageCounters, NeighborInfo, RouteInfo,
    SessionState, Table,
};
pub use server::{serve, serve_on};

/// Failures of the API server or client, each naming the address involved.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server could not bind its socket.
    #[error("cannot listen for the management API on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The server stopped with a transport error.
    #[error("the management API server on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        source: tonic::transport::Error,
    },
    /// The client could not connect.
    #[error("cannot reach the seam bgpd API at {target}: {detail}")]
    Connect { target: String, detail: String },
    /// The server answered an RPC with an error status.
    #[error("the seam bgpd API at {target} refused {rpc}: {}: {}", status.code(), status.message())]
    Rpc {
        target: String,
        rpc: &'static str,
        status: tonic::Status,
    },
    /// The server's answer could not be understood.
    #[error("the seam bgpd API at {target} sent a {rpc} answer Seam cannot read: {detail}")]
    BadAnswer {
        target: String,
        rpc: &'static str,
        detail: String,
    },
}
