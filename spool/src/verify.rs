//! Verification of a spool, offline, from a copy, with only the first
//! public key (docs/FORMAT.md §7). Names the first bad segment, offset and
//! sequence number and the reason.

use crate::chain::ChainCheck;
use crate::frame::{
    CompleteWrite, FrameAt, completed_write, crc_matches, frame_at, frame_bounds_at,
};
use crate::hash::{Hash, leaf_hash, sha256};
use crate::ledger::apply as ledger_apply;
use crate::record::{Kind, Payload, Record};
use crate::segment::{SegmentHeader, list_segments, recovery_limit};
use crate::structure::{
    KeyPlace, SEAL_NOT_LAST, SegmentCursor, SegmentEnd, check_anchor_place,
    check_header_continuity, check_header_identity, check_key_place, check_recovery_at, check_seal,
    check_segment_end,
};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Heartbeat interval assumed before any `start` record.
pub const DEFAULT_HEARTBEAT_NS: u64 = 60_000_000_000;

/// Why verification could not run at all (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a spool (no segment files)")]
    NotASpool(PathBuf),
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub segment: u64,
    pub offset: u64,
    pub seq: u64,
    pub reason: String,
}

/// A recovery record that explains the end of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryNote {
    pub segment: u64,
    pub cause: &'static str,
    pub offset: u64,
    pub len: u64,
}

/// A stretch without records longer than the heartbeat interval.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeGap {
    pub from_seq: u64,
    pub to_seq: u64,
    pub from_ts: i64,
    pub to_ts: i64,
    pub seconds: f64,
    pub cause: &'static str,
}

/// What verification found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub segments: u64,
    pub records: u64,
    pub bytes: u64,
    pub entries: u64,
    pub checkpoints: u64,
    pub epoch_transitions: u64,
    pub unsigned_tail: u64,
    pub recoveries: Vec<RecoveryNote>,
    pub tail_in_progress_bytes: u64,
    pub time_gaps: Vec<TimeGap>,
    /// (seq, expected_ts, observed_ts)
    pub clock_steps: Vec<(u64, i64, i64)>,
    /// (seq, code, detail)
    pub alerts: Vec<(u64, u16, String)>,
    pub receipts: u64,
    pub prunes: u64,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    pub agent_id: Option<String>,
    pub first_pubkey: Option<[u8; 32]>,
    pub key_authenticated: bool,
    pub epoch: u64,
    pub tree_size: u64,
    pub root: Hash,
    pub head: Hash,
    pub ignored_files: Vec<String>,
    pub failure: Option<Failure>,
    /// The tree at the end (for a follower that resumes here).
    pub frontier: crate::merkle::Frontier,
    /// The public key of the last epoch.
    pub key: Option<[u8; 32]>,
    /// Where the last segment's good records end.
    pub last_segment: Option<SegmentCursor>,
    /// The spool's oldest segments were pruned: where it starts now.
    pub pruned: Option<PrunedStart>,
}

/// Where a pruned spool starts, and what vouches for the removal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunedStart {
    pub first_segment: u64,
    pub first_seq: u64,
    /// Records in the key ledger.
    pub ledger_records: u64,
    /// The seq of the newest `prune` record that covers the start.
    pub recorded_at: Option<u64>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// Where a record was found, for callers that read the records.
#[derive(Debug, Clone, Copy)]
pub struct Location {
    pub segment: u64,
    pub offset: u64,
}

struct Prev {
    no: u64,
    records: u64,
    anchored: bool,
    keys: KeyPlace,
    sealed: bool,
    /// The next segment's recovery record names this segment's end.
    limited: bool,
    last_seq: u64,
    file_len: u64,
    /// Where the log of that segment ended (the recovery's region offset).
    end: u64,
    region_sha256: Hash,
    /// What shows that the region is not a write cut short, if anything.
    region_complete: Option<CompleteWrite>,
}

struct State<'v> {
    chain: ChainCheck,
    /// Every segment header seen: number -> (first_seq, prev_head).
    seg_heads: BTreeMap<u64, (u64, Hash)>,
    /// The largest tree size a receipt so far named.
    max_receipt: Option<u64>,
    heartbeat_ns: u64,
    prev_ts: Option<(u64, i64, Kind)>,
    report: Report,
    visitor: &'v mut dyn FnMut(Location, &Record<'_>, &[u8]),
}

