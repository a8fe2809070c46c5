//! Parsers for Linux sources (compiled on every OS).
