//! The wormlog collector as a library: it receives agents' chains over
//! HTTPS, authorises each request from its headers before reading its body,
//! verifies every batch before storing it, keeps byte-exact write-once
//! copies, countersigns each checkpoint with a receipt, and declares a fork
//! only when the agent's own signature proves it.
//!
//! `main.rs` only parses the command line and maps results to exit codes
//! (0 success; 1 tampering or loss found; 2 usage, configuration or I/O
//! error).

#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod client;
pub mod commands;
pub mod config;
pub mod forks;
pub mod metrics;
pub mod note;
pub mod own_log;
pub mod ratelimit;
pub mod read;
pub mod receipts;
pub mod s3;
pub mod scrub;
pub mod server;
pub mod snapshot;
pub mod store;
pub mod users;
pub mod witness;
