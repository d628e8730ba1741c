//! The sidecar: upgrades local plaintext to mutual TLS (outbound), terminates mutual TLS from peers
//! (inbound), authorizes callers by SPIFFE ID, and exports what an operator needs. See ARCHITECTURE.md.
#![forbid(unsafe_code)]

pub mod accept;
pub mod addr;
pub mod admin;
pub mod app;
pub mod authz;
pub mod config;
pub mod conns;
pub mod duplex;
pub mod identity;
pub mod inbound;
pub mod log_limit;
pub mod metrics;
pub mod outbound;
pub mod read_ahead;
pub mod readiness;
pub mod reload;
pub mod state;
pub mod status;
pub mod tls;
pub mod transport;
pub mod watch;
