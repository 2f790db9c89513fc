//! `seam datastore`: run a store server that owns the datastore and shares it over a Unix
//! socket (the embedded redb file can be opened by one process only; the lab's agents and the
//! CLI then all use `--datastore unix:PATH`), and show which datastore a command would use.

use std::path::PathBuf;

use anyhow::{bail, Context};
use store::DatastoreSpec;

/// `seam datastore <command>`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// The datastore subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Own the datastore and serve it on a Unix socket until SIGTERM/SIGINT. Other processes
    /// (in any network namespace that sees the socket file) use `--datastore unix:PATH`.
    Serve {
        /// The datastore to serve: `file:PATH` or `etcd://...`.
        #[command(flatten)]
        store: super::DatastoreArgs,
        /// Where to listen: `unix:PATH` (created with mode 0600, removed on exit).
        #[arg(long)]
        listen: String,
    },
    /// Print the backend kind and the current revision.
    Status {
        #[command(flatten)]
        store: super::DatastoreArgs,
    },
}

/// Runs `seam datastore ...`.
pub fn run(args: Args) -> anyhow::Result<()> {
    super::init_logging(
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match args.command {
        Command::Serve { store, listen } => runtime.block_on(serve(&store.datastore, &listen)),
        Command::Status { store } => runtime.block_on(status(&store.datastore)),
    }
}

/// `--listen unix:PATH` to the socket path.
fn parse_listen(listen: &str) -> anyhow::Result<PathBuf> {
    match listen.trim().strip_prefix("unix:") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        Some(_) => bail!("--listen {listen:?}: empty path after `unix:` (expected unix:PATH)"),
        None => bail!("--listen {listen:?}: the store server listens on a Unix socket only (expected unix:PATH)"),
    }
}

/// What to print for a spec in messages: the spec as parsed, without surrounding blanks.
fn describe(spec: &DatastoreSpec) -> String {
    match spec {
        DatastoreSpec::File(path) => format!("file:{}", path.display()),
        DatastoreSpec::Etcd(endpoints) => format!("etcd://{}", endpoints.join(",")),
        DatastoreSpec::Unix(path) => format!("unix:{}", path.display()),
    }
}

async fn serve(datastore: &str, listen: &str) -> anyhow::Result<()> {
    let socket = parse_listen(listen)?;
    let spec = DatastoreSpec::parse(datastore)?;
    if let DatastoreSpec::Unix(_) = spec {
        bail!(
            "--datastore {datastore}: a store server serves a real backend (file:PATH or etcd://...), not another store server"
        );
    }
    let serving = describe(&spec);
    // Signal handlers first, so a SIGTERM right after "serving" is never missed.
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let store = store::open(datastore)
        .await
        .with_context(|| format!("cannot open datastore {serving}"))?;
    let server = store::StoreServer::bind(store, &socket, serving.clone())
        .await
        .with_context(|| format!("cannot serve on unix:{}", socket.display()))?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "serving {serving} on unix:{}", socket.display())?;
        out.flush()?;
    }
    server
        .run(async {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
        .await?;
    Ok(())
}

async fn status(datastore: &str) -> anyhow::Result<()> {
    let spec = DatastoreSpec::parse(datastore)?;
    let shown = describe(&spec);
    let (backend, revision) = match &spec {
        DatastoreSpec::Unix(path) => {
            let remote = store::RemoteStore::connect(path).await?;
            let (serving, revision) = remote
                .info()
                .await
                .with_context(|| format!("cannot query store server {shown}"))?;
            (format!("store server {shown} (serving {serving})"), revision)
        }
        DatastoreSpec::File(_) | DatastoreSpec::Etcd(_) => {
            let kind = if matches!(spec, DatastoreSpec::File(_)) { "embedded" } else { "etcd" };
            let store = store::open(datastore)
                .await
                .with_context(|| format!("cannot open datastore {shown}"))?;
            let revision = store
                .revision()
                .await
                .with_context(|| format!("cannot read the revision of {shown}"))?;
            (format!("{kind} {shown}"), revision)
        }
    };
    println!("backend:  {backend}");
    println!("revision: {revision}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_must_be_a_unix_socket() {
        assert_eq!(parse_listen("unix:/run/seam/store.sock").unwrap(), PathBuf::from("/run/seam/store.sock"));
        let e = parse_listen("tcp://127.0.0.1:1").unwrap_err().to_string();
        assert!(e.contains("Unix socket only"), "{e}");
        let e = parse_listen("unix:").unwrap_err().to_string();
        assert!(e.contains("empty path"), "{e}");
    }

    #[tokio::test]
    async fn serve_refuses_to_chain_store_servers() {
        let e = serve("unix:/tmp/x.sock", "unix:/tmp/y.sock").await.unwrap_err().to_string();
        assert!(e.contains("not another store server"), "{e}");
    }
}
