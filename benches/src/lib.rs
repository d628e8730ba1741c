//! Load and benchmark tools for the sidecar, usable against any TLS server:
//!
//! - [`load`]: the `handshake-load` tool (SPEC §1): new mutual TLS connections per second, errors by reason,
//!   latency percentiles, CPU per handshake.
//! - [`histogram`]: the latency distribution file `handshake-load --histogram-out` writes.
//! - [`plot`]: the SVG percentile plot `latency-plot` draws from such files.
//! - The tools of the peer comparison (`benches/compare/`): [`client`] (what the client tools share),
//!   [`rr`] (`rr-load`), [`bulk`] (`bulk-transfer`), [`hold`] (`hold-conns`), [`backend`] (`bench-backend`),
//!   [`bare_proxy`] (`bare-proxy`) and [`compare`] (`compare-report`, which turns the runs into tables).
//!
//! The criterion benches of the per-connection work are in `benches/`; see README.md.
#![forbid(unsafe_code)]

pub mod backend;
pub mod bare_proxy;
pub mod bulk;
pub mod cli;
pub mod client;
pub mod compare;
pub mod histogram;
pub mod hold;
pub mod load;
pub mod plot;
pub mod rr;
