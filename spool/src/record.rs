//! Records: the common header and the typed payloads (docs/FORMAT.md §3.3, §6).

use crate::codec::{
    CodecError, Reader, put_bytes8, put_bytes16, put_bytes32, put_i64, put_u8, put_u16, put_u32,
    put_u64,
};
use crate::hash::Hash;
use crate::position::{Position, PositionRef};

pub const RECORD_VERSION: u8 = 1;
/// Bytes of the common record header.
pub const RECORD_HEADER_LEN: usize = 52;
/// Offset of `prev` (the chain head before the record) in a record.
pub const PREV_OFFSET: usize = 20;
/// Bytes of a signature at the end of a signing record.
pub const SIGNATURE_LEN: usize = 64;
/// Record flag: an entry's fields and body are sealed (§6.2.1).
pub const RECORD_FLAG_SEALED: u16 = 1;
/// Offset of the record flags in a record.
pub const FLAGS_OFFSET: usize = 2;
/// Bytes of the authentication tag at the end of a sealed entry.
pub const SEAL_TAG_LEN: usize = 16;
/// How the wrapped data key of a `data_key` record begins (an age v1 file).
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// The kind of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Genesis = 1,
    Entry = 2,
    Checkpoint = 3,
    EpochKey = 4,
    Start = 5,
    Stop = 6,
    Config = 7,
    Heartbeat = 8,
    ClockStep = 9,
    Gap = 10,
    Recovery = 11,
    Receipt = 12,
    Prune = 13,
    Seal = 14,
    Alert = 15,
    DataKey = 16,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        use Kind::*;
        Some(match v {
            1 => Genesis,
            2 => Entry,
            3 => Checkpoint,
            4 => EpochKey,
            5 => Start,
            6 => Stop,
            7 => Config,
            8 => Heartbeat,
            9 => ClockStep,
            10 => Gap,
            11 => Recovery,
            12 => Receipt,
            13 => Prune,
            14 => Seal,
            15 => Alert,
            16 => DataKey,
            _ => return None,
        })
    }

    /// The name used by `cat --json` and the reports.
    pub fn name(self) -> &'static str {
        use Kind::*;
        match self {
            Genesis => "genesis",
            Entry => "entry",
            Checkpoint => "checkpoint",
            EpochKey => "epoch_key",
            Start => "start",
            Stop => "stop",
            Config => "config",
            Heartbeat => "heartbeat",
            ClockStep => "clock_step",
            Gap => "gap",
            Recovery => "recovery",
            Receipt => "receipt",
            Prune => "prune",
            Seal => "seal",
            Alert => "alert",
            DataKey => "data_key",
        }
    }
}

/// Entry flag: the line ended without a newline.
pub const ENTRY_NO_NEWLINE: u8 = 1;
/// Entry flag: a longer line continues in the next entry of this source.
pub const ENTRY_MORE_PARTS: u8 = 2;
/// Entry flag: this entry continues the previous one of this source.
pub const ENTRY_CONTINUATION: u8 = 4;
const ENTRY_FLAGS_KNOWN: u8 = 7;

/// A log line, borrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub source: &'a str,
    pub position: PositionRef<'a>,
    pub flags: u8,
    pub fields: Vec<(&'a str, &'a [u8])>,
    pub body: &'a [u8],
    /// A sealed entry (§6.2.1): the ciphertext and tag of its fields and
    /// body, which are then empty here (`crate::crypt` opens it).
    pub sealed: Option<&'a [u8]>,
}

/// A signed tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint<'a> {
    pub epoch: u64,
    pub tree_size: u64,
    pub root: Hash,
    pub head: Hash,
    pub boot_id: [u8; 16],
    pub mono_ns: u64,
    pub frontier: Vec<Hash>,
    pub sources: Vec<(&'a str, PositionRef<'a>)>,
    pub signature: [u8; 64],
}

/// Why a `recovery` record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecoveryCause {
    TornTail = 1,
    FsyncFailed = 2,
    Corruption = 3,
}

