//! SIGHUP: the configuration file is read again. A valid new configuration
//! is applied — its capacity settings first (they may be what frees a full
//! spool); then the sources it removes or changes stop and are started
//! again under it, from where the spool says each source stands, while
//! sources whose settings did not change run on untouched; the forwarder
//! restarts only if its settings changed — and its SHA-256 is written into
//! the chain as a `config` record (a change to what is audited is itself
//! audited). An invalid one is logged, recorded as an
//! alert, and the running configuration stays.
//!
//! What cannot change under a running spool (the agent id, the spool and
//! key directories, the spool's segment, commit, checkpoint, heartbeat and
//! epoch settings, the metrics address) takes effect at the next start;
//! the log says which.

use super::generation::{Generation, Shared};
use crate::config::Loaded;
use crate::sources::Event;
use std::path::Path;
use std::time::Duration;
use wormlog_spool::hash::hex;
use wormlog_spool::record::AlertCode;

/// Reloads; false when the daemon must stop (the writer is gone, or the new
/// sources cannot be started).
pub fn reload(path: &Path, cfg: &mut Loaded, generation: &mut Generation, shared: &Shared) -> bool {
    let new = match crate::config::load(path) {
        Ok(n) => n,
        Err(e) => {
            let detail =
                format!("SIGHUP: the new configuration is not applied, the running one stays: {e}");
            tracing::error!(config = %path.display(), "{detail}");
            if let Some(tx) = shared
                .link
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                let _ = tx.send(Event::Alert {
                    code: AlertCode::Other,
                    detail,
                });
            }
            return true;
        }
    };
    if new.sha256 == cfg.sha256 {
        tracing::info!("SIGHUP: the configuration is unchanged");
        return true;
    }
    // The capacity settings first, through the channel the writer reads even
    // while the spool is full: a bigger budget may be what frees it. While
    // it stays full the sources are not restarted (their events could not
    // be taken, and a stop would wait for them): the rest of the new
    // configuration waits for the next SIGHUP.
    let (full_tx, full_rx) = crossbeam_channel::bounded(1);
    let asked = shared
        .link
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|tx| {
            tx.send(Event::Capacity {
                spool: new.config.spool.clone(),
                reply: full_tx,
            })
            .is_ok()
        });
    match full_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(false) => {}
        Ok(true) => {
            tracing::warn!(
                config = %path.display(),
                "SIGHUP: the spool is full even with the new capacity settings, which are applied; the rest of the new configuration is not (sources cannot hand over while the spool is full): send SIGHUP again when there is room"
            );
            return true;
        }
        Err(_) => {
            if asked {
                tracing::error!(
                    "SIGHUP: the spool writer did not answer; the running configuration stays"
                );
            }
            return asked;
        }
    }
    let later = restart_only(cfg, &new);
    // What needs a restart keeps its running value until then ([agent]:
    // the forwarder goes on sending this spool as this agent).
    let mut new = new;
    new.config.agent = cfg.config.agent.clone();
    tracing::info!(
        "SIGHUP: applying configuration {} (sha256){}",
        hex(&new.sha256),
        if later.is_empty() {
            String::new()
        } else {
            later_text(&later)
        }
    );
    // Sources whose settings did not change run on, untouched (a syslog
    // listener keeps its socket and connections); the others stop and
    // hand over what they read.
    if !generation.stop_changed(&new) {
        return false;
    }
    let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
    let sent = shared.tx.send(Event::Reload {
        sha256: new.sha256,
        spool: new.config.spool.clone(),
        reply: reply_tx,
    });
    if sent.is_err() {
        return false;
    }
    let positions = loop {
        match reply_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(p) => break p,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => tracing::warn!(
                "SIGHUP: waiting for the spool writer to take what the old sources read (is the spool full?)"
            ),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return false,
        }
    };
    let started = generation
        .update_forwarder(&new, &positions, shared)
        .and_then(|()| generation.start_missing(&new, &positions, shared));
    match started {
        Ok(()) => {
            tracing::info!("SIGHUP: running with {} sources", generation.sources.len());
            *cfg = new;
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: cannot start the new sources: {e}");
            false
        }
    }
}

/// "; X takes effect at the next start" (one setting), "; X, Y take
/// effect…" (several): not applied now, and said so.
fn later_text(later: &[&str]) -> String {
    let verb = if later.len() == 1 { "takes" } else { "take" };
    format!(
        "; {} {verb} effect at the next start (systemctl restart wormlog)",
        later.join(", ")
    )
}

/// The settings that changed but only take effect at the next start.
fn restart_only(old: &Loaded, new: &Loaded) -> Vec<&'static str> {
    let (o, n) = (&old.config, &new.config);
    let mut v = Vec::new();
    if o.agent.id != n.agent.id {
        v.push("[agent] id");
    }
    if o.agent.spool_dir != n.agent.spool_dir {
        v.push("[agent] spool_dir");
    }
    if o.agent.key_dir != n.agent.key_dir {
        v.push("[agent] key_dir");
    }
    if o.agent.control_socket != n.agent.control_socket {
        v.push("[agent] control_socket");
    }
    let (os, ns) = (&o.spool, &n.spool);
    if (
        os.append_only,
        os.segment_max_bytes,
        os.segment_max_age,
        os.commit_interval,
        os.commit_bytes,
        os.checkpoint_interval,
        os.checkpoint_bytes,
        os.heartbeat_interval,
        os.epoch,
    ) != (
        ns.append_only,
        ns.segment_max_bytes,
        ns.segment_max_age,
        ns.commit_interval,
        ns.commit_bytes,
        ns.checkpoint_interval,
        ns.checkpoint_bytes,
        ns.heartbeat_interval,
        ns.epoch,
    ) {
        v.push("[spool] segment, commit, checkpoint, heartbeat or epoch settings");
    }
    // The open spool seals with the recipients it was opened with.
    if os.encrypt_to != ns.encrypt_to {
        v.push("[spool] encrypt_to");
    }
    if o.metrics.as_ref().map(|m| m.listen) != n.metrics.as_ref().map(|m| m.listen) {
        v.push("[metrics] listen");
    }
    v
}

#[cfg(test)]
mod later_tests {
    use super::later_text;

    #[test]
    fn one_setting_takes_effect_several_take_effect() {
        assert_eq!(
            later_text(&["[metrics] listen"]),
            "; [metrics] listen takes effect at the next start (systemctl restart wormlog)"
        );
        assert!(later_text(&["[agent] id", "[metrics] listen"]).contains("listen take effect"));
    }
}
