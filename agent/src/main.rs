//! `wormlog`: the agent and its tools — the command line only; the work is
//! in the library (`wormlog::cmd`, `wormlog::daemon`, the sources and the
//! forwarder).
//!
//! Exit codes: 0 success; 1 a failure the command exists to report
//! (tampering or loss for `verify`/`cat`, a spool that cannot be written for
//! `append`, an existing key for `keygen`); 2 a usage, configuration or I/O
//! error.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use wormlog::{cmd, daemon};

#[derive(Debug, Parser)]
#[command(
    name = "wormlog",
    version,
    about = "Seal every log line into a write-once, hash-chained, signed spool"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: read every configured source into the spool.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Create the host's forward-secure signing key and print its public key.
    Keygen {
        /// Where to write host.key and host.pub.
        #[arg(long)]
        key_dir: PathBuf,
    },
    /// Check a configuration file: exit 0 when valid, 2 with file:line:column otherwise.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Append the lines read on standard input to the spool as source NAME.
    Append {
        #[arg(long)]
        config: PathBuf,
        /// The source name recorded with each line.
        #[arg(long)]
        source: String,
        /// Print nothing on success.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Verify a spool: exit 0 intact, 1 tampering or loss, 2 usage or I/O error.
    Verify {
        #[arg(
            long,
            required_unless_present_any = ["bundle", "config"],
            conflicts_with_all = ["bundle", "config"]
        )]
        spool: Option<PathBuf>,
        /// The spool and first key of this agent's configuration (its
        /// key_dir's host.pub, unless --pubkey is given).
        #[arg(long, conflicts_with = "bundle")]
        config: Option<PathBuf>,
        /// With --config: put the result into the chain through the running
        /// daemon (an entry of source wormlog-verify, or an alert), and log
        /// it at the journal priority it deserves (what the daily
        /// wormlog-verify.timer runs).
        #[arg(long, requires = "config")]
        record: bool,
        /// A bundle from a collector (an export or a disclosure), checked
        /// offline; needs --pubkey.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// The host's first public key (`ed25519:…`), or a file holding it
        /// (e.g. host.pub).
        #[arg(long)]
        pubkey: Option<String>,
        /// The collector's receipt key (`ed25519:…` or a file): a bundle's
        /// countersignatures are then checked against it.
        #[arg(long, requires = "bundle")]
        collector_pubkey: Option<String>,
        /// An age identity file that opens the encrypted entries of an
        /// export bundle.
        #[arg(long, requires = "bundle")]
        identity: Option<PathBuf>,
        /// Machine-readable report.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon how it is: exit 0 healthy, 1 something needs
    /// attention (forwarding behind, a source erroring, the spool near
    /// full), 2 the daemon cannot be asked.
    Status {
        #[arg(long)]
        config: PathBuf,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print the records of a spool (verifying them on the way).
    Cat {
        #[arg(long, required_unless_present = "bundle", conflicts_with = "bundle")]
        spool: Option<PathBuf>,
        /// Print the records of a bundle (checked first, as `verify
        /// --bundle` does; needs --pubkey).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// The collector's receipt key, as for `verify --bundle`.
        #[arg(long, requires = "bundle")]
        collector_pubkey: Option<String>,
        /// Start at this sequence number.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// The host's first public key, as for `verify`.
        #[arg(long)]
        pubkey: Option<String>,
        /// An age identity file that opens the data keys of encrypted
        /// segments (`[spool] encrypt_to`).
        #[arg(long)]
        identity: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon = matches!(cli.command, Command::Run { .. });
    let result = match cli.command {
        Command::Run { config } => {
            wormlog_service::log::init("wormlog");
            daemon::run(&config)
        }
        Command::Keygen { key_dir } => cmd::keygen::run(&key_dir),
        Command::CheckConfig { config } => cmd::check_config::run(&config),
        Command::Status { config, json } => cmd::status::run(&config, json),
        Command::Append {
            config,
            source,
            quiet,
        } => cmd::append::run(&config, &source, quiet),
        Command::Verify {
            spool: Some(spool),
            pubkey,
            json,
            ..
        } => cmd::verify::run(&spool, pubkey.as_deref(), json),
        Command::Verify {
            config: Some(config),
            pubkey,
            json,
            record,
            ..
        } => cmd::verify::run_configured(&config, pubkey.as_deref(), json, record),
        Command::Verify {
            bundle: Some(bundle),
            pubkey,
            collector_pubkey,
            identity,
            json,
            ..
        } => cmd::bundle::run(&cmd::bundle::Args {
            bundle: &bundle,
            pubkey: pubkey.as_deref(),
            collector_pubkey: collector_pubkey.as_deref(),
            identity: identity.as_deref(),
            json,
            records: false,
        }),
        Command::Verify { .. } => unreachable!("clap requires --spool, --config or --bundle"),
        Command::Cat {
            spool: Some(spool),
            from,
            json,
            pubkey,
            identity,
            ..
        } => cmd::cat::run(&spool, from, json, pubkey.as_deref(), identity.as_deref()),
        Command::Cat {
            bundle: Some(bundle),
            json,
            pubkey,
            collector_pubkey,
            identity,
            ..
        } => cmd::bundle::run(&cmd::bundle::Args {
            bundle: &bundle,
            pubkey: pubkey.as_deref(),
            collector_pubkey: collector_pubkey.as_deref(),
            identity: identity.as_deref(),
            json,
            records: true,
        }),
        Command::Cat { .. } => unreachable!("clap requires --spool or --bundle"),
    };
    match result {
        Ok(code) => code,
        Err(e) if daemon => {
            tracing::error!("{e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("wormlog: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
