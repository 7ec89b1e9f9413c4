//! `wormlog-collector`: the command line. The work is in the library
//! (`wormlog_collector::commands`).
//!
//! Exit codes: 0 success; 1 tampering or loss found (verify, cat, forks);
//! 2 usage, configuration or I/O error.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use wormlog_collector::commands;

#[derive(Parser, Debug)]
#[command(name = "wormlog-collector", version, about = "The wormlog collector")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve agents (HTTPS with client certificates, or HTTP on loopback only).
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Check the configuration and open every file it names; exit 2 with
    /// file:line:column (or the file) if something is wrong.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Verify every agent's chain in a store (and the collector's own log).
    Verify {
        #[arg(long)]
        store: PathBuf,
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print an agent's records (the same output as `wormlog cat`).
    Cat {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        agent: String,
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long)]
        json: bool,
        /// An age identity file that opens encrypted entries.
        #[arg(long)]
        identity: Option<PathBuf>,
    },
    /// List the forks this collector proved, with the agent's differing
    /// records kept as evidence (`<store>/forks`).
    Forks {
        #[arg(long)]
        store: PathBuf,
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let r = match cli.cmd {
        Cmd::Serve { config } => {
            // The daemon's failures go through its log (the journal, at
            // error priority, under systemd); the other commands' to the
            // terminal.
            wormlog_service::log::init("wormlog-collector");
            return match commands::serve(&config) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Cmd::CheckConfig { config } => commands::check_config(&config),
        Cmd::Verify { store, agent, json } => commands::verify(&store, agent.as_deref(), json),
        Cmd::Cat {
            store,
            agent,
            from,
            json,
            identity,
        } => commands::cat(&store, &agent, from, json, identity.as_deref()),
        Cmd::Forks { store, agent, json } => commands::forks(&store, agent.as_deref(), json),
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wormlog-collector: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
