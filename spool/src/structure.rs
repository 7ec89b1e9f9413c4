//! The segment structure (docs/FORMAT.md §3.1, §6.3, §6.11, §6.14, §7
//! steps 1, 4 and 5): how segments fit together. What a segment's header
//! must say, where its anchor checkpoint stands, that a `seal` names the
//! next segment and is the last record of its own, where a `recovery`
//! record may stand and what it must say about the segment before it, and
//! how a segment other than the last may end.
//!
//! Written once, used by both readers of a chain: the offline verifier
//! ([`crate::verify`]), which finds segments as files, and the collector's
//! follower ([`crate::follow`]), which finds them in the records of a batch
//! and makes the segment files from them. The record-by-record chain rules
//! are [`crate::chain`].

use crate::chain::ChainCheck;
use crate::frame::CompleteWrite;
use crate::hash::{Hash, ZERO32};
use crate::record::{Kind, Payload, RecoveryCause};
use crate::segment::SegmentHeader;

/// Where a reader stands in the segment structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCursor {
    /// The segment records go to (the last one created).
    pub no: u64,
    /// Bytes in that segment's file (header included); 0 before it exists.
    pub len: u64,
    /// Records in it.
    pub records: u64,
    /// Whether its first checkpoint (the anchor) has been seen.
    pub anchored: bool,
    /// Whether it ended with a seal record.
    pub sealed: bool,
    /// Where it stands on its data key.
    pub keys: KeyPlace,
}

/// Where a segment stands on its data key (docs/FORMAT.md §6.16).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyPlace {
    /// The index in the segment of its anchor checkpoint, once seen.
    pub anchor_at: Option<u64>,
    /// Whether the segment has a `data_key` record (then every entry in it
    /// is sealed; else none is).
    pub data_key: bool,
}

/// Checks a record's place with regard to its segment's data key (§6.16,
/// §7 step 4): `index` is the record's index in the segment and
/// `anchored_before` whether the anchor came before it.
pub fn check_key_place(
    p: &mut KeyPlace,
    payload: &Payload<'_>,
    index: u64,
    anchored_before: bool,
) -> Result<(), String> {
    match payload {
        Payload::Checkpoint(_) if !anchored_before => p.anchor_at = Some(index),
        Payload::DataKey { .. } => {
            if p.data_key {
                return Err("a second data_key record in the segment".into());
            }
            if p.anchor_at.map(|a| a + 1) != Some(index) {
                return Err(
                    "a data_key record that is not the record right after its segment's anchor checkpoint"
                        .into(),
                );
            }
            p.data_key = true;
        }
        Payload::Entry(e) => match (e.sealed.is_some(), p.data_key) {
            (true, false) => {
                return Err("a sealed entry in a segment without a data_key record".into());
            }
            (false, true) => {
                return Err(
                    "an entry in clear in a segment with a data_key record (its entries must be sealed)"
                        .into(),
                );
            }
            _ => {}
        },
        _ => {}
    }
    Ok(())
}

/// The header segment `no` must have when the log continues there from
/// `chain` (§3.1, §7 step 1): `first_seq` the next sequence number,
/// `prev_head` the chain head, the log's agent id.
pub fn expected_header(no: u64, chain: &ChainCheck) -> SegmentHeader {
    SegmentHeader {
        segment_no: no,
        first_seq: chain.next_seq,
        prev_head: chain.head,
        agent_id: chain.agent_id.clone().unwrap_or_default(),
    }
}

/// §7 step 1, which segment of which log: the header's `segment_no` is
/// `no` (the file's number), and its agent id that of the log (the first
/// header read names it, and `chain` takes it from there).
pub fn check_header_identity(
    h: &SegmentHeader,
    no: u64,
    chain: &mut ChainCheck,
) -> Result<(), String> {
    if h.segment_no != no {
        return Err(format!(
            "header says segment {}, file name says {no}",
            h.segment_no
        ));
    }
    match &chain.agent_id {
        Some(id) if *id != h.agent_id => {
            return Err(format!("agent id {:?} differs from {id:?}", h.agent_id));
        }
        None => chain.agent_id = Some(h.agent_id.clone()),
        _ => {}
    }
    Ok(())
}

