//! One module per `seam` subcommand.

pub mod bgp;
pub mod bgpd;
pub mod datastore;
pub mod resources;
pub mod ipam;
pub mod lab;
pub mod agent;
pub mod node;

/// The datastore option every store-backed command takes, the same way calicoctl users set
/// theirs: a flag, or the `SEAM_DATASTORE` environment variable.
#[derive(clap::Args, Clone, Debug)]
pub struct DatastoreArgs {
    /// Where state lives: `file:PATH` (embedded, one machine), `etcd://HOST:PORT[,HOST:PORT...]`, or
    /// `unix:PATH` (a `seam datastore serve` process sharing one embedded file).
    #[arg(long = "datastore", env = store::DATASTORE_ENV, default_value = store::DEFAULT_DATASTORE)]
    pub datastore: String,
}
