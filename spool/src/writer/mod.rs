//! The one spool writer: appends records, chains and hashes them, commits
//! them in groups, writes checkpoints, heartbeats and epoch transitions,
//! rotates and seals segments, and recovers from crashes and fsync errors.

mod append;
mod failure;
pub mod flusher;
pub mod options;
mod pipeline;
mod prune;
pub(crate) mod recover;
mod ticks;
mod usage;

use crate::clock::{boot_id, boottime_ns, wall_ns};
use crate::error::{SpoolError, io_at};
use crate::frame::{FrameAt, frame_at};
use crate::keys::{CHECKPOINT_CONTEXT, HostKey, verify_signature};
use crate::record::{AlertCode, AppendOnly, Kind, Payload, RecoveryCause};
use crate::segment::{SegmentHeader, list_segments, segment_path};
use crate::worm;
pub use append::FORWARD_POSITION;
pub use flusher::DurableSeq;
use flusher::{Durable, FlushStats, Flusher};
pub use options::{CommitObserver, SpoolOptions};
pub use pipeline::EntrySink;
pub use prune::{PrunePolicy, Pruned};
pub use recover::Positions;
use recover::{ChainState, Tail, scan};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The name of the lock file in the spool directory.
pub const LOCK_FILE: &str = "lock";

/// Takes the spool's exclusive lock (released when the file is closed,
/// also when the process dies).
fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_at("open", &path))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(SpoolError::Locked(dir.to_owned())),
        Err(e) => Err(io_at("lock", &path)(e.into())),
    }
}

/// A step of the wall clock against the monotonic clock that is recorded.
const CLOCK_STEP_NS: i64 = 1_000_000_000;

/// What opening the spool found and did.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// A new spool was created.
    pub created: bool,
    /// The previous process did not close the spool cleanly.
    pub unclean_shutdown: bool,
    /// Damage found at the end of the last segment and recorded.
    pub recovered: Option<(RecoveryCause, u64, u64)>,
    /// The host key was moved to the epoch the spool had reached.
    pub key_caught_up: bool,
    /// Whether the append-only flags are in place.
    pub append_only_active: bool,
    /// Loud conditions the caller must log.
    pub warnings: Vec<String>,
    /// The first sequence number this process writes.
    pub next_seq: u64,
    pub segment_no: u64,
}

/// Counters of the writer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpoolStats {
    pub next_seq: u64,
    pub segment_no: u64,
    pub entries_appended: u64,
    pub entries_durable: u64,
    pub epoch: u64,
    pub checkpoints: u64,
    /// Entries sealed a second time because something came between their
    /// sealing ahead of the chain and their chaining (a failed `fsync`
    /// rewrote the segment); zero in a healthy run.
    pub resealed: u64,
    pub flush: FlushStats,
}

#[derive(Debug)]
struct Active {
    no: u64,
    file: Arc<File>,
    path: PathBuf,
    header_len: u64,
    opened_at: Instant,
}

/// The spool writer. One per spool, enforced by a lock file.
#[derive(Debug)]
pub struct Spool {
    opts: SpoolOptions,
    _lock: File,
    key: HostKey,
    boot_id: [u8; 16],
    st: ChainState,
    seg: Active,
    /// Bytes of the segment once every submitted batch is written.
    submitted: u64,
    /// Bytes of every other file of the spool (closed segments, ledger).
    closed_bytes: u64,
    segment_files: u64,
    /// Segments a durable `prune` record removed but that are still there
    /// (their removal failed): removed again before anything else prunes.
    unremoved: Vec<PathBuf>,
    pending: Vec<u8>,
    pending_since: Option<Instant>,
    flusher: Flusher,
    durable_seq: Arc<DurableSeq>,
    entries: u64,
    checkpoints: u64,
    last_checkpoint_at: Instant,
    last_record_at: Instant,
    clock_ref: (i64, u64),
    append_only_active: bool,
    /// Alerts to write after the next anchor checkpoint.
    deferred_alerts: Vec<(AlertCode, String)>,
    /// The position of the stream the last entry came from, not yet in
    /// `st.positions` (see `track`).
    hot: Option<(String, (u64, u64, u64), crate::position::Position)>,
    /// A stream left the table since the last table was written: the next
    /// checkpoint carries the whole table, so that a crash cannot bring the
    /// stream back (docs/FORMAT.md §6.3).
    table_shrank: bool,
    /// Since when the current seed has not reached the key file (a write
    /// failed): retried every second; an epoch of failures halts.
    key_unsaved_since: Option<Instant>,
    key_retry_at: Option<Instant>,
    stopped: bool,
    /// The recipients entries are encrypted to (`encrypt_to`), if any.
    recipients: Option<crate::crypt::Recipients>,
    /// The active segment's per-entry key schedule (its data key), while
    /// entries are sealed; why there is none when one was needed.
    sealing: Option<std::sync::Arc<crate::crypt::EntryKeys>>,
    sealing_error: Option<String>,
    /// The thread that seals batches of entries ([`Spool::append_entries`]),
    /// started at the first batch that needs it.
    sealer: Option<pipeline::Sealer>,
    /// A buffer for the next batch.
    spare_chunk: Option<pipeline::Chunk>,
    resealed: u64,
    /// Scratch for a sealed entry's associated data.
    aad: Vec<u8>,
}

