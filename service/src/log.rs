//! A daemon's own logs (`wormlog run`, `wormlog-collector serve`), through
//! `tracing`, set up the same way for both.
//!
//! Under systemd (`JOURNAL_STREAM` names the device and inode of our
//! standard error) events go to the journal with their priority (error 3,
//! warning 4, info 5) and their fields as journal fields (`SOURCE=`,
//! `ERROR=`, `SEGMENT=`, …; `journalctl -u wormlog -p warning`).
//! Elsewhere, or when the journal cannot be reached, they go to standard
//! error as one line each, without timestamps or colours:
//!
//! ```text
//! wormlog: running with 2 sources
//! wormlog: warning: spool at 91% of its disk budget … used=… budget=…
//! wormlog: error: source app stopped unexpectedly; stopping the daemon source=app
//! ```
//!
//! The collector's lines start `wormlog-collector:` and go to the journal
//! under its own identifier. The other subcommands print to the terminal
//! with `eprintln!`.

use std::fmt::{self, Write as _};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// Install the global subscriber for program `name` (the journal's
/// `SYSLOG_IDENTIFIER=` and the stderr prefix): the journal when standard
/// error is the journal's stream, standard error otherwise. Info and above.
pub fn init(name: &'static str) {
    let journal_error = if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_syslog_identifier(name.to_owned())
                    .with_field_prefix(None);
                let subscriber = tracing_subscriber::registry()
                    .with(LevelFilter::INFO)
                    .with(layer);
                if tracing::subscriber::set_global_default(subscriber).is_ok() {
                    return;
                }
                None
            }
            Err(e) => Some(e),
        }
    } else {
        None
    };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(Level::INFO)
        .with_writer(std::io::stderr)
        .event_format(StderrFormat { name })
        .finish();
    if tracing::subscriber::set_global_default(subscriber).is_ok()
        && let Some(e) = journal_error
    {
        tracing::warn!(error = %e, "cannot log to the journal; logging to stderr");
    }
}

/// Whether `JOURNAL_STREAM` (`DEV:INODE`, set by systemd) names the file
/// behind file descriptor 2 — and not one inherited from a parent whose
/// standard error was the journal.
fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    var.to_str()
        .is_some_and(|v| names_file(v, st.st_dev, st.st_ino))
}

/// Whether a `JOURNAL_STREAM` value (`DEV:INODE`, decimal) names this file.
fn names_file<D, I>(var: &str, dev: D, ino: I) -> bool
where
    D: std::str::FromStr + PartialEq,
    I: std::str::FromStr + PartialEq,
{
    var.split_once(':')
        .is_some_and(|(d, i)| d.parse().ok() == Some(dev) && i.parse().ok() == Some(ino))
}

/// `NAME: [LEVEL: ]message key=value …`, one line per event.
#[derive(Debug)]
struct StderrFormat {
    name: &'static str,
}

impl<S, N> FormatEvent<S, N> for StderrFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        writer.write_str(&format_line(
            self.name,
            event.metadata().level(),
            &fields.message,
            &fields.fields,
        ))
    }
}

/// The event's message and its other fields, in order.
#[derive(Debug, Default)]
struct Fields {
    message: String,
    fields: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields.push((field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields.push((field.name(), format!("{value:?}")));
        }
    }
}

/// One stderr line: `wormlog: message` for info, `wormlog: warning:
/// message` and `wormlog: error: message` for the loud ones, then ` key=value`
/// for each field (the value quoted when it is empty or holds a space, a
/// quote, an `=` or a control character).
fn format_line(name: &str, level: &Level, message: &str, fields: &[(&str, String)]) -> String {
    let mut line = format!("{name}: ");
    line.push_str(match *level {
        Level::ERROR => "error: ",
        Level::WARN => "warning: ",
        Level::INFO => "",
        Level::DEBUG => "debug: ",
        Level::TRACE => "trace: ",
    });
    // A message may quote what came from outside (a file name, a peer's
    // bytes): control characters are escaped, so one event stays one line.
    for c in message.chars() {
        if c.is_control() {
            let _ = write!(line, "{}", c.escape_default());
        } else {
            line.push(c);
        }
    }
    for (key, value) in fields {
        let plain = !value.is_empty()
            && !value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
        if plain {
            let _ = write!(line, " {key}={value}");
        } else {
            let _ = write!(line, " {key}={value:?}");
        }
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_message_cannot_forge_a_second_line() {
        let l = format_line(
            "wormlog",
            &Level::WARN,
            "file a\nwormlog: error: forged\u{1b}[31m",
            &[],
        );
        assert_eq!(l.matches('\n').count(), 1, "{l}");
        assert!(l.contains("a\\nwormlog"), "{l}");
    }

    #[test]
    fn lines_per_level() {
        assert_eq!(
            format_line("wormlog", &Level::INFO, "running with 2 sources", &[]),
            "wormlog: running with 2 sources\n"
        );
        assert_eq!(
            format_line(
                "wormlog",
                &Level::WARN,
                "spool at 91% of its disk budget",
                &[("used", "910".into()), ("budget", "1000".into())]
            ),
            "wormlog: warning: spool at 91% of its disk budget used=910 budget=1000\n"
        );
        assert_eq!(
            format_line(
                "wormlog",
                &Level::ERROR,
                "fsync failed",
                &[
                    ("segment", "7".into()),
                    ("error", "Input/output error (os error 5)".into()),
                    ("source", "".into()),
                    ("url", "https://c.example/x?a=b".into()),
                ]
            ),
            "wormlog: error: fsync failed segment=7 \
             error=\"Input/output error (os error 5)\" source=\"\" \
             url=\"https://c.example/x?a=b\"\n"
        );
        assert_eq!(
            format_line("wormlog", &Level::DEBUG, "x", &[("k", "a\"b".into())]),
            "wormlog: debug: x k=\"a\\\"b\"\n"
        );
    }

    #[test]
    fn journal_stream_names_the_file() {
        assert!(names_file("64769:1234567", 64769u64, 1234567u64));
        assert!(!names_file("64769:1234568", 64769u64, 1234567u64));
        assert!(!names_file("64770:1234567", 64769u64, 1234567u64));
        assert!(!names_file("64769", 64769u64, 1234567u64));
        assert!(!names_file("", 64769u64, 1234567u64));
        assert!(!names_file("x:y", 64769u64, 1234567u64));
    }

    /// Through `tracing` and the fmt subscriber, as `init` sets it up.
    #[test]
    fn events_through_the_subscriber() {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let w = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::INFO)
            .with_writer(move || w.clone())
            .event_format(StderrFormat { name: "wormlog" })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let name = "app";
            tracing::info!("listening on tcp://{}", "127.0.0.1:514");
            tracing::warn!(source = %name, "source {name}: the kernel dropped 3 datagrams");
            tracing::error!(segment = 4u64, error = %"disk gone", "fsync failed");
            tracing::debug!("not shown");
        });
        let got = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            got,
            "wormlog: listening on tcp://127.0.0.1:514\n\
             wormlog: warning: source app: the kernel dropped 3 datagrams source=app\n\
             wormlog: error: fsync failed segment=4 error=\"disk gone\"\n"
        );
    }
}
