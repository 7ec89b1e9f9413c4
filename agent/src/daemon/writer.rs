//! The writer thread: the only code that touches the spool while the daemon
//! runs.

use crate::sources::Event;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;
use wormlog_spool::{Position, Spool, SpoolError};

pub fn run(mut spool: Spool, rx: Receiver<Event>) -> Result<(), SpoolError> {
    loop {
        let wait = spool
            .next_deadline()
            .saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(ev) => {
                apply(&mut spool, ev)?;
                while let Ok(ev) = rx.try_recv() {
                    apply(&mut spool, ev)?;
                }
                spool.tick()?;
            }
            Err(RecvTimeoutError::Timeout) => spool.tick()?,
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    spool.close("shutdown")
}

fn apply(spool: &mut Spool, ev: Event) -> Result<(), SpoolError> {
    match ev {
        Event::Lines {
            source,
            file: (dev, ino, fingerprint),
            ts,
            data,
            lines,
        } => {
            for (s, e, flags, offset) in lines {
                let pos = Position::File {
                    dev,
                    ino,
                    fingerprint,
                    offset,
                };
                spool.append_entry(&source, &pos, flags, &[], &data[s as usize..e as usize], ts)?;
            }
        }
        Event::Gap {
            source,
            position,
            reason,
            lost_bytes,
            lost_records,
            detail,
            ts,
        } => {
            spool.append_gap(
                &source,
                &position,
                reason,
                lost_bytes,
                lost_records,
                &detail,
                ts,
            )?;
        }
        Event::Forget { source, key } => spool.forget_position(&source, key),
        Event::Receipt(r) => {
            spool.append_receipt(&r)?;
        }
        Event::Alert { code, detail } => {
            spool.append_alert(code, &detail)?;
        }
    }
    Ok(())
}
