//! `[[sources.journald]]` on real journal files: Debian's
//! `systemd-journal-remote` writes them from export-format input made here,
//! and the daemon reads them with the real `journalctl` (`directory =`, or
//! the system journal as the packaged unit reads it, in a mount namespace).
//! Binary fields byte-exact, follow as new files appear, exactly once across
//! restarts and a kill -9 loop, across a reboot (the rest of the earlier
//! boot, then the current one), a vacuumed cursor and a jump in the
//! journal's sequence numbers as gap records, and a `journalctl` that dies
//! is started again.
//!
//! systemd-journal-remote (252) keeps `_BOOT_ID`, `__REALTIME_TIMESTAMP` and
//! `__MONOTONIC_TIMESTAMP` from its input and numbers the entries itself
//! (`__SEQNUM`, `__SEQNUM_ID` are ignored): a new file starts a new file set
//! (its own seqnum_id), a file appended to continues its numbers, and a file
//! it rotates hands its set on to the next, as journald does.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BOOT: &str = "0123456789abcdef0123456789abcdef";

fn journal_remote() -> PathBuf {
    [
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("systemd-journal-remote is needed (apt-get install systemd-journal-remote)")
}

/// One field of an export-format entry; binary-safe.
fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    if value.iter().all(|&b| b >= 0x20 && b != 0x7f) {
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value);
    } else {
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value);
    }
    out.push(b'\n');
}

/// Export-format entries `range` of boot `boot`: `MESSAGE=entry N`,
/// `SEQ=N`, and the `extra` fields.
fn export(range: std::ops::Range<u64>, boot: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut export = Vec::new();
    for i in range {
        field(
            &mut export,
            "__REALTIME_TIMESTAMP",
            (1_700_000_000_000_000 + i * 1000).to_string().as_bytes(),
        );
        field(
            &mut export,
            "__MONOTONIC_TIMESTAMP",
            (1000 + i).to_string().as_bytes(),
        );
        field(&mut export, "_BOOT_ID", boot.as_bytes());
        field(&mut export, "MESSAGE", format!("entry {i}").as_bytes());
        field(&mut export, "SEQ", i.to_string().as_bytes());
        for (k, v) in extra {
            field(&mut export, k, v);
        }
        export.push(b'\n');
    }
    export
}

/// Entries `range` written as journal file `dir/name.journal`.
fn write_journal(dir: &Path, name: &str, range: std::ops::Range<u64>, extra: &[(&str, &[u8])]) {
    write_export(dir, name, &export(range, BOOT, extra));
}

/// Entries `range` of boot `boot` appended to the journal file `file` in
/// place, as journald appends (created if it is not there).
fn append_journal(file: &Path, range: std::ops::Range<u64>, boot: &str) {
    let input = file.with_extension("export");
    std::fs::write(&input, export(range, boot, &[])).unwrap();
    run_journal_remote(file, &input);
    std::fs::remove_file(&input).unwrap();
}

