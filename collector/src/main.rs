//! `wormlog-collector`: the command line. The work is in the library
//! (`wormlog_collector::commands`).
//!
//! Exit codes: 0 success; 1 tampering or loss found (verify, cat, forks);
//! 2 usage, configuration or I/O error.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use wormlog_collector::{client, commands};

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
    /// The scheduled verification: the last whole pass (when, what it
    /// checked, what failed) and the pass under way. Exit 1 if the last
    /// pass found a failure.
    Status {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// With `[store] kind = "s3"`: bring the local store directory up to
    /// what the bucket holds (every agent, or one), checking each batch as
    /// an agent's is checked; then `verify`, `cat` and `forks` read it.
    /// Exit 1 if the bucket holds what does not continue a chain.
    Sync {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        agent: Option<String>,
    },
    /// With `[store] kind = "s3"`: create the bucket (Object Lock on) and
    /// the heads bucket if they do not exist, and check that the heads
    /// bucket honours conditional writes.
    CreateBuckets {
        #[arg(long)]
        config: PathBuf,
    },
    /// Make a new bearer token for a user: print the token (give it to the
    /// user, once) and the `token_sha256` line for its `[[users]]` entry.
    Token,
    /// Print the access log: every call to the reading API, allowed or
    /// refused (from the collector's own chain, verified on the way).
    Access {
        #[arg(long)]
        store: PathBuf,
        /// Only this user's calls.
        #[arg(long)]
        user: Option<String>,
        /// Only calls about this agent.
        #[arg(long)]
        agent: Option<String>,
        /// The newest this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Search a running collector's store (the reading API; auditor role).
    Query {
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long)]
        agent: String,
        /// From this time on (RFC 3339, e.g. 2026-12-01T00:00:00Z).
        #[arg(long)]
        from: Option<String>,
        /// Before this time.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        source: Option<String>,
        /// A record kind: entry, gap, start, stop, checkpoint, …
        #[arg(long)]
        kind: Option<String>,
        /// Text in bodies and field values: whole words, ASCII
        /// case-insensitive ("mrn-4711" finds "MRN-4711," not "MRN-47110").
        #[arg(long)]
        text: Option<String>,
        /// Oldest first (default: newest first).
        #[arg(long)]
        oldest: bool,
        #[arg(long)]
        limit: Option<u64>,
        /// Where a page starts (what the last page printed).
        #[arg(long)]
        cursor: Option<u64>,
        /// Every page, to the end.
        #[arg(long)]
        all: bool,
    },
    /// Export records FROM..=TO of an agent as a bundle that `wormlog
    /// verify --bundle` checks offline (auditor role).
    Export {
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long)]
        agent: String,
        #[arg(long)]
        from_seq: u64,
        #[arg(long)]
        to_seq: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Disclose one entry: it alone (opened with its own key), its
    /// inclusion proof and the signed, countersigned checkpoint (auditor
    /// role).
    Disclose {
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long)]
        agent: String,
        #[arg(long)]
        seq: u64,
        #[arg(long)]
        out: PathBuf,
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

/// How to reach a running collector.
#[derive(clap::Args, Debug)]
struct RemoteArgs {
    /// The collector, e.g. https://collector.example:8443
    #[arg(long)]
    url: String,
    /// The CA that issued the collector's certificate (PEM).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// A client certificate (PEM) issued for your user's cert_name.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Your bearer token (visible to other users of this host in the
    /// process list: prefer --token-file or WORMLOG_TOKEN).
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// A file holding your bearer token.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl RemoteArgs {
    fn remote(self) -> client::Remote {
        client::Remote {
            url: self.url,
            ca: self.ca,
            cert: self.cert,
            key: self.key,
            token: self.token,
            token_file: self.token_file,
        }
    }
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
        Cmd::Token => commands::token(),
        Cmd::Status { store, json } => commands::status(&store, json),
        Cmd::Sync { config, agent } => commands::sync(&config, agent.as_deref()),
        Cmd::CreateBuckets { config } => commands::create_buckets(&config),
        Cmd::Access {
            store,
            user,
            agent,
            limit,
            json,
        } => commands::access(&store, user, agent, limit, json),
        Cmd::Query {
            remote,
            agent,
            from,
            to,
            source,
            kind,
            text,
            oldest,
            limit,
            cursor,
            all,
        } => client::query(
            &remote.remote(),
            &client::Search {
                agent,
                from,
                to,
                source,
                kind,
                text,
                oldest_first: oldest,
                limit,
                cursor,
                all,
            },
        ),
        Cmd::Export {
            remote,
            agent,
            from_seq,
            to_seq,
            out,
        } => client::fetch_bundle(
            &remote.remote(),
            &format!("/v1/agents/{agent}/export"),
            &[
                ("from_seq", from_seq.to_string()),
                ("to_seq", to_seq.to_string()),
            ],
            &out,
        ),
        Cmd::Disclose {
            remote,
            agent,
            seq,
            out,
        } => client::fetch_bundle(
            &remote.remote(),
            &format!("/v1/agents/{agent}/records/{seq}/disclosure"),
            &[],
            &out,
        ),
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wormlog-collector: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
