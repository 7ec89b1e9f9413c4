//! Bundles (docs/FORMAT.md §12): what a collector hands an auditor or an
//! investigator, checkable offline with the agent's first public key and
//! the collector's key. An *export* holds a range of records whole; a
//! *disclosure* holds one entry, opened with its own key only, and the
//! RFC 9162 inclusion proof that puts it in a signed, countersigned tree.

mod check;
mod export;
pub mod format;

pub use check::{BundleReport, Each, Trust, verify_bundle};
pub use format::{BundleKind, Header, Line, ReceiptLine};
