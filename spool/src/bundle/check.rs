//! Checking a bundle offline with the agent's first public key and,
//! optionally, the collector's (docs/FORMAT.md §12.3).

use super::format::{BUNDLE_VERSION, BundleKind, Header, Line, ReceiptLine, hash, parse_hashes};
use super::format::{parse_hex, unb64};
use crate::chain::ChainCheck;
use crate::crypt::{EntryKey, Identities, Opened, Opener, entry_aad, parse_plaintext};
use crate::hash::{Hash, leaf_hash};
use crate::keys::{BUNDLE_CONTEXT, parse_pubkey, verify_signature};
use crate::merkle::{Frontier, verify_inclusion};
use crate::record::{Entry, Kind, Payload, Record};
use std::collections::BTreeMap;

/// What the investigator holds.
#[derive(Debug)]
pub struct Trust {
    /// The agent's first public key (`wormlog keygen` printed it).
    pub agent_key: [u8; 32],
    /// The collector's receipt key; None: receipts and the bundle's
    /// signature are checked against the key the bundle names, and the
    /// report says the collector is not authenticated.
    pub collector_key: Option<[u8; 32]>,
    /// age identities to open sealed entries of an export.
    pub identities: Option<Identities>,
}

/// What a bundle proved, or where it failed.
#[derive(Debug, Default, Clone)]
pub struct BundleReport {
    pub header: Option<Header>,
    pub records: u64,
    pub entries: u64,
    pub checkpoints: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The tree size of the last signed checkpoint the records lead to.
    pub tree_size: u64,
    pub receipts: u64,
    /// The tree size the collector countersigned later, with a
    /// consistency proof from the bundle's tree.
    pub consistent_to: Option<u64>,
    pub collector_authenticated: bool,
    /// Sealed entries opened, and those shown encrypted.
    pub opened: u64,
    pub sealed: u64,
    /// `line N: why` — the first thing that does not check out.
    pub failure: Option<String>,
}

impl BundleReport {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// Called with each record the bundle proves, in seq order, and its
/// opened fields and body when it was sealed and could be opened.
pub type Each<'a> = dyn FnMut(&Record<'_>, &[u8], Option<&Opened>) + 'a;

/// Checks `text` (a whole bundle file).
pub fn verify_bundle(text: &[u8], trust: Trust, each: &mut Each<'_>) -> BundleReport {
    let mut report = BundleReport::default();
    if let Err(e) = check(text, trust, each, &mut report) {
        report.failure = Some(e);
    }
    report
}

fn check(
    text: &[u8],
    mut trust: Trust,
    each: &mut Each<'_>,
    r: &mut BundleReport,
) -> Result<(), String> {
    let lines = split_lines(text)?;
    let (header_text, _) = lines.first().ok_or("line 1: an empty file")?;
    let header: Header = serde_json::from_slice(header_text)
        .map_err(|e| format!("line 1: not a bundle header: {e}"))?;
    if header.wormlog_bundle != BUNDLE_VERSION {
        return Err(format!(
            "line 1: bundle version {} (this verifier reads {BUNDLE_VERSION})",
            header.wormlog_bundle
        ));
    }
    crate::clock::parse_rfc3339(&header.created).map_err(|e| format!("line 1: created: {e}"))?;
    r.header = Some(header.clone());
    let mut parsed = Vec::with_capacity(lines.len());
    for (i, (l, _)) in lines.iter().enumerate().skip(1) {
        let line: Line = serde_json::from_slice(l).map_err(|e| format!("line {}: {e}", i + 1))?;
        parsed.push((i + 1, line));
    }
    // The signature: the last line, over every byte before it.
    let Some((
        n,
        Line::Signature {
            collector_pubkey,
            signature,
        },
    )) = parsed.pop()
    else {
        return Err("the last line is not the collector's signature of the bundle".into());
    };
    let key = collector_key(&collector_pubkey, &trust).map_err(|e| format!("line {n}: {e}"))?;
    let sig: [u8; 64] = parse_hex(&signature)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or(format!("line {n}: the signature is not 64 bytes of hex"))?;
    let signed = &text[..lines[n - 1].1];
    if !verify_signature(&key, BUNDLE_CONTEXT, signed, &sig) {
        return Err(format!(
            "line {n}: the collector's signature does not match the bundle (a byte was changed)"
        ));
    }
    r.collector_authenticated = trust.collector_key.is_some();
    let mut chain = ChainCheck::new(Some(trust.agent_key));
    chain.agent_id = Some(header.agent.clone());
    let ledger: Vec<Vec<u8>> = parsed
        .iter()
        .take_while(|(_, l)| matches!(l, Line::Ledger { .. }))
        .map(|(n, l)| match l {
            Line::Ledger { record } => unb64(record).map_err(|e| format!("line {n}: {e}")),
            _ => unreachable!("taken while a ledger line"),
        })
        .collect::<Result<_, _>>()?;
    let rest = &parsed[ledger.len()..];
    match header.kind {
        BundleKind::Export => {
            let ids = trust.identities.take();
            super::export::check(&header, &mut chain, &ledger, rest, &trust, ids, each, r)
        }
        BundleKind::Disclosure => {
            check_disclosure(&header, &mut chain, &ledger, rest, &trust, each, r)
        }
    }
}

