//! Checking an export bundle: a range of whole records, from a signed
//! checkpoint (or the genesis record) to a signed checkpoint, with the
//! collector's receipts and a consistency proof to a later tree.

use super::check::{
    BundleReport, Each, ExportOpener, Trust, check_receipt, resume_at, take_ledger,
};
use super::format::{Header, Line, parse_hashes, unb64};
use crate::chain::ChainCheck;
use crate::crypt::Identities;
use crate::hash::{Hash, leaf_hash};
use crate::merkle::{verify_consistency, verify_inclusion};
use crate::record::{Kind, Payload, Record};
use std::collections::BTreeMap;

#[allow(clippy::too_many_arguments)]
pub(super) fn check(
    header: &Header,
    chain: &mut ChainCheck,
    ledger: &[Vec<u8>],
    rest: &[(usize, Line)],
    trust: &Trust,
    identities: Option<Identities>,
    each: &mut Each<'_>,
    r: &mut BundleReport,
) -> Result<(), String> {
    let at = |n: usize| move |e: String| format!("line {n}: {e}");
    let mut i = 0;
    // An optional data_key line, then the records.
    let data_key = match rest.first() {
        Some((
            n,
            Line::DataKey {
                record,
                tree_size,
                proof,
            },
        )) => {
            i = 1;
            Some((
                *n,
                unb64(record).map_err(at(*n))?,
                *tree_size,
                parse_hashes(proof).map_err(at(*n))?,
            ))
        }
        _ => None,
    };
    let mut opener = ExportOpener::new(identities);
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut last_kind = None;
    while let Some((n, Line::Record { record })) = rest.get(i) {
        let n = *n;
        let bytes = unb64(record).map_err(at(n))?;
        let rec = Record::decode(&bytes).map_err(|e| format!("line {n}: {e}"))?;
        if r.first_seq.is_none() {
            take_ledger(chain, ledger, rec.seq).map_err(at(n))?;
            if rec.seq == 0 && ledger.first().is_none_or(|g| *g != bytes) {
                return Err(format!(
                    "line {n}: the genesis record differs from the ledger's"
                ));
            }
            if rec.seq != 0 {
                resume_at(chain, &rec).map_err(|e| {
                    format!(
                        "line {n}: the range must start at a checkpoint or the genesis record: {e}"
                    )
                })?;
            }
            if let Some((dn, dk, size, proof)) = &data_key {
                take_data_key(dk, *size, proof, &rec, &mut opener).map_err(at(*dn))?;
            }
            r.first_seq = Some(rec.seq);
        }
        chain.check_link(&rec).map_err(at(n))?;
        chain.check_payload(&rec, &bytes).map_err(at(n))?;
        chain.advance(leaf_hash(&bytes));
        opener.take(&rec);
        let opened = match opener.open(&rec, &bytes) {
            Some(Ok(o)) => {
                r.opened += 1;
                Some(o)
            }
            Some(Err(e)) => return Err(format!("line {n}: cannot open the entry: {e}")),
            None => {
                r.sealed +=
                    u64::from(matches!(&rec.payload, Payload::Entry(e) if e.sealed.is_some()));
                None
            }
        };
        if let Payload::Checkpoint(cp) = &rec.payload {
            roots.insert(cp.tree_size, cp.root);
            r.checkpoints += 1;
            r.tree_size = cp.tree_size;
        }
        r.records += 1;
        r.entries += u64::from(rec.kind == Kind::Entry);
        r.last_seq = Some(rec.seq);
        last_kind = Some(rec.kind);
        each(&rec, &bytes, opened.as_ref());
        i += 1;
    }
    if last_kind != Some(Kind::Checkpoint) {
        return Err(
            "the records do not end with a checkpoint: the last of them are not signed".into(),
        );
    }
    let (first, last) = (r.first_seq.unwrap_or(0), r.last_seq.unwrap_or(0));
    if header.from_seq > header.to_seq {
        return Err("line 1: from_seq is after to_seq".into());
    }
    if first > header.from_seq || last < header.to_seq {
        return Err(format!(
            "the records {first}..{last} do not cover the range {}..{} the header names",
            header.from_seq, header.to_seq
        ));
    }
    let mut last_countersigned = false;
    for (n, l) in &rest[i..] {
        match l {
            Line::Receipt(line) => {
                if r.consistent_to.is_some() {
                    return Err(format!("line {n}: a receipt after the consistency line"));
                }
                let size = check_receipt(line, &header.agent, &roots, trust).map_err(at(*n))?;
                last_countersigned |= size == r.tree_size;
                r.receipts += 1;
            }
            Line::Consistency {
                from_size,
                proof,
                receipt,
            } => {
                if r.consistent_to.is_some() || *from_size != r.tree_size {
                    return Err(format!(
                        "line {n}: a consistency proof must start at the last checkpoint, once"
                    ));
                }
                super::check::collector_key(&receipt.collector_pubkey, trust).map_err(at(*n))?;
                let rc = receipt.to_receipt().map_err(at(*n))?;
                if !rc.signature_valid(&header.agent) {
                    return Err(format!("line {n}: the receipt's signature is not valid"));
                }
                if rc.tree_size <= *from_size {
                    return Err(format!(
                        "line {n}: the consistency receipt is not for a larger tree"
                    ));
                }
                let proof = parse_hashes(proof).map_err(at(*n))?;
                verify_consistency(
                    *from_size,
                    rc.tree_size,
                    &proof,
                    &roots[from_size],
                    &rc.root,
                )
                .map_err(|e| {
                    format!("line {n}: the later tree does not extend the bundle's: {e}")
                })?;
                r.consistent_to = Some(rc.tree_size);
            }
            _ => {
                return Err(format!(
                    "line {n}: not a receipt or consistency proof after the records"
                ));
            }
        }
    }
    if !last_countersigned {
        return Err(
            "no receipt: the collector's countersignature of the last checkpoint is missing".into(),
        );
    }
    Ok(())
}

/// The `data_key` record of the segment the range starts in: proven in
/// the tree of the first checkpoint (`first`), then taken by the opener.
fn take_data_key(
    bytes: &[u8],
    tree_size: u64,
    proof: &[Hash],
    first: &Record<'_>,
    opener: &mut ExportOpener,
) -> Result<(), String> {
    let Payload::Checkpoint(cp) = &first.payload else {
        return Err("a data_key line without a checkpoint to prove it in".into());
    };
    let rec = Record::decode(bytes).map_err(|e| e.to_string())?;
    if rec.kind != Kind::DataKey || tree_size != cp.tree_size || rec.seq >= tree_size {
        return Err("not a data_key record of the first checkpoint's tree".into());
    }
    verify_inclusion(&leaf_hash(bytes), rec.seq, tree_size, proof, &cp.root)
        .map_err(|e| format!("the data_key record is not in the first checkpoint's tree: {e}"))?;
    opener.take(&rec);
    Ok(())
}
