//! One collector carrying many agents (issue 17): simulated agents send
//! real signed chains, prepared beforehand with the spool library, over
//! real mutual TLS to a real `wormlog-collector`, each at `rate` lines a
//! second with a checkpoint every `checkpoint_every` lines. Reported: p50 /
//! p99 / max line → receipt, every agent's lag over the run, the
//! collector's CPU per record and memory per connected agent, and whether
//! it carried the load (p99 under 1 s, no lag growing). docs/BENCHMARKS.md
//! has the figures and `bench/fleet.sh` the runs.
//!
//!     wormlog-fleet-bench prepare DIR --agents N --seconds S [--rate R]
//!     wormlog-fleet-bench run DIR --collector BIN --agents N [--seconds S]

mod collector;
mod load;
mod prepare;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "wormlog: a collector carrying many simulated agents")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Makes the fleet: keys, certificates, sealed spools.
    Prepare {
        dir: PathBuf,
        #[arg(long)]
        agents: usize,
        /// Seconds of lines each agent can send.
        #[arg(long)]
        seconds: u64,
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// Lines between checkpoints (with --rate 100, 50 is one every 0.5 s).
        #[arg(long, default_value_t = 50)]
        checkpoint_every: u64,
        #[arg(long, default_value_t = 120)]
        line_bytes: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Runs the first N agents of the fleet against a fresh collector.
    Run {
        dir: PathBuf,
        /// The wormlog-collector binary.
        #[arg(long)]
        collector: PathBuf,
        #[arg(long)]
        agents: usize,
        /// How long lines are written (at most what was prepared).
        #[arg(long)]
        seconds: Option<f64>,
        /// Lines written before this many seconds are not in the figures
        /// (the connections are made then: seven handshakes at a time, the
        /// collector's limit per address less one).
        #[arg(long, default_value_t = 12.0)]
        warmup: f64,
        /// Verify the store afterwards (`wormlog-collector verify`).
        #[arg(long)]
        verify: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Prepare {
            dir,
            agents,
            seconds,
            rate,
            checkpoint_every,
            line_bytes,
            threads,
        } => {
            if checkpoint_every == 0 || rate == 0 {
                bail!("--rate and --checkpoint-every must be above 0");
            }
            let plan = prepare::Plan {
                agents,
                rate,
                lines: seconds * rate,
                lines_per_checkpoint: checkpoint_every,
                line_bytes,
            };
            let t = Instant::now();
            prepare::run(&dir, plan, threads)?;
            eprintln!(
                "prepared {agents} agents in {:.1}s",
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Cmd::Run {
            dir,
            collector,
            agents,
            seconds,
            warmup,
            verify,
        } => run(&dir, &collector, agents, seconds, warmup, verify),
    }
}

fn run(
    dir: &std::path::Path,
    bin: &std::path::Path,
    agents: usize,
    seconds: Option<f64>,
    warmup: f64,
    verify: bool,
) -> anyhow::Result<()> {
    let fleet: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fleet.json"))?)?;
    let rate = fleet["rate"].as_f64().context("fleet.json")?;
    let prepared = fleet["agents"].as_u64().context("fleet.json")? as usize;
    let lines = fleet["lines"].as_u64().context("fleet.json")? as f64;
    let per_checkpoint = fleet["lines_per_checkpoint"]
        .as_u64()
        .context("fleet.json")? as f64;
    if agents > prepared {
        bail!("only {prepared} agents were prepared");
    }
    let pubkeys: Vec<String> = serde_json::from_value(fleet["pubkeys"].clone())?;
    let seconds = seconds.unwrap_or(lines / rate).min(lines / rate);
    let period = Duration::from_secs_f64(per_checkpoint / rate);

    let collector = collector::Collector::start(bin, dir, agents, &pubkeys)?;
    std::thread::sleep(Duration::from_secs(1));
    let base = collector.stats();
    let shared = Arc::new(load::Shared::new(agents));
    let start = Instant::now() + Duration::from_millis(200);
    let settings = load::Load {
        agents,
        rate,
        port: collector.port,
        measure_from: start + Duration::from_secs_f64(warmup),
        end: start + Duration::from_secs_f64(seconds),
    };
    let grace = Duration::from_secs(60);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let driver = {
        let (dir, shared) = (dir.to_owned(), shared.clone());
        std::thread::spawn(move || {
            runtime.block_on(load::run(&dir, settings, start, period, shared, grace))
        })
    };

    // Once a second: every agent's lag, and the collector's counters.
    let mut samples = Vec::new();
    let mut window: Option<(collector::ProcStats, u64, Instant)> = None;
    let mut window_end: Option<(collector::ProcStats, u64, Instant)> = None;
    while !driver.is_finished() {
        std::thread::sleep(Duration::from_secs(1));
        let now = Instant::now();
        let stats = collector.stats();
        let acked = shared.acked_records.load(Ordering::Relaxed);
        if window.is_none() && now >= settings.measure_from {
            window = Some((stats, acked, now));
        }
        if now <= settings.end {
            window_end = Some((stats, acked, now));
            let mut lags = load::lags(&shared, agents, start, period, rate, settings.end);
            lags.sort_unstable();
            let p99 = lags[(lags.len() * 99 / 100).min(lags.len() - 1)] as f64 / rate;
            let max = *lags.last().unwrap_or(&0) as f64 / rate;
            let t = now.saturating_duration_since(start).as_secs_f64();
            samples.push((t, p99, max, stats));
            if samples.len() % 5 == 0 {
                eprintln!(
                    "t={t:5.1}s lag p99 {p99:6.2}s max {max:6.2}s, {} connected, collector {:.0}% CPU, {:.1} MiB",
                    shared.connected.load(Ordering::Relaxed),
                    cpu_share(&samples),
                    stats.rss_kib as f64 / 1024.0
                );
            }
        }
    }
    driver
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
    let end_stats = collector.stats();
    let own = collector::ProcStats::own();
    let log = collector.log();
    collector.stop()?;
    if verify {
        let out = std::process::Command::new(bin)
            .args(["verify", "--store"])
            .arg(dir.join("run/store"))
            .output()?;
        if !out.status.success() {
            bail!(
                "the store does not verify:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprintln!("the store verifies ({agents} chains)");
    }
    // A 1,000-agent store is some 600 MB: not kept.
    collector::remove_store(&dir.join("run"))?;

    let hist = shared.latency.lock().unwrap_or_else(|p| p.into_inner());
    let q = |x| hist.quantile(x).unwrap_or(f64::NAN);
    let (p50, p99, max) = (q(0.5), q(0.99), q(1.0));
    let ((w0, r0, t0), (w1, r1, t1)) = (
        window.context("the run ended before the warm-up")?,
        window_end.context("no sample")?,
    );
    let records = r1.saturating_sub(r0);
    let cpu_us_per_record = (w1.cpu_s - w0.cpu_s) * 1e6 / records.max(1) as f64;
    let cpu_share = (w1.cpu_s - w0.cpu_s) / (t1 - t0).as_secs_f64() * 100.0;
    let rss_per_agent = (w1.rss_kib as f64 - base.rss_kib as f64) / agents as f64;
    // Lag: the worst agent in the first half of the measured window (after
    // the warm-up) against its last quarter.
    let quarter = |from: f64, to: f64| {
        let at = |x: f64| warmup + (seconds - warmup) * x;
        samples
            .iter()
            .filter(|s| s.0 >= at(from) && s.0 < at(to))
            .map(|s| s.2)
            .fold(0.0f64, f64::max)
    };
    let (lag_q2, lag_q4) = (quarter(0.0, 0.5), quarter(0.75, 1.01));
    let failures = shared.failures.load(Ordering::Relaxed);
    let bounded = lag_q4 <= lag_q2.max(period.as_secs_f64()) + 1.0;
    let carried = p99 < 1.0 && bounded && failures == 0;
    let summary = serde_json::json!({
        "agents": agents,
        "rate_per_agent": rate,
        "seconds": seconds,
        "records_per_s": records as f64 / (t1 - t0).as_secs_f64(),
        "requests": shared.requests.load(Ordering::Relaxed),
        "failures": failures,
        "first_failure": *shared.first_failure.lock().unwrap_or_else(|p| p.into_inner()),
        "latency_s": {"p50": p50, "p99": p99, "max": max, "lines": hist.count()},
        "lag_max_s": {"first_half": lag_q2, "last_quarter": lag_q4},
        "collector": {
            "cpu_percent": cpu_share,
            "cpu_us_per_record": cpu_us_per_record,
            "rss_base_mib": base.rss_kib as f64 / 1024.0,
            "rss_loaded_mib": w1.rss_kib as f64 / 1024.0,
            "rss_peak_mib": end_stats.hwm_kib as f64 / 1024.0,
            "rss_kib_per_agent": rss_per_agent,
            "threads": w1.threads,
        },
        "simulator_cpu_s": own.cpu_s,
        "carried": carried,
    });
    eprintln!(
        "{agents} agents x {rate} lines/s: {:.0} records/s; line -> receipt p50 {p50:.3}s p99 {p99:.3}s max {max:.3}s; \
         worst lag {lag_q2:.2}s (first half) -> {lag_q4:.2}s (last quarter); collector {cpu_share:.0}% CPU, \
         {cpu_us_per_record:.2} us CPU/record, RSS {:.1} -> {:.1} MiB ({rss_per_agent:.1} KiB/agent); \
         {failures} failures; {}",
        records as f64 / (t1 - t0).as_secs_f64(),
        base.rss_kib as f64 / 1024.0,
        w1.rss_kib as f64 / 1024.0,
        if carried { "CARRIED" } else { "NOT CARRIED" }
    );
    if failures > 0 {
        eprintln!("collector log (tail):\n{}", tail(&log, 20));
    }
    println!("{summary}");
    Ok(())
}

/// The collector's CPU share over the last samples, in % of one core.
fn cpu_share(samples: &[(f64, f64, f64, collector::ProcStats)]) -> f64 {
    match samples {
        [.., a, _, _, _, b] => (b.3.cpu_s - a.3.cpu_s) / (b.0 - a.0) * 100.0,
        _ => f64::NAN,
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
