//! RFC 4271 §8 session state machine (sans-IO). Being written.
