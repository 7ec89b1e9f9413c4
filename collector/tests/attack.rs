//! The collector under attack, over real TLS (and plain HTTP on loopback):
//! a refused request costs no more than its headers, a held body is cut off
//! at its deadline, one client cannot take every connection, and a stranger
//! cannot make the collector accuse an agent of a fork.

mod common;

use common::{
    Setup, collector_bin, mtls_agent_config, mtls_setup, next_seq_in_store, start_collector,
    wait_for, write_lines,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A TLS connection to the collector as `cert` (a name in `pki/`).
fn tls_conn(s: &Setup, cert: &str) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let pki = |x: &str| s.d.p(&format!("pki/{x}"));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(pki(&format!("{cert}.pem")))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_file(pki(&format!("{cert}-key.pem"))).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tcp.set_nodelay(true).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// A frame with a valid CRC around 200 bytes of `fill` that claim to be
/// record `seq`: what a stranger can make without any key.
fn garbage_frame(seq: u64, fill: u8) -> Vec<u8> {
    let mut record = vec![fill; 200];
    record[4..12].copy_from_slice(&seq.to_le_bytes());
    let len = (record.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c(&[&len[..], &record].concat());
    [&crc.to_le_bytes()[..], &len, &record].concat()
}

fn post_head(agent: &str, seq: u64, len: u64) -> String {
    format!(
        "POST /v1/agents/{agent}/records HTTP/1.1\r\nHost: localhost\r\nWormlog-Seq: {seq}\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// The status line of the answer (reads until the first line ends).
fn status(r: &mut impl Read) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n") {
        match r.read(&mut b) {
            Ok(1) => buf.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).trim().to_owned()
}

/// The collector's peak resident memory so far (`VmHWM`): what an attack
/// made it hold at its worst moment, not what is left once it was freed.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn add_to_collector_config(s: &Setup, more: &str) {
    let p = s.d.p("collector.toml");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(more);
    std::fs::write(p, text).unwrap();
}

/// Appends lines to `logs/app.log` at about `per_sec` until told to stop.
fn steady_writer(
    path: &Path,
    per_sec: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let mut n = 100_000;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            write_lines(&path, n, per_sec / 10);
            n += per_sec / 10;
            std::thread::sleep(Duration::from_millis(100));
        }
        n
    })
}

