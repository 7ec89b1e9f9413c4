//! What the agent (`wormlog run`) and the collector (`wormlog-collector
//! serve`) share with their service manager, written once for both:
//!
//! * [`log`]: their own logs through `tracing` — the journal with
//!   priorities and fields under systemd, one line per event on standard
//!   error elsewhere;
//! * [`notify`]: the sd_notify protocol (`READY=1`, `STATUS=`,
//!   `WATCHDOG=1`, `STOPPING=1`).

#![forbid(unsafe_code)]

pub mod log;
pub mod notify;
