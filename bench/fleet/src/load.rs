//! `run`: the simulated agents. Each is one task on one thread with its own
//! mutual-TLS connection (its own certificate), writing `rate` lines a
//! second into its prepared chain: when a checkpoint's last line is due, the
//! records up to it are sent as the agent's forwarder sends them (zstd,
//! `Wormlog-Seq`), and the receipts in the answer acknowledge its lines. If
//! the collector falls behind, everything due goes in the next request, as
//! the real forwarder does, so a slow collector shows as lag.

use crate::prepare::{Batch, agent_dir, agent_id};
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Line → receipt latencies, in milliseconds (one bucket each).
#[derive(Debug)]
pub struct Histogram(Vec<u64>);

impl Histogram {
    const MAX_MS: usize = 600_000;

    fn new() -> Histogram {
        Histogram(vec![0; Self::MAX_MS + 1])
    }

    fn add(&mut self, d: Duration, n: u64) {
        let ms = (d.as_millis() as usize).min(Self::MAX_MS);
        self.0[ms] += n;
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `q` quantile in seconds (None when empty).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some(ms as f64 / 1000.0);
            }
        }
        None
    }
}

/// What the agents share with the main thread.
#[derive(Debug)]
pub struct Shared {
    /// Lines acknowledged by a receipt, per agent.
    pub acked_lines: Vec<AtomicU64>,
    /// Records acknowledged, all agents.
    pub acked_records: AtomicU64,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    pub first_failure: Mutex<Option<String>>,
    /// Latencies of the lines written after the warm-up.
    pub latency: Mutex<Histogram>,
    pub connected: AtomicU64,
}

/// One simulated agent's part of the run.
#[derive(Debug)]
struct Agent {
    i: usize,
    frames: PathBuf,
    batches: Vec<Batch>,
    tls: Arc<rustls::ClientConfig>,
    /// When its line 0 is written.
    t0: Instant,
}

/// The run's settings.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub agents: usize,
    pub rate: f64,
    pub port: u16,
    /// Lines written before this are not in the latency figures.
    pub measure_from: Instant,
    /// No line is written after this.
    pub end: Instant,
}

impl Shared {
    pub fn new(agents: usize) -> Shared {
        Shared {
            acked_lines: (0..agents).map(|_| AtomicU64::new(0)).collect(),
            acked_records: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            first_failure: Mutex::new(None),
            latency: Mutex::new(Histogram::new()),
            connected: AtomicU64::new(0),
        }
    }

    fn failed(&self, why: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_failure.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(why);
        }
    }
}

/// When agent `i` writes its line 0: the agents start spread over one
/// checkpoint period, so that their requests are spread too.
pub fn start_of(i: usize, agents: usize, start: Instant, period: Duration) -> Instant {
    start + period.mul_f64(i as f64 / agents as f64)
}

/// Runs the fleet's first `load.agents` agents until `load.end`, and until
/// every line written by then is acknowledged (or `grace` after the end).
pub async fn run(
    dir: &Path,
    load: Load,
    start: Instant,
    period: Duration,
    shared: Arc<Shared>,
    grace: Duration,
) -> anyhow::Result<()> {
    let ca = dir.join("pki/ca.pem");
    let mut tasks = Vec::with_capacity(load.agents);
    // The collector takes at most `max_connections_per_client` handshakes
    // at once from one address (all the agents here are on 127.0.0.1).
    let handshakes = Arc::new(tokio::sync::Semaphore::new(7));
    for i in 0..load.agents {
        let adir = agent_dir(dir, i);
        let tls = wormlog_tls::client_config(
            Some(&ca),
            Some((&adir.join("cert.pem"), &adir.join("cert-key.pem"))),
        )?;
        let agent = Agent {
            i,
            frames: adir.join("frames"),
            batches: crate::prepare::batches(dir, i)?,
            tls: Arc::new(tls),
            t0: start_of(i, load.agents, start, period),
        };
        let (shared, handshakes) = (shared.clone(), handshakes.clone());
        tasks.push(tokio::spawn(async move {
            agent.run(load, &shared, &handshakes, grace).await
        }));
    }
    for t in tasks {
        t.await.context("an agent task panicked")??;
    }
    Ok(())
}

impl Agent {
    fn due(&self, b: &Batch, rate: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(b.lines_end as f64 / rate)
    }

