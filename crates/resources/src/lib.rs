//! Resource model. Being written.
