//! The wormlog spool: the place where a log line becomes evidence.
//!
//! This crate owns the on-disk format (docs/FORMAT.md) and everything that
//! reads or writes it: record encoding ([`record`]), framing ([`frame`]),
//! segment files ([`segment`]), the hash chain and the RFC 9162 Merkle tree
//! ([`hash`], [`merkle`]), the forward-secure host key ([`keys`]), the
//! single writer with group commit and crash recovery ([`writer`]), the
//! write-once file flags ([`worm`]), encryption at rest ([`crypt`]), and verification ([`verify`]; the
//! collector's incremental [`follow`]), both under the segment-structure
//! rules of [`structure`].
//!
//! No async runtime: the writer runs on its own thread and makes batches
//! durable on a second one.

#![forbid(unsafe_code)]

pub mod agent_id;
pub mod bundle;
pub mod chain;
pub mod clock;
pub mod codec;
pub mod crypt;
pub mod error;
pub mod follow;
pub mod frame;
pub mod hash;
pub mod keys;
pub mod ledger;
pub mod merkle;
pub mod position;
pub mod proofs;
pub mod reader;
pub mod record;
pub mod segment;
pub mod structure;
pub mod verify;
pub mod worm;
pub mod writer;

pub use error::SpoolError;
pub use position::Position;
pub use writer::{OpenReport, Spool, SpoolOptions};
