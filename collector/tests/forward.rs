//! The real binaries over real TLS on loopback: `wormlog run` tails a file
//! into its spool and forwards it to `wormlog-collector serve` with mutual
//! TLS (certificates made here with rcgen). Checks exactly-once delivery,
//! receipts in the agent's chain, the store's verification, TLS refusals,
//! a forked chain, and a small spool that prunes what the collector
//! acknowledged.

mod common;

use common::{
    Setup, agent_bin, collector_bin, mtls_agent_config, mtls_setup, next_seq_in_store,
    start_collector, stored_lines, verify_spool, verify_store, wait_for, write_lines,
};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn receipts_in_spool(spool: &Path) -> usize {
    let out = Command::new(agent_bin())
        .args(["cat", "--json", "--spool"])
        .arg(spool)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"kind\":\"receipt\""))
        .count()
}

#[test]
fn lines_reach_the_collector_over_mutual_tls_exactly_once() {
    let mut s = mtls_setup();
    let collector = start_collector(&mut s);
    let log = s.d.p("logs/app.log");
    write_lines(&log, 0, 20_000);
    let cfg = mtls_agent_config(&s, "agent", Some("web-01"), "ca", "localhost", s.port);
    let agent = s.start_agent(&cfg, "agent");
    let store = s.d.p("store");
    wait_for(
        "20000 lines in the store",
        Duration::from_secs(60),
        || next_seq_in_store(&store) > 20_000,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    // More lines, and an agent restart in between: nothing twice.
    let a = agent.stop();
    assert!(a.contains("forwarding to https://localhost"), "{a}");
    write_lines(&log, 20_000, 5_000);
    let agent = s.start_agent(&cfg, "agent2");
    wait_for(
        "25000 lines in the store",
        Duration::from_secs(60),
        || stored_lines(&store).len() >= 25_000,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    wait_for(
        "the stop and later records of the first run in the store",
        Duration::from_secs(30),
        || next_seq_in_store(&store) > 25_010,
        || agent.log(),
    );
    agent.stop();
    collector.stop();
    let lines = stored_lines(&store);
    let want: Vec<String> = (0..25_000).map(common::line).collect();
    assert_eq!(lines.len(), want.len(), "every line exactly once");
    assert!(lines == want, "the store holds the lines in order");
    // The store verifies with the registered key, the agent's spool carries
    // the collector's receipts and still verifies.
    let r = verify_store(&store);
    assert_eq!(r[0]["chain"], "web-01");
    assert_eq!(r[0]["key_authenticated"], true);
    assert!(receipts_in_spool(&s.d.p("spool")) >= 2);
    verify_spool(&s);
    // The store's segments are byte-identical copies of the agent's
    // (all but the agent's last, which went on after the collector stopped).
    let seg = "0000000000000000.wlseg";
    let a = std::fs::read(s.d.p("spool").join(seg)).unwrap();
    let c = std::fs::read(store.join("agents/web-01").join(seg)).unwrap();
    assert!(
        a.starts_with(&c) && c.len() > 1 << 20,
        "a prefix of the agent's segment"
    );
}

#[test]
fn tls_refusals_keep_the_data_in_the_spool_with_a_clear_error() {
    let mut s = mtls_setup();
    let collector = start_collector(&mut s);
    write_lines(&s.d.p("logs/app.log"), 0, 1000);
    // (config name, client cert, CA the agent trusts, host, what the agent
    // must say)
    let cases = [
        (
            "no-client-cert",
            None,
            "ca",
            "localhost",
            "CertificateRequired",
        ),
        (
            "expired",
            Some("expired"),
            "ca",
            "localhost",
            "CertificateExpired",
        ),
        ("rogue-ca", Some("rogue"), "ca", "localhost", "UnknownCA"),
        (
            "wrong-server-ca",
            Some("web-01"),
            "other-ca",
            "localhost",
            "UnknownIssuer",
        ),
        (
            "wrong-host-name",
            Some("web-01"),
            "ca",
            "127.0.0.1",
            "not valid for name",
        ),
        (
            "other-agent",
            Some("web-02"),
            "ca",
            "localhost",
            "not issued to agent",
        ),
    ];
    for (name, cert, ca, host, says) in cases {
        let cfg = mtls_agent_config(&s, name, cert, ca, host, s.port);
        let agent = s.start_agent(&cfg, name);
        wait_for(
            &format!("{name}: a refusal in the agent's log"),
            Duration::from_secs(20),
            || {
                let l = agent.log();
                l.contains("retrying") && l.contains(says)
            },
            || format!("{}\n{}", agent.log(), collector.log()),
        );
        let l = agent.stop();
        assert!(l.contains("stopped cleanly"), "{name}: {l}");
        assert_eq!(
            next_seq_in_store(&s.d.p("store")),
            0,
            "{name}: nothing stored"
        );
    }
    collector.stop();
    // Everything is still in the spool.
    let out = Command::new(agent_bin())
        .args(["cat", "--spool"])
        .arg(s.d.p("spool"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains("[app] line")).count(),
        1000
    );
}

#[test]
fn a_rewritten_spool_is_a_fork_refused_and_alerted() {
    let mut s = mtls_setup();
    let collector = start_collector(&mut s);
    write_lines(&s.d.p("logs/app.log"), 0, 500);
    let cfg = mtls_agent_config(&s, "agent", Some("web-01"), "ca", "localhost", s.port);
    let agent = s.start_agent(&cfg, "a1");
    let store = s.d.p("store");
    wait_for(
        "500 lines stored",
        Duration::from_secs(60),
        || next_seq_in_store(&store) > 500,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    agent.stop();
    // Root on the host takes a copy of the spool and the key now ...
    copy_dir(&s.d.p("spool"), &s.d.p("spool-then"));
    copy_dir(&s.d.p("keys"), &s.d.p("keys-then"));
    let then = next_seq_in_store(&store);
    // ... the agent goes on and the collector receives more ...
    write_lines(&s.d.p("logs/app.log"), 500, 100);
    let agent = s.start_agent(&cfg, "a2");
    wait_for(
        "600 lines stored",
        Duration::from_secs(60),
        || next_seq_in_store(&store) > then + 100,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    agent.stop();
    let before = std::fs::read(store.join("agents/web-01/0000000000000000.wlseg")).unwrap();
    // ... then rolls the host back to the copy and lets history go on
    // differently: the same keys, the same genesis, a different record at
    // the first sequence number after the copy.
    for d in ["spool", "keys"] {
        wormlog_spool::worm::remove_dir_all_worm(&s.d.p(d)).unwrap();
        std::fs::rename(s.d.p(&format!("{d}-then")), s.d.p(d)).unwrap();
    }
    // The rewritten history, signed with the agent's own key: `wormlog
    // append` ends with a checkpoint over it.
    let mut append = Command::new(agent_bin())
        .args(["append", "--source", "intruder", "--config"])
        .arg(&cfg)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        append
            .stdin
            .take()
            .unwrap()
            .write_all(b"what the intruder wants on record\n")
            .unwrap();
    }
    assert!(append.wait().unwrap().success());
    let agent = s.start_agent(&cfg, "a3");
    wait_for(
        "the agent to report the refusal",
        Duration::from_secs(30),
        || agent.log().contains("refused the chain"),
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    wait_for(
        "the collector to report the fork",
        Duration::from_secs(10),
        || collector.log().contains("FORK"),
        || collector.log(),
    );
    let a = agent.stop();
    assert!(a.contains("HTTP 409"), "{a}");
    let c = collector.stop();
    // The fork is found where the histories part, after the records both
    // share (which were acknowledged again as replays).
    let at: u64 = c
        .split("sent a record ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{c}"));
    assert!(
        at >= then && at > 500,
        "fork at {at}, the copy ended at {then}"
    );
    // The original is untouched, the alert is in both chains.
    let after = std::fs::read(store.join("agents/web-01/0000000000000000.wlseg")).unwrap();
    assert!(after == before, "the stored chain was not overwritten");
    let out = Command::new(agent_bin())
        .args(["cat", "--spool"])
        .arg(s.d.p("spool"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("forward_refused"));
    let out = Command::new(agent_bin())
        .args(["cat", "--spool"])
        .arg(store.join("log"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("fork_detected"));
    verify_store(&store);
    // The agent's differing records are kept as evidence, and shown.
    let out = Command::new(collector_bin())
        .args(["forks", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("FORK of agent web-01 at seq {at}")),
        "{text}"
    );
    assert!(text.contains("intact"), "{text}");
    assert!(text.contains("what the intruder wants on record"), "{text}");
}

#[test]
fn a_small_spool_prunes_what_the_collector_acknowledged_and_still_verifies() {
    let mut s = Setup::new();
    s.write_collector_config("");
    let collector = start_collector(&mut s);
    // Some 25 MB of records through a 4 MiB spool: it must prune as it goes.
    let n = 120_000;
    write_lines(&s.d.p("logs/app.log"), 0, n);
    let cfg = s.write_agent_config_with(
        "agent",
        "segment_max_bytes = \"1MiB\"\ndisk_budget = \"4MiB\"\nbudget_warning = \"50%\"\nmin_free = \"1MiB\"\nretention = \"1h\"\n",
        &format!("url = \"http://127.0.0.1:{}\"\n", s.port),
    );
    let agent = s.start_agent(&cfg, "agent");
    let store = s.d.p("store");
    wait_for(
        "all lines in the store",
        Duration::from_secs(120),
        || next_seq_in_store(&store) > n as u64 && stored_lines(&store).len() >= n,
        || agent.log(),
    );
    let log = agent.stop();
    collector.stop();
    assert!(log.contains("removed segments"), "{log}");
    let lines = stored_lines(&store);
    assert_eq!(lines.len(), n, "every line exactly once");
    assert!(
        (0..n).all(|i| lines[i] == common::line(i)),
        "the store holds the lines in order"
    );
    verify_store(&store);
    // The agent's spool no longer starts at segment 0, stayed near its
    // budget, and verifies from the first public key.
    let spool = s.d.p("spool");
    assert!(!spool.join("0000000000000000.wlseg").exists());
    assert!(spool.join("keys.wlledger").exists());
    let bytes: u64 = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        bytes < 6 << 20,
        "the spool holds {bytes} bytes, budget 4 MiB"
    );
    verify_spool(&s);
    let out = Command::new(agent_bin())
        .args(["verify", "--json", "--pubkey", &s.pubkey, "--spool"])
        .arg(&spool)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["pruned"]["first_segment"].as_u64() > Some(0), "{v}");
    assert!(v["prunes"].as_u64() >= Some(1), "{v}");
}

/// A forward-only agent: no source configured, the spool filled by
/// `wormlog append`. The daemon must keep running and deliver it.
#[test]
fn an_agent_without_sources_forwards_what_append_spooled() {
    let mut s = Setup::new();
    s.write_collector_config("");
    let collector = start_collector(&mut s);
    let cfg = s.write_agent_config("agent", &format!("url = \"http://127.0.0.1:{}\"\n", s.port));
    let text = std::fs::read_to_string(&cfg).unwrap();
    let start = text.find("[[sources.file]]").unwrap();
    let end = text.find("[forward]").unwrap();
    std::fs::write(&cfg, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let n = 3000;
    let input: String = (0..n).map(|i| common::line(i) + "\n").collect();
    let mut append = Command::new(agent_bin())
        .args(["append", "--source", "app", "--config"])
        .arg(&cfg)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    append
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(append.wait().unwrap().success());
    let agent = s.start_agent(&cfg, "agent");
    let store = s.d.p("store");
    wait_for(
        "the appended lines in the store",
        Duration::from_secs(60),
        || next_seq_in_store(&store) > n as u64 && stored_lines(&store).len() >= n,
        || agent.log(),
    );
    let log = agent.stop();
    collector.stop();
    assert!(log.contains("running with 0 sources"), "{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    let lines = stored_lines(&store);
    assert!(lines.len() == n && (0..n).all(|i| lines[i] == common::line(i)));
    verify_spool(&s);
}
