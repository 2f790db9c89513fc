//! RIBs, decision process and route reflection. Being written.
