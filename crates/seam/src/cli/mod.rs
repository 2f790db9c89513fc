//! One module per `seam` subcommand.

pub mod bgp;
pub mod bgpd;
pub mod datastore;
pub mod resources;
pub mod ipam;
pub mod lab;
pub mod agent;
pub mod node;
pub mod bench;

/// Log to stderr with `filter`, in colour only when stderr is a terminal (log files of the
/// agent and daemons stay plain text). A second call is ignored.
pub fn init_logging(filter: tracing_subscriber::EnvFilter) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The datastore option every store-backed command takes, the same way calicoctl users set
/// theirs: a flag, or the `SEAM_DATASTORE` environment variable.
#[derive(clap::Args, Clone, Debug)]
pub struct DatastoreArgs {
    /// Where state lives: `file:PATH` (embedded, one machine), `etcd://HOST:PORT[,HOST:PORT...]`, or
    /// `unix:PATH` (a `seam datastore serve` process sharing one embedded file).
    #[arg(long = "datastore", env = store::DATASTORE_ENV, default_value = store::DEFAULT_DATASTORE)]
    pub datastore: String,
}