/// Verifies the spool in `dir`. `pubkey` is the host's first public key;
/// without it the key in the genesis record is used (and the report says the
/// key is not authenticated). `visitor` sees every record that passed.
pub fn verify_spool(
    dir: &Path,
    pubkey: Option<[u8; 32]>,
    visitor: &mut dyn FnMut(Location, &Record<'_>, &[u8]),
) -> Result<Report, VerifyError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| VerifyError::Io { path, source }
    };
    let (segs, other) = list_segments(dir).map_err(io(dir))?;
    if segs.is_empty() {
        return Err(VerifyError::NotASpool(dir.to_owned()));
    }
    let mut s = State {
        chain: ChainCheck::new(pubkey),
        seg_heads: BTreeMap::new(),
        max_receipt: None,
        heartbeat_ns: DEFAULT_HEARTBEAT_NS,
        prev_ts: None,
        report: Report {
            ignored_files: other,
            ..Report::default()
        },
        visitor,
    };
    // One thread reads the next segment and hashes its records while this
    // one checks the current (the leaf hashes are independent of each
    // other; the checks that follow them are not).
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<ReadSegment>>(1);
        let (recycle_tx, recycle_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let paths: Vec<PathBuf> = segs.iter().map(|(_, p)| p.clone()).collect();
        scope.spawn(move || {
            for path in paths {
                let mut buf = recycle_rx.try_recv().unwrap_or_default();
                buf.clear();
                let r = std::fs::File::open(&path)
                    .and_then(|mut f| f.read_to_end(&mut buf))
                    .map(|_| ReadSegment::hashed(buf));
                if tx.send(r).is_err() {
                    return;
                }
            }
        });
        check_segments(&mut s, &segs, rx, recycle_tx)
    })
}

/// A segment as the reading thread hands it over: its bytes, and the leaf
/// hash of every whole frame from the header on, by the frame's place.
/// Only a hint: the checks find the frames again and hash any frame the
/// hint does not have at the same place.
struct ReadSegment {
    bytes: Vec<u8>,
    leaves: Vec<(usize, usize, Hash)>,
}

impl ReadSegment {
    fn hashed(bytes: Vec<u8>) -> ReadSegment {
        let mut leaves = Vec::new();
        if let Ok((_, hlen)) = SegmentHeader::decode(&bytes) {
            let mut off = hlen;
            while let FrameAt::Frame { start, end } = frame_bounds_at(&bytes, off) {
                leaves.push((start, end, leaf_hash(&bytes[start..end])));
                off = end;
            }
        }
        ReadSegment { bytes, leaves }
    }
}

