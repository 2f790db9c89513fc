//! GoBGP-format TOML configuration. Being written.
