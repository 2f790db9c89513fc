//! `seam-cni`: Seam's CNI plugin, kept thin on purpose. It validates the runtime's
//! environment and network configuration ([`spec`]), answers VERSION itself, and forwards
//! every other command as one message to the node agent's Unix socket ([`protocol`]); the
//! agent does IPAM, plumbing and bookkeeping. [`plugin::run`] is the whole binary minus
//! process I/O, so it is unit-testable.

pub mod plugin;
pub mod protocol;
pub mod spec;

pub use spec::{CniError, CniResult};
