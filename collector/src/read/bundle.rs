//! Making bundles (docs/FORMAT.md §12) from an agent's store: an export
//! of a range, and the disclosure of one entry with its own key only.

use super::Bodies;
use super::index::AgentIndex;
use super::nodes::StoreNodes;
use super::scan::{At, Scan, ScanError, read_record_at};
use crate::receipts::{ReceiptLog, Signer};
use std::path::Path;
use wormlog_spool::bundle::format::{BUNDLE_VERSION, b64, hashes, write_line};
use wormlog_spool::bundle::{BundleKind, Header, Line, ReceiptLine};
use wormlog_spool::hash::hex;
use wormlog_spool::keys::format_pubkey;
use wormlog_spool::proofs::{MakeError, consistency, inclusion};
use wormlog_spool::record::{Kind, Payload, Record};

/// The most records one export holds.
pub const MAX_EXPORT_RECORDS: u64 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<MakeError<ScanError>> for BundleError {
    fn from(e: MakeError<ScanError>) -> Self {
        match e {
            MakeError::Range(r) => BundleError::Refused(r.to_string()),
            MakeError::Source(s) => BundleError::Scan(s),
        }
    }
}

/// What a bundle is made from.
#[derive(Debug)]
pub struct Source<'a> {
    pub agent: &'a str,
    pub store: &'a Path,
    pub index: &'a AgentIndex,
    pub receipts: &'a ReceiptLog,
    pub signer: &'a Signer,
}

/// A made bundle and what it holds.
#[derive(Debug)]
pub struct Made {
    pub bytes: Vec<u8>,
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

impl Source<'_> {
    /// The bytes of record `seq` and where it is stored.
    pub(super) fn record(&self, seq: u64) -> Result<(At, Vec<u8>), BundleError> {
        let b = self.index.block_of(seq).ok_or_else(|| {
            BundleError::NotFound(format!("agent {} has no record {seq}", self.agent))
        })?;
        let mut scan = Scan::from(self.store, b.at)?;
        for s in b.seq..=seq {
            let Some((at, rec)) = scan.next_record()? else {
                break;
            };
            if s == seq {
                return Ok((at, rec.to_vec()));
            }
        }
        Err(BundleError::NotFound(format!(
            "agent {} has no record {seq}",
            self.agent
        )))
    }

    /// The key ledger for a bundle starting at `first_seq`: the genesis
    /// record and every `epoch_key` record before it.
    fn ledger(&self, first_seq: u64) -> Result<Vec<Vec<u8>>, BundleError> {
        let mut out = Vec::new();
        // The genesis record always (also when the bundle starts with it).
        for (seq, at) in self.index.key_records(first_seq.max(1)) {
            let rec = read_record_at(self.store, at)?;
            if super::scan::peek(&rec).1 != seq {
                return Err(BundleError::Scan(ScanError::Damaged(format!(
                    "index: the key record {seq} is not where the index says"
                ))));
            }
            out.push(rec);
        }
        if out.first().is_none_or(|g| g[1] != Kind::Genesis as u8) {
            return Err(BundleError::NotFound(
                "the genesis record is not stored".into(),
            ));
        }
        Ok(out)
    }

    /// The first checkpoint at or after `seq` that the collector
    /// countersigned, and its receipts.
    pub(super) fn countersigned_from(
        &self,
        seq: u64,
    ) -> Result<(u64, Vec<ReceiptLine>), BundleError> {
        for b in self.index.all().filter(|b| b.checkpoint && b.seq >= seq) {
            let rs = self.receipts.for_range(b.seq, b.seq + 1)?;
            if !rs.is_empty() {
                return Ok((b.seq, rs.iter().map(ReceiptLine::from_receipt).collect()));
            }
        }
        Err(BundleError::NotFound(format!(
            "no checkpoint after record {seq} has been countersigned yet: try again once the agent sent its next checkpoint"
        )))
    }

    fn header(&self, kind: BundleKind, from_seq: u64, to_seq: u64) -> Header {
        Header {
            wormlog_bundle: BUNDLE_VERSION,
            kind,
            agent: self.agent.to_owned(),
            collector_id: self.signer.collector_id.clone(),
            collector_pubkey: format_pubkey(&self.signer.pubkey()),
            created: wormlog_spool::clock::rfc3339(wormlog_spool::clock::wall_ns()),
            from_seq,
            to_seq,
        }
    }

    fn finish(&self, mut out: Vec<u8>) -> Result<Vec<u8>, BundleError> {
        let sig = self.signer.sign_bundle(&out);
        write_line(
            &mut out,
            &Line::Signature {
                collector_pubkey: format_pubkey(&self.signer.pubkey()),
                signature: hex(&sig),
            },
        )?;
        Ok(out)
    }

