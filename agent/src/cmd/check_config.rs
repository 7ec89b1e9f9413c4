//! `wormlog check-config --config PATH`

use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    match crate::config::load(path) {
        Ok(c) => {
            println!(
                "{}: ok (agent {}, spool {})",
                path.display(),
                c.agent_id(),
                c.config.agent.spool_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
    }
}
