//! `seam bgpd`: gobgpd-compatible flags around the `bgpd` runtime, so unit files and scripts
//! written for gobgpd work unchanged.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

/// Flags follow gobgpd's (`gobgpd --help`); the ones that tune gobgpd internals Seam does not
/// have are accepted so existing command lines keep working, and say so in the log.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (GoBGP's TOML format; environment variables like ${ROUTER_IP} are expanded).
    #[arg(short = 'f', long = "config-file")]
    pub config_file: PathBuf,
    /// Configuration type, as gobgpd's -t. Only `toml` is supported.
    #[arg(short = 't', long = "config-type", default_value = "toml")]
    pub config_type: String,
    /// Log level: trace, debug, info, warn, error (gobgpd's -l). RUST_LOG overrides it.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    pub log_level: String,
    /// Plain log format (Seam always logs plain text; accepted for gobgpd compatibility).
    #[arg(short = 'p', long = "log-plain")]
    pub log_plain: bool,
    /// Where the GoBGP-compatible gRPC API listens. gobgpd's ":PORT" form means every address.
    #[arg(long = "api-hosts", default_value = "127.0.0.1:50051")]
    pub api_hosts: String,
    /// Check the configuration and exit (gobgpd's -d).
    #[arg(short = 'd', long = "dry-run")]
    pub dry_run: bool,
    /// Worker threads (gobgpd's --cpus); default: one per core.
    #[arg(long = "cpus")]
    pub cpus: Option<usize>,
    /// Accepted for gobgpd compatibility; Seam has no pprof endpoint.
    #[arg(long = "pprof-disable")]
    pub pprof_disable: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging(&args.log_level)?;
    let format: bgpd::config::ConfigFormat = args.config_type.parse()?;
    let config = bgpd::config::Config::load(&args.config_file, format)?;
    if args.dry_run {
        println!(
            "{}: OK ({} neighbors, {} peer groups, {} dynamic neighbor ranges)",
            args.config_file.display(),
            config.neighbors.len(),
            config.peer_groups.len(),
            config.dynamic_neighbors.len()
        );
        return Ok(());
    }
    let api_address = parse_api_hosts(&args.api_hosts)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(cpus) = args.cpus {
        runtime.worker_threads(cpus.max(1));
    }
    let runtime = runtime.build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let options = bgpd::RunOptions { api_address };
        let daemon = bgpd::Daemon::start(config, options).await?;
        tracing::info!(listen = ?daemon.listen_addresses, api = ?api_address, "seam bgpd started");
        wait_for_signal().await;
        tracing::info!("stopping: sending Cease to every peer");
        daemon.stop().await;
        anyhow::Ok(())
    })
}

/// gobgpd takes `HOST:PORT` or `:PORT` (all addresses); an empty string disables the API.
pub fn parse_api_hosts(text: &str) -> anyhow::Result<Option<SocketAddr>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.contains(',') {
        anyhow::bail!("--api-hosts {text:?}: seam bgpd serves the API on one address; give one HOST:PORT");
    }
    let full = if let Some(port) = text.strip_prefix(':') { format!("[::]:{port}") } else { text.to_string() };
    full.parse::<SocketAddr>()
        .map(Some)
        .with_context(|| format!("--api-hosts {text:?} is not HOST:PORT or :PORT"))
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => filter,
        _ => match level {
            "trace" | "debug" | "info" | "warn" | "error" => level.to_string(),
            "warning" => "warn".to_string(),
            "fatal" | "panic" => "error".to_string(),
            other => anyhow::bail!("log level {other:?} (-l) is not one of trace, debug, info, warn, error"),
        },
    };
    super::init_logging(tracing_subscriber::EnvFilter::new(filter));
    Ok(())
}

async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::parse_api_hosts;

    #[test]
    fn api_hosts_forms() {
        assert_eq!(parse_api_hosts("127.0.0.1:50051").unwrap(), Some("127.0.0.1:50051".parse().unwrap()));
        assert_eq!(parse_api_hosts(":50051").unwrap(), Some("[::]:50051".parse().unwrap()));
        assert_eq!(parse_api_hosts("").unwrap(), None);
        assert!(parse_api_hosts("a:b").unwrap_err().to_string().contains("--api-hosts"));
        assert!(parse_api_hosts("1.1.1.1:1,2.2.2.2:2").is_err());
    }
}
