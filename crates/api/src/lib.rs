//! GoBGP-compatible gRPC API. Being written.
