//! Faults between the agent and the collector, injected by a small HTTP/1.1
//! proxy written here: the real `wormlog run` forwards through it (plain
//! HTTP on loopback) to the real `wormlog-collector serve`, and the proxy
//! follows a script, one step per request — relay it, or answer 500, 503 or
//! 429 (with `Retry-After`) itself, answer slowly (within and beyond the
//! agent's timeout), never answer, cut the connection mid-body, or cut it
//! after the collector stored the batch but before its answer reached the
//! agent. Other tests stop the collector for a while, kill it (SIGKILL)
//! while large batches are in flight, and cut mutual-TLS connections
//! mid-stream through a raw TCP relay.
//!
//! Whatever happens, every line written reaches the store exactly once and
//! in order, the store and the agent's spool verify, the agent says what went
//! wrong, honours `Retry-After`, and its memory stays bounded.

mod common;

use common::{
    Proc, Setup, collector_bin, line, mtls_agent_config, mtls_setup, next_seq_in_store,
    start_collector, stored_lines, verify_spool, verify_store, wait_for, write_lines,
};
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The agent's `timeout` (one request, answer included) in these tests.
const AGENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The `Retry-After` the proxy sends with 503 and 429, in seconds.
const RETRY_AFTER_SECS: u64 = 1;

/// The most memory the agent may ever hold (VmHWM): some 14 MiB of its own
/// (a debug build), and at most three batches (in flight, read ahead, being
/// read; `batch_bytes` is 4 MiB by default) with their compressed copies,
/// whatever the collector does and however large the spool grows. It peaks
/// at some 25 MiB here.
const AGENT_MEMORY_LIMIT_KIB: u64 = 48 * 1024;

/// The smallest batch `Fault::HangUpWhileStoring` takes: with a checkpoint
/// every KiB, one this large holds a checkpoint.
const HANG_UP_MIN_BYTES: usize = 16 * 1024;

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// No fault: relays the request to the collector and its answer back.
    Pass,
    /// Answers `status` itself (with `Retry-After` when `retry_after`); the
    /// collector sees nothing.
    Status { status: u16, retry_after: bool },
    /// Relays the request, then holds the collector's answer back this long.
    SlowAnswer(Duration),
    /// Takes the request's head and answers nothing, ever: the connection
    /// stays open until the agent gives up on it.
    Silence,
    /// Reads half the body and relays the head and that half to the
    /// collector, then closes both connections.
    CutMidBody,
    /// Relays the request and reads the collector's answer (the batch is
    /// stored), then closes the agent's connection without that answer.
    CutBeforeAnswer,
    /// Waits for a request of at least `HANG_UP_MIN_BYTES` (smaller ones
    /// pass), relays it and, as soon as the collector's store has grown
    /// (the batch is being stored), closes both connections without
    /// waiting for the answer: an agent that exits with a batch in flight.
    HangUpWhileStoring,
    /// Takes the request and holds it until the agent has sent the next
    /// one (it has two in flight), then answers `status` itself: an
    /// earlier batch that fails while a later one is out.
    FailBehindNext(u16),
    /// Relays the request, and holds the collector's answer back until the
    /// agent has sent the next request.
    HoldAnswerForNext,
    /// Answers `409 gap` itself, naming the first record of the request
    /// before this one: what a collector that does not make an early batch
    /// wait answers to a batch it read before the one it follows.
    StaleGap,
}

/// One request the proxy took, and what became of it.
#[derive(Debug, Clone)]
struct Exchange {
    /// `Wormlog-Seq`: the first record of the batch.
    seq: u64,
    fault: Fault,
    /// When the request's head arrived.
    arrived: Instant,
    /// The body's `Content-Length`.
    body_len: usize,
    /// When the whole request had been relayed to the collector.
    relayed: Option<Instant>,
    /// The collector's status, when it answered.
    collector_status: Option<u16>,
    /// Why the collector could not be reached or did not answer.
    collector_error: Option<String>,
    /// The status the agent was sent (by the collector or the proxy), and
    /// when.
    answered: Option<(u16, Instant)>,
    /// After `CutMidBody`: the sequence number the collector expects next,
    /// asked right after the cut.
    collector_next_seq_after_cut: Option<u64>,
}

/// What the proxy's threads share with the test.
#[derive(Debug)]
struct ProxyState {
    /// Where the collector listens now (it gets a new port at each start).
    collector: Mutex<SocketAddr>,
    /// The faults for the next requests, in order; then `Fault::Pass`.
    script: Mutex<VecDeque<Fault>>,
    exchanges: Mutex<Vec<Exchange>>,
    /// Notified whenever an exchange changes.
    changed: Condvar,
    /// The collector's store, watched by `Fault::HangUpWhileStoring`.
    store: Mutex<Option<std::path::PathBuf>>,
}

/// The fault-injecting proxy: listens on a port of its own for as long as
/// the test runs, so the agent's URL never changes.
#[derive(Debug)]
struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
}