/// §7 step 1, where the segment continues the log: its header is the one
/// [`expected_header`] gives (`first_seq`, `prev_head`).
pub fn check_header_continuity(h: &SegmentHeader, chain: &ChainCheck) -> Result<(), String> {
    let expected = expected_header(h.segment_no, chain);
    if h.first_seq != expected.first_seq {
        return Err(format!(
            "header first_seq {} but the log continues at {}",
            h.first_seq, expected.first_seq
        ));
    }
    if h.prev_head != expected.prev_head {
        return Err("header prev_head does not match the chain head".into());
    }
    Ok(())
}

/// The place of a segment's anchor checkpoint (docs/FORMAT.md §6.3): the
/// first record of a segment that is not its `genesis` or `recovery`
/// record must be a checkpoint. `anchored` says whether the segment's
/// anchor came before the record of kind `kind`; returns whether it has
/// come with it.
pub fn check_anchor_place(kind: Kind, anchored: bool) -> Result<bool, String> {
    match kind {
        _ if anchored => Ok(true),
        Kind::Checkpoint => Ok(true),
        // Each has its own place (seq 0; the first record of a segment).
        Kind::Genesis | Kind::Recovery => Ok(false),
        other => Err(format!(
            "a {} record where the segment's anchor checkpoint must be (its first record, after genesis or recovery)",
            other.name()
        )),
    }
}

/// How the segment before a `recovery` record ended, as its reader found it.
#[derive(Debug, Clone)]
pub struct SegmentEnd {
    /// The segment's number.
    pub no: u64,
    /// The last good record in it.
    pub last_seq: u64,
    /// The offset where its good records end.
    pub end: u64,
    /// The bytes after that: their length and SHA-256, and whether they
    /// hold a complete write ([`crate::frame::completed_write`]), which a
    /// torn tail does not.
    pub region_len: u64,
    pub region_sha256: Hash,
    pub region_complete: Option<CompleteWrite>,
}

/// The rules of a `recovery` record (docs/FORMAT.md §6.11) against the end
/// of the segment before it.
pub fn check_recovery(payload: &Payload<'_>, prev: &SegmentEnd) -> Result<(), String> {
    let Payload::Recovery {
        cause,
        segment_no,
        last_good_seq,
        region_offset,
        region_len,
        region_sha256,
        ..
    } = payload
    else {
        return Ok(());
    };
    if *segment_no != prev.no {
        return Err(format!(
            "recovery record names segment {segment_no}, not the previous segment"
        ));
    }
    if *last_good_seq != prev.last_seq || *region_offset != prev.end {
        return Err(
            "recovery record does not match where the damaged segment's records end".into(),
        );
    }
    match cause {
        RecoveryCause::TornTail => {
            if *region_len != prev.region_len || *region_sha256 != prev.region_sha256 {
                return Err(format!(
                    "the torn region of segment {} is not the one the recovery record names (length or SHA-256 differ)",
                    prev.no
                ));
            }
            if let Some(complete) = prev.region_complete {
                return Err(format!(
                    "the 'torn' region of segment {} at offset {region_offset} is not a write cut short: {complete}",
                    prev.no
                ));
            }
        }
        RecoveryCause::FsyncFailed => {
            if *region_sha256 != ZERO32 {
                return Err("fsync_failed recovery with a region hash".into());
            }
        }
        RecoveryCause::Corruption => {
            return Err(format!(
                "the agent found segment {} damaged at offset {region_offset} with valid data after it (corruption or tampering)",
                prev.no
            ));
        }
    }
    Ok(())
}

/// The segment a record opens when it does not go into the current one
/// (§6.11, §6.14, §7 step 5), for a reader that finds segments in the
/// records: the first record of the log opens segment 0; after a `seal` the
/// next record opens the segment the seal named; a `recovery` record (whose
/// place [`check_recovery_at`] checks) opens the segment after the current
/// one. `None`: the record goes into the current segment.
pub fn opens_segment(cursor: &SegmentCursor, is_recovery: bool) -> Option<u64> {
    match (cursor.len, cursor.sealed) {
        (0, _) => Some(0),
        _ if is_recovery || cursor.sealed => Some(cursor.no + 1),
        _ => None,
    }
}

