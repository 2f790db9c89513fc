//! Sans-IO BGP for Seam.
//!
//! Everything in this crate is pure logic: callers own sockets, buffers and the clock.
//! - [`types`]: address families, prefixes and identifiers shared by every layer.
//! - [`wire`]: the message model and the codec (RFC 4271, 4760, 6793, 2918, 4724, 7911, 7606).
//! - [`fsm`]: the RFC 4271 §8 session state machine, driven by events and `Instant`s.
//! - [`rib`]: Adj-RIB-In, Loc-RIB, Adj-RIB-Out, the decision process and route reflection.

pub mod fsm;
pub mod rib;
pub mod types;
pub mod wire;