impl Proxy {
    fn start(collector_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            collector: Mutex::new(SocketAddr::from(([127, 0, 0, 1], collector_port))),
            script: Mutex::new(VecDeque::new()),
            exchanges: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            store: Mutex::new(None),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for agent in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve_agent(&state, agent));
            }
        });
        Proxy { port, state }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set_collector_port(&self, port: u16) {
        *lock(&self.state.collector) = SocketAddr::from(([127, 0, 0, 1], port));
    }

    /// The collector's store, for `Fault::HangUpWhileStoring`.
    fn watch_store(&self, store: &Path) {
        *lock(&self.state.store) = Some(store.to_owned());
    }

    /// Queues `faults` for the next requests.
    fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.state.script).extend(faults);
    }

    fn faults_left(&self) -> usize {
        lock(&self.state.script).len()
    }

    fn exchanges(&self) -> Vec<Exchange> {
        lock(&self.state.exchanges).clone()
    }

    /// Waits until `done` holds for the exchanges so far (woken by every
    /// change, so the test can act at once) and returns them; panics after
    /// `timeout`.
    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Exchange]) -> bool,
    ) -> Vec<Exchange> {
        let deadline = Instant::now() + timeout;
        let mut exchanges = lock(&self.state.exchanges);
        while !done(&exchanges) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; the proxy saw {:#?}",
                *exchanges
            );
            exchanges = self
                .state
                .changed
                .wait_timeout(exchanges, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        exchanges.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProxyState {
    fn record(&self, e: Exchange) -> usize {
        let mut all = lock(&self.exchanges);
        all.push(e);
        self.changed.notify_all();
        all.len() - 1
    }

    fn update(&self, id: usize, f: impl FnOnce(&mut Exchange)) {
        f(&mut lock(&self.exchanges)[id]);
        self.changed.notify_all();
    }

    /// Waits at most `timeout` until `done` holds for the exchanges;
    /// whether it does.
    fn wait(&self, timeout: Duration, done: impl Fn(&[Exchange]) -> bool) -> bool {
        let all = lock(&self.exchanges);
        let (all, _) = self
            .changed
            .wait_timeout_while(all, timeout, |ex| !done(ex))
            .unwrap_or_else(|p| p.into_inner());
        done(&all)
    }
}

/// An HTTP/1.1 message head: the start line and the header lines.
#[derive(Debug)]
struct Head {
    lines: Vec<String>,
}

impl Head {
    /// Reads a head; None at the end of the stream before a new message.
    fn read(r: &mut impl BufRead) -> io::Result<Option<Head>> {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l)? == 0 {
                return match lines.is_empty() {
                    true => Ok(None),
                    false => Err(io::ErrorKind::UnexpectedEof.into()),
                };
            }
            let l = l.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                return Ok(Some(Head { lines }));
            }
            lines.push(l.to_owned());
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.lines[1..].iter().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The status of a response head.
    fn status(&self) -> u16 {
        self.lines[0]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Reads the body the head announces: `Content-Length` bytes, or chunks.
    fn read_body(&self, r: &mut impl BufRead) -> io::Result<Vec<u8>> {
        if let Some(n) = self.header("content-length") {
            let mut body = vec![0; n.parse().map_err(io::Error::other)?];
            r.read_exact(&mut body)?;
            return Ok(body);
        }
        assert!(
            self.header("transfer-encoding")
                .is_some_and(|t| t.eq_ignore_ascii_case("chunked")),
            "a body neither sized nor chunked: {:?}",
            self.lines
        );
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let size = size.trim().split(';').next().unwrap_or("");
            let n = usize::from_str_radix(size, 16).map_err(io::Error::other)?;
            let mut chunk = vec![0; n + 2]; // and its CRLF
            r.read_exact(&mut chunk)?;
            if n == 0 {
                return Ok(body); // (no trailers here)
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }

    /// Writes the head framed for a body of `body_len` bytes.
    fn write(&self, w: &mut impl Write, body_len: usize) -> io::Result<()> {
        let mut out = String::new();
        for (i, l) in self.lines.iter().enumerate() {
            let name = l.split(':').next().unwrap_or("").trim();
            let framing = ["content-length", "transfer-encoding"]
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f));
            if i == 0 || !framing {
                out.push_str(l);
                out.push_str("\r\n");
            }
        }
        out.push_str(&format!("content-length: {body_len}\r\n\r\n"));
        w.write_all(out.as_bytes())
    }
}

/// An answer the proxy makes up: `status` with a JSON body.
fn proxy_answer(w: &mut impl Write, status: u16, retry_after: bool) -> io::Result<()> {
    let body = r#"{"error":"unavailable","reason":"injected by the test proxy"}"#;
    let retry_after = match retry_after {
        true => format!("retry-after: {RETRY_AFTER_SECS}\r\n"),
        false => String::new(),
    };
    write!(
        w,
        "HTTP/1.1 {status} Injected\r\ncontent-type: application/json\r\n{retry_after}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Serves one connection from the agent: its requests one after another
/// (keep-alive), each with the next fault of the script.
fn serve_agent(state: &ProxyState, agent: TcpStream) {
    let mut from_agent = BufReader::new(agent.try_clone().unwrap());
    let mut to_agent = agent;
    while let Ok(Some(head)) = Head::read(&mut from_agent) {
        let body_len = head
            .header("content-length")
            .and_then(|n| n.parse().ok())
            .expect("the agent sends a Content-Length");
        let fault = {
            let mut script = lock(&state.script);
            match script.front() {
                Some(Fault::HangUpWhileStoring) if body_len < HANG_UP_MIN_BYTES => Fault::Pass,
                _ => script.pop_front().unwrap_or(Fault::Pass),
            }
        };
        let id = state.record(Exchange {
            seq: head
                .header("wormlog-seq")
                .and_then(|s| s.parse().ok())
                .unwrap_or(u64::MAX),
            fault,
            arrived: Instant::now(),
            body_len,
            relayed: None,
            collector_status: None,
            collector_error: None,
            answered: None,
            collector_next_seq_after_cut: None,
        });
        let keep_going = match fault {
            Fault::Pass
            | Fault::SlowAnswer(_)
            | Fault::CutBeforeAnswer
            | Fault::HangUpWhileStoring
            | Fault::HoldAnswerForNext => {
                relay(state, id, fault, &head, &mut from_agent, &mut to_agent)
            }
            Fault::Status {
                status,
                retry_after,
            } => {
                let answered = head.read_body(&mut from_agent).is_ok()
                    && proxy_answer(&mut to_agent, status, retry_after).is_ok();
                if answered {
                    state.update(id, |e| e.answered = Some((status, Instant::now())));
                }
                answered
            }
            Fault::Silence => {
                // Until the agent closes the connection (or the test ends).
                let _ = to_agent.set_read_timeout(Some(Duration::from_secs(60)));
                let _ = io::copy(&mut from_agent, &mut io::sink());
                false
            }
            Fault::CutMidBody => {
                cut_mid_body(state, id, &head, &mut from_agent);
                false
            }
            Fault::StaleGap => {
                let before = lock(&state.exchanges)[id - 1].seq;
                let body = format!(r#"{{"error":"gap","expected_seq":{before}}}"#);
                let answered = head.read_body(&mut from_agent).is_ok()
                    && write!(
                        to_agent,
                        "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .is_ok();
                if answered {
                    state.update(id, |e| e.answered = Some((409, Instant::now())));
                }
                answered
            }
            Fault::FailBehindNext(status) => {
                let next_sent = |ex: &[Exchange]| ex.len() > id + 1;
                let answered = head.read_body(&mut from_agent).is_ok()
                    && state.wait(Duration::from_secs(10), next_sent)
                    && proxy_answer(&mut to_agent, status, false).is_ok();
                if answered {
                    state.update(id, |e| e.answered = Some((status, Instant::now())));
                }
                answered
            }
        };
        if !keep_going {
            return; // dropping the connection closes it (reset if unread)
        }
    }
}

/// Relays one request to the collector and, as `fault` says, its answer
/// back: whether the agent's connection can go on.
fn relay(
    state: &ProxyState,
    id: usize,
    fault: Fault,
    head: &Head,
    from_agent: &mut impl BufRead,
    to_agent: &mut impl Write,
) -> bool {
    let Ok(body) = head.read_body(from_agent) else {
        return false;
    };
    let failed = |why: String| {
        state.update(id, |e| e.collector_error = Some(why));
        false // the agent sees its connection closed, as through any TCP proxy
    };
    let collector = *lock(&state.collector);
    let mut upstream = match TcpStream::connect_timeout(&collector, Duration::from_secs(1)) {
        Ok(s) => s,
        Err(e) => return failed(format!("connect {collector}: {e}")),
    };
    let store = lock(&state.store).clone();
    let stored_before = store.as_deref().map(tree_bytes);
    if let Err(e) = head
        .write(&mut upstream, body.len())
        .and_then(|()| upstream.write_all(&body))
    {
        return failed(format!("sending: {e}"));
    }
    state.update(id, |e| e.relayed = Some(Instant::now()));
    if fault == Fault::HangUpWhileStoring {
        let store = store.expect("the proxy watches the store (Proxy::watch_store)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Some(tree_bytes(&store)) == stored_before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(100));
        }
        let _ = upstream.shutdown(Shutdown::Both);
        return false;
    }
    let _ = upstream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut from_collector = BufReader::new(upstream);
    let answer = match Head::read(&mut from_collector) {
        Ok(Some(h)) => h,
        Ok(None) => return failed("closed without an answer".into()),
        Err(e) => return failed(format!("reading the answer: {e}")),
    };
    let answer_body = match answer.read_body(&mut from_collector) {
        Ok(b) => b,
        Err(e) => return failed(format!("reading the answer: {e}")),
    };
    let status = answer.status();
    state.update(id, |e| e.collector_status = Some(status));
    match fault {
        Fault::CutBeforeAnswer => return false,
        Fault::SlowAnswer(d) => std::thread::sleep(d),
        Fault::HoldAnswerForNext => {
            state.wait(Duration::from_secs(10), |ex| ex.len() > id + 1);
        }
        _ => {}
    }
    let sent = answer
        .write(to_agent, answer_body.len())
        .and_then(|()| to_agent.write_all(&answer_body))
        .and_then(|()| to_agent.flush());
    if sent.is_ok() {
        state.update(id, |e| e.answered = Some((status, Instant::now())));
    }
    sent.is_ok()
}

/// Relays the head and half the body to the collector, closes that
/// connection, and asks the collector where the agent's chain stands.
fn cut_mid_body(state: &ProxyState, id: usize, head: &Head, from_agent: &mut impl BufRead) {
    let body_len = lock(&state.exchanges)[id].body_len;
    let mut half = vec![0; body_len / 2];
    if from_agent.read_exact(&mut half).is_err() {
        return;
    }
    let collector = *lock(&state.collector);
    let Ok(mut upstream) = TcpStream::connect_timeout(&collector, Duration::from_secs(1)) else {
        return;
    };
    let _ = head
        .write(&mut upstream, body_len)
        .and_then(|()| upstream.write_all(&half));
    drop(upstream);
    let next_seq = collector_next_seq(collector);
    state.update(id, |e| e.collector_next_seq_after_cut = next_seq);
}

/// `GET /v1/agents/web-01/state` straight from the collector.
fn collector_next_seq(collector: SocketAddr) -> Option<u64> {
    let mut s = TcpStream::connect(collector).ok()?;
    s.write_all(b"GET /v1/agents/web-01/state HTTP/1.1\r\nhost: collector\r\n\r\n")
        .ok()?;
    let mut r = BufReader::new(s);
    let head = Head::read(&mut r).ok()??;
    let body = head.read_body(&mut r).ok()?;
    serde_json::from_slice::<serde_json::Value>(&body).ok()?["next_seq"].as_u64()
}

/// A raw TCP relay, for the TLS path where requests cannot be read: the
/// `i`-th connection is cut, both ways at once, after the agent sent
/// `cut_after[i]` bytes through it; later connections are relayed whole.
#[derive(Debug)]
struct CuttingRelay {
    port: u16,
    /// How many connections were cut so far.
    cuts: Arc<AtomicUsize>,
}

impl CuttingRelay {
    fn start(collector_port: u16, cut_after: Vec<usize>) -> CuttingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cuts = Arc::new(AtomicUsize::new(0));
        let counter = cuts.clone();
        let collector = SocketAddr::from(([127, 0, 0, 1], collector_port));
        std::thread::spawn(move || {
            let mut cut_after = cut_after.into_iter();
            for agent in listener.incoming().flatten() {
                let limit = cut_after.next();
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let Ok(upstream) = TcpStream::connect(collector) else {
                        return;
                    };
                    if relay_bytes(&agent, &upstream, limit) {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        CuttingRelay { port, cuts }
    }

    fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// Copies bytes both ways until either side closes, or until the agent sent
/// `limit` bytes: then closes both connections (true: cut).
fn relay_bytes(agent: &TcpStream, upstream: &TcpStream, limit: Option<usize>) -> bool {
    let (mut from_collector, mut to_agent) =
        (upstream.try_clone().unwrap(), agent.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = io::copy(&mut from_collector, &mut to_agent);
        let _ = to_agent.shutdown(Shutdown::Write);
    });
    let (mut from_agent, mut to_collector) = (agent, upstream);
    let mut left = limit.unwrap_or(usize::MAX);
    let mut buf = [0; 16 << 10];
    loop {
        let n = match from_agent.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to_collector.shutdown(Shutdown::Write);
                return false;
            }
            Ok(n) => n,
        };
        let pass = n.min(left);
        if to_collector.write_all(&buf[..pass]).is_err() {
            return false;
        }
        left -= pass;
        if left == 0 {
            let _ = agent.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
            return true;
        }
    }
}

/// The `[forward]` table of an agent that forwards through `proxy`.
fn forward_through(proxy: &Proxy, batch_records: Option<u64>) -> String {
    let batch = batch_records.map_or(String::new(), |n| format!("batch_records = {n}\n"));
    format!(
        "url = \"{}\"\n{batch}backoff_min = \"50ms\"\nbackoff_max = \"500ms\"\ntimeout = \"{}s\"\n",
        proxy.url(),
        AGENT_TIMEOUT.as_secs()
    )
}

/// The same for an agent that sends one batch at a time (`in_flight = 1`),
/// for the tests that tell which request answers which fault.
fn forward_one_at_a_time(proxy: &Proxy, batch_records: Option<u64>) -> String {
    format!("{}in_flight = 1\n", forward_through(proxy, batch_records))
}

/// Waits until the store holds at least `n` lines.
fn wait_for_stored_lines(store: &Path, n: usize, timeout: Duration, log: impl Fn() -> String) {
    wait_for(
        &format!("{n} lines in the store"),
        timeout,
        // The cheap look first: a record per line, and more.
        || next_seq_in_store(store) > n as u64 && stored_lines(store).len() >= n,
        log,
    );
}

/// The size of every file under `dir`, in bytes.
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// The most memory the process ever held (VmHWM), in KiB.
fn peak_memory_kib(p: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

/// The checks every test ends with: the agent's memory stayed bounded, it
/// stops cleanly, the store holds lines `0..n` exactly once and in order,
/// and the store and the spool verify. Returns the agent's log.
fn stop_and_check(s: &Setup, agent: Proc, collector: Proc, n: usize) -> String {
    let peak = peak_memory_kib(&agent);
    let agent_log = agent.stop();
    assert!(agent_log.contains("stopped cleanly"), "{agent_log}");
    assert!(
        peak < AGENT_MEMORY_LIMIT_KIB,
        "the agent peaked at {peak} KiB\n{agent_log}"
    );
    let collector_log = collector.stop();
    let store = s.d.p("store");
    let lines = stored_lines(&store);
    assert_eq!(lines.len(), n, "every line exactly once\n{agent_log}");
    let out_of_place = (0..n).find(|&i| lines[i] != line(i));
    assert_eq!(out_of_place, None, "the store holds the lines in order");
    let report = verify_store(&store);
    assert_eq!(report[0]["chain"], "web-01");
    verify_spool(s);
    assert!(!collector_log.contains("FORK"), "{collector_log}");
    agent_log
}

/// A collector on plain HTTP, the proxy in front of it.
fn collector_behind_proxy() -> (Setup, Proc, Proxy) {
    let mut s = Setup::new();
    s.write_collector_config("");
    let collector = start_collector(&mut s);
    let proxy = Proxy::start(s.port);
    (s, collector, proxy)
}

/// Plays `faults` on 20,000 lines, each after a delivered batch so that
/// each meets a new one, with an agent whose `[forward]` table is
/// `forward`; once every line is stored, the checks of `stop_and_check`.
/// The proxy's exchanges and the agent's log.
fn play_faults(
    s: &Setup,
    collector: Proc,
    proxy: &Proxy,
    script: Vec<Fault>,
    forward: &str,
) -> (Vec<Exchange>, String) {
    proxy.script(script);
    let n = 20_000;
    write_lines(&s.d.p("logs/app.log"), 0, n);
    let cfg = s.write_agent_config("agent", forward);
    let agent = s.start_agent(&cfg, "agent");
    wait_for(
        "every fault to be played",
        Duration::from_secs(40),
        || proxy.faults_left() == 0,
        || format!("{:#?}\n{}", proxy.exchanges(), agent.log()),
    );
    wait_for_stored_lines(&s.d.p("store"), n, Duration::from_secs(40), || {
        format!("{}\n{}", agent.log(), collector.log())
    });
    let exchanges = proxy.exchanges();
    let agent_log = stop_and_check(s, agent, collector, n);
    every_checkpoint_has_its_receipt(s, &agent_log);
    (exchanges, agent_log)
}

/// Each fault after a delivered batch, so that each meets a new one.
fn each_after_a_pass(faults: &[Fault]) -> Vec<Fault> {
    faults.iter().flat_map(|&f| [Fault::Pass, f]).collect()
}

/// Every checkpoint in the agent's chain up to its newest receipt has its
/// receipt: batches stored whose answers were lost were sent again and
/// answered as replays, not skipped.
fn every_checkpoint_has_its_receipt(s: &Setup, agent_log: &str) {
    let records = common::spool_records(&s.d.p("spool"));
    let sizes = |kind: &str| -> Vec<u64> {
        records
            .iter()
            .filter(|r| r["kind"] == kind)
            .map(|r| r["tree_size"].as_u64().unwrap())
            .collect()
    };
    let receipts = sizes("receipt");
    let newest = *receipts.iter().max().expect("receipts in the chain");
    let missing: Vec<u64> = sizes("checkpoint")
        .into_iter()
        .filter(|t| *t <= newest && !receipts.contains(t))
        .collect();
    assert!(
        missing.is_empty(),
        "checkpoints without their receipt: {missing:?}\n{agent_log}"
    );
}

#[test]
fn refusals_slow_and_silent_answers_and_cut_connections_lose_and_duplicate_nothing() {
    let (s, collector, proxy) = collector_behind_proxy();
    let refused = |status, retry_after| Fault::Status {
        status,
        retry_after,
    };
    let faults = [
        refused(500, false),
        refused(503, true),
        refused(429, true),
        Fault::SlowAnswer(AGENT_TIMEOUT / 2),
        Fault::SlowAnswer(AGENT_TIMEOUT * 3 / 2),
        Fault::Silence,
        Fault::CutMidBody,
        Fault::CutBeforeAnswer,
    ];
    let forward = forward_one_at_a_time(&proxy, Some(1000));
    let script = each_after_a_pass(&faults);
    let (exchanges, agent_log) = play_faults(&s, collector, &proxy, script, &forward);
    let dump = format!("{exchanges:#?}\n{agent_log}");

    // What became of each fault, and of the request after it.
    for (i, e) in exchanges.iter().enumerate() {
        if e.fault == Fault::Pass {
            continue;
        }
        // The agent sends one request at a time: the next one is its answer
        // to this fault.
        let next = exchanges
            .get(i + 1)
            .unwrap_or_else(|| panic!("no request after {e:?}\n{dump}"));
        let retried = next.seq == e.seq;
        match e.fault {
            Fault::Status {
                status,
                retry_after,
            } => {
                assert!(retried, "{status} then the same batch again\n{dump}");
                let answered = e.answered.expect("answered").1;
                if retry_after {
                    let gap = next.arrived - answered;
                    assert!(
                        gap >= Duration::from_secs(RETRY_AFTER_SECS),
                        "Retry-After honoured after {status}: the next request came {gap:?} later\n{dump}"
                    );
                }
                assert!(agent_log.contains(&format!("HTTP {status}")), "{dump}");
            }
            Fault::SlowAnswer(d) if d < AGENT_TIMEOUT => {
                assert_eq!(e.answered.map(|a| a.0), Some(200), "{dump}");
                assert!(!retried, "a slow answer is still an answer\n{dump}");
            }
            Fault::SlowAnswer(d) => {
                assert_eq!(e.collector_status, Some(200), "{dump}");
                assert!(retried, "the agent gave up and sent it again\n{dump}");
                assert!(next.arrived < e.arrived + d, "before the answer\n{dump}");
                assert_eq!(next.answered.map(|a| a.0), Some(200), "a replay\n{dump}");
            }
            Fault::Silence => {
                assert!(retried, "{dump}");
                let gap = next.arrived - e.arrived;
                assert!(
                    gap >= AGENT_TIMEOUT,
                    "the timeout fired after {gap:?}\n{dump}"
                );
            }
            Fault::CutMidBody => {
                assert!(retried, "{dump}");
                assert_eq!(
                    e.collector_next_seq_after_cut,
                    Some(e.seq),
                    "the collector stored nothing of a cut body\n{dump}"
                );
                assert_eq!(next.answered.map(|a| a.0), Some(200), "{dump}");
            }
            Fault::CutBeforeAnswer => {
                assert_eq!(e.collector_status, Some(200), "stored\n{dump}");
                assert!(retried, "{dump}");
                assert_eq!(next.answered.map(|a| a.0), Some(200), "a replay\n{dump}");
            }
            Fault::Pass
            | Fault::HangUpWhileStoring
            | Fault::FailBehindNext(_)
            | Fault::HoldAnswerForNext
            | Fault::StaleGap => unreachable!(),
        }
    }
    // Every failure was logged, and every recovery.
    let failing = faults
        .iter()
        .filter(|&&f| !matches!(f, Fault::SlowAnswer(d) if d < AGENT_TIMEOUT))
        .count();
    for says in ["records stay in the spool", "delivered again after"] {
        assert!(agent_log.matches(says).count() >= failing, "{agent_log}");
    }
    assert!(agent_log.contains("timed out"), "{agent_log}");
}

/// With two batches in flight (the default), the same kinds of faults,
/// and an earlier batch that fails while the next is out: the agent gives
/// the later one up and sends again from the failed one.
#[test]
fn two_batches_in_flight_through_refusals_and_cuts_lose_and_duplicate_nothing() {
    let (s, collector, proxy) = collector_behind_proxy();
    let faults = [
        Fault::FailBehindNext(503),
        Fault::Status {
            status: 500,
            retry_after: false,
        },
        Fault::CutMidBody,
        Fault::CutBeforeAnswer,
        Fault::Silence,
        Fault::FailBehindNext(500),
    ];
    let forward = forward_through(&proxy, Some(1000));
    // Last, a batch read before the one it follows by a collector that
    // does not make it wait: the agent sends it again on its own, and
    // the next batches one at a time.
    let mut script = each_after_a_pass(&faults);
    script.extend([Fault::Pass, Fault::HoldAnswerForNext, Fault::StaleGap]);
    let (exchanges, agent_log) = play_faults(&s, collector, &proxy, script, &forward);
    let dump = format!("{exchanges:#?}\n{agent_log}");
    let failed_behind: Vec<(usize, &Exchange)> = exchanges
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.fault, Fault::FailBehindNext(_)))
        .collect();
    assert_eq!(failed_behind.len(), 2, "{dump}");
    for (i, e) in failed_behind {
        // The next request was out before this one's answer...
        let answered = e.answered.map(|a| a.1);
        assert!(
            answered.is_some_and(|at| exchanges[i + 1].arrived < at),
            "two in flight\n{dump}"
        );
        // ... and the agent sent again from the one that failed.
        assert!(
            exchanges[i + 1..]
                .iter()
                .any(|r| r.seq == e.seq && r.answered.is_some_and(|a| a.0 == 200)),
            "batch {} sent again\n{dump}",
            e.seq
        );
    }
    assert!(
        agent_log.matches("records stay in the spool").count() >= faults.len() - 1,
        "{agent_log}"
    );
    // The stale gap: the batch went again on its own, not back to the one
    // before it (answered already).
    let i = exchanges
        .iter()
        .position(|e| e.fault == Fault::StaleGap)
        .unwrap();
    let (held, stale) = (&exchanges[i - 1], &exchanges[i]);
    assert_eq!(held.fault, Fault::HoldAnswerForNext, "{dump}");
    assert_eq!(held.answered.map(|a| a.0), Some(200), "{dump}");
    assert!(
        exchanges[i + 1..].iter().all(|e| e.seq != held.seq),
        "went back to the batch before\n{dump}"
    );
    assert!(
        exchanges[i + 1..]
            .iter()
            .any(|e| e.seq == stale.seq && e.answered.is_some_and(|a| a.0 == 200)),
        "sent again\n{dump}"
    );
    assert!(
        agent_log.contains("before the one it follows"),
        "{agent_log}"
    );
}

/// The tree size in the published checkpoint note of web-01, if any.
fn published_tree_size(store: &Path) -> Option<u64> {
    std::fs::read_to_string(store.join("checkpoints/web-01"))
        .ok()?
        .lines()
        .nth(1)?
        .parse()
        .ok()
}

/// The tree size of the newest checkpoint record in web-01's store.
fn newest_stored_checkpoint(store: &Path) -> Option<u64> {
    let cat = std::process::Command::new(collector_bin())
        .args(["cat", "--json", "--agent", "web-01", "--store"])
        .arg(store)
        .output()
        .unwrap();
    String::from_utf8_lossy(&cat.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "checkpoint")
        .filter_map(|v| v["tree_size"].as_u64())
        .max()
}

#[test]
fn a_batch_whose_sender_hangs_up_is_still_stored_and_its_checkpoint_published() {
    let (s, collector, proxy) = collector_behind_proxy();
    let store = s.d.p("store");
    write_lines(&s.d.p("logs/app.log"), 0, 50);
    // A checkpoint every KiB: the batch hung up on holds some.
    let cfg = s.write_agent_config_with(
        "agent",
        "checkpoint_bytes = \"1KiB\"\n",
        &forward_through(&proxy, None),
    );
    let agent = s.start_agent(&cfg, "agent");
    wait_for_stored_lines(&store, 50, Duration::from_secs(20), || agent.log());
    // Published within a second of its receipt (heartbeats go on meanwhile).
    wait_for(
        "the newest checkpoint published",
        Duration::from_secs(10),
        || published_tree_size(&store) == newest_stored_checkpoint(&store),
        || collector.log(),
    );
    let before = published_tree_size(&store);
    // The next large batch (new lines and checkpoints) is relayed, and both
    // connections are closed while it is being stored, as when an agent
    // exits with a batch in flight; every later request is refused, so no
    // replay reaches the collector (a replay would publish the checkpoint
    // on its own).
    let refused = Fault::Status {
        status: 503,
        retry_after: false,
    };
    proxy.watch_store(&store);
    proxy.script(
        std::iter::once(Fault::HangUpWhileStoring).chain(std::iter::repeat_n(refused, 100_000)),
    );
    write_lines(&s.d.p("logs/app.log"), 50, 2000);
    wait_for(
        "the hung-up batch stored",
        Duration::from_secs(20),
        || newest_stored_checkpoint(&store) > before,
        || {
            format!(
                "{:#?}\n{}\n{}",
                proxy.exchanges(),
                agent.log(),
                collector.log()
            )
        },
    );
    let newest = newest_stored_checkpoint(&store);
    wait_for(
        "the newest stored checkpoint published",
        Duration::from_secs(10),
        || published_tree_size(&store) == newest,
        || {
            format!(
                "newest {newest:?}, published {:?}\n{}",
                published_tree_size(&store),
                collector.log()
            )
        },
    );
    let exchanges = proxy.exchanges();
    let hung = exchanges
        .iter()
        .position(|e| e.fault == Fault::HangUpWhileStoring);
    let hung = hung.unwrap_or_else(|| panic!("no request was hung up on\n{exchanges:#?}"));
    assert!(exchanges[hung].relayed.is_some(), "{exchanges:#?}");
    assert!(
        exchanges[hung + 1..].iter().all(|e| e.fault == refused),
        "no replay reached the collector\n{exchanges:#?}"
    );
    drop(agent);
    collector.stop();
}

#[test]
fn a_collector_down_for_a_while_loses_nothing() {
    let (mut s, collector, proxy) = collector_behind_proxy();
    let log = s.d.p("logs/app.log");
    let store = s.d.p("store");
    write_lines(&log, 0, 5_000);
    let cfg = s.write_agent_config("agent", &forward_through(&proxy, Some(1000)));
    let agent = s.start_agent(&cfg, "agent");
    wait_for_stored_lines(&store, 5_000, Duration::from_secs(30), || {
        format!("{}\n{}", agent.log(), collector.log())
    });
    collector.stop();
    // Lines go on arriving while the collector is down; the agent keeps
    // trying (backoff_max is 500ms: five attempts take a second or more).
    write_lines(&log, 5_000, 5_000);
    let down_since = proxy.exchanges().len();
    proxy.wait(
        "five attempts while the collector is down",
        Duration::from_secs(20),
        |ex| {
            ex[down_since..]
                .iter()
                .filter(|e| e.collector_error.is_some())
                .count()
                >= 5
        },
    );
    let collector = start_collector(&mut s);
    proxy.set_collector_port(s.port);
    write_lines(&log, 10_000, 5_000);
    wait_for_stored_lines(&store, 15_000, Duration::from_secs(30), || {
        format!("{}\n{}", agent.log(), collector.log())
    });
    let agent_log = stop_and_check(&s, agent, collector, 15_000);
    for says in ["records stay in the spool", "delivered again after"] {
        assert!(agent_log.contains(says), "{agent_log}");
    }
}

#[test]
fn a_collector_killed_mid_batch_restarts_and_loses_nothing() {
    let (mut s, mut collector, proxy) = collector_behind_proxy();
    let store = s.d.p("store");
    // A spool larger than the agent may hold in memory.
    let n = 300_000;
    write_lines(&s.d.p("logs/app.log"), 0, n);
    // The default batch size (20,000 records, at most 4 MiB): large batches.
    let cfg = s.write_agent_config("agent", &forward_through(&proxy, None));
    let agent = s.start_agent(&cfg, "agent");
    // A full batch (some 930 KB compressed) that reached the collector
    // whole and is not answered yet: the collector is taking it in,
    // verifying or writing it (which takes it some 50 ms here).
    let in_flight = |e: &Exchange| {
        e.body_len > 512 << 10 && e.relayed.is_some() && e.collector_status.is_none()
    };
    let mut killed = Vec::new();
    // Kill it at once, and a little later into the collector's work on it.
    for into_the_batch in [0, 20, 40].map(Duration::from_millis) {
        let from = killed.last().map_or(0, |i| i + 1);
        let seen = proxy.wait("a full batch in flight", Duration::from_secs(30), |ex| {
            ex[from..].iter().any(in_flight)
        });
        std::thread::sleep(into_the_batch); // places the fault, waits for nothing
        drop(collector); // SIGKILL
        let i = from + seen[from..].iter().position(in_flight).unwrap();
        killed.push(i);
        collector = start_collector(&mut s);
        proxy.set_collector_port(s.port);
        // Delivery goes on (the store is opened, and a partial batch cut
        // off, at the first request for it) before the next kill.
        proxy.wait(
            "an answer after the restart",
            Duration::from_secs(30),
            |ex| ex[i + 1..].iter().any(|e| e.collector_status.is_some()),
        );
    }
    wait_for_stored_lines(&store, n, Duration::from_secs(60), || {
        format!("{}\n{}", agent.log(), collector.log())
    });
    let exchanges = proxy.exchanges();
    stop_and_check(&s, agent, collector, n);
    let spool = tree_bytes(&s.d.p("spool")) / 1024;
    assert!(spool > AGENT_MEMORY_LIMIT_KIB, "the spool is {spool} KiB");
    // A kill can come just after the answer; those before it left the
    // agent without one, and it sent the batch's records again, in a batch
    // that starts there or before (with two in flight, the agent reads
    // again from the older request that failed, and cuts batches anew).
    // (Whether a kill caught the collector writing is luck; either way the
    // store verified.)
    let unanswered: Vec<&Exchange> = killed
        .iter()
        .map(|&i| &exchanges[i])
        .filter(|k| k.collector_status.is_none())
        .collect();
    assert!(!unanswered.is_empty(), "{exchanges:#?}");
    for k in &unanswered {
        assert!(
            exchanges.iter().any(|e| e.seq <= k.seq
                && e.arrived > k.arrived
                && e.collector_status == Some(200)),
            "batch {} was sent again: {exchanges:#?}",
            k.seq
        );
    }
}

#[test]
fn tls_connections_cut_mid_stream_lose_and_duplicate_nothing() {
    let mut s = mtls_setup();
    let collector = start_collector(&mut s);
    // The first connection is cut in the middle of a batch (some 230 KB
    // here), the second (the retry) in or just after the TLS handshake, the
    // third after the batch went through, in the next one.
    let relay = CuttingRelay::start(s.port, vec![100_000, 2_000, 400_000]);
    let n = 20_000;
    write_lines(&s.d.p("logs/app.log"), 0, n);
    let cfg = mtls_agent_config(&s, "agent", Some("web-01"), "ca", "localhost", relay.port);
    // One request at a time: the cuts are placed by connection, and a
    // second request in flight opens a connection of its own.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.trim_end().ends_with("timeout = \"10s\""),
        "[forward] last"
    );
    text.push_str("in_flight = 1\n");
    std::fs::write(&cfg, text).unwrap();
    let agent = s.start_agent(&cfg, "agent");
    wait_for_stored_lines(&s.d.p("store"), n, Duration::from_secs(40), || {
        format!("{}\n{}", agent.log(), collector.log())
    });
    assert_eq!(relay.cuts(), 3, "{}", agent.log());
    let agent_log = stop_and_check(&s, agent, collector, n);
    assert!(
        agent_log.matches("records stay in the spool").count() >= 2,
        "{agent_log}"
    );
}
