//! Load and benchmark tools for the sidecar, usable against any TLS server:
//!
//! - [`load`]: the `handshake-load` tool (SPEC §1): new mutual TLS connections per second, errors by reason,
//!   latency percentiles, CPU per handshake.
//! - [`histogram`]: the latency distribution file `handshake-load --histogram-out` writes.
//! - [`plot`]: the SVG percentile plot `latency-plot` draws from such files.
//!
//! The criterion benches of the per-connection work are in `benches/`; see README.md.
#![forbid(unsafe_code)]

pub mod histogram;
pub mod load;
pub mod plot;