/// Checks the segments in order, reading their bytes from `rx`.
fn check_segments(
    s: &mut State<'_>,
    segs: &[(u64, PathBuf)],
    rx: std::sync::mpsc::Receiver<std::io::Result<ReadSegment>>,
    recycle: std::sync::mpsc::Sender<Vec<u8>>,
) -> Result<Report, VerifyError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| VerifyError::Io { path, source }
    };
    let mut prev: Option<Prev> = None;
    let start_no = segs.first().map_or(0, |(no, _)| *no);
    let ledger = if start_no > 0 {
        let dir = segs[0].1.parent().unwrap_or(Path::new("."));
        match crate::ledger::load(dir) {
            Ok(Some(l)) => Some(l),
            Ok(None) => {
                s.report.segments += 1;
                return Ok(s.fail(
                    start_no,
                    0,
                    format!(
                        "segment 0 is missing (the spool starts at segment {start_no}) and there is no key ledger ({}) to say they were pruned",
                        crate::ledger::LEDGER_FILE
                    ),
                ));
            }
            Err(e) => {
                s.report.segments += 1;
                return Ok(s.fail(
                    start_no,
                    0,
                    format!("segments 0..{} were pruned but {e}", start_no - 1),
                ));
            }
        }
    } else {
        None
    };
    for (i, (no, path)) in segs.iter().enumerate() {
        let expected_no = prev.as_ref().map_or(start_no, |p| p.no + 1);
        s.report.segments += 1;
        if *no != expected_no {
            let reason = if expected_no == 0 {
                format!("segment 0 is missing (the spool starts at segment {no})")
            } else {
                format!("segments {expected_no}..{} are missing", no - 1)
            };
            return Ok(s.fail(*no, 0, reason));
        }
        let ReadSegment { bytes, leaves } = match rx.recv() {
            Ok(r) => r.map_err(io(path))?,
            Err(_) => return Err(io(path)(std::io::Error::other("segment reader stopped"))),
        };
        let limit = match segs.get(i + 1) {
            Some((_, next)) => recovery_limit(next, *no)
                .map_err(io(next))?
                .map(|(offset, _)| offset),
            None => None,
        };
        if let (0, Some(ledger)) = (i, &ledger)
            && let Err(reason) = s.start_pruned(*no, &bytes, limit, ledger)
        {
            return Ok(s.fail(*no, 0, reason));
        }
        let last = i + 1 == segs.len();
        let result = s.segment(*no, &bytes, &leaves, limit, last, prev.take());
        let _ = recycle.send(bytes);
        match result {
            Ok(p) => {
                s.report.last_segment = Some(SegmentCursor {
                    no: p.no,
                    len: p.end,
                    records: p.records,
                    anchored: p.anchored,
                    sealed: p.sealed,
                    keys: p.keys,
                });
                prev = Some(p);
            }
            Err((off, seq, reason)) => return Ok(s.fail(*no, off, reason).with_seq(seq)),
        }
    }
    if let Some(p) = &s.report.pruned
        && p.recorded_at.is_none()
    {
        let (no, seq) = (p.first_segment, p.first_seq);
        let mut r = s.fail(
            no,
            0,
            format!(
                "segments 0..{} are missing and no prune record in the chain says they were pruned",
                no - 1
            ),
        );
        if let Some(f) = &mut r.failure {
            f.seq = seq;
        }
        return Ok(r);
    }
    s.report.epoch = s.chain.epoch;
    s.report.tree_size = s.chain.frontier.size();
    s.report.root = s.chain.frontier.root();
    s.report.head = s.chain.head;
    s.report.first_pubkey = s.report.first_pubkey.or(s.chain.key);
    s.report.frontier = s.chain.frontier.clone();
    s.report.key = s.chain.key;
    Ok(std::mem::take(&mut s.report))
}

trait WithSeq {
    fn with_seq(self, seq: u64) -> Self;
}
impl WithSeq for Report {
    fn with_seq(mut self, seq: u64) -> Self {
        if let Some(f) = &mut self.failure {
            f.seq = seq;
        }
        self
    }
}

