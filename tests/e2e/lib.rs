//! The end-to-end suite lives in `gate.rs` (a test target); this empty
//! library only gives the package a home.
