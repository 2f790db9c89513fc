//! IPAM. Being written.
