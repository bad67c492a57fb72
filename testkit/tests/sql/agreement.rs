//! Rust and SQL agree on periods and amounts.
