//! The Linux audit log: records grouped into events (to be written).