    /// The disclosure of entry `seq`: the entry, its own key (opened with
    /// `bodies`' identity) when it is sealed, its inclusion proof in the
    /// first countersigned checkpoint after it, that checkpoint and the
    /// receipts for it.
    pub fn disclose(&self, seq: u64, bodies: &mut Bodies) -> Result<Made, BundleError> {
        let (at, entry) = self.record(seq)?;
        let rec = Record::decode(&entry).map_err(|e| BundleError::Refused(e.to_string()))?;
        let Payload::Entry(e) = &rec.payload else {
            return Err(BundleError::Refused(format!(
                "record {seq} is a {}, not an entry: only entries are disclosed",
                rec.kind.name()
            )));
        };
        let entry_key = match e.sealed {
            None => None,
            Some(_) => {
                if !bodies.can_open() {
                    return Err(BundleError::Refused(
                        "the entry is encrypted and this collector has no read identity ([read] identity)".into(),
                    ));
                }
                bodies.prime(self.store, at.segment)?;
                let k = bodies.entry_key(at.segment, seq).map_err(|e| {
                    BundleError::Refused(format!("cannot open the entry's data key: {e}"))
                })?;
                Some(hex(k.bytes()))
            }
        };
        let (cp_seq, receipts) = self.countersigned_from(seq + 1)?;
        let (_, cp) = self.record(cp_seq)?;
        let mut nodes = StoreNodes::new(self.store, self.index);
        // The records between the checkpoint before the entry and the one
        // after it: read once, most of the proof's nodes are made of them.
        let start = self.index.block_of(seq).map_or(seq, |b| b.seq);
        nodes.keep_leaves(start, cp_seq)?;
        let proof = inclusion(&mut nodes, seq, cp_seq)?;
        let mut out = Vec::new();
        write_line(&mut out, &self.header(BundleKind::Disclosure, seq, seq))?;
        for l in self.ledger(cp_seq)? {
            write_line(&mut out, &Line::Ledger { record: b64(&l) })?;
        }
        write_line(
            &mut out,
            &Line::Entry {
                record: b64(&entry),
                entry_key,
            },
        )?;
        write_line(
            &mut out,
            &Line::Checkpoint {
                record: b64(&cp),
                proof: hashes(&proof),
            },
        )?;
        for r in receipts {
            write_line(&mut out, &Line::Receipt(r))?;
        }
        Ok(Made {
            bytes: self.finish(out)?,
            records: 1,
            first_seq: seq,
            last_seq: seq,
        })
    }

    /// The export of records `from..=to`, whole: from the checkpoint at or
    /// before `from` (or the genesis record) to the first countersigned
    /// checkpoint at or after `to`, with the receipts, the key ledger, the
    /// data key of the first segment when it lies before, and a
    /// consistency proof to the newest countersigned tree.
    pub fn export(&self, from: u64, to: u64) -> Result<Made, BundleError> {
        if to < from {
            return Err(BundleError::Refused(format!(
                "from_seq {from} is after to_seq {to}"
            )));
        }
        if self.index.block_of(from).is_none() {
            return Err(BundleError::NotFound(format!(
                "agent {} has no record {from}",
                self.agent
            )));
        }
        // A proof of the range starts at a signed checkpoint (or the
        // genesis record): the last one at or before `from`.
        let first = self
            .index
            .checkpoint_at_or_before(from)
            .ok_or_else(|| BundleError::NotFound(format!("no checkpoint before record {from}")))?;
        let (last, _) = self.countersigned_from(to)?;
        if last - first.seq + 1 > MAX_EXPORT_RECORDS {
            return Err(BundleError::Refused(format!(
                "{} records: more than {MAX_EXPORT_RECORDS} in one export; ask for a smaller range",
                last - first.seq + 1
            )));
        }
        let mut nodes = StoreNodes::new(self.store, self.index);
        let mut out = Vec::new();
        write_line(&mut out, &self.header(BundleKind::Export, from, to))?;
        for l in self.ledger(first.seq)? {
            write_line(&mut out, &Line::Ledger { record: b64(&l) })?;
        }
        if first.seq > 0
            && let Some((k, bytes)) = self.data_key_before(first.at, first.seq)?
        {
            let proof = inclusion(&mut nodes, k, first.seq)?;
            write_line(
                &mut out,
                &Line::DataKey {
                    record: b64(&bytes),
                    tree_size: first.seq,
                    proof: hashes(&proof),
                },
            )?;
        }
        let mut scan = Scan::from(self.store, first.at)?;
        for seq in first.seq..=last {
            let Some((_, rec)) = scan.next_record()? else {
                return Err(BundleError::NotFound(format!("record {seq} is not stored")));
            };
            write_line(&mut out, &Line::Record { record: b64(rec) })?;
        }
        for r in self.receipts.for_range(first.seq, last + 1)? {
            write_line(&mut out, &Line::Receipt(ReceiptLine::from_receipt(&r)))?;
        }
        if let Some(newest) = self.receipts.last_tree_size()?
            && newest > last
        {
            let rc = self.receipts.for_range(newest, newest + 1)?;
            if let Some(r) = rc.first() {
                let proof = consistency(&mut nodes, last, newest)?;
                write_line(
                    &mut out,
                    &Line::Consistency {
                        from_size: last,
                        proof: hashes(&proof),
                        receipt: ReceiptLine::from_receipt(r),
                    },
                )?;
            }
        }
        Ok(Made {
            bytes: self.finish(out)?,
            records: last - first.seq + 1,
            first_seq: first.seq,
            last_seq: last,
        })
    }

    /// The `data_key` record of the segment `at` is in, when it stands
    /// before seq `before`.
    fn data_key_before(&self, at: At, before: u64) -> Result<Option<(u64, Vec<u8>)>, BundleError> {
        let mut scan = Scan::from(
            self.store,
            At {
                segment: at.segment,
                offset: 0,
            },
        )?;
        for _ in 0..4 {
            let Some((a, rec)) = scan.next_record()? else {
                break;
            };
            if a.segment != at.segment {
                break;
            }
            let seq = super::scan::peek(rec).1;
            if seq >= before {
                break;
            }
            if rec[1] == Kind::DataKey as u8 {
                return Ok(Some((seq, rec.to_vec())));
            }
        }
        Ok(None)
    }
}