#[test]
fn hostile_clients_cost_their_headers_while_an_honest_agent_delivers() {
    let mut s = mtls_setup();
    // web-02 is registered too: a certificate holder with a chain of its
    // own, the strongest position a hostile client can have.
    add_to_collector_config(
        &s,
        &format!(
            "\n[[agents]]\nid = \"web-02\"\npubkey = \"{}\"\n\n[limits]\nbody_timeout = \"2s\"\nmin_body_rate = \"64MiB\"\nmax_connections_per_client = 4\n",
            s.pubkey
        ),
    );
    let collector = start_collector(&mut s);
    let pid = collector.child.id();
    write_lines(&s.d.p("logs/app.log"), 0, 2000);
    let cfg = mtls_agent_config(&s, "agent", Some("web-01"), "ca", "localhost", s.port);
    let agent = s.start_agent(&cfg, "agent");
    let store = s.d.p("store");
    wait_for(
        "the first lines stored",
        Duration::from_secs(60),
        || next_seq_in_store(&store) > 2000,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = steady_writer(&s.d.p("logs/app.log"), 2000, stop.clone());
    // The baseline once the steady lines flow into the store.
    wait_for(
        "the steady lines to reach the store",
        Duration::from_secs(30),
        || next_seq_in_store(&store) > 2500,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    let peak_before = peak_kib(pid);

    // 1. Five connections of one client, each a body announced at 30 MiB
    //    with 1 MiB sent and the rest withheld: four are held, and answered
    //    408 at their deadline (2 s + 30 MiB at 64 MiB/s); the one over
    //    max_connections_per_client is answered 429 at once.
    let mut holders = Vec::new();
    for _ in 0..5 {
        let mut c = tls_conn(&s, "web-02");
        let sent = c
            .write_all(post_head("web-02", 0, 30 << 20).as_bytes())
            .and_then(|()| c.write_all(&vec![0u8; 1 << 20]))
            .and_then(|()| c.flush());
        holders.push((Instant::now(), sent.is_ok(), c));
    }
    let mut answers = Vec::new();
    for (started, sent, mut c) in holders {
        let st = status(&mut c);
        answers.push((st, sent, started.elapsed()));
    }
    let timeouts = answers
        .iter()
        .filter(|(st, _, _)| st.contains(" 408 "))
        .count();
    // The one over the share: its 429 read, or — when the client was
    // still pushing its body as the collector closed — its writes refused
    // (the reset can discard the answer before it is read).
    let busy = answers
        .iter()
        .filter(|(st, sent, _)| st.contains(" 429 ") || (!sent && !st.contains(" 408 ")))
        .count();
    assert_eq!((timeouts, busy), (4, 1), "{answers:?}");
    for (st, sent, took) in &answers {
        if st.contains(" 408 ") {
            assert!(sent, "a held body");
            assert!(
                *took < Duration::from_secs(12),
                "a held body was answered after {took:?}"
            );
        }
    }
    // 2. Six 79 MiB bodies for a chain the certificate does not name: 403
    //    from the headers alone, before a byte of the body is sent; then
    //    the connection is closed and the body cannot be pushed.
    let mut refused_sent = 0usize;
    for _ in 0..6 {
        let mut c = tls_conn(&s, "web-02");
        c.write_all(post_head("web-01", 0, 79 << 20).as_bytes())
            .unwrap();
        c.flush().unwrap();
        let st = status(&mut c);
        assert!(st.contains(" 403 "), "a refused body: {st:?}");
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..79 {
            if c.write_all(&chunk).and_then(|()| c.flush()).is_err() {
                break;
            }
            refused_sent += chunk.len();
        }
    }
    assert!(
        refused_sent < 6 * (79 << 20),
        "the collector kept reading refused bodies"
    );
    // 3. A Content-Length of 10^12 with three bytes sent: 413 at once.
    let mut huge = tls_conn(&s, "web-02");
    huge.write_all(post_head("web-02", 0, 1_000_000_000_000).as_bytes())
        .unwrap();
    huge.write_all(b"abc").unwrap();
    let t = Instant::now();
    assert!(status(&mut huge).contains(" 413 "), "a huge length");
    assert!(t.elapsed() < Duration::from_secs(5));
    let peak_after = peak_kib(pid);
    // The honest agent kept delivering: it catches up within seconds.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap() - 100_000 + 2000;
    wait_for(
        "the honest agent to catch up",
        Duration::from_secs(30),
        || next_seq_in_store(&store) as usize > written,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    agent.stop();
    let log = collector.stop();
    eprintln!(
        "collector peak RSS {peak_before} KiB before the attack, {peak_after} KiB after it; the refused clients pushed {} MiB at it",
        refused_sent >> 20
    );
    // What was refused was not kept, even for a moment: 4 MiB of held
    // bodies and the headers, not the 6 x 79 MiB or 4 x 30 MiB announced.
    assert!(
        peak_after < peak_before + 48 * 1024,
        "peak RSS grew from {peak_before} to {peak_after} KiB"
    );
    assert!(!log.contains("FORK"), "{log}");
}

#[test]
fn a_stranger_cannot_make_the_collector_accuse_an_agent() {
    // The quick start's collector: plain HTTP on loopback, no client
    // certificates — anyone on the host can connect.
    let mut s = Setup::new();
    s.write_collector_config("");
    add_to_collector_config(&s, "\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let collector = start_collector(&mut s);
    write_lines(&s.d.p("logs/app.log"), 0, 500);
    let cfg = s.write_agent_config(
        "agent",
        &format!(
            "url = \"http://127.0.0.1:{}\"\nbackoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n",
            s.port
        ),
    );
    let agent = s.start_agent(&cfg, "agent");
    let store = s.d.p("store");
    wait_for(
        "500 lines stored",
        Duration::from_secs(60),
        || next_seq_in_store(&store) > 500,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    agent.stop();
    // A record the collector holds, replaced by 200 bytes of garbage in a
    // frame with a valid CRC — forty times.
    let frame = garbage_frame(100, 0x41);
    for _ in 0..40 {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(post_head("web-01", 100, frame.len() as u64).as_bytes())
            .unwrap();
        c.write_all(&frame).unwrap();
        let st = status(&mut c);
        assert!(st.contains(" 422 "), "a forged fork: {st:?}");
    }
    // The metrics listener answers without TLS or a certificate.
    let mport: u16 = collector
        .log()
        .split("metrics and health on http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .expect("the metrics listener");
    let mut m = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    m.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("wormlog_collector_unproven_forks_total{agent=\"web-01\"} 40"),
        "{text}"
    );
    assert!(!text.contains("wormlog_collector_forks_total{"), "{text}");
    let log = collector.stop();
    assert!(!log.contains("FORK"), "{log}");
    // The alerts were rate-limited: at most five in the collector's chain.
    let out = Command::new(common::agent_bin())
        .args(["cat", "--spool"])
        .arg(store.join("log"))
        .output()
        .unwrap();
    let own = String::from_utf8_lossy(&out.stdout);
    assert!(!own.contains("fork_detected"), "{own}");
    let alerts = own
        .lines()
        .filter(|l| l.contains("not a proven fork"))
        .count();
    assert!((1..=5).contains(&alerts), "{alerts} alerts:\n{own}");
    // No evidence, nothing to list.
    let out = Command::new(collector_bin())
        .args(["forks", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no forks proven"));
}

#[test]
fn ids_in_urls_make_no_labels_and_connections_are_capped() {
    let mut s = Setup::new();
    s.write_collector_config("");
    add_to_collector_config(
        &s,
        "\n[limits]\nmax_connections = 3\nheader_timeout = \"2s\"\n",
    );
    let collector = start_collector(&mut s);
    let get = |path: &str| {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    };
    for i in 0..2000 {
        let r = get(&format!("/v1/agents/stranger-{i}/state"));
        assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    }
    let metrics = get("/metrics");
    assert!(
        !metrics.contains("stranger-"),
        "an unregistered id became a label"
    );
    assert!(
        metrics.len() < 16 << 10,
        "/metrics is {} bytes",
        metrics.len()
    );
    assert!(
        metrics.contains("wormlog_collector_refused_total{reason=\"not_registered\"} 2000"),
        "{metrics}"
    );
    // Three idle connections hold every slot: a fourth is closed at once.
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", s.port)).unwrap())
        .collect();
    wait_for(
        "a fourth connection to be closed",
        Duration::from_secs(10),
        || {
            let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut b = [0u8; 16];
            matches!(c.read(&mut b), Ok(0) | Err(_))
        },
        || collector.log(),
    );
    // Idle connections are closed at header_timeout, which frees the slots.
    let mut idle = idle;
    for c in &mut idle {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 16];
        let closed = match c.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        assert!(closed, "an idle connection left open past header_timeout");
    }
    wait_for(
        "a connection to be served again",
        Duration::from_secs(10),
        || get("/health").starts_with("HTTP/1.1 200"),
        || collector.log(),
    );
    let log = collector.stop();
    assert!(log.contains("(limits.max_connections)"), "{log}");
}

#[test]
fn check_config_opens_every_file_as_the_service_user_would() {
    let s = mtls_setup();
    let cfg = s.d.p("collector.toml");
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(Command::new(collector_bin())
        .args(["check-config", "--config"])
        .arg(&cfg));
    assert_eq!(code, Some(0), "{err}");
    // The collector's TLS key, readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let key = s.d.p("pki/collector-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, err) = if rustix::process::geteuid().is_root() {
        // As root (CI), check as another user, as systemd's User= would.
        for d in [s.d.p(""), s.d.p("pki")] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(collector_bin())
            .args(["check-config", "--config"])
            .arg(&cfg))
    } else {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o000)).unwrap();
        run(Command::new(collector_bin())
            .args(["check-config", "--config"])
            .arg(&cfg))
    };
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("collector-key.pem"), "{err}");
}

#[test]
fn bursts_of_invalid_requests_over_tls_do_not_stall_an_agent() {
    let mut s = mtls_setup();
    let collector = start_collector(&mut s);
    write_lines(&s.d.p("logs/app.log"), 0, 2000);
    let cfg = mtls_agent_config(&s, "agent", Some("web-01"), "ca", "localhost", s.port);
    let agent = s.start_agent(&cfg, "agent");
    let store = s.d.p("store");
    wait_for(
        "the first lines stored",
        Duration::from_secs(60),
        || next_seq_in_store(&store) > 2000,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = steady_writer(&s.d.p("logs/app.log"), 2000, stop.clone());
    // With the agent's own certificate: 300 replays of a stored record
    // replaced by garbage with a valid CRC (each an alert the collector
    // would write and sync), an empty replay, and ids that are no agent.
    let frame = garbage_frame(10, 0x42);
    let t = Instant::now();
    let mut c = tls_conn(&s, "web-01");
    for i in 0..300 {
        c.write_all(post_head("web-01", 10, frame.len() as u64).as_bytes())
            .unwrap();
        c.write_all(&frame).unwrap();
        let st = status(&mut c);
        assert!(st.contains(" 422 "), "request {i}: {st:?}");
        // The rest of the answer: headers, then a JSON body.
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            c.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        let text = String::from_utf8_lossy(&head).to_lowercase();
        let n: usize = text
            .split("content-length:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap();
        let mut body = vec![0u8; n];
        c.read_exact(&mut body).unwrap();
    }
    let burst = t.elapsed();
    // An empty replay below the next record: answered at once, nothing read.
    c.write_all(post_head("web-01", 5, 0).as_bytes()).unwrap();
    assert!(status(&mut c).contains(" 200 "));
    drop(c);
    for i in 0..50 {
        let mut c = tls_conn(&s, "web-01");
        c.write_all(
            format!("GET /v1/agents/stranger-{i}/state HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        assert!(status(&mut c).contains(" 403 "));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap() - 100_000 + 2000;
    wait_for(
        "the honest agent to catch up",
        Duration::from_secs(30),
        || next_seq_in_store(&store) as usize > written,
        || format!("{}\n{}", agent.log(), collector.log()),
    );
    eprintln!("300 refused replays answered in {burst:?}");
    assert!(burst < Duration::from_secs(30), "{burst:?}");
    agent.stop();
    let log = collector.stop();
    assert!(!log.contains("FORK"), "{log}");
    // Refusals are logged at a limited rate (ten a minute per kind).
    let lines = log.lines().filter(|l| l.contains("stranger-")).count();
    assert!(
        (1..=10).contains(&lines),
        "{lines} lines about ids that are no agent's (logged, at most ten a minute): {log}"
    );
    // At most five alerts for the 300 in the collector's own chain.
    let out = Command::new(common::agent_bin())
        .args(["cat", "--spool"])
        .arg(store.join("log"))
        .output()
        .unwrap();
    let own = String::from_utf8_lossy(&out.stdout);
    let alerts = own
        .lines()
        .filter(|l| l.contains("not a proven fork"))
        .count();
    assert!((1..=5).contains(&alerts), "{alerts} alerts:\n{own}");
    // What was held back is told, at the latest when the collector stops.
    assert!(
        own.contains("more alerts (unproven/web-01) were held back by the rate limit"),
        "{own}"
    );
}

#[test]
fn a_body_sent_fast_then_withheld_is_cut_off_at_the_idle_timeout() {
    let mut s = Setup::new();
    s.write_collector_config("");
    // The deadline for 30 MiB is 30 s + 480 s; the pause limit is 1 s.
    add_to_collector_config(&s, "\n[limits]\nbody_idle_timeout = \"1s\"\n");
    let collector = start_collector(&mut s);
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(post_head("web-01", 0, 30 << 20).as_bytes())
        .unwrap();
    c.write_all(&vec![0u8; 10 << 20]).unwrap();
    let t = Instant::now();
    let st = status(&mut c);
    let took = t.elapsed();
    assert!(st.contains(" 408 "), "{st:?}");
    assert!(took < Duration::from_secs(8), "answered after {took:?}");
    let log = collector.stop();
    assert!(log.contains("no byte of the body arrived for 1s"), "{log}");
}

#[test]
fn a_zstd_body_cannot_decompress_past_what_its_header_announced() {
    let mut s = Setup::new();
    s.write_collector_config("");
    let collector = start_collector(&mut s);
    let pid = collector.child.id();
    let before = peak_kib(pid);
    // A first frame announcing 1 byte, then a frame of 60 MiB of zeros: a
    // few kilobytes on the wire.
    let mut body = zstd::bulk::compress(b"x", 3).unwrap();
    body.extend(zstd::bulk::compress(&vec![0u8; 60 << 20], 19).unwrap());
    assert!(body.len() < 64 << 10, "{} bytes", body.len());
    for _ in 0..5 {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(
            format!(
                "POST /v1/agents/web-01/records HTTP/1.1\r\nHost: x\r\nWormlog-Seq: 0\r\nContent-Encoding: zstd\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        c.write_all(&body).unwrap();
        let st = status(&mut c);
        assert!(st.contains(" 400 "), "{st:?}");
    }
    let peak = peak_kib(pid);
    collector.stop();
    assert!(
        peak < before + 16 * 1024,
        "peak RSS {peak} KiB, {before} KiB before the bombs: one was decompressed"
    );
}
