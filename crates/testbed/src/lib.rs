//! Throw-away networks made of Linux network namespaces, and a supervisor for the processes
//! that run in them. Shared by Seam's interop tests (where everything is removed when the test
//! ends) and by `seam lab` (where a network outlives the command that built it and is removed
//! later, possibly by another process, from a state file).
//!
//! Why a crate of its own: the same topology code must serve a test harness that panics on
//! failure and a CLI that reports errors, so everything here returns [`Error`] and the callers
//! decide. Nothing here touches the root namespace's links or routes: the "switch" is a bridge
//! inside its own namespace and hosts are plugged into it with veth pairs.

pub mod cmd;
pub mod net;
pub mod process;
pub mod wait;

pub use cmd::{require_tool, run, run_in, Error, Result};
pub use net::{create_dir, create_namespace, delete_namespace, list_namespaces, namespace_exists, v4, v6, Host, Network};
pub use process::{kill_recorded, process_start_time, tail, Daemon, DaemonSpec, Dead, Recorded};
pub use wait::{wait_until, Poll};