impl State<'_> {
    /// Sets the chain state at the start of a pruned spool: the first kept
    /// segment's header gives where the chain stands, its first record (the
    /// anchor checkpoint) the Merkle frontier, and the key ledger the key in
    /// force. The checkpoint's own checks and signature, run next as for any
    /// record, are what authenticate all three.
    fn start_pruned(
        &mut self,
        no: u64,
        bytes: &[u8],
        limit: Option<u64>,
        ledger: &[Vec<u8>],
    ) -> Result<(), String> {
        let (h, hlen) = SegmentHeader::decode(bytes).map_err(|e| format!("segment header: {e}"))?;
        let log = &bytes[..limit.map_or(bytes.len(), |l| (l as usize).min(bytes.len()))];
        let FrameAt::Frame { start, end } = frame_at(log, hlen) else {
            return Err(
                "the first kept segment of a pruned spool has no first record within its log"
                    .into(),
            );
        };
        let rec = Record::decode(&bytes[start..end]).map_err(|e| e.to_string())?;
        let Payload::Checkpoint(cp) = &rec.payload else {
            return Err(format!(
                "the first record of a pruned spool is a {}, not a checkpoint",
                rec.kind.name()
            ));
        };
        let frontier = crate::merkle::Frontier::from_parts(h.first_seq, cp.frontier.to_vec())
            .ok_or("the first checkpoint's frontier does not fit its tree size")?;
        self.chain.agent_id = Some(h.agent_id.clone());
        ledger_apply(&mut self.chain, ledger, h.first_seq)?;
        self.report.key_authenticated = self.chain.key_authenticated;
        self.report.first_pubkey = self.chain.first_pubkey;
        self.chain.next_seq = h.first_seq;
        self.chain.head = h.prev_head;
        self.chain.frontier = frontier;
        self.chain.pruned_below = h.first_seq;
        self.report.pruned = Some(PrunedStart {
            first_segment: no,
            first_seq: h.first_seq,
            ledger_records: ledger.len() as u64,
            recorded_at: None,
        });
        Ok(())
    }

    fn fail(&mut self, segment: u64, offset: u64, reason: String) -> Report {
        let mut r = std::mem::take(&mut self.report);
        r.failure = Some(Failure {
            segment,
            offset,
            seq: self.chain.next_seq,
            reason,
        });
        r.epoch = self.chain.epoch;
        r.tree_size = self.chain.frontier.size();
        r.root = self.chain.frontier.root();
        r.head = self.chain.head;
        r
    }

    fn segment(
        &mut self,
        no: u64,
        bytes: &[u8],
        hinted: &[(usize, usize, Hash)],
        limit: Option<u64>,
        last: bool,
        prev: Option<Prev>,
    ) -> Result<Prev, (u64, u64, String)> {
        let seq = self.chain.next_seq;
        let at0 = |reason: String| (0, seq, reason);
        let (h, hlen) =
            SegmentHeader::decode(bytes).map_err(|e| at0(format!("segment header: {e}")))?;
        check_header_identity(&h, no, &mut self.chain).map_err(at0)?;
        self.report.agent_id = self.chain.agent_id.clone();
        check_header_continuity(&h, &self.chain).map_err(at0)?;
        self.seg_heads.insert(no, (h.first_seq, h.prev_head));
        let end = match limit {
            Some(l) if (l as usize) < hlen => {
                return Err((
                    hlen as u64,
                    seq,
                    format!(
                        "the next segment's recovery record names offset {l}, inside the header"
                    ),
                ));
            }
            Some(l) => l as usize,
            None => bytes.len(),
        };
        let data = &bytes[..end.min(bytes.len())];
        // Frame and CRC every record first (one pass: the CRC is cheap and
        // sequential reading is what it needs), then hash them on every core:
        // the leaf hashes are independent of each other; the checks that
        // follow them are not.
        let mut frames = Vec::new();
        let mut off = hlen;
        // The reading thread found the frames of these same bytes from the
        // same header length (their lengths only): those that end within
        // `data` and whose CRC holds are the first frames here; the
        // framing goes on from the end of the last of them (and names a
        // bad CRC there).
        for &(start, fend, _) in hinted {
            if fend > data.len() || !crc_matches(data, off, fend) {
                break;
            }
            frames.push((off, start, fend));
            off = fend;
        }
        let stop = loop {
            match frame_at(data, off) {
                FrameAt::Frame { start, end: fend } => {
                    frames.push((off, start, fend));
                    off = fend;
                }
                other => break other,
            }
        };
        let leaves = leaf_hashes(data, &frames, hinted);
        let mut index = 0u64;
        let mut seen_checkpoint = false;
        let mut keys = KeyPlace::default();
        let mut sealed_at: Option<usize> = None;
        // Only a segment whose end a recovery record must explain is handed on.
        let mut prev = prev.filter(|p| p.limited);
        for (&(foff, start, fend), leaf) in frames.iter().zip(&leaves) {
            if let Some(after) = sealed_at {
                return Err((after as u64, self.chain.next_seq, SEAL_NOT_LAST.into()));
            }
            let loc = Location {
                segment: no,
                offset: foff as u64,
            };
            let sealed = self.record(
                loc,
                &data[start..fend],
                leaf,
                index,
                &mut seen_checkpoint,
                &mut keys,
                &mut prev,
                no,
            )?;
            if sealed {
                sealed_at = Some(fend);
            }
            self.report.bytes += (fend - foff) as u64;
            index += 1;
        }
        match stop {
            FrameAt::End | FrameAt::Frame { .. } if end > bytes.len() => {
                return Err((
                    off as u64,
                    self.chain.next_seq,
                    "the next segment's recovery record names an offset past the end of this segment"
                        .into(),
                ));
            }
            FrameAt::End | FrameAt::Frame { .. } => {}
            FrameAt::Incomplete if last && limit.is_none() && sealed_at.is_none() => {
                // Only the unfinished last write may end the log like this.
                if let Some(complete) = completed_write(data, off, self.chain.next_seq) {
                    return Err((
                        off as u64,
                        self.chain.next_seq,
                        format!(
                            "the frame runs past the end of the file, but it is not a write in progress: {complete} (damaged or altered record)"
                        ),
                    ));
                }
                self.report.tail_in_progress_bytes = (data.len() - off) as u64;
            }
            FrameAt::Incomplete => {
                if let Some(after) = sealed_at {
                    return Err((after as u64, self.chain.next_seq, SEAL_NOT_LAST.into()));
                }
                let why = if limit.is_some() && end > bytes.len() {
                    "the next segment's recovery record names an offset past the end of this segment"
                } else {
                    "incomplete frame"
                };
                return Err((off as u64, self.chain.next_seq, why.into()));
            }
            FrameAt::Bad(b) => {
                if let Some(after) = sealed_at {
                    return Err((after as u64, self.chain.next_seq, SEAL_NOT_LAST.into()));
                }
                return Err((
                    off as u64,
                    self.chain.next_seq,
                    format!("{b} (damaged or altered record)"),
                ));
            }
        }
        if prev.is_some() && index == 0 {
            // The previous segment was named by a recovery record that this
            // segment does not hold after all (cannot happen: the look-ahead
            // found it). Kept for safety.
            return Err((
                hlen as u64,
                self.chain.next_seq,
                "expected a recovery record".into(),
            ));
        }
        if let (Some(after), Some(_)) = (sealed_at, limit)
            && end < bytes.len()
        {
            return Err((after as u64, self.chain.next_seq, SEAL_NOT_LAST.into()));
        }
        check_segment_end(sealed_at.is_some(), limit.is_some(), last)
            .map_err(|why| (off as u64, self.chain.next_seq, why))?;
        let region_at = end.min(bytes.len());
        let region = &bytes[region_at..];
        Ok(Prev {
            no,
            records: index,
            anchored: seen_checkpoint,
            keys,
            sealed: sealed_at.is_some(),
            limited: limit.is_some(),
            last_seq: self.chain.next_seq.wrapping_sub(1),
            file_len: bytes.len() as u64,
            end: end as u64,
            region_sha256: sha256(region),
            region_complete: limit
                .and_then(|_| completed_write(bytes, region_at, self.chain.next_seq)),
        })
    }

    /// Checks one record; returns whether it was a seal.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        loc: Location,
        bytes: &[u8],
        leaf: &Hash,
        index: u64,
        seen_checkpoint: &mut bool,
        keys: &mut KeyPlace,
        prev: &mut Option<Prev>,
        no: u64,
    ) -> Result<bool, (u64, u64, String)> {
        let seq_now = self.chain.next_seq;
        let at = |reason: String| (loc.offset, seq_now, reason);
        let rec = Record::decode(bytes).map_err(|e| at(e.to_string()))?;
        self.chain.check_link(&rec).map_err(at)?;
        let anchored_before = *seen_checkpoint;
        *seen_checkpoint = check_anchor_place(rec.kind, *seen_checkpoint).map_err(at)?;
        check_key_place(keys, &rec.payload, index, anchored_before).map_err(at)?;
        self.chain.check_payload(&rec, bytes).map_err(at)?;
        let mut sealed = false;
        match &rec.payload {
            Payload::Genesis { .. } => {
                self.report.key_authenticated = self.chain.key_authenticated;
                self.report.first_pubkey = self.chain.first_pubkey;
            }
            Payload::Entry(_) => self.report.entries += 1,
            Payload::DataKey { .. } => {}
            Payload::Checkpoint(_) => self.report.checkpoints += 1,
            Payload::EpochKey { .. } => self.report.epoch_transitions += 1,
            Payload::Alert { code, detail } => {
                self.report
                    .alerts
                    .push((rec.seq, *code, (*detail).to_owned()));
            }
            Payload::ClockStep {
                expected_ts,
                observed_ts,
                ..
            } => {
                self.report
                    .clock_steps
                    .push((rec.seq, *expected_ts, *observed_ts));
            }
            Payload::Recovery {
                cause,
                region_offset,
                region_len,
                ..
            } => {
                let end = prev.take().map(|p| SegmentEnd {
                    no: p.no,
                    last_seq: p.last_seq,
                    end: p.end,
                    region_len: p.file_len - p.end,
                    region_sha256: p.region_sha256,
                    region_complete: p.region_complete,
                });
                check_recovery_at(&rec.payload, index == 0, end.as_ref(), no).map_err(at)?;
                self.report.recoveries.push(RecoveryNote {
                    segment: end.map_or(no.wrapping_sub(1), |e| e.no),
                    cause: cause.name(),
                    offset: *region_offset,
                    len: *region_len,
                });
            }
            Payload::Receipt { tree_size, .. } => {
                self.report.receipts += 1;
                self.max_receipt = self.max_receipt.max(Some(*tree_size));
            }
            Payload::Seal { .. } => sealed = check_seal(&rec.payload, no).map_err(at)?,
            Payload::Prune {
                first_kept_segment,
                first_kept_seq,
                anchor_head,
                ..
            } => {
                let start = self.report.pruned.as_ref().map_or(0, |p| p.first_segment);
                if *first_kept_segment >= start {
                    match self.seg_heads.get(first_kept_segment) {
                        Some((fs, ph)) if fs == first_kept_seq && ph == anchor_head => {}
                        Some(_) => {
                            return Err(at(format!(
                                "prune record does not match the header of segment {first_kept_segment}"
                            )));
                        }
                        None => {
                            return Err(at(format!(
                                "prune record names segment {first_kept_segment}, which does not precede it"
                            )));
                        }
                    }
                    if self.max_receipt.is_none_or(|m| m < *first_kept_seq) {
                        return Err(at(format!(
                            "prune record removes records up to seq {} that no receipt before it acknowledges",
                            first_kept_seq.saturating_sub(1)
                        )));
                    }
                    if let Some(p) = &mut self.report.pruned {
                        p.recorded_at = Some(rec.seq);
                    }
                }
                self.report.prunes += 1;
            }
            Payload::Start { .. }
            | Payload::Gap { .. }
            | Payload::Stop { .. }
            | Payload::Config { .. }
            | Payload::Heartbeat { .. } => {}
        }
        if prev.is_some() {
            return Err(at("the previous segment's end is not explained".into()));
        }
        // Time: gaps longer than the heartbeat interval.
        if let Some((pseq, pts, pkind)) = self.prev_ts
            && rec.ts > pts
            && (rec.ts - pts) as u64 > self.heartbeat_ns.saturating_mul(2)
        {
            let cause = if pkind == Kind::Stop {
                "agent stopped"
            } else if rec.kind == Kind::Start {
                "agent not running (no stop record)"
            } else {
                "no records"
            };
            self.report.time_gaps.push(TimeGap {
                from_seq: pseq,
                to_seq: rec.seq,
                from_ts: pts,
                to_ts: rec.ts,
                seconds: (rec.ts - pts) as f64 / 1e9,
                cause,
            });
        }
        if let Payload::Start { heartbeat_ns, .. } = rec.payload {
            self.heartbeat_ns = heartbeat_ns;
        }
        self.prev_ts = Some((rec.seq, rec.ts, rec.kind));
        self.report.first_ts.get_or_insert(rec.ts);
        self.report.last_ts = Some(rec.ts);
        if rec.kind == Kind::Checkpoint {
            self.report.unsigned_tail = 0;
        } else {
            self.report.unsigned_tail += 1;
        }
        (self.visitor)(loc, &rec, bytes);
        self.chain.advance(*leaf);
        self.report.records += 1;
        Ok(sealed)
    }
}

/// The leaf hashes of the frames of a segment: those the reading thread
/// hashed at the same place taken from `hinted`, the others computed here
/// on all cores.
fn leaf_hashes(
    data: &[u8],
    frames: &[(usize, usize, usize)],
    hinted: &[(usize, usize, Hash)],
) -> Vec<Hash> {
    let same = frames.len() <= hinted.len()
        && frames
            .iter()
            .zip(hinted)
            .all(|(&(_, s, e), &(hs, he, _))| (s, e) == (hs, he));
    if same {
        return hinted[..frames.len()].iter().map(|&(_, _, h)| h).collect();
    }
    let hash = |f: &[(usize, usize, usize)]| {
        f.iter()
            .map(|&(_, s, e)| leaf_hash(&data[s..e]))
            .collect::<Vec<_>>()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if threads < 2 || frames.len() < 8192 {
        return hash(frames);
    }
    let chunk = frames.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = frames
            .chunks(chunk)
            .map(|c| scope.spawn(move || hash(c)))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("hashing thread"))
            .collect()
    })
}
