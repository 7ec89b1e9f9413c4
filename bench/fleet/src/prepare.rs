//! `prepare`: the fleet on disk. For each simulated agent a key, a client
//! certificate naming it, and a real sealed spool written by the spool
//! library (the same code `wormlog run` uses), with a checkpoint after every
//! `lines_per_checkpoint` lines; then its frames and where each checkpoint
//! ends, so that sending costs the simulator a read and nothing else.

use anyhow::{Context, bail};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::io::Write;
use std::path::{Path, PathBuf};
use wormlog_spool::frame::{FrameAt, frame_at};
use wormlog_spool::keys::HostKey;
use wormlog_spool::reader::RangeReader;
use wormlog_spool::record::{AppendOnly, Payload, Record};
use wormlog_spool::{Position, Spool, SpoolOptions};

/// What `prepare` was asked for, kept in `fleet.json`.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub agents: usize,
    /// Lines a second each agent writes.
    pub rate: u64,
    pub lines: u64,
    pub lines_per_checkpoint: u64,
    pub line_bytes: usize,
}

/// The id of agent `i`.
pub fn agent_id(i: usize) -> String {
    format!("fleet-{i:05}")
}

/// Agent `i`'s directory.
pub fn agent_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join("agents").join(agent_id(i))
}

/// One request's worth of an agent's chain: frames `start..end` of its
/// `frames` file, ending with a checkpoint of `tree_size` records, after
/// `lines_end` lines in all.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub start: u64,
    pub end: u64,
    pub first_seq: u64,
    pub tree_size: u64,
    pub lines_end: u64,
}

pub fn run(dir: &Path, plan: Plan, threads: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("pki"))?;
    let pki = Pki::new()?;
    std::fs::write(dir.join("pki/ca.pem"), &pki.ca_pem)?;
    pki.issue(&dir.join("pki"), "collector", "localhost")?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let pubkeys = std::sync::Mutex::new(vec![String::new(); plan.agents]);
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= plan.agents {
                            return Ok(());
                        }
                        let pk = prepare_agent(dir, i, plan, &pki)
                            .with_context(|| format!("agent {}", agent_id(i)))?;
                        pubkeys.lock().unwrap_or_else(|p| p.into_inner())[i] = pk;
                        if (i + 1).is_multiple_of(500) {
                            eprintln!("prepared {} agents", i + 1);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
        }
        Ok(())
    })?;
    let pubkeys = pubkeys.into_inner().unwrap_or_else(|p| p.into_inner());
    std::fs::write(
        dir.join("fleet.json"),
        serde_json::json!({
            "agents": plan.agents,
            "rate": plan.rate,
            "lines": plan.lines,
            "lines_per_checkpoint": plan.lines_per_checkpoint,
            "line_bytes": plan.line_bytes,
            "pubkeys": pubkeys,
        })
        .to_string(),
    )?;
    Ok(())
}

/// Writes agent `i`'s key, certificate, spool, frames and batch list;
/// returns its first public key.
fn prepare_agent(dir: &Path, i: usize, plan: Plan, pki: &Pki) -> anyhow::Result<String> {
    let id = agent_id(i);
    let adir = agent_dir(dir, i);
    let _ = std::fs::remove_dir_all(&adir);
    std::fs::create_dir_all(&adir)?;
    pki.issue(&adir, "cert", &id)?;
    let now = wormlog_spool::clock::wall_ns();
    let first = HostKey::generate(&adir.join("keys"), now)?;
    let key = HostKey::load(&adir.join("keys"))?;
    let mut opts = SpoolOptions::new(adir.join("spool"), id.clone());
    opts.append_only = AppendOnly::Off;
    opts.checkpoint_interval = std::time::Duration::from_secs(86_400);
    opts.checkpoint_bytes = u64::MAX / 2;
    opts.heartbeat_interval = std::time::Duration::from_secs(86_400);
    opts.program = "wormlog-fleet-bench".into();
    let (mut spool, _) = Spool::open(opts, key)?;
    let mut body = Vec::with_capacity(plan.line_bytes);
    for n in 0..plan.lines {
        body.clear();
        write!(body, "{id} line {n:08} ")?;
        body.resize(plan.line_bytes.max(body.len()), b'x');
        spool.append_entry(
            "app",
            &Position::Counter(n * plan.line_bytes as u64),
            0,
            &[],
            &body,
            wormlog_spool::clock::wall_ns(),
        )?;
        if (n + 1).is_multiple_of(plan.lines_per_checkpoint) || n + 1 == plan.lines {
            spool.checkpoint()?;
        }
    }
    spool.close("end of the prepared fleet spool")?;
    let batches = split(&adir)?;
    let mut list = String::new();
    for b in &batches {
        list.push_str(&format!(
            "{} {} {} {} {}\n",
            b.start, b.end, b.first_seq, b.tree_size, b.lines_end
        ));
    }
    std::fs::write(adir.join("batches"), list)?;
    Ok(wormlog_spool::keys::format_pubkey(&first))
}

/// Reads the spool back as one run of frames (written to `frames`) and
/// cuts it after every checkpoint.
fn split(adir: &Path) -> anyhow::Result<Vec<Batch>> {
    let mut reader = RangeReader::new(adir.join("spool"));
    let all = reader.read(u64::MAX / 2, 1 << 40, 1 << 30)?;
    if all.span.torn_len != 0 || all.span.first_seq != 0 {
        bail!("the spool does not start with a clean genesis record");
    }
    let frames = all.frames();
    std::fs::write(adir.join("frames"), frames)?;
    let (mut out, mut off, mut seq, mut lines, mut start) = (Vec::new(), 0, 0u64, 0u64, 0usize);
    let mut first_seq = 0;
    loop {
        let (s, e) = match frame_at(frames, off) {
            FrameAt::Frame { start, end } => (start, end),
            FrameAt::End => break,
            other => bail!("frame at {off}: {other:?}"),
        };
        match Record::decode(&frames[s..e])?.payload {
            Payload::Entry(_) => lines += 1,
            Payload::Checkpoint(cp) => {
                out.push(Batch {
                    start: start as u64,
                    end: e as u64,
                    first_seq,
                    tree_size: cp.tree_size,
                    lines_end: lines,
                });
                start = e;
                first_seq = seq + 1;
            }
            _ => {}
        }
        seq += 1;
        off = e;
    }
    if start != frames.len() {
        bail!("the spool does not end with a checkpoint");
    }
    Ok(out)
}

/// Reads agent `i`'s batch list.
pub fn batches(dir: &Path, i: usize) -> anyhow::Result<Vec<Batch>> {
    let text = std::fs::read_to_string(agent_dir(dir, i).join("batches"))?;
    text.lines()
        .map(|l| {
            let v: Vec<u64> = l
                .split(' ')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .context("batches")?;
            match v[..] {
                [start, end, first_seq, tree_size, lines_end] => Ok(Batch {
                    start,
                    end,
                    first_seq,
                    tree_size,
                    lines_end,
                }),
                _ => bail!("batches: {l:?}"),
            }
        })
        .collect()
}

/// A CA and the certificates it issues.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> anyhow::Result<Pki> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wormlog fleet bench CA");
        let cert = params.self_signed(&key)?;
        Ok(Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// `<name>.pem` and `<name>-key.pem` in `dir`, for the DNS name `dns`.
    fn issue(&self, dir: &Path, name: &str, dns: &str) -> anyhow::Result<()> {
        let key = KeyPair::generate()?;
        let params = CertificateParams::new(vec![dns.to_owned()])?;
        let cert = params.signed_by(&key, &self.issuer)?;
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem())?;
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem())?;
        Ok(())
    }
}