    async fn run(
        self,
        load: Load,
        shared: &Shared,
        handshakes: &tokio::sync::Semaphore,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let mut conn: Option<SendRequest<Full<Bytes>>> = None;
        // Held from a connection's handshake to its first answer: until then
        // the collector counts it against the address, not the agent.
        let mut permit = None;
        let mut next = 0;
        while next < self.batches.len() && self.due(&self.batches[next], load.rate) <= load.end {
            tokio::time::sleep_until(self.due(&self.batches[next], load.rate).into()).await;
            // Everything due by now goes in one request.
            let now = Instant::now();
            let mut last = next;
            while last + 1 < self.batches.len()
                && self.due(&self.batches[last + 1], load.rate) <= now.min(load.end)
            {
                last += 1;
            }
            let body = self.body(next, last)?;
            let receipts = loop {
                if Instant::now() > load.end + grace {
                    return Ok(());
                }
                if conn.is_none() {
                    permit = Some(handshakes.acquire().await?);
                    match self.connect(load.port).await {
                        Ok(c) => {
                            shared.connected.fetch_add(1, Ordering::Relaxed);
                            conn = Some(c);
                        }
                        Err(e) => {
                            shared.failed(format!("{}: connect: {e:#}", agent_id(self.i)));
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    }
                }
                let c = conn.as_mut().expect("connected");
                shared.requests.fetch_add(1, Ordering::Relaxed);
                let sent = self.send(c, next, last, body.clone()).await;
                drop(permit.take());
                match sent {
                    Ok(r) => break r,
                    Err(e) => {
                        shared.failed(format!("{}: {e:#}", agent_id(self.i)));
                        if conn.take().is_some() {
                            shared.connected.fetch_sub(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            };
            self.acknowledge(next, last, &receipts, load, shared);
            next = last + 1;
        }
        if conn.is_some() {
            shared.connected.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The frames of batches `first..=last`, compressed as the forwarder
    /// does (zstd level -1).
    fn body(&self, first: usize, last: usize) -> anyhow::Result<Bytes> {
        let (from, to) = (self.batches[first].start, self.batches[last].end);
        let mut raw = vec![0; (to - from) as usize];
        std::fs::File::open(&self.frames)?.read_exact_at(&mut raw, from)?;
        Ok(Bytes::from(zstd::bulk::compress(&raw, -1)?))
    }

    async fn connect(&self, port: u16) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let name = rustls_pki_types::ServerName::try_from("localhost")?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// One request; the tree sizes of the receipts in its answer.
    async fn send(
        &self,
        c: &mut SendRequest<Full<Bytes>>,
        first: usize,
        last: usize,
        body: Bytes,
    ) -> anyhow::Result<Vec<u64>> {
        let req = hyper::Request::post(format!("/v1/agents/{}/records", agent_id(self.i)))
            .header("host", "localhost")
            .header("content-type", "application/octet-stream")
            .header("content-encoding", "zstd")
            .header("wormlog-seq", self.batches[first].first_seq)
            .header("wormlog-spool-end", self.batches[last].tree_size + 1)
            .body(Full::new(body))?;
        let answer = tokio::time::timeout(Duration::from_secs(60), async {
            c.ready().await?;
            let resp = c.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        })
        .await
        .context("no answer within 60 s")??;
        let (status, body) = answer;
        if status != 200 {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        let want = self.batches[last].tree_size + 1;
        if json["next_seq"].as_u64() != Some(want) {
            bail!(
                "the collector's next_seq is {}, not {want}",
                json["next_seq"]
            );
        }
        Ok(json["receipts"]
            .as_array()
            .context("no receipts in the answer")?
            .iter()
            .filter_map(|r| r["tree_size"].as_u64())
            .collect())
    }

    /// Counts the lines of batches `first..=last` whose checkpoint got its
    /// receipt as acknowledged now.
    fn acknowledge(
        &self,
        first: usize,
        last: usize,
        receipts: &[u64],
        load: Load,
        shared: &Shared,
    ) {
        let now = Instant::now();
        let mut hist = shared.latency.lock().unwrap_or_else(|p| p.into_inner());
        for j in first..=last {
            let b = &self.batches[j];
            if !receipts.contains(&b.tree_size) {
                shared.failed(format!(
                    "{}: no receipt for tree size {}",
                    agent_id(self.i),
                    b.tree_size
                ));
                continue;
            }
            let lines_start = if j == 0 {
                0
            } else {
                self.batches[j - 1].lines_end
            };
            for k in lines_start..b.lines_end {
                let written = self.t0 + Duration::from_secs_f64(k as f64 / load.rate);
                if written >= load.measure_from {
                    hist.add(now.saturating_duration_since(written), 1);
                }
            }
            let records = b.tree_size + 1 - b.first_seq;
            shared.acked_records.fetch_add(records, Ordering::Relaxed);
            shared.acked_lines[self.i].store(b.lines_end, Ordering::Relaxed);
        }
    }
}

/// Lag now, in lines, of each agent: written (by the schedule) and not yet
/// acknowledged.
pub fn lags(
    shared: &Shared,
    agents: usize,
    start: Instant,
    period: Duration,
    rate: f64,
    end: Instant,
) -> Vec<u64> {
    let now = Instant::now().min(end);
    (0..agents)
        .map(|i| {
            let t0 = start_of(i, agents, start, period);
            let written = (now.saturating_duration_since(t0).as_secs_f64() * rate) as u64;
            written.saturating_sub(shared.acked_lines[i].load(Ordering::Relaxed))
        })
        .collect()
}
