//! The forwarder's answers to a collector's refusals (docs/FORMAT.md §10.2),
//! against a small scripted HTTP/1.1 server written here that plays the
//! collector: 408 (the body came too slowly) is retried, no sooner than
//! `Retry-After`; 400 (malformed) stops forwarding like a fork — an error
//! line, an alert record (code 5) in the chain, no more requests — while
//! spooling goes on.

mod common;

use common::{Env, append, lines, stop};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the server took.
#[derive(Debug, Clone)]
struct Request {
    /// `Wormlog-Seq`.
    seq: u64,
    body_len: usize,
    /// When its head arrived, and when the answer was sent.
    arrived: Instant,
    answered: Instant,
}

/// What the server answers, one entry per request in order; once the script
/// is used up it answers 500.
type Script = Vec<(u16, &'static str, &'static str)>;

struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn start(script: Script) -> Server {
        Server::start_with(script, false)
    }

    /// Answers every request from its head with the script, then holds
    /// the connection open and never reads the body (a broken or hostile
    /// collector).
    fn start_unread(script: Script) -> Server {
        Server::start_with(script, true)
    }

    fn start_with(script: Script, unread: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let r = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (r, script) = (r.clone(), script.clone());
                std::thread::spawn(move || serve(conn, &r, &script, unread));
            }
        });
        Server { port, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(
    conn: TcpStream,
    requests: &Mutex<Vec<Request>>,
    script: &Mutex<std::vec::IntoIter<(u16, &'static str, &'static str)>>,
    unread: bool,
) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        // The head.
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let arrived = Instant::now();
        let (mut seq, mut len) = (u64::MAX, 0usize);
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "wormlog-seq" => seq = value.trim().parse().unwrap(),
                "content-length" => len = value.trim().parse().unwrap(),
                _ => {}
            }
        }
        if !unread {
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                return;
            }
        }
        let (status, headers, json) = script.lock().unwrap().next().unwrap_or((
            500,
            "",
            r#"{"error":"unavailable","reason":"script ended"}"#,
        ));
        let answer = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n{json}",
            json.len()
        );
        // Before the write: the agent cannot have the answer any sooner.
        let answered = Instant::now();
        let sent = w.write_all(answer.as_bytes()).and_then(|()| w.flush());
        requests.lock().unwrap().push(Request {
            seq,
            body_len: len,
            arrived,
            answered,
        });
        if sent.is_err() {
            return;
        }
        if unread {
            // Neither read nor closed, for longer than the test runs.
            std::thread::sleep(Duration::from_secs(120));
            return;
        }
    }
}

/// An agent forwarding to `port`, retrying quickly (10–50 ms) unless told
/// to wait longer, with `forward`'s lines in its `[forward]` table.
fn agent_with(port: u16, forward: &str) -> Env {
    Env::with_sources("", |e| {
        format!(
            "[forward]\nurl = \"http://127.0.0.1:{port}\"\ncompression = \"none\"\nbackoff_min = \"10ms\"\nbackoff_max = \"50ms\"\n{forward}\n[[sources.file]]\nname = \"app\"\npaths = [\"{}/*.log\"]\npoll_interval = \"20ms\"\n",
            e.logs().display()
        )
    })
}

/// Waits (with a deadline) until the server took `n` requests.
fn wait_requests(s: &Server, env: &Env, n: usize) -> Vec<Request> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.requests();
        if r.len() >= n {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {} of {n} requests; stderr:\n{}",
            r.len(),
            env.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_408_is_retried_after_retry_after_and_a_400_stops_forwarding_like_a_fork() {
    let server = Server::start(vec![
        (
            408,
            "Retry-After: 1\r\n",
            r#"{"error":"timeout","reason":"the body did not arrive in time"}"#,
        ),
        (
            400,
            "",
            r#"{"error":"malformed","reason":"not whole frames"}"#,
        ),
    ]);
    // One request at a time: with two in flight, the next batch may be out
    // before the 400 comes back, and the server would hear it (sent before
    // the refusal, not after).
    let env = agent_with(server.port, "in_flight = 1");
    append(&env.log("a.log"), lines("first", 0..5).as_bytes());
    let d = env.start();

    // The 408 is retried: from the same seq, no sooner than Retry-After
    // (the backoff alone would have waited at most 50 ms). The batch is
    // read from the spool again, so it holds what the first did and may
    // hold records spooled since.
    let r = wait_requests(&server, &env, 2);
    assert_eq!(r[0].seq, r[1].seq, "{r:?}");
    assert!(r[1].body_len >= r[0].body_len, "{r:?}");
    let waited = r[1].arrived - r[0].answered;
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before Retry-After (1 s)"
    );

    // The 400 stops forwarding: an alert record in the chain, code 5.
    env.wait_records("alert:5", 1);
    let alert = env
        .records()
        .into_iter()
        .find(|r| r.kind == "alert:5")
        .unwrap();
    assert!(alert.detail.contains("HTTP 400"), "{}", alert.detail);
    assert!(
        alert.detail.contains("forwarding stopped"),
        "{}",
        alert.detail
    );
    let stderr = env.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("error: forward:") && l.contains("HTTP 400")),
        "no error line about the 400:\n{stderr}"
    );
    assert!(stderr.contains("HTTP 408"), "{stderr}");

    // Spooling goes on, forwarding does not: new lines are spooled, and
    // the server never hears from the agent again, not even at the stop.
    append(&env.log("a.log"), lines("second", 0..5).as_bytes());
    env.wait_entries(10);
    stop(d);
    let r = server.requests();
    assert_eq!(r.len(), 2, "requests after the 400: {r:?}");
    env.assert_verifies();
}

/// A collector that answers from the request's head (503) and then neither
/// reads the body nor closes the connection: the body is left with that
/// connection, unwritten. Forwarding must go on (the batch read again, sent
/// on a new connection), not wait for that body to be gone, and the agent
/// must not keep one body per retry.
#[test]
fn a_collector_that_answers_before_reading_a_body_does_not_stall_forwarding() {
    let busy = (503, "", r#"{"error":"unavailable","reason":"busy"}"#);
    let server = Server::start_unread(vec![busy; 1000]);
    let env = agent_with(
        server.port,
        "batch_bytes = \"32MiB\"\nbatch_records = 1000000\n",
    );
    // 24 MiB of lines: a body larger than the sockets between the two
    // can hold, so it cannot be written while nobody reads it.
    let mut data = String::new();
    for i in 0..120_000 {
        data.push_str(&format!("{i:08} {}\n", "x".repeat(190)));
    }
    append(&env.log("a.log"), data.as_bytes());
    let d = env.start();
    let big = |r: &[Request]| r.iter().filter(|q| q.body_len >= 16 << 20).count();
    let deadline = Instant::now() + Duration::from_secs(60);
    while big(&server.requests()) < 10 {
        assert!(
            Instant::now() < deadline,
            "forwarding stalled after a body the collector did not read: {:?}\n{}",
            server
                .requests()
                .iter()
                .map(|q| q.body_len)
                .collect::<Vec<_>>(),
            env.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nor may each unread body stay with its connection (32 MiB a retry):
    // connections are closed after an answer other than 200.
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.0.id())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        rss_kib < 192 << 10,
        "{rss_kib} KiB resident after {} unread bodies of 32 MiB",
        big(&server.requests())
    );
    stop(d);
}