impl RecoveryCause {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::TornTail),
            2 => Some(Self::FsyncFailed),
            3 => Some(Self::Corruption),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::TornTail => "torn_tail",
            Self::FsyncFailed => "fsync_failed",
            Self::Corruption => "corruption",
        }
    }
}

/// Why a `gap` record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum GapReason {
    Truncated = 1,
    Replaced = 2,
    WatchOverflow = 3,
    KernelDrop = 4,
    Vacuumed = 5,
    AuditLost = 6,
    Unreadable = 7,
    Other = 8,
    /// A stream the source was reading is gone (a file deleted or moved
    /// away while the agent was not running): the gap ends the stream.
    Deleted = 9,
    /// The previous run did not stop cleanly: what a network source had in
    /// socket buffers and in flight then is lost (count unknown).
    UncleanStop = 10,
    /// Read by a source but not written when the agent stopped (the spool
    /// was full or behind): counted.
    NotWrittenAtStop = 11,
}

impl GapReason {
    pub fn from_u16(v: u16) -> Option<Self> {
        use GapReason::*;
        Some(match v {
            1 => Truncated,
            2 => Replaced,
            3 => WatchOverflow,
            4 => KernelDrop,
            5 => Vacuumed,
            6 => AuditLost,
            7 => Unreadable,
            8 => Other,
            9 => Deleted,
            10 => UncleanStop,
            11 => NotWrittenAtStop,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        use GapReason::*;
        match self {
            Truncated => "truncated",
            Replaced => "replaced",
            WatchOverflow => "watch_overflow",
            KernelDrop => "kernel_drop",
            Vacuumed => "vacuumed",
            AuditLost => "audit_lost",
            Unreadable => "unreadable",
            Other => "other",
            Deleted => "deleted",
            UncleanStop => "unclean_stop",
            NotWrittenAtStop => "not_written_at_stop",
        }
    }
}

/// `lost_bytes` / `lost_records` when the amount is not known.
pub const UNKNOWN_COUNT: u64 = u64::MAX;

/// Alert codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum AlertCode {
    AppendOnlyUnavailable = 1,
    FsyncFailed = 2,
    DiskBudget = 3,
    Other = 4,
    /// The collector refused this agent's chain (a fork or an invalid
    /// record): forwarding of the stream stopped.
    ForwardRefused = 5,
    /// A collector received a fork of an agent's chain.
    ForkDetected = 6,
}

impl AlertCode {
    pub fn name_of(code: u16) -> &'static str {
        match code {
            1 => "append_only_unavailable",
            2 => "fsync_failed",
            3 => "disk_budget",
            5 => "forward_refused",
            6 => "fork_detected",
            _ => "other",
        }
    }
}

/// Append-only mode as recorded in `start` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppendOnly {
    Off = 0,
    #[default]
    Try = 1,
    Require = 2,
}

