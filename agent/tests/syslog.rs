//! `[[sources.syslog]]` on real sockets: `logger(1)` and test clients send
//! RFC 5424 and RFC 3164 over UDP, TCP (LF and octet-counting framing),
//! TLS (certificates made here with rcgen) and a Unix datagram socket.
//! Every message is kept byte-exact with its parsed fields; hostile input
//! (bad PRI, a BOM, no timestamp, 64 KiB) is kept as it came; a UDP flood
//! past the socket buffer leaves gap records whose counts, with what was
//! kept, add up to what was sent.

mod common;

use common::*;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

fn syslog_env(listen: &str, extra: &str) -> Env {
    syslog_env_spool(listen, "", extra)
}

fn syslog_env_spool(listen: &str, spool: &str, extra: &str) -> Env {
    let listen = listen.to_owned();
    let extra = extra.to_owned();
    Env::with_sources(spool, move |e| {
        // DIR in the settings stands for the test's directory.
        let dir = e.dir.path().display().to_string();
        let (listen, extra) = (listen.replace("DIR", &dir), extra.replace("DIR", &dir));
        format!("[[sources.syslog]]\nname = \"net\"\nlisten = \"{listen}\"\n{extra}\n")
    })
}

/// The address the source printed it listens on, e.g. `127.0.0.1:40123`.
fn listening(e: &Env, scheme: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let prefix = if scheme == "unix" {
        "listening on unix:".to_owned()
    } else {
        format!("listening on {scheme}://")
    };
    loop {
        let err = e.stderr();
        if let Some(a) = err
            .split(&prefix)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
        {
            return a.to_owned();
        }
        assert!(Instant::now() < deadline, "not listening:\n{err}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The entries, with the compact `syslog` field expanded into the named
/// fields it stands for (as `wormlog cat --json` shows them).
fn entries(e: &Env) -> Vec<Rec> {
    e.entries()
        .into_iter()
        .map(|mut r| {
            let mut fields = Vec::new();
            for (k, v) in &r.fields {
                if k == wormlog_parse::syslog::COMPACT_FIELD {
                    let named = wormlog_parse::syslog::expand_compact(&r.body, v)
                        .expect("a well-formed compact field");
                    fields.extend(named.into_iter().map(|(n, v)| (n.to_owned(), v)));
                } else {
                    fields.push((k.clone(), v.clone()));
                }
            }
            r.fields = fields;
            r
        })
        .collect()
}

/// The messages a test sends that are not plain: each must come back with
/// the same bytes.
fn hostile() -> Vec<Vec<u8>> {
    vec![
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - BOM'su root' failed for lonvick on /dev/pts/8".to_vec(),
        [b"<165>1 2003-10-11T22:14:15.003Z host app 123 ID1 [exampleSDID@32473 iut=\"3\" eventSource=\"App\\]\"] ".as_slice(), b"\xef\xbb\xbf", "Unicode \u{202e} message".as_bytes()].concat(),
        b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8".to_vec(),
        b"<999>not a priority".to_vec(),
        b"<13>no timestamp at all".to_vec(),
        b"no pri\x00nul \xff\xfe invalid utf-8 \x1b[31m".to_vec(),
    ]
}

fn assert_kept(got: &[Rec], sent: &[Vec<u8>]) {
    let bodies: Vec<&[u8]> = got.iter().map(|r| r.body.as_slice()).collect();
    for s in sent {
        assert!(
            bodies.contains(&s.as_slice()),
            "{:?} not kept byte-exact",
            String::from_utf8_lossy(s)
        );
    }
}

#[test]
fn udp_keeps_every_message_byte_exact_with_parsed_fields() {
    let e = syslog_env("udp://127.0.0.1:0", "");
    let d = e.start();
    let addr = listening(&e, "udp");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = hostile();
    let big: Vec<u8> = [
        b"<14>Jan  2 03:04:05 host big: ".as_slice(),
        &vec![b'x'; 60_000],
    ]
    .concat();
    sent.push(big.clone());
    for m in &sent {
        sock.send_to(m, &addr).unwrap();
    }
    let port = addr.rsplit(':').next().unwrap();
    let out = Command::new("logger")
        .args([
            "--udp",
            "--server",
            "127.0.0.1",
            "--port",
            port,
            "--rfc5424",
            "-t",
            "cron",
            "from logger",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    e.wait_entries(sent.len() + 1);
    stop(d);
    let got = entries(&e);
    assert_kept(&got, &sent);
    let by_body = |b: &[u8]| got.iter().find(|r| r.body == b).unwrap().clone();
    let first = by_body(&sent[0]);
    assert_eq!(first.field("format"), Some(&b"rfc5424"[..]));
    assert_eq!(first.field("facility"), Some(&b"4"[..]));
    assert_eq!(first.field("severity"), Some(&b"2"[..]));
    assert_eq!(first.field("hostname"), Some(&b"mymachine.example.com"[..]));
    assert_eq!(first.field("app_name"), Some(&b"su"[..]));
    assert!(
        first
            .field("peer")
            .is_some_and(|p| p.starts_with(b"127.0.0.1:"))
    );
    let bom = by_body(&sent[1]);
    assert_eq!(bom.field("bom"), Some(&b"1"[..]));
    assert!(bom.field("sd").is_some());
    let bsd = by_body(&sent[2]);
    assert_eq!(bsd.field("format"), Some(&b"rfc3164"[..]));
    assert_eq!(bsd.field("app_name"), Some(&b"su"[..]));
    assert!(bsd.field("timestamp_unix_ns").is_some());
    let bad = by_body(&sent[3]);
    assert_eq!(bad.field("format"), Some(&b"unparsed"[..]));
    assert!(
        bad.field("defects")
            .is_some_and(|d| String::from_utf8_lossy(d).contains("pri"))
    );
    let logger = got
        .iter()
        .find(|r| r.body.ends_with(b"from logger"))
        .expect("logger's message");
    assert_eq!(logger.field("app_name"), Some(&b"cron"[..]));
    // `cat` prints the hostile bytes safely.
    let out = Command::new(env!("CARGO_BIN_EXE_wormlog"))
        .args(["cat", "--spool"])
        .arg(e.p("spool"))
        .output()
        .unwrap();
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(
        shown.contains("\\u{202e}") && shown.contains("\\xff\\xfe"),
        "{shown}"
    );
}

#[test]
fn tcp_takes_both_framings_split_anywhere_and_long_messages_in_parts() {
    let e = syslog_env("tcp://127.0.0.1:0", "max_message_bytes = \"16KiB\"\n");
    let d = e.start();
    let addr = listening(&e, "tcp");
    let mut stream_bytes = Vec::new();
    let mut sent = hostile();
    sent.retain(|m| !m.contains(&b'\n') && !m.contains(&0));
    for (i, m) in sent.iter().enumerate() {
        if i % 2 == 0 {
            stream_bytes.extend_from_slice(format!("{} ", m.len()).as_bytes());
            stream_bytes.extend_from_slice(m);
        } else {
            stream_bytes.extend_from_slice(m);
            stream_bytes.push(b'\n');
        }
    }
    // Octet counting keeps a message's LF and NUL.
    let with_lf = b"<13>1 - - - - - - two\nlines and a \x00 NUL".to_vec();
    stream_bytes.extend_from_slice(format!("{} ", with_lf.len()).as_bytes());
    stream_bytes.extend_from_slice(&with_lf);
    sent.push(with_lf);
    // 40 KiB: three parts of at most 16 KiB.
    let long: Vec<u8> = [
        b"<13>Jan  2 03:04:05 host long: ".as_slice(),
        &vec![b'y'; 40 << 10],
    ]
    .concat();
    stream_bytes.extend_from_slice(&long);
    stream_bytes.push(b'\n');
    // Written in small pieces, so frames are split at many places.
    let mut c = TcpStream::connect(&addr).unwrap();
    for chunk in stream_bytes.chunks(7) {
        c.write_all(chunk).unwrap();
    }
    // A last message without its LF: kept, flagged, when the sender leaves.
    c.write_all(b"<13>unfinished").unwrap();
    drop(c);
    let port = addr.rsplit(':').next().unwrap();
    let out = Command::new("logger")
        .args([
            "--tcp",
            "--octet-count",
            "--server",
            "127.0.0.1",
            "--port",
            port,
            "--rfc3164",
            "-t",
            "sudo",
            "over tcp",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    e.wait_entries(sent.len() + 3 + 1 + 1);
    stop(d);
    let got = entries(&e);
    assert_kept(&got, &sent);
    let parts: Vec<&Rec> = got
        .iter()
        .filter(|r| {
            r.body.iter().all(|&b| b == b'y')
                || r.body.starts_with(b"<13>Jan  2 03:04:05 host long")
        })
        .collect();
    assert_eq!(parts.len(), 3, "a 40 KiB message in three parts");
    assert_eq!(
        parts.iter().map(|r| r.body.len()).sum::<usize>(),
        long.len()
    );
    assert_eq!(parts[0].flags, 2, "more_parts");
    assert_eq!(parts[2].flags, 4, "continuation");
    let unfinished = got
        .iter()
        .find(|r| r.body == b"<13>unfinished")
        .expect("the last, unterminated message");
    assert_eq!(unfinished.flags, 1, "no_newline");
    assert!(
        got.iter()
            .any(|r| r.body.ends_with(b"over tcp") && r.field("app_name") == Some(&b"sudo"[..]))
    );
}

#[test]
fn a_unix_datagram_socket_records_the_senders_credentials() {
    let e = syslog_env("unix:DIR/syslog.sock", "socket_mode = \"0600\"\n");
    let d = e.start();
    listening(&e, "unix");
    let path = e.p("syslog.sock");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
    sock.send_to(
        b"<30>Nov 26 07:00:01 ehr-01 sshd[811]: Accepted publickey for dr.jones",
        &path,
    )
    .unwrap();
    let out = Command::new("logger")
        .arg("--socket")
        .arg(&path)
        .args([
            "--socket-errors=on",
            "-t",
            "ehr-api",
            "from logger over unix",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    e.wait_entries(2);
    stop(d);
    let got = entries(&e);
    let mine = got.iter().find(|r| r.body.ends_with(b"dr.jones")).unwrap();
    assert_eq!(
        mine.field("pid"),
        Some(std::process::id().to_string().as_bytes())
    );
    assert_eq!(
        mine.field("uid"),
        Some(rustix::process::getuid().as_raw().to_string().as_bytes())
    );
    assert_eq!(
        mine.field("gid"),
        Some(rustix::process::getgid().as_raw().to_string().as_bytes())
    );
    assert_eq!(mine.field("app_name"), Some(&b"sshd"[..]));
    assert_eq!(mine.field("procid"), Some(&b"811"[..]));
    let logger = got
        .iter()
        .find(|r| r.body.ends_with(b"from logger over unix"))
        .unwrap();
    assert!(
        logger
            .field("pid")
            .is_some_and(|p| p != std::process::id().to_string().as_bytes())
    );
    assert!(!path.exists(), "the socket file is removed at stop");
}

#[test]
fn a_udp_flood_past_the_socket_buffer_is_counted_exactly_as_gap_records() {
    let e = syslog_env(
        "udp://127.0.0.1:0",
        "receive_buffer = \"8KiB\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let d = e.start();
    let addr = listening(&e, "udp");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = 60_000usize;
    for i in 0..sent {
        let m = format!(
            "<13>Jan  2 03:04:05 host flood: message {i:06} {}",
            "z".repeat(100)
        );
        sock.send_to(m.as_bytes(), &addr).unwrap();
    }
    // Kept + dropped = sent, with the drops in gap records (read once a
    // second by the source).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (kept, lost) = loop {
        let recs = e.try_records().unwrap_or_default();
        let kept = recs.iter().filter(|r| r.kind == "entry").count();
        let gaps: Vec<&Rec> = recs.iter().filter(|r| r.kind == "gap:4").collect();
        let lost: usize = gaps
            .iter()
            .map(|g| {
                g.detail
                    .split("dropped ")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap()
            })
            .sum();
        if kept + lost >= sent {
            break (kept, lost);
        }
        assert!(
            Instant::now() < deadline,
            "kept {kept} + dropped {lost} of {sent}:\n{}",
            e.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The same count is a metric.
    let metrics = {
        use std::io::Read;
        let err = e.stderr();
        let maddr = err
            .split("metrics on http://")
            .nth(1)
            .unwrap()
            .split("/metrics")
            .next()
            .unwrap()
            .to_owned();
        let mut m = TcpStream::connect(maddr).unwrap();
        m.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        m.read_to_string(&mut out).unwrap();
        out
    };
    let line = format!("wormlog_source_lost_total{{source=\"net\"}} {lost}");
    assert!(metrics.contains(&line), "no {line:?} in\n{metrics}");
    stop(d);
    assert_eq!(kept + lost, sent, "every datagram kept or counted");
    assert!(
        lost > 0,
        "the flood did not overflow the buffer (kept all {kept})"
    );
    assert!(e.stderr().contains("the kernel dropped"), "{}", e.stderr());
}

/// A CA, and PEM files of certificates it signs.
struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl TestCa {
    fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }
    /// (certificate PEM, key PEM) for `dns`.
    fn issue(&self, dns: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![dns.to_owned()]).unwrap();
        (
            params.signed_by(&key, &self.issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    }
}

fn tls_client(ca_pem: &str, cert: Option<(&str, &str)>) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    std::sync::Arc::new(match cert {
        Some((c, k)) => b
            .with_client_auth_cert(
                rustls_pki_types::CertificateDer::pem_slice_iter(c.as_bytes())
                    .map(|c| c.unwrap())
                    .collect(),
                rustls_pki_types::PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// A `tls://` source with the server's certificate (and the CA for client
/// certificates when `client_ca`) written beside its configuration.
fn tls_env(ca: &TestCa, cert: &str, key: &str, client_ca: bool) -> Env {
    let mut extra = "tls_cert = \"DIR/server.pem\"\ntls_key = \"DIR/server-key.pem\"\n".to_owned();
    if client_ca {
        extra.push_str("tls_client_ca = \"DIR/ca.pem\"\n");
    }
    let e = syslog_env("tls://127.0.0.1:0", &extra);
    std::fs::write(e.p("server.pem"), cert).unwrap();
    std::fs::write(e.p("server-key.pem"), key).unwrap();
    std::fs::write(e.p("ca.pem"), &ca.pem).unwrap();
    e
}

#[test]
fn tls_with_client_certificates_per_rfc_5425() {
    let ca = TestCa::new();
    let (server_cert, server_key) = ca.issue("localhost");
    let (client_cert, client_key) = ca.issue("web-01");
    let e = tls_env(&ca, &server_cert, &server_key, true);
    let d = e.start();
    let addr = listening(&e, "tls");
    let send = |cfg: std::sync::Arc<rustls::ClientConfig>, msgs: &[&[u8]]| -> std::io::Result<()> {
        let conn = rustls::ClientConnection::new(cfg, "localhost".try_into().unwrap()).unwrap();
        let mut s = rustls::StreamOwned::new(conn, TcpStream::connect(&addr)?);
        for m in msgs {
            s.write_all(format!("{} ", m.len()).as_bytes())?;
            s.write_all(m)?;
        }
        s.flush()?;
        s.conn.send_close_notify();
        s.flush()?;
        // Read what the server sent (TLS 1.3 session tickets) until it
        // closes: a socket closed with unread data sends a reset, and a
        // reset makes the server's kernel drop what it had not read yet.
        s.sock.shutdown(std::net::Shutdown::Write)?;
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s.sock, &mut sink);
        Ok(())
    };
    let msgs: [&[u8]; 2] = [
        b"<38>1 2026-11-26T07:00:01Z ehr-01 sshd 811 - - Accepted publickey for dr.jones",
        b"<86>Nov 26 07:00:05 ehr-01 sudo: dr.jones : COMMAND=/usr/bin/less",
    ];
    send(
        tls_client(&ca.pem, Some((&client_cert, &client_key))),
        &msgs,
    )
    .unwrap();
    e.wait_entries(2);
    // Without a client certificate the handshake is refused: nothing kept.
    let _ = send(tls_client(&ca.pem, None), &[b"<13>should not be kept"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !e.stderr().contains("connection from") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged:\n{}",
            e.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(d);
    let got = entries(&e);
    assert_eq!(got.len(), 2);
    assert_kept(&got, &msgs.map(<[u8]>::to_vec));
    assert!(got.iter().all(|r| r.field("peer").is_some()));
}

#[test]
fn tcp_makes_the_sender_wait_instead_of_dropping_when_the_spool_is_full() {
    let e = syslog_env_spool(
        "tcp://127.0.0.1:0",
        "segment_max_bytes = \"1MiB\"\ndisk_budget = \"4MiB\"\nmin_free = \"1MiB\"\n",
        "",
    );
    let d = e.start();
    let addr = listening(&e, "tcp");
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_nonblocking(true).unwrap();
    let chunk: Vec<u8> = (0..5000)
        .flat_map(|i| {
            format!(
                "<13>Jan  2 03:04:05 host app: message {i:05} {}\n",
                "w".repeat(150)
            )
            .into_bytes()
        })
        .collect();
    // Write until the connection takes nothing for two seconds.
    let (mut sent, mut off) = (0usize, 0usize);
    let mut stalled_since: Option<Instant> = None;
    loop {
        match c.write(&chunk[off..]) {
            Ok(n) => {
                sent += n;
                off = (off + n) % chunk.len();
                stalled_since = None;
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_secs(2) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("{err}"),
        }
        assert!(
            sent < 400 << 20,
            "400 MB taken: the source never pushed back"
        );
    }
    assert!(e.stderr().contains("spool full"), "{}", e.stderr());
    stop(d);
    let recs = e.records();
    // While it ran, nothing was dropped. The stop came while the spool was
    // full: the messages the source had read and could not hand over are
    // counted in one gap record (before the final checkpoint), and said at
    // error level — not silently lost.
    let gaps: Vec<&Rec> = recs.iter().filter(|r| r.kind.starts_with("gap")).collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].kind, "gap:11", "not_written_at_stop");
    let not_written: usize = gaps[0]
        .detail
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", gaps[0].detail));
    let gap_at = recs.iter().position(|r| r.kind == "gap:11").unwrap();
    assert!(
        recs[gap_at + 1..].iter().all(|r| r.kind != "entry"),
        "the gap comes after the last entry"
    );
    assert!(not_written > 0);
    assert!(
        e.stderr().contains(&format!(
            "error: source net: {not_written} messages read by this source were not written"
        )),
        "{}",
        e.stderr()
    );
    let message_len = chunk.len() / 5000;
    let kept = recs.iter().filter(|r| r.kind == "entry").count();
    // Every message the kernel took from the sender is kept or counted:
    // the stop reads on what the connection's buffers held (the last
    // message may be cut: kept, flagged no_newline).
    assert!(kept > 1000, "kept {kept}");
    assert_eq!(
        kept + not_written,
        sent.div_ceil(message_len),
        "kept {kept} + not written {not_written}, sent {sent} bytes"
    );
    // The connection's own count: what it handed over, of which the
    // writer kept some and counted the rest.
    let err = e.stderr();
    let handed: usize = err
        .split("closed after ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no connection line:\n{err}"));
    assert!(
        kept <= handed && handed <= kept + not_written,
        "handed over {handed}, kept {kept}, not written {not_written}"
    );
    let spool: u64 = std::fs::read_dir(e.p("spool"))
        .unwrap()
        .flatten()
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert!(
        spool < 6 << 20,
        "the spool holds {spool} bytes, budget 4 MiB"
    );
}

/// The number a gap's detail gives after `after` (e.g. "dropped 12").
fn count_after(detail: &str, after: &str) -> usize {
    detail
        .split(after)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count after {after:?} in {detail}"))
}

/// A clean stop while the spool is full and datagrams wait in the socket's
/// receive buffer (the source, held back, is not reading): they are read
/// at the stop and counted, so that kept + not written + dropped by the
/// kernel = sent, exactly. (Before the stop read the socket, what was in
/// its buffer was lost without a record.)
#[test]
fn datagrams_queued_at_a_stop_are_read_and_counted() {
    let e = syslog_env_spool(
        "udp://127.0.0.1:0",
        "segment_max_bytes = \"1MiB\"\ndisk_budget = \"4MiB\"\nmin_free = \"1MiB\"\n",
        "receive_buffer = \"4MiB\"\n",
    );
    let d = e.start();
    let addr = listening(&e, "udp");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0usize;
    let mut send = |n: usize| {
        for _ in 0..n {
            let m = format!(
                "<13>Jan  2 03:04:05 host app: message {sent:07} {}",
                "u".repeat(150)
            );
            sock.send_to(m.as_bytes(), &addr).unwrap();
            sent += 1;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !e.stderr().contains("spool full") {
        assert!(
            Instant::now() < deadline,
            "the spool never filled:\n{}",
            e.stderr()
        );
        send(500);
    }
    // Held back now: these wait in the socket's buffer.
    send(200);
    stop(d);
    let recs = e.records();
    let kept = recs.iter().filter(|r| r.kind == "entry").count();
    let dropped: usize = recs
        .iter()
        .filter(|r| r.kind == "gap:4")
        .map(|g| count_after(&g.detail, "dropped "))
        .sum();
    let not_written: usize = recs
        .iter()
        .filter(|r| r.kind == "gap:11")
        .map(|g| {
            g.detail
                .split(' ')
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("{}", g.detail))
        })
        .sum();
    assert!(
        not_written >= 200,
        "the queued datagrams are counted: {not_written}"
    );
    assert_eq!(
        kept + not_written + dropped,
        sent,
        "kept {kept} + not written {not_written} + dropped {dropped}"
    );
}

/// After `kill -9` the messages in the socket buffers and in flight are
/// gone (syslog has no acknowledgement): the next start writes a gap
/// record per network source that says so; after a clean stop it does not.
#[test]
fn a_start_after_a_crash_records_possible_in_flight_loss_per_network_source() {
    let e = syslog_env("tcp://127.0.0.1:0", "");
    let d = e.start();
    let addr = listening(&e, "tcp");
    let mut c = TcpStream::connect(&addr).unwrap();
    c.write_all(b"<13>Jan  2 03:04:05 host app: before the crash\n")
        .unwrap();
    e.wait_entries(1);
    drop(d); // SIGKILL
    let d = e.start();
    e.wait_records("gap:10", 1);
    stop(d);
    let gaps: Vec<Rec> = e
        .records()
        .into_iter()
        .filter(|r| r.kind.starts_with("gap"))
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].source, "net");
    assert!(
        gaps[0].detail.contains("did not stop cleanly") && gaps[0].detail.contains("count unknown"),
        "{}",
        gaps[0].detail
    );
    assert!(
        e.stderr().contains("warning: source net: the previous run"),
        "{}",
        e.stderr()
    );
    // A clean stop, then a start: no new gap.
    let d = e.start();
    stop(d);
    let n = e
        .records()
        .iter()
        .filter(|r| r.kind.starts_with("gap"))
        .count();
    assert_eq!(n, 1, "no gap after a clean stop");
}

#[test]
fn a_client_trickling_its_tls_handshake_cannot_hold_a_stop() {
    let ca = TestCa::new();
    let (server_cert, server_key) = ca.issue("localhost");
    let e = tls_env(&ca, &server_cert, &server_key, false);
    let d = e.start();
    let addr = listening(&e, "tls");
    // A ClientHello's first bytes, one every 100 ms, for a minute.
    let stop_trickle = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop_trickle.clone();
    let trickler = std::thread::spawn(move || {
        let mut c = TcpStream::connect(&addr).unwrap();
        for b in [0x16u8, 0x03, 0x01, 0x02, 0x00].iter().cycle().take(600) {
            if s2.load(std::sync::atomic::Ordering::SeqCst) || c.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    stop(d);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the stop took {:?}",
        t0.elapsed()
    );
    stop_trickle.store(true, std::sync::atomic::Ordering::SeqCst);
    trickler.join().unwrap();
}