/// The end of the current segment, for a recovery record that would come
/// next (§7 step 4): only a segment that exists and ended without a seal
/// has an end to explain. `region` is the rest of that segment's file as
/// the reader has it (the torn region a batch carries).
pub fn unsealed_end(cursor: &SegmentCursor, next_seq: u64, region: &[u8]) -> Option<SegmentEnd> {
    if cursor.len == 0 || cursor.sealed {
        return None;
    }
    Some(SegmentEnd {
        no: cursor.no,
        last_seq: next_seq.wrapping_sub(1),
        end: cursor.len,
        region_len: region.len() as u64,
        region_sha256: crate::hash::sha256(region),
        region_complete: crate::frame::completed_write(region, 0, next_seq),
    })
}

/// A recovery record (`payload`; anything else passes) stands first in its
/// segment, `no`, right after the segment whose end it explains, and says
/// exactly how that segment ended (§6.11, §7 step 4). `first` says whether
/// it is its segment's first record; `explains` is the segment before as
/// the reader found it, if the reader may take a recovery record after it.
/// For the verifier that is the segment its look-ahead (§7 step 2) found
/// named by this record; the follower, which has no look-ahead, takes one
/// only after a segment that ended without a seal ([`unsealed_end`]) — the
/// agent never writes one after a seal, and a verifier would refuse any
/// byte between the seal and the recovery's `region_offset` anyway.
pub fn check_recovery_at(
    payload: &Payload<'_>,
    first: bool,
    explains: Option<&SegmentEnd>,
    no: u64,
) -> Result<(), String> {
    if !matches!(payload, Payload::Recovery { .. }) {
        return Ok(());
    }
    let Some(prev) = explains.filter(|_| first) else {
        return Err(
            "a recovery record that is not the first record after a segment that ended without a seal"
                .into(),
        );
    };
    if prev.no + 1 != no {
        return Err(format!(
            "a recovery record in segment {no} after segment {}, not the previous segment",
            prev.no
        ));
    }
    check_recovery(payload, prev)
}

/// Why a seal that is followed by anything is refused (§7 step 4).
pub const SEAL_NOT_LAST: &str = "the seal is not the last record of its segment";

/// A `seal` names the segment after its own, `no` (§6.14). Returns whether
/// the record is a seal: nothing may follow it in its segment
/// ([`SEAL_NOT_LAST`]).
pub fn check_seal(payload: &Payload<'_>, no: u64) -> Result<bool, String> {
    match payload {
        Payload::Seal { next_segment } if *next_segment != no + 1 => Err(format!(
            "seal names segment {next_segment} as next, expected {}",
            no + 1
        )),
        Payload::Seal { .. } => Ok(true),
        _ => Ok(false),
    }
}