fn run_journal_remote(output: &Path, input: &Path) {
    let out = std::process::Command::new(journal_remote())
        .arg("-o")
        .arg(output)
        .arg(input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_export(dir: &Path, name: &str, export: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.with_extension(format!("{name}.export"));
    std::fs::write(&tmp, export).unwrap();
    // Written aside and moved in, so that journalctl never sees a file
    // being written.
    let staging = dir.with_extension("staging");
    std::fs::create_dir_all(&staging).unwrap();
    run_journal_remote(&staging.join(format!("{name}.journal")), &tmp);
    for f in std::fs::read_dir(&staging).unwrap() {
        let f = f.unwrap();
        std::fs::rename(f.path(), dir.join(f.file_name())).unwrap();
    }
}

fn journal_env(extra: &str) -> Env {
    Env::with_sources("", |e| {
        format!(
            "[[sources.journald]]\nname = \"journal\"\ndirectory = \"{}\"\n{extra}\n",
            e.p("journal").display()
        )
    })
}

fn seqs(e: &Env) -> Vec<u64> {
    e.entries()
        .iter()
        .map(|r| {
            let v = &r.fields.iter().find(|(k, _)| k == "SEQ").expect("SEQ").1;
            String::from_utf8_lossy(v).parse().unwrap()
        })
        .collect()
}

fn wait_stderr(e: &Env, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !e.stderr().contains(what) {
        assert!(Instant::now() < deadline, "no {what:?} in:\n{}", e.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_field_is_kept_byte_exact_and_message_is_the_body() {
    let e = journal_env("");
    let dir = e.p("journal");
    let binary: &[u8] = b"bin\0ary\xff\nline two";
    let mut export = Vec::new();
    field(&mut export, "__REALTIME_TIMESTAMP", b"1700000000000000");
    field(&mut export, "__MONOTONIC_TIMESTAMP", b"1000");
    field(&mut export, "_BOOT_ID", BOOT.as_bytes());
    field(&mut export, "MESSAGE", binary);
    field(&mut export, "BLOB", &[0, 1, 2, 255]);
    field(&mut export, "_SYSTEMD_UNIT", b"sshd.service");
    field(&mut export, "TAG", b"first");
    field(&mut export, "TAG", b"second");
    export.push(b'\n');
    field(&mut export, "__REALTIME_TIMESTAMP", b"1700000001000000");
    field(&mut export, "__MONOTONIC_TIMESTAMP", b"2000");
    field(&mut export, "_BOOT_ID", BOOT.as_bytes());
    field(
        &mut export,
        "MESSAGE",
        "Accepted publickey for dr.jones \u{202e}".as_bytes(),
    );
    field(&mut export, "PRIORITY", b"6");
    export.push(b'\n');
    write_export(&dir, "a", &export);
    let d = e.start();
    e.wait_entries(2);
    stop(d);
    let got = e.entries();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, binary);
    let f = |r: &Rec, k: &str| -> Vec<Vec<u8>> {
        r.fields
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(f(&got[0], "BLOB"), vec![vec![0, 1, 2, 255]]);
    assert_eq!(f(&got[0], "_SYSTEMD_UNIT"), vec![b"sshd.service".to_vec()]);
    assert_eq!(
        f(&got[0], "TAG"),
        vec![b"first".to_vec(), b"second".to_vec()]
    );
    assert_eq!(f(&got[0], "_BOOT_ID"), vec![BOOT.as_bytes().to_vec()]);
    assert_eq!(
        f(&got[0], "__REALTIME_TIMESTAMP"),
        vec![b"1700000000000000".to_vec()]
    );
    assert_eq!(f(&got[0], "__CURSOR").len(), 1);
    assert!(
        f(&got[0], "MESSAGE").is_empty(),
        "MESSAGE is the body, not a field"
    );
    assert_eq!(
        got[1].body,
        "Accepted publickey for dr.jones \u{202e}".as_bytes()
    );
    assert_eq!(f(&got[1], "PRIORITY"), vec![b"6".to_vec()]);
    // `cat` shows the hostile character escaped.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wormlog"))
        .args(["cat", "--spool"])
        .arg(e.p("spool"))
        .output()
        .unwrap();
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.contains("dr.jones \\u{202e}"), "{shown}");
}

#[test]
fn new_journal_files_are_followed_and_a_restart_reads_nothing_twice() {
    let e = journal_env("");
    let dir = e.p("journal");
    write_journal(&dir, "a", 0..100, &[]);
    let d = e.start();
    e.wait_entries(100);
    write_journal(&dir, "b", 100..150, &[]);
    e.wait_entries(150);
    stop(d);
    write_journal(&dir, "c", 150..200, &[]);
    let d = e.start();
    e.wait_entries(200);
    stop(d);
    assert_eq!(seqs(&e), (0..200).collect::<Vec<_>>());
    assert_eq!(gaps(&e), vec![], "no false gap across the restart");
}

#[test]
fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let e = journal_env("");
    let dir = e.p("journal");
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let files = 12u64;
    for k in 0..files {
        write_journal(
            &dir,
            &format!("f{k:02}"),
            k * 400..(k + 1) * 400,
            &[("PAD", &[b'x'; 300])],
        );
        let d = e.start();
        std::thread::sleep(Duration::from_millis(next() % 250));
        let mut d = d;
        d.0.kill().unwrap();
        d.0.wait().unwrap();
    }
    let d = e.start();
    e.wait_entries((files * 400) as usize);
    stop(d);
    assert_eq!(
        seqs(&e),
        (0..files * 400).collect::<Vec<_>>(),
        "every entry once, in order"
    );
    assert_eq!(gaps(&e), vec![], "no false gap across the kills");
}

#[test]
fn a_vacuumed_cursor_becomes_a_gap_record_naming_boot_and_time() {
    let e = journal_env("");
    let dir = e.p("journal");
    write_journal(&dir, "old", 0..50, &[]);
    let d = e.start();
    e.wait_entries(50);
    stop(d);
    // The file holding the last entry read is vacuumed away; newer ones come.
    std::fs::remove_file(dir.join("old.journal")).unwrap();
    write_journal(&dir, "new", 100..150, &[]);
    let d = e.start();
    e.wait_entries(100);
    stop(d);
    let recs = e.records();
    let gaps: Vec<&Rec> = recs.iter().filter(|r| r.kind.starts_with("gap")).collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].kind, "gap:5", "reason vacuumed");
    assert!(gaps[0].detail.contains(BOOT), "{}", gaps[0].detail);
    assert!(
        gaps[0].detail.contains("2023-11-14T22:13:20.049"),
        "the time of the last entry read: {}",
        gaps[0].detail
    );
    assert_eq!(seqs(&e), (0..50).chain(100..150).collect::<Vec<_>>());
    assert!(
        e.stderr().contains("vacuumed or rotated away"),
        "{}",
        e.stderr()
    );
}

/// A `journalctl` that dies part-way through its output, in the middle of
/// an entry (the first run only: a wrapper around the real journalctl cuts
/// it after 20,000 bytes and kills itself), is started again from the last
/// entry read: every entry once, in order.
#[test]
fn a_journalctl_that_dies_is_started_again_from_the_last_entry() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let wrapper = tmp.path().join("journalctl");
    let died = tmp.path().join("died");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ ! -e {died} ]; then touch {died}; journalctl \"$@\" | head -c 20000; kill -9 $$; fi\nexec journalctl \"$@\"\n",
            died = died.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let e = journal_env(&format!("journalctl = \"{}\"", wrapper.display()));
    let dir = e.p("journal");
    write_journal(&dir, "a", 0..100, &[]);
    let d = e.start();
    wait_stderr(&e, "starting it again");
    assert!(died.exists());
    e.wait_entries(100);
    write_journal(&dir, "b", 100..130, &[]);
    e.wait_entries(130);
    stop(d);
    assert_eq!(seqs(&e), (0..130).collect::<Vec<_>>());
    assert!(e.records().iter().all(|r| !r.kind.starts_with("gap")));
}

