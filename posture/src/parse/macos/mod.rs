//! Parsers for macOS sources (compiled on every OS).
