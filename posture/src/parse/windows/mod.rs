//! Parsers for Windows sources (compiled on every OS).
