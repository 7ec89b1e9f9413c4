//! The Linux audit log (`/var/log/audit/audit.log`): records grouped into
//! events, with structured fields, and loss made visible.
//!
//! Pure: bytes in, results out; no I/O, no clock (the caller's timer calls
//! [`EventAssembler::flush`]). Three parts:
//!
//! * [`parse_record`] reads one line into an [`AuditRecord`] (module
//!   `record`);
//! * [`EventAssembler`] groups the records of one event into one
//!   [`CompletedEvent`] — one chained entry whose body is the lines,
//!   byte-exact, joined with `\n` — and hands back lines that are not
//!   records as [`UnparsedLine`]s (module `event`);
//! * [`SerialTracker`] follows the event serials and reports [`Gap`]s and
//!   resets; the assembler runs one and also reports the kernel's lost
//!   counter when it appears (module `serial`).
//!
//! Every line pushed comes out exactly once, in an event or unparsed, and
//! memory stays bounded whatever the input.
//!
//! # Records
//!
//! ```text
//! [node=NAME ]type=TYPE msg=audit(SECONDS.MILLIS:SERIAL): FIELDS[<0x1D>ENRICHED]
//! ```
//!
//! `node=` comes from auditd's `name_format`; the part after the byte 0x1D
//! from `log_format = ENRICHED` (the interpreted values, upper-case names:
//! `ARCH=x86_64 SYSCALL=execve AUID="alice"`). MILLIS is exactly three
//! digits and SERIAL a 32-bit number, as the kernel writes them
//! (`"audit(%llu.%03lu:%u): "`); anything else is a typed
//! [`RecordError`] (and the line is kept, unparsed). A value is bare
//! (`uid=0`, `key=(null)`, hex), double-quoted (`comm="bash"`, quotes not
//! part of the value), `{ … }` (ENRICHED `SADDR`), or, for `msg='…'` — the
//! text of a user-space message — read as fields of its own in its place
//! (`op=login acct="root" … res=failed`). Words without `=` (`avc:  denied
//! { read } for`) are not fields; they stay in the raw line. The text of a
//! user-space message is whatever its sender (any process with
//! `CAP_AUDIT_WRITE`) sent, unescaped: its fields, and a 0x1D inside it,
//! are that sender's claims.
//!
//! The kernel writes an untrusted string in hex when it holds a space, a
//! double quote, a control character or a byte above 0x7E
//! (`audit_log_n_untrustedstring()` in `kernel/audit.c`), and libaudit
//! does the same for user-space values. [`Field::decoded_value`] decodes
//! such a value **for display only** (the raw value is what is chained):
//! for the fields auparse treats as escaped (`name`, `exe`, `comm`, `cwd`,
//! `cmd`, `acct`, `key`, …, `proctitle`, TTY `data`, and `EXECVE`'s `aN`
//! and `aN[i]`), when the value is bare and an even number of hex digits.
//! In `proctitle` the NULs between arguments are shown as spaces (so an
//! argument containing a space is not told apart); in `key` the 0x01
//! between several keys as `,`; control characters as `\xNN`.
//!
//! # When an event is complete
//!
//! What the sources say:
//!
//! * **auditd never writes `EOE` to `audit.log`.** It passes the
//!   end-of-event record to its plugins only: `distribute_event()` in
//!   audit-userspace `src/auditd.c`, "End of Event is for realtime
//!   interface - skip local logging of it". The real ENRICHED log of
//!   audit-userspace's `auparse/test/auparse_test.enriched` (auditd 4.0.3,
//!   kernel 6.12) has no `EOE` line. In `audit.log` a multi-record event
//!   has no end marker.
//! * The kernel writes a system call's records at its exit in this order:
//!   `SYSCALL`, the auxiliary records (`EXECVE`, `SOCKADDR`, `OBJ_PID`, …),
//!   `CWD`, `PATH`…, `PROCTITLE`, then `EOE` (`audit_log_exit()` in
//!   `kernel/auditsc.c`). Records logged during the call (`AVC`, `LOGIN`,
//!   `CONFIG_CHANGE`, `ANOM_PROMISCUOUS`, …) come before, with the same id.
//!   Not every event has a `PROCTITLE` (laurel's `record-login.txt`:
//!   `LOGIN`, `SYSCALL`, `EOE`).
//! * auparse and ausearch close an event when a record of a "last record"
//!   type arrives (`audit_is_last_record()` in `common/common.c`: `EOE`,
//!   `PROCTITLE`, user-space and daemon messages, `KERNEL`, NetLabel
//!   configuration), when a record arrives whose time is
//!   `end_of_event_timeout` (default 2 s) past the event's
//!   (`check_events()` in `src/ausearch-lol.c`, `au_check_events()` in
//!   `auparse/auparse.c`), or at the end of the input.
//! * User-space messages get their own serial (`audit_log_user_recv_msg()`
//!   logs them without a system-call context), but kernels with LSM
//!   stacking may log them inside the sender's `sendto` (laurel's
//!   `record-service-start.txt`: `SERVICE_START`, then `SYSCALL`,
//!   `SOCKADDR`, `UNKNOWN[1420]` with the same id).
//!
//! The rule, for each record, in order (event = same node, time and
//! serial, as auparse's `events_are_equal()`):
//!
//! 1. an `EOE` record completes its event (`eoe`);
//! 2. a `PROCTITLE` record completes its event (`proctitle`) — unless the
//!    stream has carried an `EOE` before (a dispatcher stream, or a log
//!    written by another tool, rather than `audit.log`), where `EOE` alone
//!    ends events. Until the stream has shown whether it carries `EOE`
//!    (the first `PROCTITLE` event after [`EventAssembler::new`]), the
//!    event completed by `PROCTITLE` is held until the next line: if that
//!    is its `EOE`, it joins the event (`eoe`), in the same read or the
//!    next; anything else lets the event go first (`proctitle`) and shows
//!    the stream has no `EOE` after `PROCTITLE`, so later events end at
//!    their `PROCTITLE` at once, as before. A held event that gets no line
//!    for a whole [`Flush::Idle`] period leaves likewise. So at most one
//!    event per stream waits, and only until the next line;
//! 3. the first record of an event, of a standalone type
//!    ([`is_standalone_type`]: the rule of `audit_is_last_record()` less
//!    `EOE` and `PROCTITLE`), is the whole event (`standalone`);
//! 4. an event that reaches [`max_records_per_event`] or
//!    [`max_event_bytes`] is let go (`forced_records`,
//!    `forced_event_bytes`);
//! 5. any open event is complete (`idle`) once the stream's clock — the
//!    newest record timestamp seen — is [`idle_timeout_ms`] (2 s) past the
//!    clock at the event's *last record*. Unlike auparse this is measured
//!    from when the event's records arrived, not from its own timestamp: a
//!    system call is stamped at its entry but written at its exit, so one
//!    that blocked for a minute is already "old" when its first record
//!    arrives. The clock is the whole stream's: in a log that gathers
//!    several hosts (`node=`), one whose clock runs far ahead makes the
//!    others' events idle early (their later records then continue them;
//!    nothing is lost);
//! 6. [`flush`](EventAssembler::flush)`(Flush::Idle)`, from the caller's
//!    timer, completes the events that got no record during a whole
//!    period; `flush(Flush::All)` and [`finish`](EventAssembler::finish)
//!    complete all (`flush`);
//! 7. past [`max_open_events`] or [`max_buffered_bytes`], the oldest open
//!    events (by first arrival) are let go (`forced_open_events`,
//!    `forced_buffered_bytes`): a flood of distinct serials cannot grow
//!    memory.
//!
//! A record whose event was already completed (a `SYSCALL` after a
//! standalone `SERVICE_START` as above, an `EOE` that comes after its
//! event was let go at `PROCTITLE`, a record past a limit) starts a new
//! event marked `audit_continues=true`:
//! nothing is dropped, and nothing already given out is changed. Records of
//! different events may interleave freely.
//!
//! [`max_records_per_event`]: AssemblerConfig::max_records_per_event
//! [`max_event_bytes`]: AssemblerConfig::max_event_bytes
//! [`idle_timeout_ms`]: AssemblerConfig::idle_timeout_ms
//! [`max_open_events`]: AssemblerConfig::max_open_events
//! [`max_buffered_bytes`]: AssemblerConfig::max_buffered_bytes
//!
//! # Fields
//!
//! [`CompletedEvent::fields`] gives, in this order:
//!
//! | field | value |
//! |---|---|
//! | `audit_time` | `SECONDS.MILLIS` as in the records, e.g. `1700000000.123` |
//! | `audit_serial` | the serial, decimal |
//! | `audit_node` | the `node=` name (only when the records have one) |
//! | `audit_types` | the record types in arrival order, comma-separated: `SYSCALL,EXECVE,CWD,PATH,PATH,PROCTITLE` |
//! | `audit_records` | the number of records (lines) |
//! | `audit_completion` | `eoe`, `proctitle`, `standalone`, `idle`, `flush`, `forced_open_events`, `forced_records`, `forced_event_bytes` or `forced_buffered_bytes` (see above) |
//! | `audit_continues` | `true`, only when earlier records of the same event were already given out in another entry |
//! | `TYPE.key` | a field of the record of type `TYPE`, its value as written without quotes (hex stays hex): `SYSCALL.syscall` = `59`, `USER_LOGIN.acct` = `root` (a field of `msg='…'`) |
//! | `TYPE[i].key` | the same when the event has more than one record of `TYPE`: every one of them is numbered from 0 in arrival order, `PATH[0].name`, `PATH[1].name` |
//! | `TYPE.key.decoded` | added after a hex-encoded field: its display text (see Records): `PROCTITLE.proctitle.decoded` = `dash -p` |
//! | `TYPE.KEY` | an ENRICHED interpreted field, upper-case as auditd writes it: `SYSCALL.SYSCALL` = `execve`, `SYSCALL.AUID` = `alice` |
//! | `audit_fields_omitted` | the number of fields left out (name over 255 bytes, or past 4096 fields), only when not 0 |
//!
//! A key that occurs twice in a record gives two fields of the same name,
//! in order. [`LossReport::fields`] names the fields of a loss report
//! (`audit_loss`, `audit_gap_after`, `audit_gap_before`,
//! `audit_gap_missing`, …).
//!
//! # Loss
//!
//! The serial is the kernel's per-boot event counter (`audit_serial()` in
//! `kernel/audit.c`: an atomic 32-bit counter starting at 1, printed
//! `%u`, wrapping). It numbers **events, not records**: a system call's
//! records share one serial, taken when its first record is started
//! (`auditsc_get_stamp()`); any other record takes a new one. It is taken
//! in `audit_log_start()` *after* the exclude filter and the backlog
//! check, and user-space messages are checked against the user filter
//! before; a system call that matches no rule never starts a record. So
//! **events suppressed by rules do not use serials**, and every serial
//! that was taken was meant to be logged.
//!
//! A [`Gap`] (serials missing between two seen) therefore proves that that
//! many events were numbered by this node's kernel and never reached the
//! log as read: dropped by the rate limit (`audit_log_end()`: "rate limit
//! exceeded"), by the hold queue while auditd was away
//! (`kauditd_hold_skb()`: "kauditd hold queue overflow" — and silently,
//! printed to the kernel log only, when the kernel was not booted with
//! `audit=1`), by auditd (logging suspended on a full disk), or by the log
//! itself (a rotated file deleted before it was read, lines removed).
//!
//! It cannot show:
//!
//! * events dropped *before* they got a serial: `audit_log_start()` gives
//!   up with "backlog limit exceeded" (once `backlog_wait_time` is spent)
//!   or on memory before numbering — only the kernel's lost counter
//!   counts those;
//! * single records lost from an event whose serial arrived (one `PATH`
//!   dropped by the rate limit);
//! * the last events before the input stops: no later serial shows the
//!   hole;
//! * anything about `DAEMON_*` records: auditd numbers them itself, from a
//!   counter that starts at a random value below 10000
//!   (`send_audit_event()` in `src/auditd.c`); they are not tracked;
//! * anything across an agent restart: the tracker starts afresh.
//!
//! Serials are tracked per `node=`. They reach the log slightly out of
//! order (an event is numbered when its first record starts and queued
//! when it ends, on any CPU), so a missing serial is reported only once
//! one [`reorder_window`] (512) higher has arrived, or after it stayed
//! missing for a whole `flush(Flush::Idle)` period, or at [`finish`]. A
//! missing serial that arrives afterwards is a
//! [`LossReport::LateArrival`]. A serial that goes back is a
//! [`LossReport::SerialReset`] — not a huge gap — when it goes back by
//! more than the window (an older file read again), after a
//! `DAEMON_START` (auditd starts after a boot, and the kernel's counter
//! restarts at 1), or while the clock moved on by more than a minute;
//! otherwise it is a [`LossReport::RepeatedSerial`]. From near 2³² to near
//! 0 it is a wrap. A forward jump across a reboot whose first events were
//! never logged is reported as a gap of the new boot.
//!
//! The kernel's lost counter (`audit_lost`, the records `audit_log_lost()`
//! dropped) is **not written to `audit.log`**: it is read with
//! `auditctl -s` (`lost`, the `AUDIT_GET` netlink reply), and the kernel
//! prints `audit: audit_lost=N audit_rate_limit=… audit_backlog_limit=…`
//! to its own log (dmesg, journald). The one trace in `audit.log` is the
//! record the kernel writes when someone resets it (`auditctl
//! --reset-lost`): `type=CONFIG_CHANGE … op=set lost=0 old=N` (the
//! `AUDIT_STATUS_LOST` case of `audit_receive_msg()`), reported as
//! [`LossReport::KernelLostCounter`] when N > 0. Watching the live counter
//! needs the netlink socket (`CAP_AUDIT_CONTROL`), outside this module.
//!
//! [`reorder_window`]: SerialTrackerConfig::reorder_window
//! [`finish`]: EventAssembler::finish
//!
//! # Sources
//!
//! Linux `kernel/audit.c` (`audit_serial`, `audit_log_start`,
//! `audit_log_end`, `audit_log_lost`, `kauditd_hold_skb`,
//! `audit_receive_msg`) and `kernel/auditsc.c` (`audit_log_exit`,
//! `auditsc_get_stamp`); `include/uapi/linux/audit.h`. audit-userspace
//! (linux-audit/audit-userspace): `src/auditd.c` (`distribute_event`,
//! `send_audit_event`), `common/common.c` (`audit_is_last_record`),
//! `src/ausearch-lol.c`, `auparse/auparse.c`, `auparse/typetab.h`,
//! `lib/libaudit.h`. Test data quoted in the tests: laurel
//! (threathunters-io/laurel `src/testdata`), go-libaudit (elastic,
//! `aucoalesce/testdata`), audit-userspace
//! `auparse/test/auparse_test.enriched`.

mod event;
mod record;
mod serial;
mod types;

#[cfg(test)]
mod tests;

pub use event::{
    Assembled, AssemblerConfig, CompletedEvent, Completion, EventAssembler, Flush, ForcedBy,
    MAX_FIELD_NAME_LEN, MAX_FIELDS_PER_EVENT, UnparsedLine,
};
pub use record::{
    AuditRecord, ENRICHED_SEPARATOR, Field, Fields, MAX_NODE_LEN, MAX_TYPE_LEN, Quoting,
    RecordError, parse_record,
};
pub use serial::{Gap, LossReport, SerialTracker, SerialTrackerConfig};
pub use types::{has_auditd_serial, is_standalone_type, record_type_number};