/// A record's payload, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    Genesis {
        agent_id: &'a str,
        first_pubkey: [u8; 32],
    },
    Entry(Entry<'a>),
    Checkpoint(Checkpoint<'a>),
    EpochKey {
        from_epoch: u64,
        to_epoch: u64,
        new_pubkey: [u8; 32],
        tree_size: u64,
        head: Hash,
        signature: [u8; 64],
    },
    Start {
        boot_id: [u8; 16],
        mono_ns: u64,
        pid: u32,
        config_sha256: Hash,
        heartbeat_ns: u64,
        append_only: u8,
        append_only_active: u8,
        program: &'a str,
    },
    Stop {
        boot_id: [u8; 16],
        mono_ns: u64,
        reason: &'a str,
    },
    Config {
        boot_id: [u8; 16],
        mono_ns: u64,
        config_sha256: Hash,
    },
    Heartbeat {
        boot_id: [u8; 16],
        mono_ns: u64,
    },
    ClockStep {
        boot_id: [u8; 16],
        mono_ns: u64,
        expected_ts: i64,
        observed_ts: i64,
    },
    Gap {
        source: &'a str,
        position: PositionRef<'a>,
        reason: u16,
        lost_bytes: u64,
        lost_records: u64,
        detail: &'a str,
    },
    Recovery {
        cause: RecoveryCause,
        segment_no: u64,
        last_good_seq: u64,
        region_offset: u64,
        region_len: u64,
        region_sha256: Hash,
        detail: &'a str,
    },
    Receipt {
        collector_id: &'a str,
        tree_size: u64,
        root: Hash,
        collector_ts: i64,
        collector_pubkey: [u8; 32],
        signature: [u8; 64],
    },
    Prune {
        first_kept_segment: u64,
        first_kept_seq: u64,
        anchor_head: Hash,
        detail: &'a str,
    },
    Seal {
        next_segment: u64,
    },
    Alert {
        code: u16,
        detail: &'a str,
    },
    /// A segment's data key, wrapped to age recipients (§6.16).
    DataKey {
        recipients: Vec<&'a str>,
        wrapped: &'a [u8],
    },
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub seq: u64,
    pub ts: i64,
    /// The chain head before this record: the leaf hash of the record
    /// before it (`ZERO32` for the first).
    pub prev: Hash,
    pub payload: Payload<'a>,
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unsupported record version {0}")]
    Version(u8),
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("unsupported record flags {0:#06x}")]
    Flags(u16),
    #[error("malformed {kind} payload: {err}")]
    Payload { kind: &'static str, err: CodecError },
    #[error("record too short")]
    Short,
}

/// Reads the kind byte of encoded record bytes.
pub fn peek_kind(record: &[u8]) -> Option<u8> {
    record.get(1).copied()
}

impl<'a> Record<'a> {
    /// Decodes the bytes of one record (the frame's content).
    pub fn decode(bytes: &'a [u8]) -> Result<Record<'a>, RecordError> {
        let mut r = Reader::new(bytes);
        let hdr = (|| -> Result<_, CodecError> {
            Ok((
                r.u8()?,
                r.u8()?,
                r.u16()?,
                r.u64()?,
                r.i64()?,
                r.array::<32>()?,
            ))
        })()
        .map_err(|_| RecordError::Short)?;
        let (version, kind, flags, seq, ts, prev) = hdr;
        if version != RECORD_VERSION {
            return Err(RecordError::Version(version));
        }
        let kind = Kind::from_u8(kind).ok_or(RecordError::UnknownKind(kind))?;
        let sealed = match (flags, kind) {
            (0, _) => false,
            (RECORD_FLAG_SEALED, Kind::Entry) => true,
            _ => return Err(RecordError::Flags(flags)),
        };
        let payload = decode_payload(kind, sealed, &mut r).map_err(|err| RecordError::Payload {
            kind: kind.name(),
            err,
        })?;
        Ok(Record {
            kind,
            seq,
            ts,
            prev,
            payload,
        })
    }
}

fn decode_payload<'a>(
    kind: Kind,
    sealed: bool,
    r: &mut Reader<'a>,
) -> Result<Payload<'a>, CodecError> {
    let p = match kind {
        Kind::Genesis => Payload::Genesis {
            agent_id: r.text8("agent id")?,
            first_pubkey: r.array()?,
        },
        Kind::Entry => {
            let source = r.text8("source name")?;
            let position = PositionRef::decode(r)?;
            let flags = r.u8()?;
            if flags & !ENTRY_FLAGS_KNOWN != 0 {
                return Err(CodecError::Invalid {
                    what: "entry flags",
                });
            }
            if sealed {
                let sealed = r.rest();
                if sealed.len() < SEAL_TAG_LEN {
                    return Err(CodecError::Invalid {
                        what: "sealed entry (shorter than its tag)",
                    });
                }
                return Ok(Payload::Entry(Entry {
                    source,
                    position,
                    flags,
                    fields: Vec::new(),
                    body: &[],
                    sealed: Some(sealed),
                }));
            }
            let n = r.u16()? as usize;
            let mut fields = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                let k = r.text8("field name")?;
                let v = r.bytes32()?;
                fields.push((k, v));
            }
            Payload::Entry(Entry {
                source,
                position,
                flags,
                fields,
                body: r.rest(),
                sealed: None,
            })
        }
        Kind::Checkpoint => {
            let epoch = r.u64()?;
            let tree_size = r.u64()?;
            let root = r.array()?;
            let head = r.array()?;
            let boot_id = r.array()?;
            let mono_ns = r.u64()?;
            let nf = r.u8()? as usize;
            let mut frontier = Vec::with_capacity(nf);
            for _ in 0..nf {
                frontier.push(r.array()?);
            }
            let ns = r.u32()? as usize;
            let mut sources = Vec::with_capacity(ns.min(1024));
            for _ in 0..ns {
                let name = r.text8("source name")?;
                sources.push((name, PositionRef::decode(r)?));
            }
            Payload::Checkpoint(Checkpoint {
                epoch,
                tree_size,
                root,
                head,
                boot_id,
                mono_ns,
                frontier,
                sources,
                signature: r.array()?,
            })
        }
        Kind::EpochKey => Payload::EpochKey {
            from_epoch: r.u64()?,
            to_epoch: r.u64()?,
            new_pubkey: r.array()?,
            tree_size: r.u64()?,
            head: r.array()?,
            signature: r.array()?,
        },
        Kind::Start => Payload::Start {
            boot_id: r.array()?,
            mono_ns: r.u64()?,
            pid: r.u32()?,
            config_sha256: r.array()?,
            heartbeat_ns: r.u64()?,
            append_only: r.u8()?,
            append_only_active: r.u8()?,
            program: r.text8("program")?,
        },
        Kind::Stop => Payload::Stop {
            boot_id: r.array()?,
            mono_ns: r.u64()?,
            reason: r.text16("reason")?,
        },
        Kind::Config => Payload::Config {
            boot_id: r.array()?,
            mono_ns: r.u64()?,
            config_sha256: r.array()?,
        },
        Kind::Heartbeat => Payload::Heartbeat {
            boot_id: r.array()?,
            mono_ns: r.u64()?,
        },
        Kind::ClockStep => Payload::ClockStep {
            boot_id: r.array()?,
            mono_ns: r.u64()?,
            expected_ts: r.i64()?,
            observed_ts: r.i64()?,
        },
        Kind::Gap => Payload::Gap {
            source: r.text8("source name")?,
            position: PositionRef::decode(r)?,
            reason: r.u16()?,
            lost_bytes: r.u64()?,
            lost_records: r.u64()?,
            detail: r.text16("detail")?,
        },
        Kind::Recovery => Payload::Recovery {
            cause: RecoveryCause::from_u8(r.u8()?).ok_or(CodecError::Invalid {
                what: "recovery cause",
            })?,
            segment_no: r.u64()?,
            last_good_seq: r.u64()?,
            region_offset: r.u64()?,
            region_len: r.u64()?,
            region_sha256: r.array()?,
            detail: r.text16("detail")?,
        },
        Kind::Receipt => Payload::Receipt {
            collector_id: r.text8("collector id")?,
            tree_size: r.u64()?,
            root: r.array()?,
            collector_ts: r.i64()?,
            collector_pubkey: r.array()?,
            signature: r.array()?,
        },
        Kind::Prune => Payload::Prune {
            first_kept_segment: r.u64()?,
            first_kept_seq: r.u64()?,
            anchor_head: r.array()?,
            detail: r.text16("detail")?,
        },
        Kind::Seal => Payload::Seal {
            next_segment: r.u64()?,
        },
        Kind::Alert => Payload::Alert {
            code: r.u16()?,
            detail: r.text16("detail")?,
        },
        Kind::DataKey => {
            let n = r.u16()? as usize;
            if n == 0 {
                return Err(CodecError::Invalid {
                    what: "data_key without a recipient",
                });
            }
            let mut recipients = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                let rcpt = r.text8("recipient")?;
                if !rcpt.starts_with("age1") {
                    return Err(CodecError::Invalid {
                        what: "data_key recipient (not age1…)",
                    });
                }
                recipients.push(rcpt);
            }
            let wrapped = r.bytes32()?;
            if !wrapped.starts_with(AGE_MAGIC) {
                return Err(CodecError::Invalid {
                    what: "data_key wrapped key (not an age v1 file)",
                });
            }
            Payload::DataKey {
                recipients,
                wrapped,
            }
        }
    };
    r.finish()?;
    Ok(p)
}