/// How a segment may end (§7 step 5): a segment other than the last ends
/// with a `seal`, or a `recovery` record at the start of the next one
/// explains its end.
pub fn check_segment_end(sealed: bool, explained: bool, last: bool) -> Result<(), String> {
    if last || sealed || explained {
        Ok(())
    } else {
        Err("the segment ends without a seal record and no recovery record explains its end (records removed?)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_key_stands_right_after_the_anchor_and_decides_sealing() {
        let cp = crate::record::Checkpoint {
            epoch: 0,
            tree_size: 0,
            root: [0; 32],
            head: [0; 32],
            boot_id: [0; 16],
            mono_ns: 0,
            frontier: vec![],
            sources: vec![],
            signature: [0; 64],
        };
        let pos = crate::position::PositionRef {
            kind: 0,
            bytes: &[],
        };
        let entry = |sealed: Option<&'static [u8]>| {
            Payload::Entry(crate::record::Entry {
                source: "a",
                position: pos,
                flags: 0,
                fields: vec![],
                body: &[],
                sealed,
            })
        };
        let dk = Payload::DataKey {
            recipients: vec!["age1x"],
            wrapped: b"age-encryption.org/v1\n",
        };
        let anchor = Payload::Checkpoint(cp.clone());
        // Anchor, data key, sealed entries, a later checkpoint.
        let mut p = KeyPlace::default();
        check_key_place(&mut p, &anchor, 0, false).unwrap();
        check_key_place(&mut p, &dk, 1, true).unwrap();
        check_key_place(&mut p, &entry(Some(&[0; 16])), 2, true).unwrap();
        check_key_place(&mut p, &anchor, 3, true).unwrap();
        assert!(check_key_place(&mut p, &entry(None), 4, true).is_err());
        assert!(
            check_key_place(&mut p, &dk, 5, true).is_err(),
            "a second one"
        );
        // Not right after the anchor.
        let mut p = KeyPlace::default();
        check_key_place(&mut p, &anchor, 1, false).unwrap();
        check_key_place(&mut p, &entry(None), 2, true).unwrap();
        assert!(check_key_place(&mut p, &dk, 3, true).is_err());
        assert!(check_key_place(&mut p, &entry(Some(&[0; 16])), 4, true).is_err());
    }

    fn cursor(len: u64, sealed: bool) -> SegmentCursor {
        SegmentCursor {
            no: 3,
            len,
            records: 0,
            anchored: false,
            sealed,
            keys: KeyPlace::default(),
        }
    }

    #[test]
    fn where_segments_begin_and_end() {
        // The log's first record opens segment 0; after a seal the next
        // record opens the next segment; a recovery record closes an
        // unsealed one; otherwise records stay where they are.
        assert_eq!(opens_segment(&cursor(0, false), false), Some(0));
        assert_eq!(opens_segment(&cursor(100, true), false), Some(4));
        assert_eq!(opens_segment(&cursor(100, false), true), Some(4));
        assert_eq!(opens_segment(&cursor(100, false), false), None);
        assert!(unsealed_end(&cursor(0, false), 7, &[]).is_none());
        assert!(unsealed_end(&cursor(100, true), 7, &[]).is_none());
        let end = unsealed_end(&cursor(100, false), 7, b"torn").unwrap();
        assert_eq!(
            (end.no, end.last_seq, end.end, end.region_len),
            (3, 6, 100, 4)
        );
        // A segment other than the last needs a seal or a recovery.
        assert!(check_segment_end(false, false, false).is_err());
        assert!(check_segment_end(true, false, false).is_ok());
        assert!(check_segment_end(false, true, false).is_ok());
        assert!(check_segment_end(false, false, true).is_ok());
    }

    #[test]
    fn a_seal_names_the_next_segment() {
        assert_eq!(check_seal(&Payload::Seal { next_segment: 4 }, 3), Ok(true));
        assert!(check_seal(&Payload::Seal { next_segment: 5 }, 3).is_err());
        assert!(check_seal(&Payload::Seal { next_segment: 3 }, 3).is_err());
    }

    #[test]
    fn the_expected_header_continues_the_chain() {
        let mut chain = ChainCheck::new(None);
        chain.next_seq = 42;
        chain.head = [7; 32];
        chain.agent_id = Some("web-01".into());
        let h = expected_header(5, &chain);
        assert_eq!((h.segment_no, h.first_seq, h.prev_head), (5, 42, [7; 32]));
        assert_eq!(check_header_continuity(&h, &chain), Ok(()));
        assert_eq!(check_header_identity(&h, 5, &mut chain), Ok(()));
        assert!(check_header_identity(&h, 6, &mut chain).is_err());
        let mut other = h.clone();
        other.agent_id = "web-02".into();
        assert!(check_header_identity(&other, 5, &mut chain).is_err());
        other = h.clone();
        other.first_seq = 41;
        assert!(check_header_continuity(&other, &chain).is_err());
        other = h;
        other.prev_head = [8; 32];
        assert!(check_header_continuity(&other, &chain).is_err());
        // The first header read names the log's agent.
        let mut fresh = ChainCheck::new(None);
        let h = SegmentHeader {
            segment_no: 0,
            first_seq: 0,
            prev_head: ZERO32,
            agent_id: "db-1".into(),
        };
        assert_eq!(check_header_identity(&h, 0, &mut fresh), Ok(()));
        assert_eq!(fresh.agent_id.as_deref(), Some("db-1"));
    }
}
