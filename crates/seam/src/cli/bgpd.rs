//! `seam bgpd`: gobgpd-compatible flags around the `bgpd` runtime.

/// Flags follow gobgpd's so existing unit files work unchanged.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (GoBGP TOML format).
    #[arg(short = 'f', long = "config-file")]
    pub config_file: std::path::PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("seam bgpd is being written")
}