/// Writes the common record header; `prev` is the chain head before the
/// record.
#[inline]
pub fn put_header(out: &mut Vec<u8>, kind: Kind, seq: u64, ts: i64, prev: &Hash) {
    put_u8(out, RECORD_VERSION);
    put_u8(out, kind as u8);
    put_u16(out, 0);
    put_u64(out, seq);
    put_i64(out, ts);
    out.extend_from_slice(prev);
}

/// Encodes a payload (everything after the header). Signing records are
/// encoded with their signature, which the caller fills in afterwards.
pub fn put_payload(out: &mut Vec<u8>, p: &Payload<'_>) {
    match p {
        Payload::Genesis {
            agent_id,
            first_pubkey,
        } => {
            put_bytes8(out, agent_id.as_bytes());
            out.extend_from_slice(first_pubkey);
        }
        Payload::Entry(Entry {
            source,
            position,
            flags,
            sealed: Some(sealed),
            ..
        }) => {
            // The record header's flags must say `sealed` (the caller's).
            put_bytes8(out, source.as_bytes());
            put_u8(out, position.kind);
            put_bytes16(out, position.bytes);
            put_u8(out, *flags);
            out.extend_from_slice(sealed);
        }
        Payload::Entry(e) => put_entry(out, e.source, e.position, e.flags, &e.fields, e.body),
        Payload::Checkpoint(c) => {
            put_u64(out, c.epoch);
            put_u64(out, c.tree_size);
            out.extend_from_slice(&c.root);
            out.extend_from_slice(&c.head);
            out.extend_from_slice(&c.boot_id);
            put_u64(out, c.mono_ns);
            put_u8(out, c.frontier.len() as u8);
            for h in &c.frontier {
                out.extend_from_slice(h);
            }
            put_u32(out, c.sources.len() as u32);
            for (name, pos) in &c.sources {
                put_bytes8(out, name.as_bytes());
                put_u8(out, pos.kind);
                put_bytes16(out, pos.bytes);
            }
            out.extend_from_slice(&c.signature);
        }
        Payload::EpochKey {
            from_epoch,
            to_epoch,
            new_pubkey,
            tree_size,
            head,
            signature,
        } => {
            put_u64(out, *from_epoch);
            put_u64(out, *to_epoch);
            out.extend_from_slice(new_pubkey);
            put_u64(out, *tree_size);
            out.extend_from_slice(head);
            out.extend_from_slice(signature);
        }
        Payload::Start {
            boot_id,
            mono_ns,
            pid,
            config_sha256,
            heartbeat_ns,
            append_only,
            append_only_active,
            program,
        } => {
            out.extend_from_slice(boot_id);
            put_u64(out, *mono_ns);
            put_u32(out, *pid);
            out.extend_from_slice(config_sha256);
            put_u64(out, *heartbeat_ns);
            put_u8(out, *append_only);
            put_u8(out, *append_only_active);
            put_bytes8(out, truncate_utf8(program, 255).as_bytes());
        }
        Payload::Stop {
            boot_id,
            mono_ns,
            reason,
        } => {
            out.extend_from_slice(boot_id);
            put_u64(out, *mono_ns);
            put_bytes16(out, truncate_utf8(reason, 65535).as_bytes());
        }
        Payload::Config {
            boot_id,
            mono_ns,
            config_sha256,
        } => {
            out.extend_from_slice(boot_id);
            put_u64(out, *mono_ns);
            out.extend_from_slice(config_sha256);
        }
        Payload::Heartbeat { boot_id, mono_ns } => {
            out.extend_from_slice(boot_id);
            put_u64(out, *mono_ns);
        }
        Payload::ClockStep {
            boot_id,
            mono_ns,
            expected_ts,
            observed_ts,
        } => {
            out.extend_from_slice(boot_id);
            put_u64(out, *mono_ns);
            put_i64(out, *expected_ts);
            put_i64(out, *observed_ts);
        }
        Payload::Gap {
            source,
            position,
            reason,
            lost_bytes,
            lost_records,
            detail,
        } => {
            put_bytes8(out, source.as_bytes());
            put_u8(out, position.kind);
            put_bytes16(out, position.bytes);
            put_u16(out, *reason);
            put_u64(out, *lost_bytes);
            put_u64(out, *lost_records);
            put_bytes16(out, truncate_utf8(detail, 65535).as_bytes());
        }
        Payload::Recovery {
            cause,
            segment_no,
            last_good_seq,
            region_offset,
            region_len,
            region_sha256,
            detail,
        } => {
            put_u8(out, *cause as u8);
            put_u64(out, *segment_no);
            put_u64(out, *last_good_seq);
            put_u64(out, *region_offset);
            put_u64(out, *region_len);
            out.extend_from_slice(region_sha256);
            put_bytes16(out, truncate_utf8(detail, 65535).as_bytes());
        }
        Payload::Receipt {
            collector_id,
            tree_size,
            root,
            collector_ts,
            collector_pubkey,
            signature,
        } => {
            put_bytes8(out, collector_id.as_bytes());
            put_u64(out, *tree_size);
            out.extend_from_slice(root);
            put_i64(out, *collector_ts);
            out.extend_from_slice(collector_pubkey);
            out.extend_from_slice(signature);
        }
        Payload::Prune {
            first_kept_segment,
            first_kept_seq,
            anchor_head,
            detail,
        } => {
            put_u64(out, *first_kept_segment);
            put_u64(out, *first_kept_seq);
            out.extend_from_slice(anchor_head);
            put_bytes16(out, truncate_utf8(detail, 65535).as_bytes());
        }
        Payload::Seal { next_segment } => put_u64(out, *next_segment),
        Payload::Alert { code, detail } => {
            put_u16(out, *code);
            put_bytes16(out, truncate_utf8(detail, 65535).as_bytes());
        }
        Payload::DataKey {
            recipients,
            wrapped,
        } => {
            put_u16(out, recipients.len() as u16);
            for r in recipients {
                put_bytes8(out, r.as_bytes());
            }
            put_bytes32(out, wrapped);
        }
    }
}

