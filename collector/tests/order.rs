//! An agent with two batches in flight (`[forward] in_flight`): the later
//! batch may be read and ready before the earlier one. It must wait for the
//! earlier request, not be answered as a gap.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use wormlog_spool::keys::HostKey;
use wormlog_spool::reader::{Batch, RangeReader};
use wormlog_spool::record::AppendOnly;
use wormlog_spool::{Position, Spool, SpoolOptions};

/// Web-01's spool of `entries` lines (its genesis first), made with the
/// keys `Setup` made, read back as batches of 10 records.
fn batches(s: &Setup, entries: u64) -> Vec<Batch> {
    let dir = s.d.p("spool");
    let mut o = SpoolOptions::new(&dir, "web-01");
    o.append_only = AppendOnly::Off;
    o.checkpoint_interval = Duration::from_secs(3600);
    o.heartbeat_interval = Duration::from_secs(7200);
    let key = HostKey::load(&s.d.p("keys")).unwrap();
    let mut spool = Spool::open(o, key).unwrap().0;
    for n in 0..entries {
        let ts = wormlog_spool::clock::wall_ns();
        let body = line(n as usize);
        spool
            .append_entry("app", &Position::Counter(n), 0, &[], body.as_bytes(), ts)
            .unwrap();
    }
    spool.sync().unwrap();
    let end = spool.durable_seq().get();
    let mut reader = RangeReader::new(&dir);
    let mut out = Vec::new();
    while out.last().is_none_or(|b: &Batch| b.span.end_seq() < end) {
        out.push(reader.read(end, 10, 1 << 20).unwrap());
    }
    out
}

fn post(c: &mut TcpStream, b: &Batch, body_part: usize) {
    let head = format!(
        "POST /v1/agents/web-01/records HTTP/1.1\r\nHost: x\r\nWormlog-Seq: {}\r\nContent-Length: {}\r\n\r\n",
        b.span.first_seq,
        b.bytes.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&b.bytes[..body_part]).unwrap();
}

/// The status and body of the answer on `c`.
fn answer(c: TcpStream) -> (u16, serde_json::Value) {
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(c);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    let code = status.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, serde_json::from_slice(&body).unwrap_or_default())
}

/// `GET /metrics` over plain HTTP on loopback: the value of `name`.
fn metric(port: u16, name: &str) -> Option<f64> {
    metrics_text(port)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
}

/// The first batch's head and half its body (the collector has its
/// request, its bytes reserved, but cannot store it yet), then the second
/// batch whole, which waits for the first: the two connections.
fn second_waits_for_first(s: &Setup, collector: &Proc, b: &[Batch]) -> (TcpStream, TcpStream) {
    let (first, second) = (&b[0], &b[1]);
    assert_eq!(first.span.end_seq(), second.span.first_seq);
    let mut c1 = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    post(&mut c1, first, first.bytes.len() / 2);
    wait_for(
        "the collector to reserve the first batch's bytes",
        Duration::from_secs(20),
        || {
            metric(s.port, "wormlog_collector_ingest_bytes")
                .is_some_and(|n| n >= first.bytes.len() as f64)
        },
        || collector.log(),
    );
    let mut c2 = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    post(&mut c2, second, second.bytes.len());
    wait_for(
        "the second batch to wait for the first",
        Duration::from_secs(20),
        || metric(s.port, "wormlog_collector_batches_waited_total") == Some(1.0),
        || collector.log(),
    );
    (c1, c2)
}

#[test]
fn a_batch_that_arrives_before_the_one_it_follows_waits_for_it() {
    let mut s = Setup::new();
    s.write_collector_config("append_only = \"off\"");
    let collector = start_collector(&mut s);
    let b = batches(&s, 25);
    let (first, second) = (&b[0], &b[1]);
    let (mut c1, c2) = second_waits_for_first(&s, &collector, &b);
    // The rest of the first body: both are stored, in order.
    c1.write_all(&first.bytes[first.bytes.len() / 2..]).unwrap();
    let (code1, a1) = answer(c1);
    let (code2, a2) = answer(c2);
    assert_eq!((code1, code2), (200, 200), "answers: {a1} / {a2}");
    assert_eq!(a1["next_seq"], second.span.first_seq);
    assert_eq!(a2["next_seq"], second.span.end_seq());
    collector.stop();
    assert_eq!(next_seq_in_store(&s.d.p("store")), second.span.end_seq());
    verify_store(&s.d.p("store"));
}

#[test]
fn a_batch_whose_earlier_request_fails_is_still_a_gap() {
    let mut s = Setup::new();
    s.write_collector_config("append_only = \"off\"");
    let collector = start_collector(&mut s);
    let b = batches(&s, 25);
    let (c1, c2) = second_waits_for_first(&s, &collector, &b);
    // The first sender hangs up mid-body: the second is a gap after all,
    // and says where to send from.
    c1.shutdown(std::net::Shutdown::Both).unwrap();
    drop(c1);
    let (code2, a2) = answer(c2);
    assert_eq!(code2, 409, "{a2}");
    assert_eq!(a2["error"], "gap");
    assert_eq!(a2["expected_seq"], b[0].span.first_seq);
    collector.stop();
    assert_eq!(next_seq_in_store(&s.d.p("store")), 0);
}
