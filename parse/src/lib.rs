//! Parsers for the agent's system sources. Pure functions over bytes: no
//! I/O, no clocks (the caller passes the time where a format needs it), and
//! every input — however hostile — gives a result, never a panic. The raw
//! bytes are what the spool chains; what is parsed here becomes structured
//! fields beside them.

#![forbid(unsafe_code)]

pub mod audit;
pub mod syslog;