/// Encodes an entry payload (the hot path: no allocation).
#[inline]
pub fn put_entry(
    out: &mut Vec<u8>,
    source: &str,
    position: PositionRef<'_>,
    flags: u8,
    fields: &[(&str, &[u8])],
    body: &[u8],
) {
    put_bytes8(out, source.as_bytes());
    put_u8(out, position.kind);
    put_bytes16(out, position.bytes);
    put_u8(out, flags);
    put_u16(out, fields.len() as u16);
    for (k, v) in fields {
        put_bytes8(out, k.as_bytes());
        put_bytes32(out, v);
    }
    out.extend_from_slice(body);
}

/// Encodes an owned [`Position`] to the borrowed form's bytes.
pub fn position_bytes(p: &Position) -> (u8, Vec<u8>) {
    let mut v = Vec::with_capacity(35);
    p.encode(&mut v);
    (v[0], v[3..].to_vec())
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(p: Payload<'_>, kind: Kind) {
        let mut b = Vec::new();
        put_header(&mut b, kind, 42, -7, &[5; 32]);
        put_payload(&mut b, &p);
        let r = Record::decode(&b).unwrap();
        assert_eq!(r.kind, kind);
        assert_eq!(r.seq, 42);
        assert_eq!(r.ts, -7);
        assert_eq!(r.prev, [5; 32]);
        assert_eq!(r.payload, p);
        // Any trailing byte is refused (an entry's body is the rest).
        if kind != Kind::Entry {
            b.push(0);
            assert!(Record::decode(&b).is_err());
        }
    }

    #[test]
    fn every_kind_roundtrips() {
        let pos = PositionRef {
            kind: 1,
            bytes: &[7u8; 32],
        };
        roundtrip(
            Payload::Genesis {
                agent_id: "web-01",
                first_pubkey: [9; 32],
            },
            Kind::Genesis,
        );
        roundtrip(
            Payload::Entry(Entry {
                source: "app",
                position: pos,
                flags: ENTRY_NO_NEWLINE,
                fields: vec![("PRIORITY", b"6"), ("_PID", b"\x00\xff")],
                body: b"hello \x00\xff world",
                sealed: None,
            }),
            Kind::Entry,
        );
        roundtrip(
            Payload::Checkpoint(Checkpoint {
                epoch: 3,
                tree_size: 42,
                root: [1; 32],
                head: [2; 32],
                boot_id: [3; 16],
                mono_ns: 99,
                frontier: vec![[4; 32], [5; 32], [6; 32]],
                sources: vec![
                    ("app", pos),
                    (
                        "journal",
                        PositionRef {
                            kind: 2,
                            bytes: b"s=1",
                        },
                    ),
                ],
                signature: [8; 64],
            }),
            Kind::Checkpoint,
        );
        roundtrip(
            Payload::Recovery {
                cause: RecoveryCause::TornTail,
                segment_no: 4,
                last_good_seq: 41,
                region_offset: 1000,
                region_len: 17,
                region_sha256: [3; 32],
                detail: "torn",
            },
            Kind::Recovery,
        );
        roundtrip(
            Payload::Gap {
                source: "app",
                position: pos,
                reason: GapReason::Truncated as u16,
                lost_bytes: 10,
                lost_records: UNKNOWN_COUNT,
                detail: "size 100 -> 0",
            },
            Kind::Gap,
        );
        roundtrip(Payload::Seal { next_segment: 5 }, Kind::Seal);
    }

    #[test]
    fn sealed_entries_and_data_keys_round_trip() {
        let pos = PositionRef {
            kind: 3,
            bytes: &[1, 0, 0, 0, 0, 0, 0, 0],
        };
        let sealed = [7u8; 40];
        let p = Payload::Entry(Entry {
            source: "app",
            position: pos,
            flags: 0,
            fields: Vec::new(),
            body: &[],
            sealed: Some(&sealed),
        });
        let mut b = Vec::new();
        put_header(&mut b, Kind::Entry, 9, 1, &[0; 32]);
        b[FLAGS_OFFSET..FLAGS_OFFSET + 2].copy_from_slice(&RECORD_FLAG_SEALED.to_le_bytes());
        put_payload(&mut b, &p);
        let r = Record::decode(&b).unwrap();
        assert_eq!(r.payload, p);
        // The flag on another kind, or a sealed part shorter than its tag.
        let mut seal = Vec::new();
        put_header(&mut seal, Kind::Seal, 1, 0, &[0; 32]);
        seal[FLAGS_OFFSET] = 1;
        put_payload(&mut seal, &Payload::Seal { next_segment: 2 });
        assert_eq!(Record::decode(&seal).unwrap_err(), RecordError::Flags(1));
        let short = &b[..b.len() - 30];
        assert!(Record::decode(short).is_err());
        let wrapped = [AGE_MAGIC, &b"rest"[..]].concat();
        roundtrip(
            Payload::DataKey {
                recipients: vec!["age1abc", "age1def"],
                wrapped: &wrapped,
            },
            Kind::DataKey,
        );
        for (rcpts, w) in [
            (vec![], &wrapped[..]),
            (vec!["x25519"], &wrapped[..]),
            (vec!["age1abc"], &b"not age"[..]),
        ] {
            let mut b = Vec::new();
            put_header(&mut b, Kind::DataKey, 1, 0, &[0; 32]);
            put_payload(
                &mut b,
                &Payload::DataKey {
                    recipients: rcpts,
                    wrapped: w,
                },
            );
            assert!(Record::decode(&b).is_err());
        }
    }

    #[test]
    fn refuses_unknown_versions_kinds_and_flags() {
        let mut b = Vec::new();
        put_header(&mut b, Kind::Seal, 1, 0, &[0; 32]);
        put_u64(&mut b, 1);
        let mut v = b.clone();
        v[0] = 2;
        assert_eq!(Record::decode(&v), Err(RecordError::Version(2)));
        let mut v = b.clone();
        v[1] = 99;
        assert_eq!(Record::decode(&v), Err(RecordError::UnknownKind(99)));
        let mut v = b.clone();
        v[2] = 1;
        assert_eq!(Record::decode(&v), Err(RecordError::Flags(1)));
        assert_eq!(Record::decode(&b[..10]), Err(RecordError::Short));
    }
}