impl Spool {
    /// Opens (or creates) the spool, recovering from whatever state the last
    /// process left it in, and writes a `start` record.
    pub fn open(opts: SpoolOptions, key: HostKey) -> Result<(Spool, OpenReport), SpoolError> {
        if opts.agent_id.is_empty() || opts.agent_id.len() > 255 {
            return Err(SpoolError::BadAgentId);
        }
        let dir = opts.dir.clone();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_at("create directory", &dir))?;
        let lock = lock_dir(&dir)?;
        let mut report = OpenReport::default();
        for e in fs::read_dir(&dir)
            .map_err(io_at("read directory", &dir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".wlseg.tmp") {
                let _ = worm::clear_flags(&e.path());
                fs::remove_file(e.path()).map_err(io_at("remove", e.path()))?;
            }
        }
        let (mut segs, _) = list_segments(&dir).map_err(io_at("list", &dir))?;
        // A spool whose only segment never got a whole record is a creation
        // that did not finish: nothing in it is evidence, start again.
        if segs.len() == 1 && segs[0].0 == 0 {
            let bytes = fs::read(&segs[0].1).map_err(io_at("read", &segs[0].1))?;
            if let Ok((_, hlen)) = SegmentHeader::decode(&bytes)
                && !matches!(frame_at(&bytes, hlen), FrameAt::Frame { .. })
            {
                let _ = worm::clear_flags(&segs[0].1);
                fs::remove_file(&segs[0].1).map_err(io_at("remove", &segs[0].1))?;
                report.warnings.push(
                    "removed segment 0, which held no complete record (creation interrupted)"
                        .into(),
                );
                segs.clear();
            }
        }
        let recipients = if opts.encrypt_to.is_empty() {
            None
        } else {
            Some(
                crate::crypt::Recipients::parse(&opts.encrypt_to)
                    .map_err(|e| SpoolError::Encryption(e.to_string()))?,
            )
        };
        let durable_seq = Arc::new(DurableSeq::default());
        let flusher = Flusher::start(
            opts.fault.clone(),
            durable_seq.clone(),
            opts.on_commit.clone(),
        )
        .map_err(io_at("start thread", &dir))?;
        let now = Instant::now();
        let mut spool = Spool {
            _lock: lock,
            key,
            boot_id: boot_id(),
            st: ChainState::default(),
            seg: Active {
                no: 0,
                file: Arc::new(File::open(&dir).map_err(io_at("open", &dir))?),
                path: dir.clone(),
                header_len: 0,
                opened_at: now,
            },
            submitted: 0,
            closed_bytes: 0,
            segment_files: 0,
            unremoved: Vec::new(),
            pending: Vec::with_capacity(opts.commit_bytes.min(64 << 20) + (64 << 10)),
            pending_since: None,
            flusher,
            durable_seq,
            entries: 0,
            checkpoints: 0,
            last_checkpoint_at: now,
            last_record_at: now,
            clock_ref: (wall_ns(), boottime_ns()),
            append_only_active: opts.append_only != AppendOnly::Off,
            deferred_alerts: Vec::new(),
            hot: None,
            table_shrank: false,
            key_unsaved_since: None,
            key_retry_at: None,
            stopped: false,
            recipients,
            sealing: None,
            sealing_error: None,
            sealer: None,
            spare_chunk: None,
            resealed: 0,
            aad: Vec::with_capacity(512),
            opts,
        };
        if segs.is_empty() {
            spool.create_fresh(&mut report)?;
        } else {
            if spool.resume(&segs, &mut report)? {
                // Its data key is gone with the last process (or sealing
                // was turned on or off): seal it, the next has its own.
                spool.rotate()?;
            }
        }
        spool.push_start();
        report.append_only_active = spool.append_only_active;
        if !spool.append_only_active && spool.opts.append_only == AppendOnly::Try {
            report.warnings.push(format!(
                "append-only protection is NOT active on {}: segments can be rewritten by root \
                 (needs chattr support and CAP_LINUX_IMMUTABLE)",
                spool.opts.dir.display()
            ));
        }
        spool.sync()?;
        spool.count_closed_bytes()?;
        report.next_seq = spool.st.next_seq;
        report.segment_no = spool.seg.no;
        Ok((spool, report))
    }

    fn create_fresh(&mut self, report: &mut OpenReport) -> Result<(), SpoolError> {
        if self.key.epoch() != 0 {
            return Err(SpoolError::FreshSpoolEvolvedKey(self.key.epoch()));
        }
        report.created = true;
        self.st = ChainState::default();
        self.open_segment(0, report)?;
        let genesis = Payload::Genesis {
            agent_id: &self.opts.agent_id.clone(),
            first_pubkey: self.key.first_pubkey(),
        };
        self.push_payload(Kind::Genesis, wall_ns(), &genesis);
        self.push_checkpoint(true);
        Ok(())
    }

    /// Continues the spool where the last process left it. True when the
    /// active segment it goes on with must be sealed first: its data key
    /// went with that process, or sealing was turned on or off.
    fn resume(
        &mut self,
        segs: &[(u64, PathBuf)],
        report: &mut OpenReport,
    ) -> Result<bool, SpoolError> {
        let (st, last) = scan(segs, None)?;
        if last.header.agent_id != self.opts.agent_id {
            return Err(SpoolError::AgentIdMismatch {
                found: last.header.agent_id.clone(),
                configured: self.opts.agent_id.clone(),
            });
        }
        self.st = st;
        report.unclean_shutdown = !self.st.stopped_cleanly();
        self.reconcile_key(report)?;
        let mut tail = last.tail.clone();
        if tail == Tail::Clean {
            match OpenOptions::new().append(true).open(&last.path) {
                Ok(file) => {
                    let file = Arc::new(file);
                    self.protect_active(&file, &last.path, report)?;
                    self.seg = Active {
                        no: last.no,
                        file,
                        path: last.path.clone(),
                        header_len: last.header.encoded_len() as u64,
                        opened_at: Instant::now(),
                    };
                    self.submitted = last.end;
                    self.flusher.set_durable(Durable {
                        segment_no: last.no,
                        end_offset: last.end,
                        end_count: 0,
                    });
                    let roll = last.records > 0 && (self.recipients.is_some() || last.keyed);
                    if last.records == 0 {
                        if last.no == 0 {
                            let genesis = Payload::Genesis {
                                agent_id: &self.opts.agent_id.clone(),
                                first_pubkey: self.key.first_pubkey(),
                            };
                            self.push_payload(Kind::Genesis, wall_ns(), &genesis);
                        }
                        self.push_checkpoint(true);
                    }
                    return Ok(roll);
                }
                Err(e) => {
                    // Immutable without a seal record: close it as if torn
                    // at its end, so the gap is explained in the chain.
                    report.warnings.push(format!(
                        "{} cannot be appended to ({e}); it is closed and a new segment opened",
                        last.path.display()
                    ));
                    tail = Tail::Damaged {
                        cause: RecoveryCause::TornTail,
                        offset: last.end,
                        len: 0,
                        sha256: crate::hash::sha256(b""),
                    };
                }
            }
        }
        // The last segment is closed: make sure it is immutable, then open
        // the next one.
        if self.opts.append_only != AppendOnly::Off
            && let Ok(f) = File::open(&last.path)
            && let Err(e) = worm::set_immutable(&f)
        {
            report.warnings.push(format!(
                "could not make {} immutable: {e}",
                last.path.display()
            ));
        }
        self.open_segment(last.no + 1, report)?;
        if let Tail::Damaged {
            cause,
            offset,
            len,
            sha256,
        } = tail
        {
            report.recovered = Some((cause, offset, len));
            let detail = match cause {
                RecoveryCause::TornTail => format!(
                    "torn write at the end of segment {}: {len} bytes after offset {offset} are not part of the log",
                    last.no
                ),
                _ => format!(
                    "damaged record at offset {offset} of segment {} followed by valid data: not a torn write",
                    last.no
                ),
            };
            report.warnings.push(detail.clone());
            let rec = Payload::Recovery {
                cause,
                segment_no: last.no,
                last_good_seq: self.st.next_seq.wrapping_sub(1),
                region_offset: offset,
                region_len: len,
                region_sha256: sha256,
                detail: &detail,
            };
            self.push_payload(Kind::Recovery, wall_ns(), &rec);
        }
        self.push_checkpoint(true);
        Ok(false)
    }

    /// Brings the key to the spool's epoch, and checks that it is the key
    /// that signed this spool.
    fn reconcile_key(&mut self, report: &mut OpenReport) -> Result<(), SpoolError> {
        if let Some(g) = self.st.genesis_pubkey
            && g != self.key.first_pubkey()
        {
            return Err(SpoolError::WrongKey(
                "the spool's genesis names another first public key",
            ));
        }
        let (ke, ce) = (self.key.epoch(), self.st.epoch);
        if ke < ce {
            // The chain moved on while the key file could not be replaced
            // (its directory read-only or full, a crash between the two):
            // derive the seed forward, epoch by epoch, erasing each one.
            // The derivation is deterministic, so the key reached is the
            // spool's if its newest transition names it (below) and the
            // last checkpoint verifies under it (after this).
            self.key.advance_to(ce, wall_ns());
            if let Some((e, pk)) = self.st.last_epoch_key
                && e == ce
                && pk != self.key.pubkey()
            {
                return Err(SpoolError::WrongKey(
                    "the spool's epoch transition names another key",
                ));
            }
            if let Err(e) = self.key.save() {
                report.warnings.push(format!(
                    "the host key caught up from epoch {ke} to {ce} but cannot be saved ({e}); retrying"
                ));
                self.key_unsaved_since = Some(Instant::now());
            }
            report.key_caught_up = true;
            report.warnings.push(format!(
                "the host key file was {} epoch(s) behind the spool (epoch {ke} on disk, {ce} in the chain): caught up",
                ce - ke
            ));
        } else if ke != ce {
            return Err(SpoolError::KeyEpochMismatch {
                key_epoch: ke,
                spool_epoch: ce,
            });
        }
        if let Some((e, msg, sig)) = &self.st.last_checkpoint
            && *e == self.key.epoch()
            && !verify_signature(&self.key.pubkey(), CHECKPOINT_CONTEXT, msg, sig)
        {
            return Err(SpoolError::WrongKey(
                "the last checkpoint was not signed by this key",
            ));
        }
        Ok(())
    }

    fn protect_active(
        &mut self,
        file: &File,
        path: &Path,
        report: &mut OpenReport,
    ) -> Result<(), SpoolError> {
        if self.opts.append_only == AppendOnly::Off {
            self.append_only_active = false;
            return Ok(());
        }
        if let Err(e) = worm::set_append_only(file) {
            if self.opts.append_only == AppendOnly::Require {
                return Err(SpoolError::AppendOnlyRequired {
                    path: path.to_owned(),
                    source: e,
                });
            }
            if self.append_only_active {
                report.warnings.push(format!(
                    "cannot set the append-only flag on {}: {e}",
                    path.display()
                ));
            }
            self.append_only_active = false;
        }
        Ok(())
    }

    /// Creates segment `no` (header written through a temporary file, so a
    /// segment either exists with a whole header or not at all).
    fn open_segment(&mut self, no: u64, report: &mut OpenReport) -> Result<(), SpoolError> {
        let header = SegmentHeader {
            segment_no: no,
            first_seq: self.st.next_seq,
            prev_head: self.st.head,
            agent_id: self.opts.agent_id.clone(),
        };
        let bytes = header.encode();
        let path = segment_path(&self.opts.dir, no);
        let tmp = path.with_extension("wlseg.tmp");
        let mut f = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o640)
            .open(&tmp)
            .map_err(io_at("create", &tmp))?;
        f.write_all(&bytes).map_err(io_at("write", &tmp))?;
        f.sync_all().map_err(io_at("fsync", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_at("rename", &path))?;
        File::open(&self.opts.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at("fsync directory", &self.opts.dir))?;
        let was_active = self.append_only_active;
        self.protect_active(&f, &path, report)?;

        self.seg = Active {
            no,
            file: Arc::new(f),
            path,
            header_len: bytes.len() as u64,
            opened_at: Instant::now(),
        };
        self.submitted = bytes.len() as u64;
        // The segment it replaces is now a closed one.
        self.count_closed_bytes()?;
        if was_active && !self.append_only_active {
            self.deferred_alerts.push((
                AlertCode::AppendOnlyUnavailable,
                format!("append-only flag could not be set on segment {no}; protection is off"),
            ));
        }
        Ok(())
    }
}
