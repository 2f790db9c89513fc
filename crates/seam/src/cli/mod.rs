//! One module per `seam` subcommand.

pub mod bgpd;