/// The lines of `text` and where each starts; every line ends with `\n`.
fn split_lines(text: &[u8]) -> Result<Vec<(&[u8], usize)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let end = memchr(text, at).ok_or(format!(
            "line {}: not ended by a newline (a cut file?)",
            out.len() + 1
        ))?;
        out.push((&text[at..end], at));
        at = end + 1;
    }
    Ok(out)
}

fn memchr(text: &[u8], from: usize) -> Option<usize> {
    text[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| from + p)
}

/// The key receipts and the bundle's signature are checked with.
pub(super) fn collector_key(named: &str, trust: &Trust) -> Result<[u8; 32], String> {
    let k = parse_pubkey(named).map_err(|e| e.to_string())?;
    match trust.collector_key {
        Some(t) if t != k => Err(format!(
            "signed by collector key {named}, not the one given (--collector-pubkey)"
        )),
        _ => Ok(k),
    }
}

/// Checks a receipt line against the checkpoints proven (tree size →
/// root) and the collector key; its tree size.
pub(super) fn check_receipt(
    line: &ReceiptLine,
    agent: &str,
    roots: &BTreeMap<u64, Hash>,
    trust: &Trust,
) -> Result<u64, String> {
    collector_key(&line.collector_pubkey, trust)?;
    let rc = line.to_receipt()?;
    if !rc.signature_valid(agent) {
        return Err("the receipt's signature is not valid".into());
    }
    match roots.get(&rc.tree_size) {
        Some(root) if *root == rc.root => Ok(rc.tree_size),
        _ => Err(format!(
            "the receipt names tree size {} and a root that no checkpoint in the bundle has",
            rc.tree_size
        )),
    }
}

/// Takes the key ledger up to `first_seq`: the key in force there.
pub(super) fn take_ledger(
    chain: &mut ChainCheck,
    ledger: &[Vec<u8>],
    first_seq: u64,
) -> Result<(), String> {
    crate::ledger::apply(chain, ledger, first_seq)?;
    if !chain.key_authenticated {
        return Err("the key ledger does not start with the agent's first public key".into());
    }
    Ok(())
}

/// Puts the verifier at checkpoint `rec` (seq `s`, its frontier of the
/// tree of size `s`): the checkpoint is then checked as any record.
pub(super) fn resume_at(chain: &mut ChainCheck, rec: &Record<'_>) -> Result<(), String> {
    let Payload::Checkpoint(cp) = &rec.payload else {
        return Err(format!("a {} record, not a checkpoint", rec.kind.name()));
    };
    chain.frontier = Frontier::from_parts(cp.tree_size, cp.frontier.clone())
        .ok_or("the checkpoint's frontier does not fit its tree size")?;
    chain.next_seq = rec.seq;
    chain.head = cp.head;
    chain.pruned_below = rec.seq;
    Ok(())
}

/// Opens a sealed entry with its own key.
fn open_entry(rec: &Record<'_>, bytes: &[u8], key: &EntryKey) -> Result<Opened, String> {
    let Payload::Entry(Entry {
        sealed: Some(s), ..
    }) = &rec.payload
    else {
        return Err("an entry key given for an entry that is not sealed".into());
    };
    let split = bytes.len() - s.len();
    let mut aad = Vec::with_capacity(split);
    entry_aad(&bytes[..split], &mut aad);
    let p = key
        .open(&aad, s)
        .map_err(|_| "the entry key does not open the entry (the key or the entry was changed)")?;
    parse_plaintext(&p).map_err(|e| e.to_string())
}