/// A stop of the whole service (systemd signals every process of the unit;
/// Ctrl-C the whole process group) reaches journalctl a moment before the
/// agent's own stop reaches the source: that is a stop, not a journalctl
/// that failed, and no warning.
#[test]
fn journalctl_ended_by_the_services_stop_signal_is_no_warning() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let wrapper = tmp.path().join("journalctl");
    let pidfile = tmp.path().join("pid");
    // The journal, then a process that holds the output open, as a
    // following journalctl does.
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\njournalctl \"$@\"\necho $$ > {p}.tmp && mv {p}.tmp {p}\nexec sleep 3600\n",
            p = pidfile.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let e = journal_env(&format!("journalctl = \"{}\"", wrapper.display()));
    write_journal(&e.p("journal"), "a", 0..10, &[]);
    let d = e.start();
    e.wait_entries(10);
    let deadline = Instant::now() + Duration::from_secs(30);
    let child = loop {
        if let Ok(p) = std::fs::read_to_string(&pidfile) {
            break p.trim().parse::<i32>().unwrap();
        }
        assert!(Instant::now() < deadline, "the wrapper did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    // As systemd's stop does: SIGTERM to every process, the child first.
    let term = |pid: i32| {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap()
    };
    term(child);
    // systemd's signal reaches the agent a moment later. Without the
    // grace for a stop signal the source reports a failed journalctl at
    // once, within this second; with it, it waits for the stop.
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline && !e.stderr().contains("journalctl exited") {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(d);
    let err = e.stderr();
    assert!(
        !err.contains("journalctl exited") && !err.contains("starting it again"),
        "{err}"
    );
    assert!(!err.contains("warning"), "{err}");
}

/// The boot before the current one, in the reboot tests.
const PREVIOUS_BOOT: &str = "fedcba9876543210fedcba9876543210";

/// The boot id of the running kernel, as the journal writes it.
fn current_boot() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .replace('-', "")
}

fn gaps(e: &Env) -> Vec<Rec> {
    e.records()
        .into_iter()
        .filter(|r| r.kind.starts_with("gap"))
        .collect()
}

/// The boot id of each entry spooled.
fn boots(e: &Env) -> Vec<String> {
    e.entries()
        .iter()
        .map(|r| String::from_utf8_lossy(r.field("_BOOT_ID").expect("_BOOT_ID")).into_owned())
        .collect()
}

/// The agent ran in the previous boot and read entries 0..30; it stopped
/// at shutdown, and the shutdown went on (30..45: who stopped the machine,
/// what failed on the way down); then the machine came up in the current
/// boot (45..60), and the agent started again. Every entry is read once,
/// in order, the earlier boot's rest first, with no gap record; the
/// current boot is then followed (60..70).
fn reboot(e: &Env, append: impl Fn(std::ops::Range<u64>, &str), start: impl Fn() -> Daemon) {
    let current = current_boot();
    append(0..30, PREVIOUS_BOOT);
    let d = start();
    e.wait_entries(30);
    stop(d);
    append(30..45, PREVIOUS_BOOT);
    append(45..60, &current);
    let d = start();
    e.wait_entries(60);
    append(60..70, &current);
    e.wait_entries(70);
    stop(d);
    assert_eq!(gaps(e), vec![], "no gap: nothing was lost");
    assert_eq!(
        seqs(e),
        (0..70).collect::<Vec<_>>(),
        "every entry once, in order"
    );
    let b = boots(e);
    assert!(b[..45].iter().all(|b| b == PREVIOUS_BOOT), "{b:?}");
    assert!(b[45..].iter().all(|b| *b == current), "{b:?}");
}

/// With `directory =`, a boot that begins while the agent runs (a host
/// reboots and its journal, collected here, goes on in a new boot) is read
/// without a restart of the agent: `journalctl --follow` would keep to the
/// boot that was newest when it started.
#[test]
fn a_journal_directory_shows_a_boot_that_began_while_the_agent_ran() {
    let e = journal_env("");
    let file = e.p("journal").join("system.journal");
    std::fs::create_dir_all(e.p("journal")).unwrap();
    append_journal(&file, 0..20, PREVIOUS_BOOT);
    let d = e.start();
    e.wait_entries(20);
    append_journal(&file, 20..30, PREVIOUS_BOOT);
    append_journal(&file, 30..40, &current_boot());
    e.wait_entries(40);
    stop(d);
    assert_eq!(gaps(&e), vec![]);
    assert_eq!(seqs(&e), (0..40).collect::<Vec<_>>());
}

/// The system journal, as the packaged unit reads it: the daemon runs
/// in a mount namespace of its own where a directory of the test is
/// /var/log, holding `journal/<machine-id>/system.journal`, and /run/log is
/// empty. The source has no `directory` and no `files`, so the daemon runs
/// the very `journalctl` command line of the packaged configuration, and
/// journalctl finds the files where it finds journald's and takes "the
/// current boot" from the running kernel — which is what decides what
/// `--follow` shows, and differs from `--directory`, `--file` and `--root`
/// (there it is the newest boot in the files). Needs root (mount
/// namespaces); CI runs as root.
struct SystemJournal {
    var_log: PathBuf,
    empty: PathBuf,
    /// journald's file of the running system.
    file: PathBuf,
}

impl SystemJournal {
    /// None when this machine cannot run it (not root); under CI that fails.
    fn new(e: &Env) -> Option<SystemJournal> {
        let machine_id = std::fs::read_to_string("/etc/machine-id").expect("/etc/machine-id");
        let var_log = e.p("var-log");
        let empty = e.p("empty");
        let dir = var_log.join("journal").join(machine_id.trim());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&empty).unwrap();
        let s = SystemJournal {
            var_log,
            empty,
            file: dir.join("system.journal"),
        };
        let ok = s.command("true", &[]).status().is_ok_and(|st| st.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot bind-mount in a mount namespace: CI runs as root and must"
            );
            eprintln!("skipped: cannot bind-mount in a mount namespace (needs root)");
            return None;
        }
        Some(s)
    }

    /// `program args` with this test's journal as the system journal.
    fn command(&self, program: &str, args: &[&std::ffi::OsStr]) -> std::process::Command {
        let mut c = std::process::Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount --bind \"$1\" /var/log && \
                 { [ ! -d /run/log ] || mount --bind \"$2\" /run/log; } && \
                 shift 2 && exec \"$@\"",
            )
            .arg("sh")
            .arg(&self.var_log)
            .arg(&self.empty)
            .arg(program)
            .args(args);
        c
    }

    /// Starts the daemon on it and waits until it runs its sources.
    fn start(&self, e: &Env) -> Daemon {
        let before = e.stderr().matches("running with").count();
        let child = self
            .command(
                common::bin(),
                &[
                    "run".as_ref(),
                    "--config".as_ref(),
                    e.p("agent.toml").as_os_str(),
                ],
            )
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(e.p("daemon.err"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let d = Daemon(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while e.stderr().matches("running with").count() == before {
            assert!(
                Instant::now() < deadline,
                "daemon did not start: {}",
                e.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        d
    }
}

#[test]
fn after_a_reboot_the_system_journal_of_the_earlier_boot_is_read_to_its_end_then_the_current_boot()
{
    let e = Env::with_sources("", |_| "[[sources.journald]]\nname = \"journal\"\n".into());
    let Some(sys) = SystemJournal::new(&e) else {
        return;
    };
    reboot(
        &e,
        |range, boot| append_journal(&sys.file, range, boot),
        || sys.start(&e),
    );
}

#[test]
fn after_a_reboot_a_journal_directory_is_read_to_the_end_of_the_earlier_boot_too() {
    // With `directory =`, `--follow` keeps to the newest boot in the files.
    let e = journal_env("");
    let file = e.p("journal").join("system.journal");
    std::fs::create_dir_all(e.p("journal")).unwrap();
    reboot(
        &e,
        |range, boot| append_journal(&file, range, boot),
        || e.start(),
    );
}

/// The value of a metric line of the daemon's scrape.
fn metric(e: &Env, line_start: &str) -> Option<String> {
    use std::io::{Read, Write};
    let err = e.stderr();
    let addr = err
        .split("metrics on http://")
        .nth(1)?
        .split("/metrics")
        .next()?
        .to_owned();
    let mut m = std::net::TcpStream::connect(addr).unwrap();
    m.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    m.read_to_string(&mut out).unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map(|v| v.trim().to_owned())
}

/// The SEQ values of a journal file.
fn seqs_in(file: &Path) -> Vec<u64> {
    let out = std::process::Command::new("journalctl")
        .arg(format!("--file={}", file.display()))
        .args(["--output=json", "--output-fields=SEQ", "--no-pager"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["SEQ"].as_str().unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn a_jump_in_the_journals_sequence_numbers_is_a_gap_record_with_the_count() {
    let e = Env::with_sources("[metrics]\nlisten = \"127.0.0.1:0\"\n", |e| {
        format!(
            "[[sources.journald]]\nname = \"journal\"\ndirectory = \"{}\"\n",
            e.p("journal").display()
        )
    });
    let dir = e.p("journal");
    // One file set rotated into several files, as journald rotates: the
    // writer starts a new file once about 250 field names are in one (its
    // field hash table is 75% full), here every 247 entries, each with a
    // field name of its own; the new file continues the set's numbers.
    let mut one_set = Vec::new();
    for i in 0..1000u64 {
        let name = format!("F_{i}");
        one_set.extend(export(i..i + 1, BOOT, &[(&name, b"x")]));
    }
    write_export(&dir, "system", &one_set);
    // Another file set (a seqnum_id of its own, numbered from 1): no jump.
    write_journal(&dir, "other", 1000..1010, &[]);
    let mut archived: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("system@"))
        .collect();
    archived.sort();
    assert!(archived.len() >= 3, "{archived:?}");
    // One file of the set is gone (removed by hand, damaged, unreadable):
    // the entries in it were numbered and are not in the journal.
    let lost = seqs_in(&archived[1]);
    assert!(!lost.is_empty());
    std::fs::remove_file(&archived[1]).unwrap();
    let kept: Vec<u64> = (0..1010).filter(|i| !lost.contains(i)).collect();
    let d = e.start();
    e.wait_entries(kept.len());
    e.wait_records("gap", 1);
    let counted = metric(&e, "wormlog_source_lost_total{source=\"journal\"}");
    stop(d);
    assert_eq!(seqs(&e), kept);
    let g = gaps(&e);
    assert_eq!(
        g.len(),
        1,
        "one jump, none for the rotations or the new set: {g:?}"
    );
    assert_eq!(g[0].kind, "gap:8", "reason other");
    let n = lost.len();
    let (after, next) = (lost[0], lost[n - 1] + 2);
    assert!(
        g[0].detail
            .contains(&format!("jump from {after} to {next}"))
            && g[0]
                .detail
                .contains(&format!("{n} entries journald wrote were not read")),
        "{}",
        g[0].detail
    );
    assert_eq!(
        counted,
        Some(n.to_string()),
        "source_lost_total counts them"
    );
    assert!(
        e.stderr().contains("sequence numbers jump"),
        "{}",
        e.stderr()
    );
}
