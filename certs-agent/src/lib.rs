//! certs-agent library.
#![forbid(unsafe_code)]