fn check_disclosure(
    header: &Header,
    chain: &mut ChainCheck,
    ledger: &[Vec<u8>],
    rest: &[(usize, Line)],
    trust: &Trust,
    each: &mut Each<'_>,
    r: &mut BundleReport,
) -> Result<(), String> {
    let mut it = rest.iter();
    let (n_entry, entry_line) = it.next().ok_or("no entry line")?;
    let Line::Entry { record, entry_key } = entry_line else {
        return Err(format!("line {n_entry}: expected the entry"));
    };
    let (n_cp, cp_line) = it.next().ok_or("no checkpoint line")?;
    let Line::Checkpoint {
        record: cp_b64,
        proof,
    } = cp_line
    else {
        return Err(format!("line {n_cp}: expected the checkpoint"));
    };
    let at = |n: &usize| {
        let n = *n;
        move |e: String| format!("line {n}: {e}")
    };
    let cp_bytes = unb64(cp_b64).map_err(at(n_cp))?;
    let cp = Record::decode(&cp_bytes).map_err(|e| format!("line {n_cp}: {e}"))?;
    take_ledger(chain, ledger, cp.seq).map_err(at(n_cp))?;
    resume_at(chain, &cp).map_err(at(n_cp))?;
    chain.check_link(&cp).map_err(at(n_cp))?;
    chain.check_payload(&cp, &cp_bytes).map_err(at(n_cp))?;
    let Payload::Checkpoint(c) = &cp.payload else {
        unreachable!("resume_at took a checkpoint")
    };
    let roots = BTreeMap::from([(c.tree_size, c.root)]);
    let bytes = unb64(record).map_err(at(n_entry))?;
    let rec = Record::decode(&bytes).map_err(|e| format!("line {n_entry}: {e}"))?;
    if rec.kind != Kind::Entry {
        return Err(format!(
            "line {n_entry}: a {} record, not an entry",
            rec.kind.name()
        ));
    }
    if rec.seq != header.from_seq || header.to_seq != header.from_seq {
        return Err(format!(
            "line {n_entry}: the entry is seq {}, the header names {}..{}",
            rec.seq, header.from_seq, header.to_seq
        ));
    }
    chain.check_payload(&rec, &bytes).map_err(at(n_entry))?;
    let proof = parse_hashes(proof).map_err(at(n_cp))?;
    verify_inclusion(&leaf_hash(&bytes), rec.seq, c.tree_size, &proof, &c.root)
        .map_err(|e| format!("line {n_cp}: the entry is not in the checkpoint's tree: {e}"))?;
    let opened = match entry_key {
        Some(k) => Some(
            open_entry(
                &rec,
                &bytes,
                &EntryKey::from_bytes(hash(k).map_err(at(n_entry))?),
            )
            .map_err(at(n_entry))?,
        ),
        None => None,
    };
    let sealed = matches!(
        &rec.payload,
        Payload::Entry(Entry {
            sealed: Some(_),
            ..
        })
    );
    r.opened += u64::from(opened.is_some());
    r.sealed += u64::from(sealed && opened.is_none());
    let mut countersigned = false;
    for (n, l) in it {
        let Line::Receipt(line) = l else {
            return Err(format!("line {n}: only receipts may follow the checkpoint"));
        };
        check_receipt(line, &header.agent, &roots, trust).map_err(at(n))?;
        r.receipts += 1;
        countersigned = true;
    }
    if !countersigned {
        return Err(
            "no receipt: the collector's countersignature of the checkpoint is missing".into(),
        );
    }
    r.records = 1;
    r.entries = 1;
    r.checkpoints = 1;
    r.first_seq = Some(rec.seq);
    r.last_seq = Some(rec.seq);
    r.tree_size = c.tree_size;
    each(&rec, &bytes, opened.as_ref());
    Ok(())
}

/// Opens the sealed entries of an export with age identities, as the
/// records go by (a `data_key` record starts each segment's key).
pub(super) struct ExportOpener {
    opener: Option<Opener>,
    segment: u64,
}

impl ExportOpener {
    pub fn new(ids: Option<Identities>) -> ExportOpener {
        ExportOpener {
            opener: ids.map(Opener::new),
            segment: 0,
        }
    }

    pub fn take(&mut self, rec: &Record<'_>) {
        if let (
            Some(o),
            Payload::DataKey {
                recipients,
                wrapped,
            },
        ) = (self.opener.as_mut(), &rec.payload)
        {
            self.segment += 1;
            o.data_key(self.segment, recipients, wrapped);
        }
    }

    /// The opened entry (None: not sealed, or no identity); an error when
    /// an identity was given and does not open it.
    pub fn open(&self, rec: &Record<'_>, bytes: &[u8]) -> Option<Result<Opened, String>> {
        let Payload::Entry(Entry {
            sealed: Some(s), ..
        }) = &rec.payload
        else {
            return None;
        };
        let o = self.opener.as_ref()?;
        Some(o.open(self.segment, rec.seq, bytes, s.len()))
    }
}
