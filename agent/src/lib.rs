//! The wormlog agent as a library: the daemon (`daemon`), its sources
//! (`sources`: files, the journal, syslog, the audit log), the forwarder
//! (`forward`), the configuration (`config`), metrics, and the commands
//! (`cmd`) that the thin `main.rs` dispatches to — so each can be tested
//! without spawning a process.
//!
//! Exit codes: 0 success; 1 a failure the command exists to report
//! (tampering or loss for `verify`/`cat`, a spool that cannot be written for
//! `append`, an existing key for `keygen`); 2 a usage, configuration or I/O
//! error.

#![forbid(unsafe_code)]

pub mod cmd;
pub mod config;
pub mod daemon;
pub mod forward;
pub mod lines;
pub mod metrics;
pub(crate) use wormlog_text::render;
pub mod sources;
pub mod unix_socket;
